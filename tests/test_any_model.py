"""
Any RunComfy model, checked before paying: models known only from the emulator's catalog, in real
Airflow (``dag.test()``) against the emulator over HTTP.

The witness of "nothing paid" is the emulator's request log: no POST reaches ``/v1/models/...`` in a
refusal case. The images are real, made with Pillow and served by the emulator.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests import airflow_utils as au

DEMO_IMAGE = "runcomfy/emulator/demo-image"
DEMO_VIDEO = "runcomfy/emulator/demo-video"
EDIT = "bytedance/dreamina-4-0/edit"


@pytest.fixture
def dags(emu: Any) -> dict[str, Any]:
    os.environ["RUNCOMFY_TEST_EMULATOR_URL"] = emu.base_url
    return au.load_dags(Path(__file__).parent / "runcomfy_catalog_dags.py")  # run_dag serializes them


def submits(emu: Any) -> list[Any]:
    return [r for r in emu.requests if r.method == "POST" and r.path.startswith("/v1/models/")]


def logs_of(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    return caplog.text + "".join(capfd.readouterr())


def good_inputs(emu: Any, **overrides: Any) -> dict[str, Any]:
    return {"prompt": "a lighthouse at dusk", "image_urls": [emu.sample_url("square.png")], **overrides}


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        pytest.param(
            {"prompt": "x" * 201}, ["prompt: is 201 characters long; at most 200"], id="too-long-prompt"
        ),
        pytest.param({"guidance": 12.5}, ["guidance: must be between 1 and 10, got 12.5"], id="out-of-range"),
        pytest.param(
            {"style": "oil"}, ["style: must be one of 'photo', 'anime', 'sketch'; got 'oil'"], id="enum"
        ),
        pytest.param({"prompt": None}, ["prompt: is required"], id="missing-required"),
        pytest.param(
            {"image_urls": ["SAMPLE"] * 4},
            ["image_urls: Emulator demo image model takes 1 to 3 image URLs, got 4"],
            id="too-many-images",
        ),
        pytest.param(
            {"image_urls": ["SAMPLE", "WIDE"]},
            [
                "image_urls[1]: 2100x1000 px is wider than the 2048 px that Emulator demo image model",
                'schema: "Images may be at most 2048 pixels wide."',
            ],
            id="image-over-pixel-limit",
        ),
        pytest.param(
            {"mask_url": "MASK"},
            [
                "mask_url: 900x300 px has an aspect ratio (width/height) of 3;",
                "strictly between 1/2 and 2",
                "The mask's aspect ratio must be between 1:2 and 2:1, exclusive.",
            ],
            id="second-image-field-own-rules",
        ),
    ],
)
def test_a_catalog_only_model_refuses_bad_inputs_before_paying(
    emu: Any,
    dags: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    overrides: dict[str, Any],
    words: list[str],
) -> None:
    stand_ins = {
        "SAMPLE": emu.sample_url("square.png"),
        "WIDE": emu.image_url(2100, 1000),
        "MASK": emu.image_url(900, 300),
    }
    inputs = good_inputs(emu, **overrides)
    for key, value in inputs.items():
        if isinstance(value, list):
            inputs[key] = [stand_ins.get(v, v) for v in value]
        elif value in stand_ins:
            inputs[key] = stand_ins[value]
    run = au.run_dag(dags["rc_catalog_image"], {"inputs": inputs})
    assert run.state == "failed"
    logs = logs_of(caplog, capfd)
    assert "RunComfyInputError" in logs
    for text in words:
        assert text in logs
    assert not submits(emu), "nothing was paid for"


def test_a_catalog_only_model_succeeds_with_its_cost_known_before_and_after(
    emu: Any, dags: dict[str, Any], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    inputs = good_inputs(emu, num_images=2, guidance=4.5, style="anime", mask_url=emu.image_url(600, 400))
    run = au.run_dag(dags["rc_catalog_image"], {"inputs": inputs})
    assert run.state == "success", au.task_states(run)
    assert au.xcoms(run, "cost_estimate")[("generate", -1)] == {
        "usd": 0.04,
        "price_unit": "output",
        "basis": "2 outputs (num_images=2) x $0.02/output",
    }
    result = au.xcoms(run, "result")[("generate", -1)]
    assert result["cost_usd"] == pytest.approx(0.04)
    assert len(result["urls"]) == 2
    (body,) = [r.body for r in submits(emu)]
    assert body == inputs, "sent exactly as given"
    logs = logs_of(caplog, capfd)
    assert "Estimated cost of this runcomfy/emulator/demo-image job: $0.04" in logs
    assert "cost $0.04 (as RunComfy reported it)" in logs


def test_a_per_second_model_in_the_worker(emu: Any, dags: dict[str, Any]) -> None:
    run = au.run_dag(
        dags["rc_catalog_video_sync"], {"inputs": {"prompt": "pan", "image_url": emu.sample_url()}}
    )
    assert run.state == "success", au.task_states(run)
    estimate = au.xcoms(run, "cost_estimate")[("generate", -1)]
    assert estimate["usd"] == pytest.approx(0.5)  # the schema's default duration 5 s x $0.10
    assert estimate["price_unit"] == "second"
    assert "duration=5, its default" in estimate["basis"]
    assert au.xcoms(run, "result")[("generate", -1)]["cost_usd"] == pytest.approx(0.5)


def test_max_cost_below_the_estimate_refuses_before_paying(
    emu: Any, dags: dict[str, Any], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    run = au.run_dag(dags["rc_catalog_budget"], {"inputs": good_inputs(emu, num_images=3)})
    assert run.state == "failed"
    logs = logs_of(caplog, capfd)
    assert "RunComfyBudgetExceededError" in logs
    assert "$0.06 (3 outputs (num_images=3) x $0.02/output), is over max_cost_usd $0.05" in logs
    assert au.xcoms(run, "cost_estimate")[("generate", -1)]["usd"] == pytest.approx(0.06)
    assert not submits(emu)
    assert not [r for r in emu.requests if r.path.startswith(("/samples/", "/images/"))], "nor probed"


def test_within_the_budget_runs(emu: Any, dags: dict[str, Any]) -> None:
    run = au.run_dag(dags["rc_catalog_budget"], {"inputs": good_inputs(emu, num_images=2)})
    assert run.state == "success", au.task_states(run)
    assert len(submits(emu)) == 1


def test_catalog_down_with_strict_schema_refuses(
    emu: Any, dags: dict[str, Any], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    emu.catalog_available = False
    run = au.run_dag(dags["rc_catalog_strict"], {"inputs": good_inputs(emu)})
    assert run.state == "failed"
    logs = logs_of(caplog, capfd)
    assert "RunComfySchemaUnavailableError" in logs
    assert "strict_schema=True and no input schema of model 'runcomfy/emulator/demo-image'" in logs
    assert not submits(emu)


def test_catalog_down_without_strict_schema_warns_and_sends(
    emu: Any, dags: dict[str, Any], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    emu.catalog_available = False
    run = au.run_dag(dags["rc_catalog_image"], {"inputs": good_inputs(emu)})
    assert run.state == "success", au.task_states(run)
    logs = logs_of(caplog, capfd)
    assert "its inputs are sent unchecked" in logs
    estimate = au.xcoms(run, "cost_estimate")[("generate", -1)]
    assert estimate["usd"] is None
    assert "catalog could not be read" in estimate["basis"]
    assert au.xcoms(run, "result")[("generate", -1)]["cost_usd"] == pytest.approx(0.02), "reported after"
    assert len(submits(emu)) == 1


def test_the_cost_report_example_sums_a_mapped_fan_out(emu: Any) -> None:
    conf = {
        "model_id": DEMO_IMAGE,
        "jobs": [
            good_inputs(emu, num_images=2),
            good_inputs(emu, prompt="a harbour"),
            good_inputs(emu, num_images=3, style="sketch"),
        ],
        "max_cost_usd": 0.1,
    }
    # The example file where it is: the suite's run_dag serializes a DAG from outside the DAGs folder.
    run = au.run_dag(Path(__file__).parents[1] / "example_dags" / "runcomfy_cost_report.py", conf)
    assert run.state == "success", au.task_states(run)
    reported = [au.xcoms(run, "result")[("generate", i)]["cost_usd"] for i in range(3)]
    assert reported == pytest.approx([0.04, 0.02, 0.06])
    assert au.xcoms(run)[("total_cost", -1)] == {
        "jobs": 3,
        "total_usd": pytest.approx(0.12),
        "without_cost": [],
    }
