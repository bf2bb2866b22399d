"""
The one retry loop: :meth:`RetryPolicy.run` and :meth:`RetryPolicy.arun`, on fake attempts and a fake clock.

The hook, the image checks and the downloads all retry through it, so what it promises is checked here
on its own: how many attempts, how long each wait, ``Retry-After``, the per-attempt deadline, and that
an outcome the caller refuses to retry (a paid submit's) is never tried again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from airflow_provider_runcomfy.retry import (
    RetriesExhausted,
    RetryCounter,
    RetryPolicy,
    TransientError,
    retry_after_of,
)


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits of both forms, recorded instead of slept."""
    waits: list[float] = []

    async def asleep(seconds: float) -> None:
        waits.append(seconds)

    # The retry module's own waits only: asyncio.sleep itself is shared with every thread's event loop
    # (the session's emulator runs one), and time.sleep with every thread.
    monkeypatch.setattr("airflow_provider_runcomfy.retry._sleep", waits.append)
    monkeypatch.setattr("airflow_provider_runcomfy.retry._asleep", asleep)
    return waits


def failing(outcomes: list[Any]) -> Any:
    """An attempt that gives ``outcomes`` in turn: exceptions are raised, anything else returned."""
    calls = iter(outcomes)

    def attempt() -> Any:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return attempt


def run_both(policy: RetryPolicy, outcomes: list[Any], **options: Any) -> list[Any]:
    """Run the sync and the async form over the same outcomes; each one's result or exception."""
    results: list[Any] = []
    for form in ("sync", "async"):
        attempt = failing(list(outcomes))
        try:
            if form == "sync":
                results.append(policy.run(attempt, **options))
            else:

                async def once(attempt: Any = attempt) -> Any:
                    return attempt()

                results.append(asyncio.run(policy.arun(once, **options)))
        except Exception as err:
            results.append(err)
    return results


def test_transient_failures_are_retried_until_an_answer(slept: list[float]) -> None:
    policy = RetryPolicy(max_retries=3, backoff=1.0, max_delay=10.0)
    outcomes = [TransientError("HTTP 503"), TransientError("dropped"), "answer"]
    assert run_both(policy, outcomes) == ["answer", "answer"]
    assert len(slept) == 4  # two waits per form
    for first, second in (slept[:2], slept[2:]):
        assert 0.5 <= first <= 1.0
        assert 1.0 <= second <= 2.0


def test_retries_are_bounded_and_the_last_failure_is_kept(slept: list[float]) -> None:
    policy = RetryPolicy(max_retries=2, backoff=0.0, max_delay=0.0)
    outcomes = [TransientError("one"), TransientError("two"), TransientError("three"), "never"]
    for result in run_both(policy, outcomes):
        assert isinstance(result, RetriesExhausted)
        assert result.attempts == 3
        assert str(result.last) == "three"
        assert result.__cause__ is result.last
    assert slept == [0.0, 0.0, 0.0, 0.0]


def test_an_outcome_the_caller_will_not_retry_is_never_tried_again(slept: list[float]) -> None:
    policy = RetryPolicy(max_retries=5)
    refused = ValueError("a paid submit whose fate is unknown")
    assert run_both(policy, [refused, "never"]) == [refused, refused]
    assert run_both(policy, ["no-retry", "never"]) == ["no-retry", "no-retry"]
    assert slept == []


def test_the_caller_judges_returned_outcomes_too(slept: list[float]) -> None:
    policy = RetryPolicy(max_retries=5, backoff=0.0)
    busy, ok = httpx.Response(503), httpx.Response(200)
    results = run_both(policy, [busy, busy, ok], may_retry=lambda outcome: outcome is busy)
    assert results == [ok, ok]
    exhausted = run_both(
        RetryPolicy(max_retries=1, backoff=0.0), [busy, busy, ok], may_retry=lambda outcome: outcome is busy
    )
    for result in exhausted:
        assert isinstance(result, RetriesExhausted)
        assert result.last is busy
        assert result.attempts == 2
        assert result.__cause__ is None  # an answer, not an exception


def test_retry_after_is_a_floor_capped_by_max_delay(slept: list[float]) -> None:
    policy = RetryPolicy(max_retries=3, backoff=0.1, max_delay=30.0)
    outcomes = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        TransientError("busy", retry_after=12.0),
        httpx.Response(503, headers={"Retry-After": "3600"}),
        "answer",
    ]
    results = run_both(policy, outcomes, may_retry=lambda outcome: outcome != "answer")
    assert results == ["answer", "answer"]
    assert slept == [7.0, 12.0, 30.0] * 2


def test_retry_after_of_reads_answers_and_transient_errors() -> None:
    assert retry_after_of(httpx.Response(429, headers={"Retry-After": "2"})) == 2.0
    assert retry_after_of(httpx.Response(503)) is None
    assert retry_after_of(TransientError("x", retry_after=4.0)) == 4.0
    assert retry_after_of(httpx.ConnectError("refused")) is None


def test_on_retry_hears_each_failure_its_number_and_wait(slept: list[float]) -> None:
    heard: list[tuple[str, int, float]] = []
    policy = RetryPolicy(max_retries=2, backoff=0.0, max_delay=0.0)
    policy.run(
        failing([TransientError("a"), TransientError("b"), "answer"]),
        on_retry=lambda failure, retry, wait: heard.append((str(failure), retry, wait)),
    )
    assert heard == [("a", 1, 0.0), ("b", 2, 0.0)]


def test_a_shared_counter_bounds_the_failures_of_several_runs(slept: list[float]) -> None:
    policy = RetryPolicy(max_retries=2, backoff=0.0, max_delay=0.0)
    counter = RetryCounter()
    assert policy.run(failing([TransientError("a"), "first"]), counter=counter) == "first"
    assert policy.run(failing([TransientError("b"), "second"]), counter=counter) == "second"
    with pytest.raises(RetriesExhausted) as exhausted:
        policy.run(failing([TransientError("c"), "third"]), counter=counter)
    assert exhausted.value.attempts == 3
    assert counter.failures == 3


def test_zero_retries_tries_once(slept: list[float]) -> None:
    for result in run_both(RetryPolicy(max_retries=0), [TransientError("once"), "never"]):
        assert isinstance(result, RetriesExhausted)
        assert result.attempts == 1
    assert slept == []


def test_the_sync_deadline_bounds_each_attempt_on_the_socket(slept: list[float]) -> None:
    from airflow_provider_runcomfy import retry

    seen: list[float | None] = []

    def attempt() -> str:
        seen.append(retry._DEADLINE.get())
        return "answer"

    started = time.monotonic()
    assert RetryPolicy().run(attempt, deadline=5.0) == "answer"
    assert seen[0] is not None
    assert started + 4.0 < seen[0] <= time.monotonic() + 5.0
    assert retry._DEADLINE.get() is None  # only for the attempt
    RetryPolicy().run(attempt)
    assert seen[1] is None


def test_the_async_deadline_turns_a_slow_attempt_into_a_retried_read_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    calls: list[int] = []

    async def attempt() -> str:
        calls.append(1)
        if len(calls) == 1:
            await real_sleep(5)  # past the deadline: cancelled
        return "answer"

    async def main() -> str:
        monkeypatch.setattr("airflow_provider_runcomfy.retry._asleep", fake_sleep)
        policy = RetryPolicy(max_retries=1, backoff=0.0, max_delay=0.0)
        return await policy.arun(
            attempt, may_retry=lambda outcome: isinstance(outcome, httpx.ReadTimeout), deadline=0.05
        )

    started = time.monotonic()
    assert asyncio.run(main()) == "answer"
    assert time.monotonic() - started < 2
    assert len(calls) == 2
    assert waits == [0.0]


def test_an_async_attempt_past_its_deadline_is_a_read_timeout_with_the_deadline() -> None:
    async def slow() -> str:
        await asyncio.sleep(5)
        return "late"

    async def main() -> str:
        return await RetryPolicy(max_retries=0).arun(slow, may_retry=lambda outcome: False, deadline=0.05)

    with pytest.raises(httpx.ReadTimeout, match=r"deadline of 0.05 s"):
        asyncio.run(main())
