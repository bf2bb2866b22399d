"""
The operators in real Airflow (``dag.test()``) against the emulator speaking each variant of the
live service's vocabulary that RunComfy's own clients accept.

Each test shows the task's final state, its ``return_value`` and how many paid submits (POSTs to
``/v1/models/...``) were made: a paid success is never a failure, a finished job is never polled
until its timeout, and nothing is paid for twice. How quickly a wait ends is counted in status
polls from the emulator's request log, never in wall time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from airflow_provider_runcomfy.emulator import Fault
from tests import airflow_utils as au
from tests.conftest import cancelling_the_first_submit, submits

MODES = pytest.mark.parametrize("mode", ["deferrable", "sync"])


def logs_of(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    return caplog.text + "".join(capfd.readouterr())


def job(emu: Any, request_id: str) -> dict[str, Any]:
    return next(j for j in emu.jobs() if j["request_id"] == request_id)


def status_polls_after_the_end(emu: Any, request_id: str) -> int:
    """Status polls of the request made after its job ended (finished or cancelled)."""
    # ``finished_at`` is given to the millisecond, rounded down: a poll in that last millisecond before
    # the end (which still said in flight) must not count as one after it.
    ended = datetime.fromisoformat(job(emu, request_id)["finished_at"].replace("Z", "+00:00")).timestamp()
    ended += 0.001
    return len(
        [
            r
            for r in emu.requests
            if r.path.endswith("/status") and r.request_id == request_id and r.time >= ended
        ]
    )


def assert_success_with_one_submit(emu: Any, run: Any) -> None:
    assert run.state == "success", au.task_states(run)
    (submit,) = submits(emu)
    urls = au.xcoms(run)[("edit", -1)]
    assert urls
    assert all(url.startswith(f"{emu.base_url}/files/{submit.request_id}/") for url in urls)
    result = au.xcoms(run, "result")[("edit", -1)]
    assert result["urls"] == urls
    assert result["status"] == "succeeded", "one success word for downstream code, whatever RunComfy said"
    assert au.xcoms(run, "request_id")[("edit", -1)] == submit.request_id


@MODES
@pytest.mark.parametrize("emu", ["completed-results"], indirect=True)
def test_a_completed_result_is_a_success_with_one_submit(emu: Any, mode: str) -> None:
    assert_success_with_one_submit(emu, au.run_dag(au.test_dags(emu.base_url)[f"rc_dialect_{mode}"]))


@MODES
@pytest.mark.parametrize("emu", ["null-error-codes"], indirect=True)
def test_error_code_null_on_every_answer_is_a_success_with_one_submit(emu: Any, mode: str) -> None:
    assert_success_with_one_submit(emu, au.run_dag(au.test_dags(emu.base_url)[f"rc_dialect_{mode}"]))


@MODES
@pytest.mark.parametrize("emu", ["unknown-status"], indirect=True)
def test_an_unknown_status_word_for_a_while_then_completed_is_a_success(
    emu: Any, mode: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    emu.queue_seconds, emu.run_seconds = 0.5, 0.5
    run = au.run_dag(au.test_dags(emu.base_url)[f"rc_dialect_{mode}"])
    assert_success_with_one_submit(emu, run)
    request_id = submits(emu)[0].request_id
    assert status_polls_after_the_end(emu, request_id) <= 2
    assert len([r for r in emu.requests if r.path.endswith("/status")]) >= 3, "it said the word a while"
    assert "unknown status word 'warming_up' on the status endpoint" in logs_of(caplog, capfd)


@MODES
@pytest.mark.parametrize("emu", ["final-status-words", "live"], indirect=True)
def test_a_failed_status_fails_the_task_within_two_polls(
    emu: Any, mode: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    emu.failure_message = "NSFW content detected"
    run = au.run_dag(au.test_dags(emu.base_url)[f"rc_dialect_{mode}"])
    assert run.state == "failed"
    assert au.task_states(run)[("edit", -1)] == "failed"
    assert ("edit", -1) not in au.xcoms(run)
    logs = logs_of(caplog, capfd)
    assert "RunComfyJobFailedError" in logs
    assert "NSFW content detected" in logs
    (submit,) = submits(emu)
    assert status_polls_after_the_end(emu, submit.request_id) <= 2


@MODES
@pytest.mark.parametrize("emu", ["final-status-words"], indirect=True)
def test_a_failed_status_whose_result_stays_silent_fails_on_the_second_poll(
    emu: Any, mode: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    emu.failure_message = "node crashed"
    # The result endpoint keeps saying in_progress, as if it never caught up with the status.
    emu.add_fault(Fault(path=r"/result$", status=200, body={"status": "in_progress"}, times=None))
    run = au.run_dag(au.test_dags(emu.base_url)[f"rc_dialect_{mode}"])
    assert run.state == "failed"
    logs = logs_of(caplog, capfd)
    assert "RunComfyJobFailedError" in logs
    assert "the status endpoint says failed" in logs
    (submit,) = submits(emu)
    assert status_polls_after_the_end(emu, submit.request_id) == 2


@MODES
@pytest.mark.parametrize("emu", ["final-status-words+canceled", "live"], indirect=True)
def test_a_canceled_status_fails_the_task_within_two_polls(
    emu: Any, mode: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    emu.queue_seconds = 5
    with cancelling_the_first_submit(emu):
        run = au.run_dag(au.test_dags(emu.base_url)[f"rc_dialect_{mode}"])
    assert run.state == "failed"
    assert "RunComfyJobCancelledError" in logs_of(caplog, capfd)
    (submit,) = submits(emu)
    assert job(emu, submit.request_id)["status"] == "cancelled"
    assert status_polls_after_the_end(emu, submit.request_id) <= 2


@MODES
@pytest.mark.parametrize(
    ("emu", "said"),
    [("cancel-requested", "its cancel was requested"), ("cancel-status-only", "has been cancelled")],
    indirect=["emu"],
)
def test_a_cancel_without_outcome_on_timeout(
    emu: Any, mode: str, said: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    emu.queue_seconds = 60
    run = au.run_dag(au.test_dags(emu.base_url)[f"rc_short_timeout_{mode}"])
    assert run.state == "failed"
    logs = logs_of(caplog, capfd)
    assert "RunComfyJobTimeoutError" in logs
    assert said in logs
    (submit,) = submits(emu)
    cancels = [r for r in emu.requests if r.method == "POST" and r.path.endswith("/cancel")]
    assert [r.request_id for r in cancels] == [submit.request_id]
    assert job(emu, submit.request_id)["status"] == "cancelled"
