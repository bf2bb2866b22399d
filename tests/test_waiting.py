"""
The rules of a wait without IO (``waiting.core.WaitCore``), and what a wait ends with
(``waiting.outcome.WaitOutcome``): answers and errors are fed in by hand, no server, no clock.

Events of the shape triggers of the current release serialize (``{"status", "request_id", "result"?,
"message"?}``) are fed as literals through ``WaitOutcome.from_event`` and the operators' and the
sensor's ``execute_complete``: a deferred task resumed after an upgrade must still read its event.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from airflow_provider_runcomfy.exceptions import (
    RunComfyAuthError,
    RunComfyJobCancelledError,
    RunComfyJobError,
    RunComfyJobFailedError,
    RunComfyJobTimeoutError,
    RunComfyUnavailableError,
)
from airflow_provider_runcomfy.jobs import CancelOutcome, EventStatus, RequestWatch
from airflow_provider_runcomfy.waiting import DEFAULT_MAX_FAILED_POLLS, WaitCore, WaitOutcome, note_cancel
from tests.airflow_utils import FakeTI


class Log:
    """A logger that keeps (level, formatted text, raw args) of each line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, tuple[Any, ...]]] = []

    def _keep(self, level: str, msg: str, *args: Any) -> None:
        self.lines.append((level, msg % args, args))

    def info(self, msg: str, *args: Any) -> None:
        self._keep("info", msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self._keep("warning", msg, *args)

    def text(self) -> str:
        return "\n".join(line for _, line, _ in self.lines)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def core(log: Log | None = None, **kwargs: Any) -> WaitCore:
    kwargs.setdefault("poll_interval", 5.0)
    return WaitCore(RequestWatch("r1", log or Log()), **kwargs)


def outage() -> RunComfyUnavailableError:
    return RunComfyUnavailableError("RunComfy kept answering HTTP 503", status_code=503)


# -- WaitCore: failed polls ------------------------------------------------------------------------


def test_failed_polls_are_ridden_out_up_to_the_limit_then_end_in_an_error() -> None:
    log = Log()
    wait = core(log, max_failed_polls=3)
    assert wait.poll_failed(outage()) is None
    assert wait.poll_failed(outage()) is None
    event = wait.poll_failed(outage())
    assert event == {
        "status": "error",
        "request_id": "r1",
        "message": "3 polls in a row failed; the last: RunComfy kept answering HTTP 503",
    }
    warnings = [(text, args) for level, text, args in log.lines if level == "warning"]
    assert [text for text, _ in warnings] == [
        "Poll 1 of request r1 failed: RunComfy kept answering HTTP 503",
        "Poll 2 of request r1 failed: RunComfy kept answering HTTP 503",
    ]
    # Logged as text: a kept record must not hold the exception (and its traceback) alive.
    assert all(not isinstance(arg, BaseException) for _, args in warnings for arg in args)


def test_an_answered_poll_ends_the_streak() -> None:
    wait = core(max_failed_polls=2)
    assert wait.poll_failed(outage()) is None
    wait.poll_answered()
    assert wait.failed_polls == 0
    assert wait.poll_failed(outage()) is None, "one failure after an answer is the first of a new streak"


def test_the_default_tolerance_is_five_failed_polls() -> None:
    wait = core()
    assert DEFAULT_MAX_FAILED_POLLS == 5
    assert [wait.poll_failed(outage()) is None for _ in range(5)] == [True, True, True, True, False]


def test_an_error_no_poll_can_fix_ends_the_wait_at_once() -> None:
    log = Log()
    event = core(log).poll_failed(RunComfyAuthError("RunComfy refused the token (400004)", status_code=401))
    assert event == {"status": "error", "request_id": "r1", "message": "RunComfy refused the token (400004)"}
    assert not log.lines


def test_a_failed_poll_after_the_deadline_is_the_last() -> None:
    event = core(max_failed_polls=5).poll_failed(outage(), last_chance=True)
    assert event is not None
    assert event["message"].startswith("1 polls in a row failed")


def test_a_batch_item_is_named_in_its_failed_poll_line() -> None:
    log = Log()
    core(log, label="request r1 (item 7)").poll_failed(outage())
    assert log.text() == "Poll 1 of request r1 (item 7) failed: RunComfy kept answering HTTP 503"


def test_failed_polls_are_counted_in_the_progress() -> None:
    from airflow_provider_runcomfy.jobs import WaitProgress

    progress = WaitProgress(started_at=0.0, end_time=None)
    wait = WaitCore(RequestWatch("r1", Log(), progress=progress), poll_interval=1)
    wait.poll_failed(outage())
    assert (progress.polls, progress.failed_polls) == (1, 1)


# -- WaitCore: answers -----------------------------------------------------------------------------


def test_answers_go_through_the_watch() -> None:
    wait = core()
    assert not wait.needs_result({"status": "in_queue", "queue_position": 2})
    assert wait.needs_result({"status": "completed"})
    assert wait.read_result({"status": "in_progress"}) is None
    event = wait.read_result(
        {"status": "succeeded", "request_id": "r1", "output": {"image": "https://x/a.png"}}
    )
    assert event is not None
    assert event["status"] == "success"
    assert event["result"]["urls"] == ["https://x/a.png"]


# -- WaitCore: the deadline and the cancel ---------------------------------------------------------


def test_the_deadline_and_the_capped_sleeps() -> None:
    clock = Clock(1000.0)
    wait = core(poll_interval=5.0, end_time=1003.0, clock=clock)
    assert not wait.deadline_passed()
    assert wait.capped(5.0) == 3.0
    assert 0.0 <= wait.first_delay() <= 3.0
    clock.now = 1003.0
    assert wait.deadline_passed()
    assert wait.capped(5.0) == 0.0
    forever = core(poll_interval=5.0, clock=clock)
    assert not forever.deadline_passed()
    assert forever.capped(-1.0) == 0.0
    assert 0.0 <= forever.first_delay() <= 5.0


@pytest.mark.parametrize(
    ("seen", "cancel_on_timeout", "wanted"),
    [
        (None, True, True),  # nothing seen: it may be queued
        ("in_queue", True, True),
        ("warming_up", True, True),  # an unknown word: it may be queued
        ("in_progress", True, False),  # running: RunComfy cannot cancel it
        ("in_queue", False, False),
    ],
)
def test_the_cancel_decision(seen: str | None, cancel_on_timeout: bool, wanted: bool) -> None:
    wait = core(cancel_on_timeout=cancel_on_timeout)
    if seen is not None:
        wait.needs_result({"status": seen})
    assert wait.wants_cancel is wanted


def test_the_timeout_event_carries_the_cancel() -> None:
    event = core().timed_out(CancelOutcome.REQUESTED)
    assert event["status"] == "timeout"
    assert event["cancel"] == "cancellation_requested"
    assert WaitOutcome.from_event(event).cancel is CancelOutcome.REQUESTED
    assert "cancel" not in core().timed_out(None)


def test_the_last_look_failing_ends_in_an_error_naming_the_deadline() -> None:
    event = core().last_look_failed(outage(), "the batch's deadline")
    assert event["message"] == (
        "the batch's deadline passed and the last status check failed: RunComfy kept answering HTTP 503"
    )


def test_every_cancel_is_logged_one_way() -> None:
    log = Log()
    assert note_cancel(log, "r1", CancelOutcome.CANCELLED) is CancelOutcome.CANCELLED
    assert note_cancel(log, "r2", outage()) is None
    assert log.lines[0][:2] == ("info", "RunComfy request r1 was cancelled")
    assert log.lines[1][:2] == (
        "warning",
        "Could not cancel RunComfy request r2: RunComfy kept answering HTTP 503",
    )
    assert not any(isinstance(arg, BaseException) for _, _, args in log.lines for arg in args)


# -- WaitOutcome -----------------------------------------------------------------------------------

TIMED_OUT = "not finished within the timeout; it was not cancelled"

#: Events exactly as triggers of the current release serialize them.
OLD_EVENTS: list[dict[str, Any]] = [
    {
        "status": "success",
        "request_id": "r1",
        "result": {"request_id": "r1", "model_id": None, "status": "succeeded", "urls": ["https://x/a.png"]},
    },
    {"status": "failed", "request_id": "r1", "message": "GPU node lost"},
    {"status": "cancelled", "request_id": "r1", "message": "the job was cancelled"},
    {
        "status": "timeout",
        "request_id": "r1",
        "message": "not finished within the timeout; it was not cancelled",
    },
    {"status": "error", "request_id": "r1", "message": "5 polls in a row failed; the last: 503"},
]


@pytest.mark.parametrize("event", OLD_EVENTS, ids=lambda e: e["status"])
def test_events_of_the_current_release_read_and_write_back_unchanged(event: dict[str, Any]) -> None:
    outcome = WaitOutcome.from_event(event)
    assert outcome.status is EventStatus(event["status"])
    assert outcome.request_id == "r1"
    assert outcome.to_event() == event


def test_an_outcome_is_frozen_and_slotted() -> None:
    outcome = WaitOutcome.from_event(OLD_EVENTS[1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.status = EventStatus.SUCCESS  # type: ignore[misc]
    assert not hasattr(outcome, "__dict__")
    assert outcome.urls == []
    assert WaitOutcome.from_event(OLD_EVENTS[0]).urls == ["https://x/a.png"]


@pytest.mark.parametrize("event", [None, "success", ["success"], 42])
def test_no_event_is_no_outcome(event: Any) -> None:
    with pytest.raises(RunComfyJobError, match=r"RunComfy wait ended without an event \(got .*\); model m/x"):
        WaitOutcome.from_event(event, model_id="m/x")


@pytest.mark.parametrize("status", ["done", None, 3, ["success"]])
def test_an_unknown_status_is_no_outcome(status: Any) -> None:
    with pytest.raises(RunComfyJobError) as raised:
        WaitOutcome.from_event({"status": status, "request_id": "r1"}, model_id="m/x")
    assert str(raised.value) == f"RunComfy request r1 (model m/x): unknown wait outcome {status!r}"
    assert raised.value.request_id == "r1"


def test_an_unknown_cancel_or_a_broken_result_reads_as_none() -> None:
    outcome = WaitOutcome.from_event(
        {"status": "timeout", "request_id": "r1", "cancel": ["?"], "result": "x"}
    )
    assert outcome.cancel is None
    assert outcome.result == {}


@pytest.mark.parametrize(
    ("index", "error", "text"),
    [
        (1, RunComfyJobFailedError, "RunComfy request r1 (model m/x) failed: GPU node lost"),
        (2, RunComfyJobCancelledError, "RunComfy request r1 (model m/x) was cancelled"),
        (
            3,
            RunComfyJobTimeoutError,
            f"RunComfy request r1 (model m/x) timed out: {TIMED_OUT}",
        ),
        (
            4,
            RunComfyJobError,
            "Waiting for RunComfy request r1 (model m/x) failed: 5 polls in a row failed; the last: 503",
        ),
    ],
)
def test_each_end_raises_its_domain_exception(index: int, error: type[Exception], text: str) -> None:
    found = WaitOutcome.from_event(OLD_EVENTS[index]).error("m/x")
    assert type(found) is error
    assert str(found) == text
    assert WaitOutcome.from_event(OLD_EVENTS[0]).error("m/x") is None


# -- execute_complete of the operators and the sensor, fed old-shape events ------------------------


def tasks() -> list[Any]:
    from airflow_provider_runcomfy.operators.runcomfy import RunComfyImageEditOperator, RunComfyModelOperator
    from airflow_provider_runcomfy.sensors.runcomfy import RunComfyRequestSensor

    return [
        RunComfyModelOperator(task_id="model", model_id="m/x"),
        RunComfyImageEditOperator(task_id="edit", image_urls=["https://x/a.png"], prompt="p"),
        RunComfyRequestSensor(task_id="sense", request_id="r1"),
    ]


@pytest.mark.parametrize("task", tasks(), ids=lambda t: t.task_id)
def test_execute_complete_reads_events_of_the_current_release(task: Any) -> None:
    ti = FakeTI()
    assert task.execute_complete({"ti": ti}, OLD_EVENTS[0]) == ["https://x/a.png"]
    assert ti.xcom["result"]["urls"] == ["https://x/a.png"]
    assert ti.xcom["result"]["model_id"] == getattr(task, "model_id", None)
    with pytest.raises(RunComfyJobFailedError, match="failed: GPU node lost"):
        task.execute_complete({"ti": FakeTI()}, OLD_EVENTS[1])
    with pytest.raises(RunComfyJobTimeoutError, match="timed out"):
        task.execute_complete({"ti": FakeTI()}, OLD_EVENTS[3])
    with pytest.raises(RunComfyJobError, match="unknown wait outcome 'done'"):
        task.execute_complete({"ti": FakeTI()}, {"status": "done", "request_id": "r1"})
    for nothing in (None, "success"):
        with pytest.raises(RunComfyJobError, match="without an event"):
            task.execute_complete({"ti": FakeTI()}, nothing)
