"""
The wait of a batch: one trigger watches every in-flight job of a ``RunComfyBatchOperator``.

A batch keeps up to ``max_in_flight`` jobs in flight. Instead of one trigger per job (the cost of a
mapped task: a task instance, a deferral and a trigger each), the task defers once to one
:class:`RunComfyBatchTrigger` that polls all of them through the hook's shared async transport, and
fires as soon as enough of them ended for the task to refill its window (or all ended, or the batch's
deadline passed). The task then records the outcomes, submits the next items (paid POSTs happen only
in the worker) and defers again. With ``deferrable=False`` the task runs the very same round in the
worker (:class:`BatchRound`), so both paths decide alike.

Each job is waited for with the same :class:`~airflow_provider_runcomfy.waiting.core.WaitCore` as a
single job's wait, with the same rules: a final word on the status endpoint sends it to the result endpoint,
which alone says how the job ended; a poll that still fails after the hook's retries is tried again
next interval, up to ``max_failed_polls`` in a row for that job; at the deadline each unfinished job
is asked once more, then cancelled if it may still be queued.

The kwargs hold request ids, the connection id and numbers, never a token.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_runcomfy.batch import ItemStatus, progress_line
from airflow_provider_runcomfy.jobs import RequestWatch
from airflow_provider_runcomfy.waiting.aio import (
    acancel_job,
    alook_once,
    aon_deadline,
    apoll,
    cancel_shielded,
)
from airflow_provider_runcomfy.waiting.core import DEFAULT_MAX_FAILED_POLLS, WaitCore
from airflow_provider_runcomfy.waiting.many import (
    MAX_CONCURRENT_CALLS,
    Takeover,
    check_saved_jobs,
    gather_bounded,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class RoundEnd(StrEnum):
    """Why a round of waiting ended: the ``round`` of the trigger's event."""

    #: Enough jobs ended for the task to refill its window.
    ROOM = "room"
    #: Every watched job ended.
    DONE = "done"
    #: The batch's deadline passed; every unfinished job was reported as timed out.
    TIMEOUT = "timeout"

    @property
    def is_timeout(self) -> bool:
        """The batch is out of time: submit nothing more."""
        return self is RoundEnd.TIMEOUT


#: Kept importable from here (the batch operator's retry and earlier code used these names).
acancel_quietly = acancel_job
__all__ = [
    "MAX_CONCURRENT_CALLS",
    "BatchRound",
    "RoundEnd",
    "RunComfyBatchTrigger",
    "Takeover",
    "acancel_quietly",
    "alook_once",
    "cancel_queued",
    "check_saved_jobs",
]


@dataclass
class _Watched:
    """One in-flight item of the round: its index in the batch and its wait (watch, failed polls)."""

    index: int
    core: WaitCore

    @property
    def watch(self) -> RequestWatch:
        return self.core.watch


class BatchRound:
    """
    One round of waiting for a batch's in-flight jobs; the core of the trigger and of the in-worker wait.

    :param watching: ``[{"index", "request_id", "memory"?}]``, the jobs to watch (``memory`` is what an
        earlier round's watch saw, ``RequestWatch.memory()``).
    :param poll_interval: seconds between polls of each job.
    :param end_time: the batch's wall-clock deadline (epoch seconds).
    :param yield_after: end the round once this many jobs ended (the window's room worth refilling).
    :param cancel_on_timeout: cancel a job that may still be queued when the deadline passes.
    :param max_failed_polls: how many polls of one job in a row may fail before its wait gives up.
    :param progress: the batch's counts when the round began (``done, total, failed, cost_usd,
        started_at``), for the progress line; ``None`` logs none.
    :param progress_interval: seconds between progress lines.
    :param log: the logger of the trigger or the task.
    :param spread_first_poll: wait a random part of one interval before the first poll, so that jobs
        submitted together (and triggers started together) do not poll in one burst.
    """

    def __init__(
        self,
        watching: list[dict[str, Any]],
        *,
        poll_interval: float,
        end_time: float | None,
        yield_after: int,
        cancel_on_timeout: bool,
        max_failed_polls: int,
        progress: dict[str, Any] | None,
        progress_interval: float,
        log: Any,
        spread_first_poll: bool = True,
    ) -> None:
        self.watching = watching
        self.poll_interval = float(poll_interval)
        self.end_time = end_time
        self.yield_after = max(1, int(yield_after))
        self.cancel_on_timeout = cancel_on_timeout
        self.max_failed_polls = max_failed_polls
        self.progress = progress
        self.progress_interval = float(progress_interval)
        self.log = log
        self.spread_first_poll = spread_first_poll

    async def run(self, hook: Any) -> dict[str, Any]:
        """
        Poll until enough jobs ended, all ended, or the deadline passed; return the round's event.

        The event is ``{"round": RoundEnd, "finished": [{"index", "status", "request_id", "result"?,
        "message"?}], "watching": [{"index", "request_id", "memory"}]}``: the final event of each job
        that ended (the shape of a single job's wait), and the jobs still in flight with what their
        watches saw, for the next round.
        """
        watched = {int(entry["index"]): self._watched(entry) for entry in self.watching}
        finished: list[dict[str, Any]] = []
        gate = asyncio.Semaphore(MAX_CONCURRENT_CALLS)
        next_progress = time.monotonic() + self.progress_interval
        if self.spread_first_poll and watched:
            await asyncio.sleep(next(iter(watched.values())).core.first_delay())
        while watched:
            if self.end_time is not None and time.time() >= self.end_time:
                last = await gather_bounded(gate, [self._on_deadline(hook, w) for w in watched.values()])
                finished += [{"index": w.index, **e} for w, e in zip(watched.values(), last, strict=True)]
                return _event(RoundEnd.TIMEOUT, finished, {})
            poll_started = time.monotonic()
            outcomes = await gather_bounded(gate, [self._poll(hook, w) for w in watched.values()])
            for item, event in zip(list(watched.values()), outcomes, strict=True):
                if event is not None:
                    finished.append({"index": item.index, **event})
                    del watched[item.index]
            if watched and len(finished) >= self.yield_after:
                return _event(RoundEnd.ROOM, finished, watched)
            if time.monotonic() >= next_progress:
                self._log_progress(finished, len(watched))
                next_progress = time.monotonic() + self.progress_interval
            if watched:
                await asyncio.sleep(self._capped(poll_started + self.poll_interval - time.monotonic()))
        return _event(RoundEnd.DONE, finished, {})

    def _watched(self, entry: dict[str, Any]) -> _Watched:
        index, request_id = int(entry["index"]), str(entry["request_id"])
        core = WaitCore(
            RequestWatch(request_id, self.log, entry.get("memory")),
            poll_interval=self.poll_interval,
            end_time=self.end_time,
            max_failed_polls=self.max_failed_polls,
            cancel_on_timeout=self.cancel_on_timeout,
            label=f"request {request_id} (item {index})",
        )
        return _Watched(index, core)

    async def _poll(self, hook: Any, item: _Watched) -> dict[str, Any] | None:
        """One poll of one job; its final event, or ``None`` while it runs (or its poll failed)."""
        return await apoll(hook, item.core)

    async def _on_deadline(self, hook: Any, item: _Watched) -> dict[str, Any]:
        """Ask once more (it may have just finished), then cancel a maybe-queued job and report a timeout."""
        return await aon_deadline(hook, item.core, deadline="the batch's deadline")

    def _capped(self, seconds: float) -> float:
        """A wait of ``seconds``, shortened so that it never runs past the deadline."""
        if self.end_time is None:
            return max(0.0, seconds)
        return max(0.0, min(seconds, self.end_time - time.time()))

    def _log_progress(self, finished: list[dict[str, Any]], in_flight: int) -> None:
        if self.progress is None:
            return
        statuses = [ItemStatus.from_event(event.get("status")) for event in finished]
        cost = sum((event.get("result") or {}).get("cost_usd") or 0.0 for event in finished)
        self.log.info(
            "%s",
            progress_line(
                done=int(self.progress["done"]) + len(finished),
                total=int(self.progress["total"]),
                in_flight=in_flight,
                failed=int(self.progress["failed"]) + sum(1 for s in statuses if s.is_failure),
                cost_usd=round(float(self.progress["cost_usd"]) + cost, 6),
                started_at=float(self.progress["started_at"]),
            ),
        )


def _event(end: RoundEnd, finished: list[dict[str, Any]], watched: dict[int, _Watched]) -> dict[str, Any]:
    return {
        "round": end.value,
        "finished": finished,
        "watching": [
            {"index": w.index, "request_id": w.watch.request_id, "memory": w.watch.memory()}
            for w in watched.values()
        ],
    }


class RunComfyBatchTrigger(BaseTrigger):
    """
    Watch every in-flight job of a batch; fire when the window has room, all ended, or time is up.

    Fires one event, ``BatchRound.run``'s: the outcome of each job that ended and what was seen of the
    others. See :class:`BatchRound` for the parameters; ``runcomfy_conn_id`` is the Airflow
    connection (the token is looked up, never stored), ``cancel_on_kill`` cancels the watched jobs
    that may still be queued when a user kills the deferred task (Airflow 3.3+).
    """

    def __init__(
        self,
        watching: list[dict[str, Any]],
        runcomfy_conn_id: str = "runcomfy_default",
        poll_interval: float = 5.0,
        end_time: float | None = None,
        yield_after: int = 1,
        cancel_on_timeout: bool = True,
        cancel_on_kill: bool = True,
        max_failed_polls: int = DEFAULT_MAX_FAILED_POLLS,
        progress: dict[str, Any] | None = None,
        progress_interval: float = 60.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger.__init__ is untyped
        self.watching = watching
        self.runcomfy_conn_id = runcomfy_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = end_time
        self.yield_after = yield_after
        self.cancel_on_timeout = cancel_on_timeout
        self.cancel_on_kill = cancel_on_kill
        self.max_failed_polls = max_failed_polls
        self.progress = progress
        self.progress_interval = float(progress_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and the kwargs that rebuild this trigger (no secret among them)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "watching": self.watching,
                "runcomfy_conn_id": self.runcomfy_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "yield_after": self.yield_after,
                "cancel_on_timeout": self.cancel_on_timeout,
                "cancel_on_kill": self.cancel_on_kill,
                "max_failed_polls": self.max_failed_polls,
                "progress": self.progress,
                "progress_interval": self.progress_interval,
            },
        )

    def _hook(self) -> Any:
        # Imported here: the triggerer loads this module to deserialize triggers, the hook only when one runs.
        from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook

        return RunComfyHook(runcomfy_conn_id=self.runcomfy_conn_id)

    def round(self) -> BatchRound:
        """The round this trigger runs."""
        return BatchRound(
            self.watching,
            poll_interval=self.poll_interval,
            end_time=self.end_time,
            yield_after=self.yield_after,
            cancel_on_timeout=self.cancel_on_timeout,
            max_failed_polls=self.max_failed_polls,
            progress=self.progress,
            progress_interval=self.progress_interval,
            log=self.log,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Run one round; yield its event."""
        hook = self._hook()
        try:
            yield TriggerEvent(await self.round().run(hook))
        finally:
            await hook.aclose()

    async def on_kill(self) -> None:
        """
        Cancel the watched jobs that may still be queued when a user kills the deferred task (3.3+).

        Running jobs cannot be cancelled and are left to finish. As for a single job's trigger, the
        cancels run shielded to their end (the triggerer cancels a killed trigger's task again and
        again until it is gone), never from ``cleanup()`` (which also runs on a mere move).
        """
        if not self.cancel_on_kill:
            return
        await cancel_shielded(self._cancel_queued)

    async def _cancel_queued(self) -> None:
        hook = self._hook()
        try:
            await cancel_queued(hook, self.watching, self.log)
        finally:
            await hook.aclose()


async def cancel_queued(hook: Any, watching: list[dict[str, Any]], log: Any) -> None:
    """Cancel every watched job that may still be queued (a running one cannot be cancelled)."""
    queued = [
        str(entry["request_id"])
        for entry in watching
        if RequestWatch(str(entry["request_id"]), log, entry.get("memory")).may_be_queued
    ]
    gate = asyncio.Semaphore(MAX_CONCURRENT_CALLS)
    await gather_bounded(gate, [acancel_job(hook, request_id, log) for request_id in queued])
