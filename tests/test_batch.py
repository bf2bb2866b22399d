"""
The batch operator in real Airflow (``dag.test()``) against the emulator over HTTP.

Every test counts the paid POSTs in the emulator's request log: the batch's promise is that each item
is paid once at most, and that nothing is paid before every item passed the pre-flight. Items are told
apart by their inputs (``prompt`` or ``i``), which the request log keeps with each submit.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_provider_runcomfy import testing
from airflow_provider_runcomfy.batch import ItemStatus, Ledger, RetryBook, RunComfyBatchInputError
from airflow_provider_runcomfy.emulator import ECHO_MODEL, Fault
from airflow_provider_runcomfy.exceptions import RunComfyBudgetExceededError
from airflow_provider_runcomfy.operators.batch import RunComfyBatchOperator
from airflow_provider_runcomfy.triggers.batch import RunComfyBatchTrigger
from tests import airflow_utils as au
from tests.airflow_utils import FakeTI
from tests.conftest import BOTH_DIALECTS, TEST_TOKEN, submits

try:
    from airflow.sdk import ResumableJobMixin as _SdkMixin  # noqa: F401

    HAS_TASK_STATE_STORE = True
except ImportError:
    HAS_TASK_STATE_STORE = False

EDIT = "bytedance/dreamina-4-0/edit"
DAG_FILE = Path(__file__).parent / "dags" / "runcomfy_batch_dags.py"


@pytest.fixture
def dags(emu: Any) -> dict[str, Any]:
    import os

    os.environ["RUNCOMFY_TEST_EMULATOR_URL"] = emu.base_url
    return au.load_dags(DAG_FILE)


def edits(emu: Any, count: int, *, bad: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """``count`` single-output edits told apart by their prompt; ``bad`` swaps in some image URLs."""
    samples = [emu.sample_url("portrait.png"), emu.sample_url("landscape.jpg")]
    items = []
    for i in range(count):
        url = (bad or {}).get(i, samples[i % 2])
        items.append({"image_urls": [url], "prompt": f"item {i}", "force_single": True})
    return items


def paid(emu: Any) -> list[Any]:
    """The submits that created a job (a faulted submit creates none and costs nothing)."""
    return [r for r in submits(emu) if r.request_id and r.status == 200]


def posts_per_prompt(emu: Any) -> Counter[str]:
    return Counter(r.body["prompt"] for r in paid(emu))


def most_jobs_at_once(emu: Any) -> int:
    """
    The largest number of this test's jobs alive (created, not finished) at one instant.

    Only the jobs this test paid for count: the session's emulator also keeps the jobs of earlier tests
    (some left queued for a while), which would otherwise make the count depend on the test order.
    """
    ours = {r.request_id for r in paid(emu)}
    marks = []
    for job in (job for job in emu.jobs() if job["request_id"] in ours):
        marks.append((datetime.fromisoformat(job["created_at"]).timestamp(), 1))
        if job["finished_at"]:
            marks.append((datetime.fromisoformat(job["finished_at"]).timestamp(), -1))
    alive = most = 0
    for _, step in sorted(marks, key=lambda mark: (mark[0], mark[1])):
        alive += step
        most = max(most, alive)
    return most


def run(dags: dict[str, Any], dag_id: str, inputs: list[Any], **conf: Any) -> Any:
    return au.run_dag(dags[dag_id], run_conf={"inputs": inputs, **conf})


def logs_of(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    return caplog.text + "".join(capfd.readouterr())


# -- the window ------------------------------------------------------------------------------------


@BOTH_DIALECTS
@pytest.mark.parametrize("mode", ["deferrable", "sync"])
def test_a_batch_refills_its_window_and_returns_every_item_in_input_order(
    emu: Any,
    dags: dict[str, Any],
    mode: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    emu.queue_seconds, emu.run_seconds = 0.1, 0.3
    inputs = edits(emu, 10)
    dag_run = run(dags, f"rc_batch_{mode}", inputs)

    assert dag_run.state == "success", au.task_states(dag_run)
    assert posts_per_prompt(emu) == Counter({f"item {i}": 1 for i in range(10)}), "each item paid once"
    ids_by_prompt = {r.body["prompt"]: r.request_id for r in paid(emu)}
    urls = au.xcoms(dag_run)[("batch", -1)]
    results = au.xcoms(dag_run, "results")[("batch", -1)]
    assert len(urls) == len(results) == 10
    for i, (item_urls, record) in enumerate(zip(urls, results, strict=True)):
        request_id = ids_by_prompt[f"item {i}"]  # input order: item i holds the job of prompt i
        assert record["index"] == i
        assert record["request_id"] == request_id
        assert record["status"] == "succeeded"
        assert record["cost_usd"] == pytest.approx(0.03)
        assert item_urls == record["urls"]
        assert len(item_urls) == 1
        assert item_urls[0].startswith(f"{emu.base_url}/files/{request_id}/")
    batch = au.xcoms(dag_run, "batch")[("batch", -1)]
    assert batch["succeeded"] == 10
    assert batch["failed"] == batch["skipped"] == batch["cancelled"] == 0
    assert batch["cost_usd"] == pytest.approx(0.3)
    assert batch["estimated_cost_usd"] == pytest.approx(0.3)
    assert batch["finished"] is True
    # A window of 3 over 10 items: at least four rounds, and never more than 3 jobs alive at once.
    assert batch["rounds"] >= 4
    assert 2 <= most_jobs_at_once(emu) <= 3
    logs = logs_of(caplog, capfd)
    assert "Batch progress: 10/10 done" in logs
    assert "Batch of 10 item(s) done: 10 succeeded" in logs
    assert TEST_TOKEN not in logs
    assert TEST_TOKEN not in json.dumps(au.all_xcom_values(dag_run), default=str)


@pytest.mark.parametrize("mode", ["deferrable", "sync"])
def test_failures_within_allow_failures_leave_the_task_green_with_none_for_the_failed_item(
    emu: Any, dags: dict[str, Any], mode: str
) -> None:
    # An aspect ratio of 6 breaks the model's rule; with validate_images=False only the run finds it.
    inputs = edits(emu, 6, bad={4: emu.image_url(1200, 200)})
    dag_run = run(dags, f"rc_batch_failures_{mode}", inputs)

    assert dag_run.state == "success", au.task_states(dag_run)
    assert len(paid(emu)) == 6
    urls = au.xcoms(dag_run)[("batch", -1)]
    results = au.xcoms(dag_run, "results")[("batch", -1)]
    assert urls[4] is None
    assert all(urls[i] for i in (0, 1, 2, 3, 5))
    assert results[4]["status"] == "failed"
    assert "image_urls[0]" in results[4]["error"]
    assert results[4]["request_id"] in {r.request_id for r in paid(emu)}
    batch = au.xcoms(dag_run, "batch")[("batch", -1)]
    assert (batch["succeeded"], batch["failed"]) == (5, 1)


@pytest.mark.parametrize("mode", ["deferrable", "sync"])
def test_failures_beyond_allow_failures_fail_the_task_after_every_job_ended(
    emu: Any,
    dags: dict[str, Any],
    mode: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    inputs = edits(emu, 7, bad={1: emu.image_url(1200, 200), 5: emu.image_url(200, 1200)})
    dag_run = run(dags, f"rc_batch_failures_{mode}", inputs)

    assert au.task_states(dag_run)[("batch", -1)] == "failed"
    assert posts_per_prompt(emu) == Counter({f"item {i}": 1 for i in range(7)})
    results = au.xcoms(dag_run, "results")[("batch", -1)]
    assert [r["status"] for r in results] == [
        "succeeded",
        "failed",
        "succeeded",
        "succeeded",
        "succeeded",
        "failed",
        "succeeded",
    ], "every job ran to its end before the task failed"
    batch = au.xcoms(dag_run, "batch")[("batch", -1)]
    assert (batch["succeeded"], batch["failed"], batch["finished"]) == (5, 2, True)
    logs = logs_of(caplog, capfd)
    assert "2 of 7 item(s) of the batch of model bytedance/dreamina-4-0/edit ended without outputs" in logs
    assert f"item 1 (request {results[1]['request_id']}) failed" in logs
    assert "allow_failures=1" in logs


# -- the pre-flight --------------------------------------------------------------------------------


def bad_batch(emu: Any) -> list[Any]:
    """Seven items: 0, 2 and 6 are fine; each of the others breaks a rule the pre-flight knows."""
    inputs: list[Any] = edits(emu, 7)
    inputs[1]["prompt"] = "x" * 801  # the schema's length limit
    inputs[3]["image_urls"] = [emu.image_url(1200, 200)]  # the aspect ratio: found by the image probe
    inputs[4] = "not a dict"
    inputs[5]["image_urls"] = [emu.image_url(64, 64, "gif")]  # a format the model refuses
    return inputs


def test_bad_items_are_all_named_in_one_error_before_any_post(emu: Any) -> None:
    op = RunComfyBatchOperator(task_id="batch", model_id=EDIT, inputs=bad_batch(emu))
    with pytest.raises(RunComfyBatchInputError) as caught:
        op.execute({"ti": FakeTI()})  # type: ignore[arg-type]
    assert submits(emu) == []
    problems = caught.value.problems
    assert [p.index for p in problems] == [1, 3, 4, 5]
    assert problems[0].field == "prompt"
    assert problems[1].field == "image_urls[0]"
    assert "aspect" in problems[1].rule
    assert problems[2].field == "inputs"
    assert problems[3].field == "image_urls[0]"
    text = str(caught.value)
    assert text.startswith("inputs: 4 of 7 items break the model's rules, so none was submitted")
    for index in (1, 3, 4, 5):
        assert f"inputs[{index}]." in text


def test_bad_items_fail_the_real_task_before_any_post(
    emu: Any, dags: dict[str, Any], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    dag_run = run(dags, "rc_batch_deferrable", bad_batch(emu))
    assert au.task_states(dag_run)[("batch", -1)] == "failed"
    assert submits(emu) == []
    assert "4 of 7 items break the model's rules" in logs_of(caplog, capfd)


def test_skip_invalid_runs_the_good_items_and_records_why_the_others_were_skipped(
    emu: Any, dags: dict[str, Any]
) -> None:
    dag_run = run(dags, "rc_batch_skip_invalid", bad_batch(emu))

    assert dag_run.state == "success", au.task_states(dag_run)
    assert posts_per_prompt(emu) == Counter({"item 0": 1, "item 2": 1, "item 6": 1})
    urls = au.xcoms(dag_run)[("batch", -1)]
    results = au.xcoms(dag_run, "results")[("batch", -1)]
    assert [bool(u) for u in urls] == [True, False, True, False, False, False, True]
    assert [r["status"] for r in results] == [
        "succeeded",
        "skipped",
        "succeeded",
        "skipped",
        "skipped",
        "skipped",
        "succeeded",
    ]
    assert results[1]["error"].startswith("prompt:")
    assert results[1]["request_id"] is None
    batch = au.xcoms(dag_run, "batch")[("batch", -1)]
    assert (batch["succeeded"], batch["skipped"], batch["failed"]) == (3, 4, 0)
    assert au.xcoms(dag_run, "cost_estimate")[("batch", -1)]["usd"] == pytest.approx(0.09)


def test_a_batch_over_its_budget_pays_nothing(emu: Any, dags: dict[str, Any]) -> None:
    op = RunComfyBatchOperator(task_id="batch", model_id=EDIT, inputs=edits(emu, 3), max_cost_usd=0.05)
    ti = FakeTI()
    with pytest.raises(RunComfyBudgetExceededError, match=r"3 bytedance/dreamina-4-0/edit job\(s\), \$0\.09"):
        op.execute({"ti": ti})  # type: ignore[arg-type]
    assert ti.xcom["cost_estimate"]["usd"] == pytest.approx(0.09)
    assert "3 jobs x 1 output (force_single=True)" in ti.xcom["cost_estimate"]["basis"]
    dag_run = run(dags, "rc_batch_budget", edits(emu, 3))
    assert au.task_states(dag_run)[("batch", -1)] == "failed"
    assert submits(emu) == []


@pytest.mark.parametrize(
    ("setting", "value"),
    [("max_in_flight", 0), ("allow_failures", -1), ("poll_interval", 0), ("max_in_flight", True)],
)
def test_bad_settings_are_refused_by_name(emu: Any, setting: str, value: Any) -> None:
    op = RunComfyBatchOperator(task_id="batch", model_id=EDIT, inputs=edits(emu, 1), **{setting: value})
    with pytest.raises(Exception, match=rf"^{setting}: must be"):
        op.execute({"ti": FakeTI()})  # type: ignore[arg-type]
    assert submits(emu) == []


def test_inputs_must_be_a_list(emu: Any) -> None:
    op = RunComfyBatchOperator(task_id="batch", model_id=EDIT, inputs={"prompt": "one"})
    with pytest.raises(Exception, match=r"^inputs: must be a list of input dicts"):
        op.execute({"ti": FakeTI()})  # type: ignore[arg-type]


# -- the deadline and retries ----------------------------------------------------------------------


def test_the_batch_timeout_cancels_queued_jobs_and_submits_nothing_more(
    emu: Any, dags: dict[str, Any]
) -> None:
    emu.queue_seconds = 60  # queued for the whole test
    dag_run = run(dags, "rc_batch_short_timeout", edits(emu, 4))

    assert au.task_states(dag_run)[("batch", -1)] == "failed"
    assert len(paid(emu)) == 2, "only the first window was submitted"
    results = au.xcoms(dag_run, "results")[("batch", -1)]
    assert [r["status"] for r in results] == ["timed_out", "timed_out", "error", "error"]
    assert "has been cancelled" in results[0]["error"]
    assert results[2]["error"].startswith("not submitted: the batch's timeout (2 s) passed")
    cancels = [r for r in emu.requests if r.method == "POST" and r.path.endswith("/cancel")]
    assert sorted(r.request_id for r in cancels) == sorted(r.request_id for r in paid(emu))


@pytest.mark.skipif(not HAS_TASK_STATE_STORE, reason="task_state_store arrived in Airflow 3.3")
def test_a_retry_after_a_killed_try_reconnects_and_pays_each_item_once(
    emu: Any, dags: dict[str, Any]
) -> None:
    """
    The first try is killed by its execution_timeout (6 s) while its first window (3 jobs of 8 s) runs;
    the retry must take over those jobs, and submit only the three items that had none.
    """
    inputs = [{"i": i, "queue_seconds": 0.2, "run_seconds": 8 if i < 3 else 0.5} for i in range(6)]
    dag_run = run(dags, "rc_batch_killed", inputs)

    assert dag_run.state == "success", au.task_states(dag_run)
    assert _try_number(dag_run) == 2
    per_item = Counter(r.body["i"] for r in paid(emu))
    assert per_item == Counter(range(6)), f"each item paid exactly once across tries: {per_item}"
    first_try_end = min(r.time for r in paid(emu)) + 6
    by_try = {r.body["i"]: r.time < first_try_end for r in paid(emu)}
    assert by_try == {0: True, 1: True, 2: True, 3: False, 4: False, 5: False}
    results = au.xcoms(dag_run, "results")[("batch", -1)]
    assert [r["status"] for r in results] == ["succeeded"] * 6
    ids_by_item = {r.body["i"]: r.request_id for r in paid(emu)}
    assert [r["request_id"] for r in results] == [ids_by_item[i] for i in range(6)]
    cancels = [r for r in emu.requests if r.path.endswith("/cancel")]
    assert cancels == [], "cancel_on_kill=False: the killed try's jobs went on"


def _try_number(dag_run: Any) -> int:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter(TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)
            .one()
        )
        return int(ti.try_number)


def test_the_retry_book_keeps_ids_in_blocks_and_forgets_failed_ones() -> None:
    class Store:
        def __init__(self) -> None:
            self.values: dict[str, Any] = {}

        def get(self, key: str) -> Any:
            return self.values.get(key)

        def set(self, key: str, value: Any) -> None:
            self.values[key] = value

    store = Store()
    book = RetryBook(store)
    book.save(0, {"id": "a"})
    book.save(70, {"id": "b"})
    book.save(71, {"uncertain": "lost answer"})
    assert sorted(store.values) == ["runcomfy_batch_ids_0", "runcomfy_batch_ids_1"]
    again = RetryBook(store)
    assert again.read(100) == {0: {"id": "a"}, 70: {"id": "b"}, 71: {"uncertain": "lost answer"}}
    again.forget(70)
    again.save(70, {"id": "c"})
    assert RetryBook(store).read(100)[70] == {"id": "c"}
    assert RetryBook(store).read(50) == {0: {"id": "a"}}, "ids beyond the inputs are ignored"


# -- faults at scale -------------------------------------------------------------------------------

CHAOS_FAULTS = [
    Fault(path=r"/(status|result)$", status=503, retry_after=0.05, times=None, rate=0.05),
    Fault(path=r"/(status|result)$", status=429, retry_after=0.05, times=None, rate=0.04),
    Fault(path=r"/(status|result)$", kind="drop", times=None, rate=0.03),
    # A 429 on a submit certainly was not taken: the hook sends it again, without paying twice.
    Fault(path=r"^/v1/models/", method="POST", status=429, retry_after=0.05, times=None, rate=0.05),
]


@pytest.mark.parametrize(("mode", "size"), [("chaos", 500), ("chaos_sync", 200)])
def test_hundreds_of_items_under_random_faults_are_all_accounted_for_with_one_paid_post_each(
    emu: Any,
    dags: dict[str, Any],
    mode: str,
    size: int,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    for fault in CHAOS_FAULTS:
        emu.add_fault(fault)
    # Each job its own life (0 to 1 s queued, 0.2 to 1.4 s running), so they end out of order.
    inputs = [
        {"i": i, "queue_seconds": (i % 5) * 0.25, "run_seconds": 0.2 + (i % 7) * 0.2} for i in range(size)
    ]
    started = time.monotonic()
    dag_run = run(dags, f"rc_batch_{mode}", inputs, model_id=ECHO_MODEL)
    took = time.monotonic() - started

    assert dag_run.state == "success", au.task_states(dag_run)
    per_item = Counter(r.body["i"] for r in paid(emu))
    assert per_item == Counter(range(size)), "exactly one paid POST per item"
    served = Counter(f"{r.method} {r.fault} {r.status}" for r in emu.requests if r.fault)
    for kind in ("GET status 503", "GET status 429", "GET drop None", "POST status 429"):
        assert served[kind] > 0, f"the faults were really served: {served}"
    results = au.xcoms(dag_run, "results")[("batch", -1)]
    ids_by_item = {r.body["i"]: r.request_id for r in paid(emu)}
    assert [r["request_id"] for r in results] == [ids_by_item[i] for i in range(size)]
    assert all(r["status"] == "succeeded" for r in results)
    urls = au.xcoms(dag_run)[("batch", -1)]
    assert all(u and u[0].startswith(f"{emu.base_url}/files/{ids_by_item[i]}/") for i, u in enumerate(urls))
    assert au.xcoms(dag_run, "batch")[("batch", -1)]["succeeded"] == size
    logs = logs_of(caplog, capfd)
    assert logs.count("Batch progress:") >= 5
    print(f"\n{size} items ({mode}) in {took:.1f} s; faults served: {dict(served)}")


# -- the trigger -----------------------------------------------------------------------------------


def test_the_trigger_round_trips_and_holds_no_token() -> None:
    trigger = RunComfyBatchTrigger(
        watching=[{"index": 3, "request_id": "r-3", "memory": None}],
        runcomfy_conn_id="runcomfy_default",
        poll_interval=2,
        end_time=123.0,
        yield_after=1,
        progress={"done": 0, "total": 4, "failed": 0, "cost_usd": 0.0, "started_at": 1.0},
    )
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_runcomfy.triggers.batch.RunComfyBatchTrigger"
    assert RunComfyBatchTrigger(**kwargs).serialize() == (path, kwargs)
    assert TEST_TOKEN not in json.dumps(kwargs)


def test_the_ledger_counts_every_item_once() -> None:
    ledger = Ledger.new(6, timeout=60)
    statuses = ["succeeded", "failed", "skipped", "cancelled", "timed_out", "in_flight"]
    for item, status in zip(ledger.items, statuses, strict=True):
        item.status = ItemStatus(status)
    counts = ledger.counts()
    assert (counts["succeeded"], counts["failed"], counts["skipped"], counts["cancelled"]) == (1, 2, 1, 1)
    assert counts["in_flight"] == 1
    assert [item.index for item in ledger.failures] == [1, 3, 4]
    again = Ledger.from_xcom(ledger.results(), ledger.summary())
    assert again.results() == ledger.results()
    assert "Batch progress: 5/6 done, 1 in flight, 3 failed" in ledger.progress()


# -- the example DAG -------------------------------------------------------------------------------

EXAMPLE = Path(__file__).parents[1] / "example_dags" / "runcomfy_batch_catalog.py"


@pytest.mark.parametrize(
    ("dag_id", "task_id"),
    [("runcomfy_batch_catalog", "edit_catalog"), ("runcomfy_batch_catalog_chunked", "edit_chunk")],
)
def test_the_catalog_example_edits_every_photo_and_keeps_the_outputs(
    emu: Any, tmp_path: Path, dag_id: str, task_id: str
) -> None:
    photos = [emu.sample_url("portrait.png"), emu.sample_url("landscape.jpg")] * 2 + [
        emu.image_url(1200, 200)
    ]
    conf = {"photos": photos, "destination": tmp_path.as_uri(), "chunk_size": 2}
    dag_run = testing.run_dag(EXAMPLE, run_conf=conf, dag_id=dag_id)

    assert dag_run.state == "success", au.task_states(dag_run)
    assert len(paid(emu)) == 4, "the photo the pre-flight refuses is skipped, never paid"
    per_item = au.xcoms(dag_run)
    if dag_id.endswith("chunked"):
        chunks = [per_item[(task_id, i)] for i in range(3)]  # 5 photos in chunks of 2
        assert [len(chunk) for chunk in chunks] == [2, 2, 1]
        assert chunks[2] == [None]
    else:
        assert per_item[(task_id, -1)][4] is None
    stored = per_item[("keep", -1)]
    assert len(stored) == 4
    assert all(Path(urlsplit(path).path).is_file() for path in stored), stored


# -- kills -----------------------------------------------------------------------------------------


def queued_jobs(emu: Any, count: int) -> list[str]:
    from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook

    emu.queue_seconds = 60
    hook = RunComfyHook()
    return [hook.submit(ECHO_MODEL, {"i": i}) for i in range(count)]


def job_states(emu: Any, request_ids: list[str]) -> list[str]:
    by_id = {job["request_id"]: job["status"] for job in emu.jobs()}
    return [by_id[request_id] for request_id in request_ids]


class _StaleTryStore:
    """The ``task_state_store`` of a task instance Airflow has moved on: reads find nothing, writes 404."""

    def get(self, key: str) -> Any:
        return None

    def set(self, key: str, value: Any, **_: Any) -> None:
        raise RuntimeError("API_SERVER_ERROR: 404 Task instance not found")


def test_a_stale_try_of_a_batch_submits_nothing(emu: Any) -> None:
    """A stale try (see ownership.py) reads no saved id: the claim before the window's POSTs stops it."""
    from airflow_provider_runcomfy.exceptions import RunComfyNotOwnerError

    op = RunComfyBatchOperator(task_id="batch", model_id=ECHO_MODEL, inputs=[{}] * 3)
    ledger = Ledger.new(3, timeout=60)
    with pytest.raises(RunComfyNotOwnerError, match=r"Not submitting 3 job\(s\) of the batch"):
        op._fill(ledger, 0, RetryBook(_StaleTryStore()), {i: {} for i in range(3)})
    assert submits(emu) == []
    assert [item.status for item in ledger.items] == [ItemStatus.PENDING] * 3


def test_a_worker_kill_cancels_the_batch_queued_jobs(emu: Any) -> None:
    request_ids = queued_jobs(emu, 3)
    op = RunComfyBatchOperator(task_id="batch", model_id=ECHO_MODEL, inputs=[{}] * 3)
    op._in_flight = dict(enumerate(request_ids))  # what the window holds while the worker waits
    op.on_kill()
    assert job_states(emu, request_ids) == ["cancelled"] * 3
    (kept,) = queued_jobs(emu, 1)
    keep = RunComfyBatchOperator(task_id="keep", model_id=ECHO_MODEL, inputs=[{}], cancel_on_kill=False)
    keep._in_flight = {0: kept}
    keep.on_kill()
    assert job_states(emu, [kept]) == ["in_queue"], "cancel_on_kill=False leaves the jobs alone"


def test_the_trigger_on_kill_cancels_the_queued_jobs_it_watches_and_leaves_running_ones(emu: Any) -> None:
    import asyncio

    request_ids = queued_jobs(emu, 2)
    running = {"last": ["in_progress", None], "word": "in_progress", "status_phase": "in_flight"}
    watching = [
        {"index": 0, "request_id": request_ids[0], "memory": None},
        {"index": 1, "request_id": request_ids[1], "memory": running},  # seen running: not cancellable
    ]
    asyncio.run(RunComfyBatchTrigger(watching=watching).on_kill())
    assert job_states(emu, request_ids) == ["cancelled", "in_queue"]
    cancels = [r.request_id for r in emu.requests if r.path.endswith("/cancel")]
    assert cancels == [request_ids[0]]


class FakeStore:
    """The part of ``task_state_store`` the batch uses; what earlier tries left behind."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value


def test_a_retry_keeps_succeeded_jobs_waits_for_running_ones_and_submits_failed_ones_anew(emu: Any) -> None:
    """The take-over rule, item by item (the store is a stand-in, so this runs on every Airflow line)."""
    from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook

    hook = RunComfyHook()
    emu.queue_seconds, emu.run_seconds = 0.0, 0.1
    succeeded = hook.submit(ECHO_MODEL, {"i": 0})
    emu.failure_message = "out of memory"
    failed = hook.submit(ECHO_MODEL, {"i": 1})
    emu.failure_message = None
    deadline = time.monotonic() + 20
    while job_states(emu, [succeeded, failed]) != ["succeeded", "failed"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    running = hook.submit(ECHO_MODEL, {"i": 2, "queue_seconds": 0.5, "run_seconds": 0.5})
    store = FakeStore()
    book = RetryBook(store)
    for index, entry in enumerate(
        [
            {"id": succeeded},
            {"id": failed},
            {"id": running},
            {"id": "expired-long-ago"},
            {"uncertain": "lost"},
        ]
    ):
        book.save(index, entry)
    emu.clear_requests()

    op = RunComfyBatchOperator(
        task_id="batch",
        model_id=ECHO_MODEL,
        inputs=[{"i": i} for i in range(5)],
        deferrable=False,
        poll_interval=0.1,
        allow_failures=1,
    )
    ti = FakeTI()
    urls = op.execute({"ti": ti, "task_state_store": store})  # type: ignore[arg-type]

    assert sorted(r.body["i"] for r in paid(emu)) == [1, 3], "only the failed and the expired item again"
    new_ids = {r.body["i"]: r.request_id for r in paid(emu)}
    results = ti.xcom["results"]
    assert [r["request_id"] for r in results[:4]] == [succeeded, new_ids[1], running, new_ids[3]]
    assert [r["status"] for r in results] == ["succeeded"] * 4 + ["error"]
    assert results[4]["error"] == "lost"
    assert urls[4] is None
    assert all(urls[i] for i in range(4))
    assert RetryBook(store).read(5)[1] == {"id": new_ids[1]}, "the new job is saved for the next retry"


def test_a_batch_that_must_stop_submitting_fails_after_its_jobs_end_and_its_retry_pays_only_the_rest(
    emu: Any, dags: dict[str, Any], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    # The first window goes through, then RunComfy refuses one submit: the account's balance is empty.
    emu.add_fault(Fault(path=r"^/v1/models/", method="POST", kind="delay", times=3))
    empty = {"error_code": 400002, "error_message": "InsufficientResources: account balance too low"}
    emu.add_fault(Fault(path=r"^/v1/models/", method="POST", status=402, body=empty, times=1))
    inputs = edits(emu, 6)
    dag_run = run(dags, "rc_batch_retry_deferrable", inputs)

    assert dag_run.state == "success", au.task_states(dag_run)
    assert _try_number(dag_run) == 2
    refused = [r for r in submits(emu) if r.status == 402]
    assert len(refused) == 1
    logs = logs_of(caplog, capfd)
    assert "did not run every item: submitting stopped at item 3" in logs
    per_item = posts_per_prompt(emu)
    if HAS_TASK_STATE_STORE:
        assert per_item == Counter({f"item {i}": 1 for i in range(6)}), "the retry paid only the rest"
        assert "3 succeeded (kept)" in logs
    else:  # no task_state_store before 3.3: a retry runs the batch anew, as a single operator's does
        assert per_item == Counter({f"item {i}": 2 if i < 3 else 1 for i in range(6)})
    results = au.xcoms(dag_run, "results")[("batch", -1)]
    ids_by_prompt = {r.body["prompt"]: r.request_id for r in paid(emu)}  # the last job of each item
    assert [r["request_id"] for r in results] == [ids_by_prompt[f"item {i}"] for i in range(6)]


# -- private files ---------------------------------------------------------------------------------


def test_a_batch_sends_local_files_inline_and_refuses_a_bad_one_before_any_post(
    emu: Any, dags: dict[str, Any], tmp_path: Path
) -> None:
    """Local files are read, checked and sent as data: URIs per item; no base64 reaches the XComs."""
    import base64
    import io

    from PIL import Image

    def png(width: int, height: int) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (width, height), "teal").save(buf, "PNG")
        return buf.getvalue()

    good = [png(640, 480), png(480, 640)]
    paths = []
    for i, data in enumerate(good):
        path = tmp_path / f"photo-{i}.png"
        path.write_bytes(data)
        paths.append(path)
    items = [
        {"image_urls": [str(paths[0])], "prompt": "item 0", "force_single": True},
        {"image_urls": [paths[1].as_uri()], "prompt": "item 1", "force_single": True},
    ]
    dag_run = run(dags, "rc_batch_deferrable", items)
    assert au.task_states(dag_run)[("batch", -1)] == "success"
    sent = {r.body["prompt"]: r.body["image_urls"][0] for r in paid(emu)}
    for i, data in enumerate(good):
        assert sent[f"item {i}"] == "data:image/png;base64," + base64.b64encode(data).decode()
    stored = json.dumps(au.all_xcom_values(dag_run), default=str)
    assert "base64," not in stored, "no payload in any XCom of the batch"

    wide = tmp_path / "wide.png"
    wide.write_bytes(png(5000, 1000))
    emu.clear_requests()
    op = RunComfyBatchOperator(
        task_id="batch",
        model_id=EDIT,
        inputs=[items[0], {"image_urls": [str(wide)], "prompt": "wide", "force_single": True}],
    )
    with pytest.raises(RunComfyBatchInputError) as caught:
        op.execute({"ti": FakeTI()})  # type: ignore[arg-type]
    assert submits(emu) == []
    assert [p.index for p in caught.value.problems] == [1]
    assert "4096" in str(caught.value)
    assert "base64," not in str(caught.value)
