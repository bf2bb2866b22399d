"""
The operators and the sensor in real Airflow (``dag.test()``) against the emulator over HTTP.

``dag.test()`` runs deferred tasks' triggers inline after a serialize round trip, so these tests
also prove the trigger survives serialization. That no worker slot is held is proven with real
scheduler and triggerer processes in ``test_real_processes.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests import airflow_utils as au
from tests.conftest import BOTH_DIALECTS, TEST_TOKEN, cancelling_the_first_submit, submits

EDIT = "bytedance/dreamina-4-0/edit"
VIDEO = "bytedance/dreamina-3-0/pro/image-to-video"


@pytest.fixture
def dags(emu: Any) -> dict[str, Any]:
    return au.test_dags(emu.base_url)


@BOTH_DIALECTS
@pytest.mark.parametrize("mode", ["deferrable", "sync"])
def test_edit_then_animate_every_output(emu: Any, dags: dict[str, Any], mode: str) -> None:
    run = au.run_dag(dags[f"rc_edit_then_animate_{mode}"])
    assert run.state == "success", au.task_states(run)

    returns = au.xcoms(run)
    edit_urls = returns[("edit", -1)]
    assert len(edit_urls) == 2, "one output image per input image"
    assert all(url.startswith(f"{emu.base_url}/files/") for url in edit_urls)

    videos = returns[("videos", -1)]
    assert len(videos) == 2, "every edit output was animated"
    assert all(url.endswith(".avi") for url in videos)
    assert sorted(key for key in returns if key[0] == "animate") == [("animate", 0), ("animate", 1)]

    # XCom contract: request_id at once, result summary on success.
    request_ids = au.xcoms(run, "request_id")
    result = au.xcoms(run, "result")[("edit", -1)]
    assert result["request_id"] == request_ids[("edit", -1)]
    assert result["model_id"] == EDIT
    assert result["status"] == "succeeded"
    assert result["urls"] == edit_urls
    assert result["output"] == {"images": edit_urls}
    assert result["created_at"]
    assert result["finished_at"]
    assert au.xcoms(run, "result")[("animate", 0)]["model_id"] == VIDEO

    # What was sent: the documented labels, each animate got exactly one of the edit's outputs.
    bodies = [r.body for r in submits(emu)]
    assert bodies[0]["width×height"] == "2048x2048(1:1)"
    assert sorted(b["image_urls"][0] for b in bodies[1:]) == sorted(edit_urls)
    assert all(b["frames"] == 121 for b in bodies[1:])
    assert len(bodies) == 3, "no job was paid for twice"


@BOTH_DIALECTS
def test_deferrable_edit_polls_from_the_trigger(emu: Any, dags: dict[str, Any]) -> None:
    emu.queue_seconds, emu.run_seconds = 0.5, 1.0
    run = au.run_dag(dags["rc_single_edit_deferrable"])
    assert run.state == "success"
    polls = [r for r in emu.requests if r.path.endswith("/status")]
    assert len(polls) >= 3, "the trigger polled until the job was done"


@BOTH_DIALECTS
def test_submit_then_sensor(emu: Any, dags: dict[str, Any]) -> None:
    emu.queue_seconds, emu.run_seconds = 0.5, 0.5
    run = au.run_dag(dags["rc_submit_then_sense"])
    assert run.state == "success", au.task_states(run)
    returns = au.xcoms(run)
    request_id = returns[("submit", -1)]
    assert au.xcoms(run, "request_id")[("submit", -1)] == request_id
    urls = returns[("sense", -1)]
    assert urls
    assert all(url.startswith(emu.base_url) for url in urls)
    result = au.xcoms(run, "result")[("sense", -1)]
    assert result["request_id"] == request_id
    assert result["model_id"] is None
    assert result["urls"] == urls
    assert result["cost_usd"] == pytest.approx(0.03), "the sensor reads the reported cost too"


def test_any_model_operator(emu: Any, dags: dict[str, Any]) -> None:
    run = au.run_dag(dags["rc_any_model"])
    assert run.state == "success"
    (body,) = [r.body for r in submits(emu)]
    assert body["numbers"] == [1, 2, 3]
    assert body["prompt"] == run.run_id, "inputs are rendered as templates"
    assert len(au.xcoms(run)[("echo", -1)]) == 1


@BOTH_DIALECTS
@pytest.mark.parametrize("mode", ["deferrable", "sync"])
def test_failed_job_fails_the_task_with_runcomfy_error_text(
    emu: Any,
    dags: dict[str, Any],
    mode: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    emu.failure_message = "GPU node lost during sampling"
    run = au.run_dag(dags[f"rc_single_edit_{mode}"])
    assert run.state == "failed"
    assert au.task_states(run)[("edit", -1)] == "failed"
    logs = caplog.text + "".join(capfd.readouterr())
    assert "RunComfyJobFailedError" in logs
    assert "GPU node lost during sampling" in logs
    assert len(submits(emu)) == 1, "a failed job is not retried blindly"


@BOTH_DIALECTS
@pytest.mark.parametrize("mode", ["deferrable", "sync"])
def test_timeout_cancels_the_queued_job(
    emu: Any,
    dags: dict[str, Any],
    mode: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    emu.queue_seconds = 60
    run = au.run_dag(dags[f"rc_short_timeout_{mode}"])
    assert run.state == "failed"
    logs = caplog.text + "".join(capfd.readouterr())
    assert "RunComfyJobTimeoutError" in logs
    # The live dialect answers a cancel with ``status: cancellation_requested`` and no outcome.
    assert ("has been cancelled" if emu.dialect.name == "documented" else "its cancel was requested") in logs
    request_id = au.xcoms(run, "request_id")[("edit", -1)]
    cancels = [r for r in emu.requests if r.method == "POST" and r.path.endswith("/cancel")]
    assert [r.request_id for r in cancels] == [request_id]
    status = next(r for r in emu.jobs() if r["request_id"] == request_id)["status"]
    assert status == "cancelled"


@BOTH_DIALECTS
def test_cancelled_job_fails_the_task(
    emu: Any, dags: dict[str, Any], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    emu.queue_seconds = 5
    with cancelling_the_first_submit(emu):
        run = au.run_dag(dags["rc_single_edit_deferrable"])
    assert run.state == "failed"
    logs = caplog.text + "".join(capfd.readouterr())
    assert "RunComfyJobCancelledError" in logs


def test_token_is_in_no_xcom_and_no_log(
    emu: Any, dags: dict[str, Any], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    run = au.run_dag(dags["rc_submit_then_sense"])
    assert run.state == "success"
    assert TEST_TOKEN not in json.dumps(au.all_xcom_values(run), default=str)
    logs = caplog.text + "".join(capfd.readouterr())
    assert "RunComfy request" in logs  # the task logs were captured
    assert TEST_TOKEN not in logs


def test_download_interrupted_mid_file_leaves_nothing_then_a_retry_completes(
    emu: Any,
    dags: dict[str, Any],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from airflow_provider_runcomfy.emulator import Fault
    from tests.conftest import conn_json

    # No in-task retries, so the cut fails the task; running it again stands for Airflow's retry.
    monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", conn_json(emu.base_url, max_retries=0))
    image, blob = emu.sample_url("portrait.png"), emu.blob_url(3_000_000, content_type="video/mp4")
    dest = tmp_path / "out"
    conf = {"urls": [image, blob], "destination": str(dest)}
    emu.add_fault(Fault(path=r"^/blobs/", kind="truncate", truncate_after=1_000_000, times=1))

    first = au.run_dag(dags["rc_download"], conf)
    assert first.state == "failed"
    logs = caplog.text + "".join(capfd.readouterr())
    assert "RunComfyDownloadError" in logs
    assert sorted(p.suffix for p in dest.iterdir()) == [".png"], "no partial video, no temporary file"

    second = au.run_dag(dags["rc_download"], conf)
    assert second.state == "success", au.task_states(second)
    stored = au.xcoms(second)[("keep", -1)]
    assert [p.rsplit(".", 1)[1] for p in stored] == ["png", "mp4"]
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.rsplit("/", 1)[1] for p in stored)
    assert (dest / stored[1].rsplit("/", 1)[1]).stat().st_size == 3_000_000
    blob_gets = [r for r in emu.requests if r.path.startswith("/blobs/")]
    assert [r.status for r in blob_gets] == [None, 200], "cut once, then copied whole"
    assert not [r for r in emu.requests if r.auth_header_present], "the CDN never sees the token"


def test_worker_on_kill_cancels_the_queued_job(emu: Any) -> None:
    import threading
    import time

    from airflow_provider_runcomfy.exceptions import RunComfyJobCancelledError
    from airflow_provider_runcomfy.operators.runcomfy import RunComfyImageEditOperator

    class TI:
        stats_tags: dict[str, str] = {}  # noqa: RUF012

        def xcom_push(self, key: str, value: Any) -> None:
            pass

    emu.queue_seconds = 30
    op = RunComfyImageEditOperator(
        task_id="edit", image_urls=[emu.sample_url("portrait.png")], prompt="x", poll_interval=0.1
    )

    def kill_once_submitted() -> None:
        # What Airflow does when a user kills the task while it waits in the worker.
        deadline = time.monotonic() + 10
        while op.request_id is None and time.monotonic() < deadline:
            time.sleep(0.05)
        op.on_kill()

    killer = threading.Thread(target=kill_once_submitted)
    killer.start()
    with pytest.raises(RunComfyJobCancelledError, match="was cancelled"):
        op.execute({"ti": TI()})  # type: ignore[arg-type]
    killer.join(10)
    assert [r.request_id for r in emu.requests if r.path.endswith("/cancel")] == [op.request_id]
