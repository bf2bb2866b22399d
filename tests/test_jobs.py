"""The one table of RunComfy's words, and the watch every waiter reads it through (no network)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_runcomfy.jobs import (
    WORDS,
    CancelOutcome,
    Endpoint,
    Phase,
    RequestWatch,
    StatusWord,
    parse_phase,
    phase_of,
    read_word,
    settled_phase,
)

S, R = Endpoint.STATUS, Endpoint.RESULT

#: What every word means on (status endpoint, result endpoint), written out independently of WORDS.
EXPECTED = {
    "in_queue": (Phase.IN_FLIGHT, Phase.IN_FLIGHT),
    "pending": (Phase.IN_FLIGHT, Phase.IN_FLIGHT),
    "waiting": (Phase.IN_FLIGHT, Phase.IN_FLIGHT),
    "starting": (Phase.IN_FLIGHT, Phase.IN_FLIGHT),
    "in_progress": (Phase.IN_FLIGHT, Phase.IN_FLIGHT),
    "processing": (Phase.IN_FLIGHT, Phase.IN_FLIGHT),
    "completed": (Phase.ENDED, Phase.SUCCEEDED),
    "succeeded": (Phase.SUCCEEDED, Phase.SUCCEEDED),
    "failed": (Phase.FAILED, Phase.FAILED),
    "cancelled": (Phase.CANCELLED, Phase.CANCELLED),
    "canceled": (Phase.CANCELLED, Phase.CANCELLED),
}


class Log:
    """A logger that keeps what it was asked to log, rendered."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def _add(self, level: str, msg: str, *args: Any) -> None:
        self.lines.append((level, msg % args))

    def info(self, msg: str, *args: Any) -> None:
        self._add("info", msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self._add("warning", msg, *args)

    def count(self, text: str) -> int:
        return sum(text in line for _, line in self.lines)


def test_the_table_has_every_word_of_both_endpoints_and_nothing_else() -> None:
    assert {word.value for word in WORDS} == set(EXPECTED)
    assert {word.value for word in StatusWord} == set(EXPECTED)
    for word, (on_status, on_result) in EXPECTED.items():
        assert StatusWord(word).phase(S) is on_status, word
        assert StatusWord(word).phase(R) is on_result, word


@pytest.mark.parametrize("word", sorted(EXPECTED))
@pytest.mark.parametrize("spelling", [str.lower, str.upper, str.title, lambda w: f"  {w}\n"])
def test_words_match_whatever_their_case_and_spacing(word: str, spelling: Any) -> None:
    assert read_word(spelling(word)) is StatusWord(word)
    assert phase_of(spelling(word), S) is EXPECTED[word][0]
    assert phase_of(spelling(word), R) is EXPECTED[word][1]


def test_canceled_is_cancelled() -> None:
    assert phase_of("canceled", S) is phase_of("cancelled", S) is Phase.CANCELLED
    assert phase_of("Canceled", R) is phase_of("CANCELLED", R) is Phase.CANCELLED


@pytest.mark.parametrize("value", ["warming_up", "", None, 3, ["completed"], "complete", "success"])
def test_an_unknown_word_is_in_flight_on_both_endpoints(value: Any) -> None:
    assert read_word(value) is None
    assert phase_of(value, S) is Phase.IN_FLIGHT
    assert phase_of(value, R) is Phase.IN_FLIGHT


def test_completed_is_a_success_only_on_the_result_endpoint() -> None:
    assert phase_of("completed", S) is Phase.ENDED
    assert not Phase.ENDED.is_success
    assert Phase.ENDED.is_terminal
    assert phase_of("completed", R).is_success


def test_phase_predicates() -> None:
    assert [p for p in Phase if p.is_active] == [Phase.IN_FLIGHT]
    assert [p for p in Phase if p.is_success] == [Phase.SUCCEEDED]
    assert {p for p in Phase if p.is_unsuccessful} == {Phase.FAILED, Phase.CANCELLED, Phase.EXPIRED}
    assert parse_phase("succeeded") is Phase.SUCCEEDED
    assert parse_phase("completed") is None, "get_job_status speaks phases, not RunComfy's words"


def test_queued_words_are_the_cancellable_ones() -> None:
    assert {w.value for w in StatusWord if w.is_queued} == {"in_queue", "pending", "waiting"}


@pytest.mark.parametrize(
    ("status", "result", "expected"),
    [
        ("in_queue", None, Phase.IN_FLIGHT),
        ("warming_up", None, Phase.IN_FLIGHT),
        ("completed", "succeeded", Phase.SUCCEEDED),
        ("completed", "completed", Phase.SUCCEEDED),
        ("succeeded", "Completed", Phase.SUCCEEDED),
        ("completed", "failed", Phase.FAILED),
        ("canceled", "canceled", Phase.CANCELLED),
        ("failed", "succeeded", Phase.SUCCEEDED),  # the result decides: a paid success is a success
        ("completed", "in_progress", Phase.IN_FLIGHT),  # the endpoints' race: reconnect, never pay again
        ("failed", "processing", Phase.IN_FLIGHT),
        ("completed", "mystery", Phase.IN_FLIGHT),
    ],
)
def test_settled_phase_is_the_retry_decision(status: str, result: str | None, expected: Phase) -> None:
    assert settled_phase(status, result) is expected


def result_body(status: str, **extra: Any) -> dict[str, Any]:
    return {"request_id": "r1", "status": status, **extra}


def test_a_completed_result_is_a_success_with_its_urls() -> None:
    watch = RequestWatch("r1", Log())
    assert watch.observe({"status": "completed"}) is Phase.ENDED
    output = {"images": ["https://cdn/a.png", "https://cdn/b.png"]}
    event = watch.outcome(result_body("completed", output=output, model_id="m"))
    assert event is not None
    assert event["status"] == "success"
    assert event["result"]["urls"] == output["images"]
    assert event["result"]["status"] == "succeeded", "one success word for downstream code"


def test_a_success_without_output_is_still_a_success() -> None:
    event = RequestWatch("r1", Log()).outcome(result_body("succeeded"))
    assert event is not None
    assert event["status"] == "success"
    assert event["result"]["urls"] == []


@pytest.mark.parametrize(
    ("error", "text"),
    [("GPU lost", "GPU lost"), ({"message": "content policy"}, "content policy"), (None, "without an error")],
)
def test_a_failed_result_carries_its_error(error: Any, text: str) -> None:
    event = RequestWatch("r1", Log()).outcome(result_body("FAILED", error=error))
    assert event is not None
    assert event["status"] == "failed"
    assert text in event["message"]


def test_an_unknown_word_is_logged_once_per_request_and_endpoint() -> None:
    log = Log()
    watch = RequestWatch("r1", log)
    for _ in range(5):
        assert watch.observe({"status": "warming_up"}) is Phase.IN_FLIGHT
        assert watch.outcome(result_body("mystery")) is None
    assert log.count("'warming_up' on the status endpoint") == 1
    assert log.count("'mystery' on the result endpoint") == 1
    assert all(level == "warning" for level, line in log.lines if "unknown" in line)
    watch.observe({"status": "other_word"})
    assert log.count("'other_word'") == 1, "each new word is logged"
    assert RequestWatch("r2", log).observe({"status": "warming_up"}) is Phase.IN_FLIGHT
    assert log.count("'warming_up' on the status endpoint") == 2, "once per request"


def test_changes_are_logged_once() -> None:
    log = Log()
    watch = RequestWatch("r1", log)
    for body in [{"status": "in_queue", "queue_position": 2}] * 3 + [{"status": "in_progress"}] * 3:
        watch.observe(body)
    assert log.count("queued at position 2") == 1
    assert log.count("is running") == 1


@pytest.mark.parametrize("result", ["in_progress", "processing", "mystery"])
def test_a_completed_status_waits_for_a_final_result(result: str) -> None:
    watch = RequestWatch("r1", Log())
    for _ in range(10):
        watch.observe({"status": "completed"})
        assert watch.outcome(result_body(result)) is None, "never a guess: poll on within the timeout"


@pytest.mark.parametrize(("status", "event"), [("failed", "failed"), ("Canceled", "cancelled")])
def test_a_failed_or_cancelled_status_with_a_silent_result_ends_on_the_second_poll(
    status: str, event: str
) -> None:
    watch = RequestWatch("r1", Log())
    watch.observe({"status": status})
    assert watch.outcome(result_body("in_progress")) is None, "the first may be the endpoints' race"
    watch.observe({"status": status})
    ended = watch.outcome(result_body("in_progress"))
    assert ended is not None
    assert ended["status"] == event


def test_the_result_decides_over_a_failed_status() -> None:
    watch = RequestWatch("r1", Log())
    watch.observe({"status": "failed"})
    assert watch.outcome(result_body("in_progress")) is None
    watch.observe({"status": "failed"})
    event = watch.outcome(result_body("succeeded", output={"image": "https://cdn/x.png"}))
    assert event is not None
    assert event["status"] == "success"


def test_a_silent_streak_restarts_when_the_status_goes_back_in_flight() -> None:
    watch = RequestWatch("r1", Log())
    watch.observe({"status": "failed"})
    assert watch.outcome(result_body("in_progress")) is None
    watch.observe({"status": "in_progress"})
    watch.observe({"status": "failed"})
    assert watch.outcome(result_body("in_progress")) is None


def test_may_be_queued() -> None:
    watch = RequestWatch("r1", Log())
    assert watch.may_be_queued, "nothing seen yet: a cancel may help"
    for word, queued in [("pending", True), ("starting", False), ("warming_up", True), ("completed", False)]:
        watch.observe({"status": word})
        assert watch.may_be_queued is queued, word


@pytest.mark.parametrize(
    ("cancel", "text"),
    [
        (CancelOutcome.CANCELLED, "has been cancelled"),
        (CancelOutcome.REQUESTED, "its cancel was requested"),
        (CancelOutcome.NOT_CANCELLABLE, "not cancelled"),
        (None, "not cancelled"),
    ],
)
def test_timeout_says_what_became_of_the_cancel(cancel: CancelOutcome | None, text: str) -> None:
    event = RequestWatch("r1", Log()).timed_out(cancel)
    assert event["status"] == "timeout"
    assert text in event["message"]


def test_cancel_outcome_predicates() -> None:
    assert [o for o in CancelOutcome if o.is_confirmed] == [CancelOutcome.CANCELLED]
    assert {o for o in CancelOutcome if o.is_accepted} == {CancelOutcome.CANCELLED, CancelOutcome.REQUESTED}
    assert "not confirmed" in CancelOutcome.REQUESTED.description


def test_a_watch_goes_on_from_an_earlier_watchs_memory_across_a_deferral() -> None:
    """The task's check before deferring and the trigger are one watch: nothing logged twice, one streak."""
    log = Log()
    task_side = RequestWatch("r1", log)
    task_side.observe({"status": "warming_up", "queue_position": None})
    task_side.observe({"status": "failed"})
    assert task_side.outcome(result_body("in_progress")) is None, "the first silent result: ask again"
    memory = task_side.memory()
    assert json.loads(json.dumps(memory)) == memory, "trigger kwargs must be JSON-able"

    trigger_side = RequestWatch("r1", log, memory)
    trigger_side.observe({"status": "failed"})
    assert log.count("is failed") == 1, "an unchanged status is not logged again"
    ended = trigger_side.outcome(result_body("in_progress"))
    assert ended is not None, "the second silent result in a row, counted across the deferral"
    assert ended["status"] == "failed"
    again = RequestWatch("r1", log, memory)
    again.observe({"status": "warming_up"})
    assert log.count("'warming_up' on the status endpoint") == 1, "the task already said it"


@pytest.mark.parametrize("memory", [None, {}, {"status_phase": "no-such-phase"}, {"unknown": [[1]]}])
def test_an_empty_or_unreadable_memory_starts_a_fresh_watch(memory: Any) -> None:
    watch = RequestWatch("r1", Log(), memory)
    assert watch.may_be_queued
    watch.observe({"status": "failed"})
    assert watch.outcome(result_body("in_progress")) is None
