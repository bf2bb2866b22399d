"""The emulator's model catalog: the three endpoints, its knobs, schema-checked submits and job costs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_runcomfy.emulator import DEMO_IMAGE_MODEL, DEMO_VIDEO_MODEL
from airflow_provider_runcomfy.emulator.__main__ import build_parser

from .helpers import EDIT, VIDEO, submit, wait_result

if TYPE_CHECKING:
    import httpx

    from airflow_provider_runcomfy.emulator import RunComfyEmulator


def test_documented_models_are_served_with_the_provider_schema_files(client: httpx.Client) -> None:
    from airflow_provider_runcomfy.catalog import bundled_model

    for model_id in (EDIT, VIDEO):
        body = client.get(f"/v1/models/{model_id}").json()
        assert body["model_id"] == model_id
        assert body["input_schema"] == bundled_model(model_id).input_schema  # type: ignore[union-attr]
        assert body["price_unit"] in ("output", "second")
        assert "emulator's own price" in body["pricing_note"]


def test_list_filters_pages_and_leaves_schemas_out_unless_asked(client: httpx.Client) -> None:
    page = client.get("/v1/models", params={"limit": 2, "offset": 1}).json()
    assert page["total"] >= 4
    assert len(page["models"]) == 2
    assert all("input_schema" not in m for m in page["models"])
    video = client.get("/v1/models", params={"category": "image-to-video", "include_schema": "true"}).json()
    assert {m["model_id"] for m in video["models"]} == {VIDEO, DEMO_VIDEO_MODEL}
    assert all("input_schema" in m for m in video["models"])
    found = client.get("/v1/models", params={"search": "DREAMINA 4"}).json()
    assert [m["model_id"] for m in found["models"]] == [EDIT]
    assert client.get("/v1/models", params={"limit": 0}).status_code == 400


def test_categories_and_unknown_models(client: httpx.Client) -> None:
    assert client.get("/v1/models/categories").json() == {"categories": ["image-to-image", "image-to-video"]}
    r = client.get("/v1/models/nobody/nothing")
    assert r.status_code == 404
    assert r.json()["error_code"] == 400001


def test_the_catalog_can_be_made_unavailable_while_submits_still_work(
    rc: RunComfyEmulator, client: httpx.Client
) -> None:
    rc.catalog_available = False
    for path in ("/v1/models", "/v1/models/categories", f"/v1/models/{EDIT}"):
        assert client.get(path).status_code == 503
    submit(client, EDIT, {"prompt": "p", "image_urls": [rc.sample_url()]})


def test_a_catalog_only_model_refuses_inputs_that_break_its_schema(
    rc: RunComfyEmulator, client: httpx.Client
) -> None:
    good = {"prompt": "p", "image_urls": [rc.sample_url()]}
    cases = [
        ({**good, "prompt": "x" * 201}, "prompt"),
        ({**good, "guidance": 11}, "guidance"),
        ({**good, "style": "oil"}, "style"),
        ({"image_urls": [rc.sample_url()]}, "prompt"),
        ({**good, "image_urls": [rc.sample_url()] * 4}, "image_urls"),
        ({**good, "image_urls": ["ftp://h/a.png"]}, "image_urls[0]"),
        ({**good, "num_images": 1.5}, "num_images"),
        ({**good, "colour": "red"}, "colour"),
    ]
    for inputs, field in cases:
        r = client.post(f"/v1/models/{DEMO_IMAGE_MODEL}", json=inputs)
        assert r.status_code == 400, inputs
        assert r.json()["error_message"].startswith(f"{field}: ")
    assert not [j for j in rc.jobs() if j["model_id"] == DEMO_IMAGE_MODEL], "no job was created"


def test_a_catalog_only_model_runs_and_reports_its_cost(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rid = submit(client, DEMO_IMAGE_MODEL, {"prompt": "p", "image_urls": [rc.sample_url()], "num_images": 3})
    result = wait_result(client, rid)
    assert result["status"] == "succeeded"
    assert len(result["output"]["images"]) == 3
    assert "cost" not in result, "the cost is only given when asked for"
    costed = client.get(f"/v1/requests/{rid}/result", params={"include_cost": "true"}).json()
    assert costed["cost"] == pytest.approx(0.06)  # 3 outputs x $0.02

    rid = submit(client, DEMO_VIDEO_MODEL, {"prompt": "p", "image_url": rc.sample_url(), "duration": 7})
    result = wait_result(client, rid)
    assert result["output"]["video"].endswith(".avi")
    costed = client.get(f"/v1/requests/{rid}/result", params={"include_cost": "true"}).json()
    assert costed["cost"] == pytest.approx(0.7)  # 7 s x $0.10


def test_image_validations_fail_the_job_with_the_schema_text(
    rc: RunComfyEmulator, client: httpx.Client
) -> None:
    rid = submit(client, DEMO_IMAGE_MODEL, {"prompt": "p", "image_urls": [rc.image_url(2100, 1000)]})
    result = wait_result(client, rid)
    assert result["status"] == "failed"
    assert result["error"].startswith("image_urls[0]: width_pixels is 2100")
    assert "Images may be at most 2048 pixels wide." in result["error"]


def test_a_user_model_is_served_checked_and_priced(rc: RunComfyEmulator, client: httpx.Client) -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": 5}, "n": {"type": "integer", "maximum": 2}},
        "required": ["text"],
    }
    rc.add_model("me/tiny", schema, base_price_usd=0.5, price_unit="output", display_name="Tiny")
    try:
        body = client.get("/v1/models/me/tiny").json()
        assert (body["display_name"], body["base_price_usd"], body["input_schema"]) == ("Tiny", 0.5, schema)
        assert client.post("/v1/models/me/tiny", json={"text": "toolong"}).status_code == 400
        rid = submit(client, "me/tiny", {"text": "hi"})
        assert wait_result(client, rid)["status"] == "succeeded"
    finally:
        assert rc.remove_model("me/tiny")
    assert client.get("/v1/models/me/tiny").status_code == 404


def test_cli_knobs_for_the_catalog() -> None:
    model = json.dumps({"model_id": "me/m", "input_schema": {"type": "object", "properties": {}}})
    args = build_parser().parse_args(["--no-catalog", "--model", model])
    assert args.no_catalog is True
    assert args.model == [model]


def test_another_process_drives_the_catalog_through_the_controls(
    rc: RunComfyEmulator, client: httpx.Client
) -> None:
    from airflow_provider_runcomfy.emulator import EmulatorControl

    control = EmulatorControl(rc.base_url)
    control.add_model({"model_id": "me/remote", "input_schema": {"type": "object", "properties": {}}})
    try:
        assert client.get("/v1/models/me/remote").json()["price_unit"] == "output"
        assert control.configure(catalog_available=False)["catalog_available"] is False
        assert client.get("/v1/models/me/remote").status_code == 503
    finally:
        rc.catalog_available = True
        rc.remove_model("me/remote")
