"""
Nothing is paid for a job that cannot succeed: every documented input rule fails the task before a
submit, with an ``AirflowFailException`` subclass (no retries spent) whose message names the field.

The witness is the emulator's request log: no POST reaches it. The images are real, made by Pillow
and served by the emulator over HTTP.
"""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_runcomfy.exceptions import RunComfyInputError
from airflow_provider_runcomfy.operators.runcomfy import (
    RunComfyImageEditOperator,
    RunComfyImageToVideoOperator,
    RunComfyModelOperator,
)
from tests.airflow_utils import FakeTI


def no_submit(emu: Any) -> bool:
    return not [r for r in emu.requests if r.method == "POST"]


def run(operator: Any) -> Any:
    return operator.execute({"ti": FakeTI()})


def edit(emu: Any, **overrides: Any) -> RunComfyImageEditOperator:
    kwargs: dict[str, Any] = {
        "image_urls": [emu.sample_url("portrait.png")],
        "prompt": "ok",
        "poll_interval": 0.1,
    }
    return RunComfyImageEditOperator(task_id="edit", **{**kwargs, **overrides})


def video(emu: Any, **overrides: Any) -> RunComfyImageToVideoOperator:
    kwargs: dict[str, Any] = {
        "image_url": emu.sample_url("landscape.jpg"),
        "prompt": "ok",
        "poll_interval": 0.1,
    }
    return RunComfyImageToVideoOperator(task_id="animate", **{**kwargs, **overrides})


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"image_urls": []}, "image_urls"),
        ({"image_urls": "https://example.com/a.png"}, "image_urls"),
        ({"image_urls": ["https://example.com/a.png"] * 11}, "image_urls"),
        ({"image_urls": ["ftp://example.com/a.png"]}, "image_urls[0]"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 801}, "prompt"),
        ({"prompt": 42}, "prompt"),
        ({"size": "1000x1000"}, "size"),
        ({"scale": 1.5}, "scale"),
        ({"scale": -0.1}, "scale"),
        ({"scale": "high"}, "scale"),
        ({"force_single": "yes"}, "force_single"),
    ],
)
def test_edit_rules_fail_before_any_submit(emu: Any, overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(RunComfyInputError) as err:
        run(edit(emu, **overrides))
    assert isinstance(err.value, AirflowFailException)
    assert str(err.value).startswith(field)
    assert no_submit(emu)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"image_url": ["https://example.com/a.png"]}, "image_url"),
        ({"prompt": "x" * 801}, "prompt"),
        ({"frames": 120}, "frames"),
        ({"seed": "lucky"}, "seed"),
    ],
)
def test_video_rules_fail_before_any_submit(emu: Any, overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(RunComfyInputError) as err:
        run(video(emu, **overrides))
    assert str(err.value).startswith(field)
    assert no_submit(emu)


@pytest.mark.parametrize(
    ("image", "rule"),
    [
        ({"width": 5000, "height": 1200, "fmt": "png"}, "wider than the 4096 px"),
        ({"width": 400, "height": 1300, "fmt": "png"}, "ratio"),
        ({"width": 800, "height": 600, "fmt": "gif"}, "GIF"),
        ({"width": 800, "height": 600, "fmt": "webp"}, "WEBP"),
        ({"width": 800, "height": 600, "fmt": "png", "size_bytes": 16_000_000}, "15 MB"),
    ],
)
def test_edit_image_probes_fail_before_any_submit(emu: Any, image: dict[str, Any], rule: str) -> None:
    urls = [emu.sample_url("portrait.png"), emu.sample_url("square.png"), emu.image_url(**image)]
    with pytest.raises(RunComfyInputError, match=rule) as err:
        run(edit(emu, image_urls=urls))
    assert str(err.value).startswith("image_urls[2]")
    assert no_submit(emu)
    images = [r for r in emu.requests if not r.path.startswith("/v1/")]  # the API's own calls carry it
    assert images
    assert not [r for r in images if r.auth_header_present], "image hosts never see the token"


@pytest.mark.parametrize(
    ("image", "rule"),
    [
        ({"width": 320, "height": 640, "fmt": "jpeg"}, "320"),
        ({"width": 800, "height": 600, "fmt": "png", "size_bytes": 4_800_000}, "4.7 MB"),
    ],
)
def test_video_image_probes_fail_before_any_submit(emu: Any, image: dict[str, Any], rule: str) -> None:
    with pytest.raises(RunComfyInputError, match=rule) as err:
        run(video(emu, image_url=emu.image_url(**image)))
    assert str(err.value).startswith("image_urls[0]")
    assert no_submit(emu)


def test_unreachable_image_and_non_image_fail_before_any_submit(emu: Any) -> None:
    with pytest.raises(RunComfyInputError, match=r"image_urls\[0\]"):
        run(edit(emu, image_urls=[f"{emu.base_url}/samples/no-such-image.png"]))
    with pytest.raises(RunComfyInputError, match=r"image_urls\[0\]"):
        run(edit(emu, image_urls=[emu.not_image_url()]))
    assert no_submit(emu)


def test_validate_images_false_skips_the_probe(emu: Any) -> None:
    op = edit(emu, image_urls=[emu.image_url(width=800, height=600, fmt="png")], validate_images=False)
    op.wait_for_completion = False
    request_id = run(op)
    assert [r.request_id for r in emu.requests if r.method == "POST"] == [request_id]
    assert not [r for r in emu.requests if r.path.startswith("/images/")]


def test_known_model_through_the_generic_operator_is_validated(emu: Any) -> None:
    op = RunComfyModelOperator(
        task_id="m", model_id="bytedance/dreamina-4-0/edit", inputs={"image_urls": [emu.sample_url()]}
    )
    with pytest.raises(RunComfyInputError, match="prompt"):
        run(op)
    assert no_submit(emu)


def test_bad_values_fail_the_task_not_the_dag_file(emu: Any) -> None:
    """Validation happens in execute(): constructing an operator with bad values does not raise."""
    op = edit(emu, prompt="x" * 5000, size="huge", scale=7)
    with pytest.raises(RunComfyInputError):
        run(op)


@pytest.mark.parametrize("name", ["poll_interval", "timeout"])
def test_bad_wait_settings_fail_before_any_submit(emu: Any, name: str) -> None:
    with pytest.raises(RunComfyInputError, match=name):
        run(edit(emu, **{name: 0}))
    assert no_submit(emu)


def test_size_short_form_is_sent_as_documented_label(emu: Any) -> None:
    op = edit(emu, size="2560x1440", scale=0.25, force_single=True)
    op.wait_for_completion = False
    run(op)
    (body,) = [r.body for r in emu.requests if r.method == "POST"]
    assert body == {
        "image_urls": [emu.sample_url("portrait.png")],
        "prompt": "ok",
        "width×height": "2560x1440(16:9)",
        "scale": 0.25,
        "force_single": True,
    }


def test_unset_options_are_not_sent(emu: Any) -> None:
    op = video(emu)
    op.wait_for_completion = False
    run(op)
    (body,) = [r.body for r in emu.requests if r.method == "POST"]
    assert body == {"image_urls": [emu.sample_url("landscape.jpg")], "prompt": "ok"}
