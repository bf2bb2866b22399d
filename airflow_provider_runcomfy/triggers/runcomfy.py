"""
The deferrable wait: poll a RunComfy request in the triggerer, so no worker slot is held meanwhile.

The trigger's kwargs are stored in Airflow's database and printed in logs, so they hold the request
id, the connection id, the poll interval, a wall-clock ``end_time`` and flags — never a token. The
deadline is wall-clock (epoch seconds) so a triggerer restart or a move to another triggerer does not
restart the clock.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_runcomfy.exceptions import WAIT_FATAL_ERRORS, RunComfyError
from airflow_provider_runcomfy.jobs import (
    DEFAULT_PROGRESS_INTERVAL,
    CancelOutcome,
    RequestWatch,
    WaitProgress,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


#: Seconds the status check after the deadline may take (it asks whether the job just finished).
LAST_LOOK_SECONDS = 30.0


class RunComfyRequestTrigger(BaseTrigger):
    """
    Poll one RunComfy request until it finishes, then yield one event.

    The event is ``{"status": "success" | "failed" | "cancelled" | "timeout" | "error",
    "request_id", "result"?, "message"?}``; on success ``result`` holds the output URLs (``urls``)
    and RunComfy's output object.

    Each poll rides the hook's retry policy; when a poll still fails after its retries, the trigger
    waits a poll interval and tries again, up to ``max_failed_polls`` polls in a row. Before it
    declares a timeout it asks once more (the job may have just finished); on timeout it cancels a
    job that may still be queued, when ``cancel_on_timeout``. What each word means comes from the one
    table in :mod:`airflow_provider_runcomfy.jobs`, shared with the in-worker wait and the sensor.

    Polls start ``poll_interval`` apart (the time a poll takes is not added to the wait), and the
    first one comes after a random part of one interval: the operator checked the job just before
    deferring, and triggers that start together (the hundreds of instances of a mapped task, or
    every trigger of a restarted triggerer) then spread their polls over the interval instead of
    hitting the API, and stalling the triggerer's event loop, in one burst every interval.

    :param request_id: the RunComfy request id.
    :param runcomfy_conn_id: the Airflow connection id (the token is looked up, never stored).
    :param poll_interval: seconds between status polls.
    :param end_time: wall-clock deadline in epoch seconds; ``None`` waits for ever.
    :param cancel_on_timeout: cancel a still-queued job when the deadline passes.
    :param cancel_on_kill: cancel a still-queued job when a user kills the deferred task (Airflow 3.3+).
    :param max_failed_polls: how many polls in a row may fail (after their retries) before giving up.
    :param watch_memory: what the task saw in its check before deferring (``RequestWatch.memory()``),
        so the trigger goes on from there instead of logging it again.
    :param progress_interval: seconds between two progress lines (state, queue position, time waited
        and left, polls made and failed) while the job does not change; each change is logged at once.
    """

    def __init__(
        self,
        request_id: str,
        runcomfy_conn_id: str = "runcomfy_default",
        poll_interval: float = 5.0,
        end_time: float | None = None,
        cancel_on_timeout: bool = True,
        cancel_on_kill: bool = True,
        max_failed_polls: int = 5,
        watch_memory: dict[str, Any] | None = None,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
    ) -> None:
        super().__init__()
        self.request_id = request_id
        self.runcomfy_conn_id = runcomfy_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = end_time
        self.cancel_on_timeout = cancel_on_timeout
        self.cancel_on_kill = cancel_on_kill
        self.max_failed_polls = max_failed_polls
        self.watch_memory = watch_memory
        self.progress_interval = float(progress_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and the kwargs that rebuild this trigger (no secret among them)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "request_id": self.request_id,
                "runcomfy_conn_id": self.runcomfy_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "cancel_on_timeout": self.cancel_on_timeout,
                "cancel_on_kill": self.cancel_on_kill,
                "max_failed_polls": self.max_failed_polls,
                "watch_memory": self.watch_memory,
                "progress_interval": self.progress_interval,
            },
        )

    def _hook(self) -> Any:
        # Imported here: the triggerer loads this module to deserialize triggers, the hook only when one runs.
        from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook

        return RunComfyHook(runcomfy_conn_id=self.runcomfy_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the job finishes, the deadline passes or the wait cannot go on; yield one event."""
        hook = self._hook()
        try:
            yield TriggerEvent(await self._wait(hook))
        finally:
            await hook.aclose()

    async def _wait(self, hook: Any) -> dict[str, Any]:
        progress = WaitProgress.resume(
            self.watch_memory, end_time=self.end_time, interval=self.progress_interval
        )
        watch = RequestWatch(self.request_id, self.log, self.watch_memory, progress)
        failed_polls = 0
        await asyncio.sleep(self._capped(random.uniform(0, self.poll_interval)))  # spread the first poll
        while True:
            if self.end_time is not None and time.time() >= self.end_time:
                return await self._on_deadline(hook, watch)
            poll_started = time.monotonic()
            try:
                async with self._within_deadline():
                    event = await self._look(hook, watch)
                if event is not None:
                    return event
            except TimeoutError:  # the deadline passed inside a poll (a slow API, a hostile one)
                return await self._on_deadline(hook, watch)
            except WAIT_FATAL_ERRORS as err:
                return watch.error(str(err))
            except RunComfyError as err:
                failed_polls += 1
                watch.poll_failed()
                if failed_polls >= self.max_failed_polls:
                    return watch.error(f"{failed_polls} polls in a row failed; the last: {err}")
                # The text, not the exception: a log record that a handler keeps (Airflow 2 logs through
                # ``logging``) would keep the traceback, and with it this trigger, alive.
                self.log.warning("Poll %d of request %s failed: %s", failed_polls, self.request_id, str(err))
                poll_started = time.monotonic()  # after a failed poll, a whole interval from now
            else:
                failed_polls = 0
            watch.report_progress()
            await asyncio.sleep(self._capped(poll_started + self.poll_interval - time.monotonic()))

    async def _look(self, hook: Any, watch: RequestWatch) -> dict[str, Any] | None:
        """One poll, the async twin of ``look_once``: the final event once the job is over, else ``None``."""
        if watch.observe(await hook.aget_status(self.request_id)).is_terminal:
            return watch.outcome(await hook.aget_result(self.request_id))
        return None

    def _within_deadline(self) -> asyncio.Timeout:
        """Bound one poll by ``end_time``: a poll that hangs or keeps retrying does not outlive the wait."""
        if self.end_time is None:
            return asyncio.timeout(None)
        loop = asyncio.get_running_loop()
        return asyncio.timeout_at(loop.time() + max(0.0, self.end_time - time.time()))

    def _capped(self, seconds: float) -> float:
        """A wait of ``seconds``, shortened so that it never runs past the deadline."""
        if self.end_time is None:
            return max(0.0, seconds)
        return max(0.0, min(seconds, self.end_time - time.time()))

    async def _on_deadline(self, hook: Any, watch: RequestWatch) -> dict[str, Any]:
        """
        Ask once more (it may have just finished), then cancel a maybe-queued job and report a timeout.

        The last look gets :data:`LAST_LOOK_SECONDS` at most: the deadline has passed already.
        """
        try:
            async with asyncio.timeout(LAST_LOOK_SECONDS):
                event = await self._look(hook, watch)
        except TimeoutError:
            event = None
            self.log.warning("RunComfy request %s: the last status check took too long", self.request_id)
        except RunComfyError as err:
            return watch.error(f"the deadline passed and the last status check failed: {err}")
        if event is not None:
            return event
        cancel: CancelOutcome | None = None
        if self.cancel_on_timeout and watch.may_be_queued:
            try:
                cancel = await hook.acancel(self.request_id)
                self.log.info("RunComfy request %s %s", self.request_id, cancel.description)
            except RunComfyError as err:
                self.log.warning("Could not cancel RunComfy request %s: %s", self.request_id, str(err))
        return watch.timed_out(cancel)

    async def on_kill(self) -> None:
        """
        Cancel the job when a user kills the deferred task (mark failed/success, clear); Airflow 3.3+.

        Not from ``cleanup()``: that also runs when the trigger merely moves to another triggerer,
        and the job must live on then. Only a queued job can be cancelled; a running one is reported,
        and so is a cancel RunComfy took without confirming it yet (``cancellation_requested``).

        The cancel runs shielded, to its end: Airflow 3.3's triggerer cancels a killed trigger's task
        again at each sync with its supervisor (about every second) until the trigger is gone, so a
        cancel waiting out a 429 or a 503 would be cut off and the queued job left to run and be
        paid for (found by ``scripts/soak``; see RELIABILITY.md). The hook's retry policy bounds it.
        """
        if not self.cancel_on_kill:
            return
        task = asyncio.get_running_loop().create_task(self._cancel_job())
        _KILL_CANCELS.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(_KILL_CANCELS.discard)
        await asyncio.shield(task)

    async def _cancel_job(self) -> None:
        hook = self._hook()
        try:
            outcome = await hook.acancel(self.request_id)
            self.log.info("RunComfy request %s %s", self.request_id, outcome.description)
        except RunComfyError as err:
            self.log.warning("Could not cancel RunComfy request %s: %s", self.request_id, str(err))
        finally:
            await hook.aclose()


#: Cancels started by ``on_kill`` that are still running (a shielded task outlives its caller).
_KILL_CANCELS: set[asyncio.Task[None]] = set()
