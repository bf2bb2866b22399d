"""The two models' documented input rules: field rules at submit (HTTP 400), image rules when running."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_runcomfy.emulator import SIZE_FIELD, RunComfyEmulator
from airflow_provider_runcomfy.emulator.rules import MB

from .helpers import EDIT, VIDEO, submit, wait_result

if TYPE_CHECKING:
    import httpx

URL = "https://example.invalid/a.png"  # never fetched: field errors are answered at submit

EDIT_CASES: list[tuple[dict[str, Any], str]] = [
    ({"prompt": "x"}, "image_urls"),
    ({"prompt": "x", "image_urls": URL}, "image_urls"),
    ({"prompt": "x", "image_urls": []}, "image_urls"),
    ({"prompt": "x", "image_urls": [URL] * 11}, "image_urls"),
    ({"prompt": "x", "image_urls": [URL, 5]}, "image_urls[1]"),
    ({"prompt": "x", "image_urls": ["ftp://host/a.png"]}, "image_urls[0]"),
    # A data: URI is taken (RunComfy's own clients send them), but only in its base64 form with a type.
    ({"prompt": "x", "image_urls": ["data:image/png,AAAA"]}, "image_urls[0]"),
    ({"prompt": "x", "image_urls": ["data:;base64,AAAA"]}, "image_urls[0]"),
    ({"image_urls": [URL]}, "prompt"),
    ({"image_urls": [URL], "prompt": None}, "prompt"),
    ({"image_urls": [URL], "prompt": 42}, "prompt"),
    ({"image_urls": [URL], "prompt": ""}, "prompt"),
    ({"image_urls": [URL], "prompt": "x" * 801}, "prompt"),
    ({"image_urls": [URL], "prompt": "x", SIZE_FIELD: "1024x768"}, SIZE_FIELD),
    ({"image_urls": [URL], "prompt": "x", SIZE_FIELD: 2048}, SIZE_FIELD),
    ({"image_urls": [URL], "prompt": "x", "widthxheight": "1024x1024(1:1)"}, "widthxheight"),
    ({"image_urls": [URL], "prompt": "x", "scale": 1.5}, "scale"),
    ({"image_urls": [URL], "prompt": "x", "scale": -0.1}, "scale"),
    ({"image_urls": [URL], "prompt": "x", "scale": "0.5"}, "scale"),
    ({"image_urls": [URL], "prompt": "x", "scale": True}, "scale"),
    ({"image_urls": [URL], "prompt": "x", "force_single": "yes"}, "force_single"),
    ({"image_urls": [URL], "prompt": "x", "force_single": 1}, "force_single"),
    ({"image_urls": [URL], "prompt": "x", "seed": 3}, "seed"),
]

VIDEO_CASES: list[tuple[dict[str, Any], str]] = [
    ({"prompt": "x"}, "image_urls"),
    ({"prompt": "x", "image_urls": []}, "image_urls"),
    ({"prompt": "x", "image_urls": [URL, URL]}, "image_urls"),
    ({"prompt": "x", "image_urls": [None]}, "image_urls[0]"),
    ({"image_urls": [URL]}, "prompt"),
    ({"image_urls": [URL], "prompt": "x" * 801}, "prompt"),
    ({"image_urls": [URL], "prompt": "x", "seed": 1.5}, "seed"),
    ({"image_urls": [URL], "prompt": "x", "seed": "7"}, "seed"),
    ({"image_urls": [URL], "prompt": "x", "frames": 120}, "frames"),
    ({"image_urls": [URL], "prompt": "x", "frames": "121"}, "frames"),
    ({"image_urls": [URL], "prompt": "x", "scale": 0.5}, "scale"),
]


@pytest.mark.parametrize(
    ("model", "inputs", "field"),
    [(EDIT, i, f) for i, f in EDIT_CASES] + [(VIDEO, i, f) for i, f in VIDEO_CASES],
)
def test_field_rules_answer_400_naming_the_field(
    rc: RunComfyEmulator, client: httpx.Client, model: str, inputs: dict[str, Any], field: str
) -> None:
    jobs_before = len(rc.jobs())
    r = client.post(f"/v1/models/{model}", json=inputs)
    assert r.status_code == 400
    body = r.json()
    assert "error_code" not in body  # no code is documented for input errors
    assert body["error_message"].startswith(f"{field}: ")
    assert len(rc.jobs()) == jobs_before


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b""])
def test_body_must_be_a_json_object(client: httpx.Client, body: bytes) -> None:
    r = client.post(f"/v1/models/{EDIT}", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error_message"].startswith("body: ")


def test_valid_inputs_with_every_field(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.queue_seconds, rc.run_seconds = 0.0, 0.05
    edit = {
        "image_urls": [rc.sample_url()],
        "prompt": "x" * 800,
        SIZE_FIELD: "2560x1440(16:9)",
        "scale": 1,
        "force_single": True,
    }
    video = {"image_urls": [rc.sample_url("landscape.jpg")], "prompt": "pan", "seed": 42, "frames": 241}
    assert wait_result(client, submit(client, EDIT, edit))["status"] == "succeeded"
    assert wait_result(client, submit(client, VIDEO, video))["status"] == "succeeded"


# (model, image spec, expected error fragment or None for success); spec keys: w, h, fmt, bytes
IMAGE_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    (EDIT, {"fmt": "gif"}, "format GIF"),
    (EDIT, {"fmt": "webp"}, "format WEBP"),
    (EDIT, {"bytes": 15 * MB + 1}, "file is"),
    (EDIT, {"bytes": 15 * MB}, None),
    (EDIT, {"w": 4097, "h": 2000}, "at most 4096"),
    (EDIT, {"w": 4096, "h": 2000, "fmt": "jpeg"}, None),
    (EDIT, {"w": 1000, "h": 301}, "aspect ratio"),
    (EDIT, {"w": 290, "h": 900}, "aspect ratio"),
    (EDIT, {"w": 331, "h": 1000}, None),  # 0.331: the page's rule is 0.33 as written, not 1/3
    (EDIT, {"w": 900, "h": 300}, None),
    (VIDEO, {"bytes": int(4.7 * MB)}, "file is"),
    (VIDEO, {"bytes": int(4.7 * MB) - 1, "fmt": "jpeg"}, None),
    (VIDEO, {"w": 320, "h": 600}, "greater than 320"),
    (VIDEO, {"w": 321, "h": 600}, None),
    (VIDEO, {"w": 990, "h": 330}, "aspect ratio"),
    (VIDEO, {"w": 330, "h": 1000}, "aspect ratio"),
    (VIDEO, {"w": 4097, "h": 4000}, "at most 4096"),
    (VIDEO, {"fmt": "gif"}, "format GIF"),
]


@pytest.mark.parametrize(("model", "spec", "error"), IMAGE_CASES)
def test_image_rules_when_the_job_runs(
    rc: RunComfyEmulator, client: httpx.Client, model: str, spec: dict[str, Any], error: str | None
) -> None:
    rc.queue_seconds, rc.run_seconds = 0.0, 0.05
    url = rc.image_url(spec.get("w", 800), spec.get("h", 600), spec.get("fmt", "png"), spec.get("bytes"))
    rid = submit(client, model, {"prompt": "x", "image_urls": [url]})  # accepted: checked when running
    res = wait_result(client, rid)
    if error is None:
        assert res["status"] == "succeeded", res
    else:
        assert res["status"] == "failed"
        assert res["error"].startswith("image_urls[0]: ")
        assert error in res["error"]
    fetches = [r for r in rc.requests if r.path == "/images/gen"]
    assert len(fetches) == 1
    assert not fetches[0].auth_header_present


def test_failed_image_is_named_by_index(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.queue_seconds, rc.run_seconds = 0.0, 0.05
    urls = [rc.sample_url(), rc.sample_url("square.png"), rc.not_image_url()]
    res = wait_result(client, submit(client, EDIT, {"prompt": "x", "image_urls": urls}))
    assert res["status"] == "failed"
    assert res["error"].startswith("image_urls[2]: not a JPEG or PNG image")


def test_unreachable_image_fails_the_job(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.queue_seconds, rc.run_seconds = 0.0, 0.05
    missing = f"{rc.base_url}/samples/missing.png"
    res = wait_result(client, submit(client, VIDEO, {"prompt": "x", "image_urls": [missing]}))
    assert res["status"] == "failed"
    assert res["error"].startswith("image_urls[0]: could not fetch")
    assert "404" in res["error"]
