"""
The decisions of a wait, without IO: :class:`WaitCore`.

Every wait of the provider (the operators' in-worker wait, the sensor's pokes, the check before
deferring, the trigger, each job of a batch trigger) polls one request with the same rules: each
answer goes to the request's :class:`~airflow_provider_runcomfy.jobs.RequestWatch`; a poll that still
fails after the hook's retries is tolerated up to ``max_failed_polls`` in a row; the wait ends at a
wall-clock deadline, after one last look; then a job that may still be queued is cancelled, and the
cancel logged. Those rules live here once, fed with answers and errors by two thin drivers that do
the IO (:mod:`.sync` with the sync hook, :mod:`.aio` with the async one), so the copies can no
longer drift apart (the sensor once failed on the first failed poll while the others rode out five).

Light on purpose (no httpx, no asyncio): operators and sensors import it while DAG files are parsed.
"""

from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_runcomfy.exceptions import WAIT_FATAL_ERRORS

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_runcomfy.jobs import CancelOutcome, RequestWatch

#: How much longer than ``timeout`` Airflow's own deferral timeout is: a backstop for a lost trigger,
#: since the trigger itself ends the wait (and cancels a queued job) at ``timeout``.
DEFERRAL_GRACE = timedelta(minutes=10)

#: Seconds the status check after the deadline may take (it asks whether the job just finished).
LAST_LOOK_SECONDS = 30.0

#: Polls in a row that may fail (each after the hook's own retries) before a wait gives up.
DEFAULT_MAX_FAILED_POLLS = 5


class WaitCore:
    """
    One wait for one request: its watch, its streak of failed polls, its deadline, its cancel decision.

    Sans-IO: a driver asks the API and feeds the answers in (:meth:`needs_result`, :meth:`read_result`,
    :meth:`poll_failed`); the core says what they mean and logs as every wait logs. Nothing here
    sleeps or calls the network, so the rules are tested by feeding answers (``tests/test_waiting.py``).

    :param watch: the request's watch (with its progress, when one is kept).
    :param poll_interval: seconds between two polls.
    :param end_time: the wall-clock deadline (epoch seconds); ``None`` waits for ever.
    :param max_failed_polls: how many polls in a row may fail before the wait ends in an error.
    :param cancel_on_timeout: cancel a job that may still be queued when the deadline passes.
    :param label: how the failed-poll line names what is polled (default ``request <id>``).
    :param clock: the wall clock (tests pass their own).
    """

    def __init__(
        self,
        watch: RequestWatch,
        *,
        poll_interval: float,
        end_time: float | None = None,
        max_failed_polls: int = DEFAULT_MAX_FAILED_POLLS,
        cancel_on_timeout: bool = True,
        label: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.watch = watch
        self.poll_interval = float(poll_interval)
        self.end_time = end_time
        self.max_failed_polls = max(1, int(max_failed_polls))
        self.cancel_on_timeout = cancel_on_timeout
        self.label = label or f"request {watch.request_id}"
        self.clock = clock
        #: Polls in a row that failed after the hook's retries (reset by any poll that got an answer).
        self.failed_polls = 0

    @property
    def request_id(self) -> str:
        """The request waited for."""
        return self.watch.request_id

    @property
    def log(self) -> Any:
        """The logger of the task or trigger that waits."""
        return self.watch.log

    # -- answers -----------------------------------------------------------------------------------

    def needs_result(self, status_body: dict[str, Any]) -> bool:
        """Read a status answer; ``True`` when the job looks over and the result endpoint must be asked."""
        return self.watch.observe(status_body).is_terminal

    def read_result(self, result_body: dict[str, Any]) -> dict[str, Any] | None:
        """Read a result answer: the final event, or ``None`` while the job is not known to be over."""
        return self.watch.outcome(result_body)

    def poll_answered(self) -> None:
        """A poll got its answers: the streak of failed polls is over."""
        self.failed_polls = 0

    def poll_failed(self, err: Exception, *, last_chance: bool = False) -> dict[str, Any] | None:
        """
        A poll failed after the hook's retries: the error event that ends the wait, or ``None`` to go on.

        An error no poll can fix (auth, not found) ends the wait at once. Otherwise the wait goes on
        until ``max_failed_polls`` polls failed in a row, or at once when this was its ``last_chance``
        (the deadline has passed). The failure is logged as text, never as the exception object: a
        log record that a handler keeps would keep the traceback alive, and the trigger with it.
        """
        if isinstance(err, WAIT_FATAL_ERRORS):
            return self.watch.error(str(err))
        self.failed_polls += 1
        self.watch.poll_failed()
        if last_chance or self.failed_polls >= self.max_failed_polls:
            return self.watch.error(f"{self.failed_polls} polls in a row failed; the last: {err}")
        self.log.warning("Poll %d of %s failed: %s", self.failed_polls, self.label, str(err))
        return None

    def between_polls(self) -> None:
        """A poll is over and the wait goes on: log a progress line when one is due."""
        self.watch.report_progress()

    # -- the deadline ------------------------------------------------------------------------------

    def deadline_passed(self) -> bool:
        """The wall-clock deadline has passed."""
        return self.end_time is not None and self.clock() >= self.end_time

    def capped(self, seconds: float) -> float:
        """A wait of ``seconds``, shortened so that it never runs past the deadline (never negative)."""
        if self.end_time is None:
            return max(0.0, seconds)
        return max(0.0, min(seconds, self.end_time - self.clock()))

    def first_delay(self) -> float:
        """
        A random part of one interval before the first poll.

        The task looked just before deferring, and triggers that start together (the instances of a
        mapped task, every trigger of a restarted triggerer) then spread their polls over the interval
        instead of polling in one burst every interval.
        """
        return self.capped(random.uniform(0, self.poll_interval))

    def last_look_failed(self, err: Exception, deadline: str = "the deadline") -> dict[str, Any]:
        """The look after the deadline failed: the wait ends in an error that says so."""
        return self.watch.error(f"{deadline} passed and the last status check failed: {err}")

    def last_look_too_slow(self) -> None:
        """The look after the deadline did not answer in :data:`LAST_LOOK_SECONDS`: logged, then timeout."""
        self.log.warning("RunComfy request %s: the last status check took too long", self.request_id)

    @property
    def wants_cancel(self) -> bool:
        """At the deadline: cancel, as asked, a job that may still be queued (a running one cannot be)."""
        return self.cancel_on_timeout and self.watch.may_be_queued

    def timed_out(self, cancel: CancelOutcome | None) -> dict[str, Any]:
        """The timeout event, saying what became of the cancel (``None``: none was made or it failed)."""
        return self.watch.timed_out(cancel)


def note_cancel(log: Any, request_id: str, answer: CancelOutcome | Exception) -> CancelOutcome | None:
    """
    Log how a cancel went, the one way every cancel is logged; return its outcome (``None`` if it failed).

    A failed cancel is reported, never raised: the wait still ends (as a timeout, which then says the
    job was not cancelled), and a kill still completes.
    """
    if isinstance(answer, Exception):
        log.warning("Could not cancel RunComfy request %s: %s", request_id, str(answer))
        return None
    log.info("RunComfy request %s %s", request_id, answer.description)
    return answer
