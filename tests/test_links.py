"""
The extra links, as the Airflow UI resolves them: "RunComfy output" on the model operators and the
sensor, "Stored output" on the download operator. Real runs (``dag.test()``) against the emulator on
Airflow 3.3 and 2.11, plus the URL rules of each kind of stored location.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_runcomfy.links import (
    first_output_url,
    first_stored_url,
    s3_has_custom_endpoint,
    stored_location_url,
)
from tests import airflow_utils as au

OUTPUT, STORED = "RunComfy output", "Stored output"


@pytest.fixture
def dags(emu: Any) -> dict[str, Any]:
    return au.test_dags(emu.base_url)


def test_links_open_the_first_output_after_a_run(emu: Any, dags: dict[str, Any], tmp_path: Any) -> None:
    dag = dags["rc_edit_animate_keep"]
    run = au.run_dag(dag, {"destination": str(tmp_path / "kept")})
    assert run.state == "success", au.task_states(run)
    results = au.xcoms(run, "result")

    edit_link = au.extra_link(dag, run, "edit", OUTPUT)
    assert edit_link == results[("edit", -1)]["urls"][0]
    assert edit_link.startswith(f"{emu.base_url}/files/")
    for index in (0, 1):  # a mapped task: each task instance opens its own output
        assert (
            au.extra_link(dag, run, "animate", OUTPUT, map_index=index)
            == (results[("animate", index)]["urls"][0])
        )
    assert au.extra_link(dag, run, "animate", OUTPUT, 0) != au.extra_link(dag, run, "animate", OUTPUT, 1)
    # Local files have no URL a browser could honestly open (file:// would open the viewer's disk).
    assert au.xcoms(run)[("keep", -1)][0].startswith(str(tmp_path))
    assert au.extra_link(dag, run, "keep", STORED) == ""
    assert au.extra_link(dag, run, "keep", OUTPUT) is None, "the download operator has no output link"


def test_sensor_link_opens_the_first_output(emu: Any, dags: dict[str, Any]) -> None:
    emu.queue_seconds, emu.run_seconds = 0.3, 0.3
    dag = dags["rc_submit_then_sense"]
    run = au.run_dag(dag)
    assert run.state == "success", au.task_states(run)
    urls = au.xcoms(run)[("sense", -1)]
    assert au.extra_link(dag, run, "sense", OUTPUT) == urls[0]
    # The submit-only task has a request id but no result yet: nothing to open, and no error.
    assert au.extra_link(dag, run, "submit", OUTPUT) == ""


def test_links_before_there_is_a_result_are_empty_not_errors(emu: Any, dags: dict[str, Any]) -> None:
    """A failed job leaves no result, and the download behind it never runs: both links are empty."""
    emu.failure_message = "GPU node lost during sampling"
    dag = dags["rc_edit_animate_keep"]
    run = au.run_dag(dag)
    assert run.state == "failed"
    states = au.task_states(run)
    assert states[("edit", -1)] == "failed"
    assert states[("keep", -1)] == "upstream_failed"
    assert au.extra_link(dag, run, "edit", OUTPUT) == ""
    assert au.extra_link(dag, run, "keep", STORED) == ""


def test_stored_link_of_object_storage_locations(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``record_stored`` pushes as ``stored_url``, from what the copy returned."""
    from airflow_provider_runcomfy.operators.runcomfy import RunComfyDownloadOperator

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    op = RunComfyDownloadOperator(task_id="keep", urls=["https://x/y.png"], destination="s3://b/p")
    ti = au.FakeTI()
    op.record_stored({"ti": ti}, ["https://cdn/a.png"], ["s3://media/runs/1/a b.png"])  # type: ignore[arg-type]
    assert (
        ti.xcom["stored_url"]
        == "https://s3.console.aws.amazon.com/s3/object/media?prefix=runs%2F1%2Fa%20b.png"
    )
    assert op.copied == (["https://cdn/a.png"], ["s3://media/runs/1/a b.png"])

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")  # MinIO: the AWS console is wrong
    op.record_stored({"ti": ti}, ["https://cdn/a.png"], ["s3://media/a.png"])  # type: ignore[arg-type]
    assert ti.xcom["stored_url"] == ""


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("https://media.example.com/a.png", "https://media.example.com/a.png"),
        (
            "gs://bucket/runs/a.png",
            "https://console.cloud.google.com/storage/browser/_details/bucket/runs/a.png",
        ),
        ("s3://bucket/runs/a.png", "https://s3.console.aws.amazon.com/s3/object/bucket?prefix=runs%2Fa.png"),
        ("file:///data/runs/a.png", ""),  # the viewer's disk, not the worker's
        ("/data/runs/a.png", ""),
        ("abfs://container/a.png", ""),  # no guess
        ("s3://bucket-only", ""),
        ("javascript:alert(1)//x", ""),
        (None, ""),
    ],
)
def test_stored_location_url(location: Any, expected: str) -> None:
    assert stored_location_url(location) == expected


def test_first_stored_url_skips_locations_without_one() -> None:
    assert first_stored_url(["/data/a.png", "gs://b/k.png"]).endswith("/_details/b/k.png")
    assert first_stored_url("s3://b/k", s3_custom_endpoint=True) == ""
    assert first_stored_url(None) == ""


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"urls": ["https://cdn/a.png", "https://cdn/b.png"]}, "https://cdn/a.png"),
        ({"urls": ["javascript:alert(1)", "http://cdn/b.png"]}, "http://cdn/b.png"),
        ({"urls": []}, ""),
        ({"urls": "https://cdn/a.png"}, ""),  # not the documented shape
        (None, ""),  # no result yet
    ],
)
def test_first_output_url(result: Any, expected: str) -> None:
    assert first_output_url(result) == expected


def test_custom_s3_endpoint_from_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_MINIO", '{"conn_type": "aws", "extra": {"endpoint_url": "http://minio:9000"}}'
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_PLAIN", '{"conn_type": "aws", "extra": {"region_name": "eu-west-1"}}'
    )
    assert s3_has_custom_endpoint("minio")
    assert not s3_has_custom_endpoint("aws_plain")
    assert not s3_has_custom_endpoint(None)
    assert not s3_has_custom_endpoint("no_such_connection")


def test_a_task_waiting_for_its_job_does_not_ask_xcom(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow 3 resolves links in the worker as a try defers: no XCom read, so no "XCom not found"."""
    from airflow_provider_runcomfy import links
    from airflow_provider_runcomfy.operators.runcomfy import RunComfyModelOperator

    reads: list[str] = []

    def get_value(*, ti_key: Any, key: str) -> Any:
        reads.append(key)
        return {"urls": ["https://cdn.example/out.png"]}

    monkeypatch.setattr(links.XCom, "get_value", staticmethod(get_value))
    link = links.RunComfyOutputLink()
    task = RunComfyModelOperator(task_id="m", model_id="any/model", inputs={})
    # A task object that never ran (the UI's): the link comes from XCom.
    assert link.get_link(task, ti_key=None) == "https://cdn.example/out.png"
    assert reads == ["result"]
    task.request_id = "rid-1"  # submitted, deferring: no result can exist yet
    assert task.awaiting_result
    assert link.get_link(task, ti_key=None) == ""
    assert reads == ["result"], "a deferring task must not ask XCom for a result it cannot have"
    task._urls = ["https://cdn.example/out.png"]  # resumed with its outcome
    assert not task.awaiting_result
    assert link.get_link(task, ti_key=None) == "https://cdn.example/out.png"
