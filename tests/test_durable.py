"""
No duplicate payment on retry (Airflow 3.3+): a new try reconnects to the job of an earlier try.

The request id is saved in the task instance's ``task_state_store`` (which, unlike XCom, survives
retries). The end-to-end tests make the first try fail while its job is still queued, let Airflow
retry, and count the submits in the emulator's request log.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_provider_runcomfy.emulator import Fault
from airflow_provider_runcomfy.exceptions import RunComfyAuthError, RunComfyNotOwnerError
from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook
from airflow_provider_runcomfy.operators.runcomfy import RunComfyImageEditOperator
from airflow_provider_runcomfy.ownership import CLAIM_KEY
from tests import airflow_utils as au
from tests.airflow_utils import FakeTI
from tests.conftest import BOTH_DIALECTS, TEST_TOKEN, conn_json, submits

try:
    from airflow.sdk import ResumableJobMixin as _SdkMixin  # noqa: F401

    HAS_TASK_STATE_STORE = True
except ImportError:
    HAS_TASK_STATE_STORE = False

needs_33 = pytest.mark.skipif(not HAS_TASK_STATE_STORE, reason="task_state_store arrived in Airflow 3.3")


@needs_33
@pytest.mark.parametrize(("mode", "failing_polls"), [("sync", 5), ("deferrable", 6)])
def test_retry_reconnects_to_the_running_job(
    emu: Any, monkeypatch: pytest.MonkeyPatch, mode: str, failing_polls: int
) -> None:
    # Every status poll of the first try fails (no hook retries), so it gives up while the job is queued.
    monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", conn_json(emu.base_url, max_retries=0))
    emu.queue_seconds, emu.run_seconds = 1.5, 1.0
    emu.add_fault(Fault(path=r"/status$", kind="status", status=503, times=failing_polls))
    run = au.run_dag(au.test_dags(emu.base_url)[f"rc_durable_{mode}"])

    assert run.state == "success", au.task_states(run)
    (submit,) = submits(emu)  # the second try did not pay again
    assert au.xcoms(run, "request_id")[("edit", -1)] == submit.request_id
    assert au.xcoms(run)[("edit", -1)][0].startswith(f"{emu.base_url}/files/{submit.request_id}/")
    failed_polls = [r for r in emu.requests if r.path.endswith("/status") and r.status == 503]
    assert len(failed_polls) == failing_polls, "the first try really failed"


@needs_33
@pytest.mark.parametrize("emu", ["completed-results", "live"], indirect=True)
def test_a_retry_after_the_job_ended_returns_its_result_without_paying_again(
    emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first try sees the job end, then every result read fails (no hook retries): the try fails
    # after the job was paid for and finished. The retry must read ``completed`` as the success it is.
    monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", conn_json(emu.base_url, max_retries=0))
    emu.queue_seconds, emu.run_seconds = 0.1, 0.3
    emu.add_fault(Fault(path=r"/result$", kind="status", status=503, times=5))
    run = au.run_dag(au.test_dags(emu.base_url)["rc_durable_sync"])

    assert run.state == "success", au.task_states(run)
    (submit,) = submits(emu)  # zero new POSTs on the retry
    urls = au.xcoms(run)[("edit", -1)]
    assert urls
    assert all(url.startswith(f"{emu.base_url}/files/{submit.request_id}/") for url in urls)
    assert au.xcoms(run, "request_id")[("edit", -1)] == submit.request_id
    assert au.xcoms(run, "result")[("edit", -1)]["urls"] == urls
    failed_reads = [r for r in emu.requests if r.path.endswith("/result") and r.status == 503]
    assert len(failed_reads) == 5, "the first try really failed, after the job had ended"
    assert emu.faults == [], "every injected failure was used by the first try"


class FakeStore:
    """The part of ``task_state_store`` the mixin uses; what an earlier try left behind."""

    def __init__(self, **values: Any) -> None:
        self.values = dict(values)

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value


def edit_operator(emu: Any) -> RunComfyImageEditOperator:
    return RunComfyImageEditOperator(
        task_id="edit", image_urls=[emu.sample_url("portrait.png")], prompt="ink", poll_interval=0.1
    )


def finished_job(emu: Any, fail: bool = False) -> str:
    emu.failure_message = "sampler crashed" if fail else None
    hook = RunComfyHook()
    request_id = hook.submit("bytedance/dreamina-4-0/edit", {"image_urls": [emu.sample_url()], "prompt": "x"})
    deadline = time.monotonic() + 10
    while hook.get_status(request_id)["status"] not in ("completed", "succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    emu.failure_message = None
    emu.clear_requests()
    return request_id


def retry_returns_the_earlier_job(emu: Any, request_id: str) -> FakeTI:
    """Run a new try whose store holds ``request_id``: it must return that job's outputs, paying nothing."""
    ti, store = FakeTI(), FakeStore(runcomfy_request_id=request_id)
    urls = edit_operator(emu).execute({"ti": ti, "task_state_store": store})  # type: ignore[arg-type]
    assert submits(emu) == []
    assert urls
    assert all(f"/files/{request_id}/" in url for url in urls)
    assert ti.xcom["request_id"] == request_id
    assert ti.xcom["result"]["urls"] == urls
    return ti


@needs_33
@pytest.mark.parametrize("emu", ["documented", "completed-results", "live"], indirect=True)
def test_a_succeeded_job_of_an_earlier_try_is_returned_without_submitting(emu: Any) -> None:
    request_id = finished_job(emu)
    ti = retry_returns_the_earlier_job(emu, request_id)
    assert ti.xcom["result"]["cost_usd"] > 0, "the earlier try's job reports its cost too"
    assert ti.xcom["cost_estimate"]["usd"] is not None


@needs_33
@BOTH_DIALECTS
def test_a_failed_job_of_an_earlier_try_is_submitted_anew(emu: Any) -> None:
    failed = finished_job(emu, fail=True)
    ti, store = FakeTI(), FakeStore(runcomfy_request_id=failed)
    urls = edit_operator(emu).execute({"ti": ti, "task_state_store": store})  # type: ignore[arg-type]
    (submit,) = submits(emu)
    assert submit.request_id != failed
    assert store.values["runcomfy_request_id"] == submit.request_id
    assert ti.xcom["request_id"] == submit.request_id
    assert urls


@needs_33
def test_an_expired_request_of_an_earlier_try_is_submitted_anew(emu: Any) -> None:
    ti, store = FakeTI(), FakeStore(runcomfy_request_id="expired-long-ago")
    edit_operator(emu).execute({"ti": ti, "task_state_store": store})  # type: ignore[arg-type]
    assert len(submits(emu)) == 1


@pytest.mark.skipif(HAS_TASK_STATE_STORE, reason="before Airflow 3.3 only")
def test_before_33_each_try_submits_anew(emu: Any) -> None:
    request_id = finished_job(emu)
    ti = FakeTI()
    edit_operator(emu).execute({"ti": ti, "task_state_store": FakeStore(runcomfy_request_id=request_id)})  # type: ignore[arg-type]
    assert len(submits(emu)) == 1
    assert ti.xcom["request_id"] != request_id


@needs_33
def test_an_outage_while_checking_the_earlier_job_waits_for_it_instead_of_failing(emu: Any) -> None:
    """
    Found by the soak: a retry's check of the earlier try's job met a 503 storm, raised, and burned the
    try although the job was fine; with the last try burned the same way, a succeeded paid job ends as a
    failed task (a lost job). Now the check gives up quietly and the task waits for that same job.
    """
    request_id = finished_job(emu)
    # Every attempt of the check: the first one and the hook's 5 retries.
    emu.add_fault(Fault(path=r"/status$", status=503, retry_after=0.01, times=6))
    retry_returns_the_earlier_job(emu, request_id)
    storm = [r for r in emu.requests if r.path.endswith("/status") and r.status == 503]
    assert len(storm) == 6, "the check really failed after all its retries"


def test_an_earlier_job_that_cannot_be_checked_is_in_flight_but_a_bad_token_still_fails(emu: Any) -> None:
    """The outage reads as ``in_flight`` (wait, never pay again); errors no wait can fix still raise."""
    request_id = finished_job(emu)
    op = edit_operator(emu)
    emu.add_fault(Fault(path=r"/status$", status=503, times=None))
    assert op.get_job_status(request_id, {}) == "in_flight"  # type: ignore[arg-type]
    assert op.is_job_active("in_flight")
    emu.clear_faults()
    emu.add_fault(
        Fault(path=r"/status$", status=401, body={"error_code": 400004, "error_message": "bad token"})
    )
    with pytest.raises(RunComfyAuthError):
        edit_operator(emu).get_job_status(request_id, {})  # type: ignore[arg-type]


def test_an_outage_while_reading_an_earlier_succeeded_job_waits_for_it(emu: Any) -> None:
    """
    Found by the 2,000-job soak: a retry found the earlier job ``succeeded`` but its result read met a
    503 storm; each try failed so, and the task failed while its paid job had succeeded (a lost job).
    Now the read gives up quietly and the try waits for that job, which returns its outputs.
    """
    request_id = finished_job(emu)
    emu.add_fault(Fault(path=r"/result$", status=503, retry_after=0.01, times=6))  # the read and its retries
    ti = FakeTI()
    urls = edit_operator(emu).get_job_result(request_id, {"ti": ti})  # type: ignore[arg-type]
    assert submits(emu) == []
    assert urls
    assert all(f"/files/{request_id}/" in url for url in urls)
    assert ti.xcom["request_id"] == request_id
    assert len([r for r in emu.requests if r.path.endswith("/result") and r.status == 503]) == 6


class DyingTI(FakeTI):
    """A task instance whose worker dies on the first thing after the paid POST (the request id push)."""

    def xcom_push(self, key: str, value: Any) -> None:
        if key == "request_id":
            raise SystemExit("worker killed")
        super().xcom_push(key, value)


@needs_33
def test_the_request_id_is_saved_for_retries_before_anything_else_after_the_paid_post(emu: Any) -> None:
    """
    Found by the 2,000-job soak: a worker killed after the POST but before the mixin saved the id left
    the retry without it, and the retry paid again. The id is now in the store before the XCom push.
    """
    store = FakeStore()
    with pytest.raises(SystemExit):
        edit_operator(emu).execute({"ti": DyingTI(), "task_state_store": store})  # type: ignore[arg-type]
    assert len(submits(emu)) == 1
    saved = store.get("runcomfy_request_id")
    assert saved == submits(emu)[0].request_id
    # The retry reconnects to that job: no second payment.
    ti = FakeTI()
    edit_operator(emu).execute({"ti": ti, "task_state_store": store})  # type: ignore[arg-type]
    assert len(submits(emu)) == 1
    assert ti.xcom["request_id"] == saved


class LostTIStore(FakeStore):
    """A store whose task instance Airflow superseded meanwhile (the soak's 404 "Task instance not found")."""

    def set(self, key: str, value: Any, **_: Any) -> None:
        raise RuntimeError("API_SERVER_ERROR: 404 Task instance not found")


class LostAfterClaimStore(FakeStore):
    """A store whose task instance Airflow superseded between the claim and the save of the paid id."""

    def set(self, key: str, value: Any, **_: Any) -> None:
        if key != CLAIM_KEY:
            raise RuntimeError("API_SERVER_ERROR: 404 Task instance not found")
        super().set(key, value)


@needs_33
def test_a_stale_try_pays_nothing(emu: Any, capfd: pytest.CaptureFixture[str]) -> None:
    """
    Found by the mapped benchmark (BENCHMARKS.md section 7): Airflow ran a stale try of a task instance
    the scheduler had moved on; its store read found no id and it paid for a second job. The claim
    written before the POST is refused for such a try, so it sends nothing: no submit, no cancel.
    """
    with pytest.raises(RunComfyNotOwnerError, match=r"Not submitting a job .*nothing was paid") as err:
        edit_operator(emu).execute({"ti": FakeTI(), "task_state_store": LostTIStore()})  # type: ignore[arg-type]
    assert submits(emu) == []
    assert [r for r in emu.requests if r.method == "POST"] == []
    assert "Task instance not found" in str(err.value)
    logs = "".join(capfd.readouterr())
    assert "Not submitting a job" in logs
    assert TEST_TOKEN not in logs + str(err.value)


@needs_33
def test_a_live_try_claims_then_saves_its_id(emu: Any) -> None:
    store = FakeStore()
    op = edit_operator(emu)
    op.execute({"ti": FakeTI(), "task_state_store": store})  # type: ignore[arg-type]
    (submit,) = submits(emu)
    assert store.values[op.external_id_key] == submit.request_id  # the claim did not overwrite the id
    assert set(store.values[CLAIM_KEY]) == {"at"}


@needs_33
def test_a_paid_job_whose_id_cannot_be_saved_is_cancelled_not_left_running_for_no_one(emu: Any) -> None:
    """
    Found by the 2,000-job soak: a superseded try submitted, could not save the id (404), and the next
    try paid again while the first job ran. The claim before the POST now stops such a try before it
    pays; if the task instance is superseded between the claim and the save, the job is cancelled
    while it is still queued.
    """
    emu.queue_seconds = 30
    store = LostAfterClaimStore()
    with pytest.raises(RuntimeError, match="Task instance not found"):
        edit_operator(emu).execute({"ti": FakeTI(), "task_state_store": store})  # type: ignore[arg-type]
    (submit,) = submits(emu)
    (job,) = [j for j in emu.jobs() if j["request_id"] == submit.request_id]
    assert job["status"] == "cancelled"
    assert [r.path for r in emu.requests if r.method == "POST"][-1].endswith(f"{submit.request_id}/cancel")
