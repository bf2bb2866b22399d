"""
The deferrable wait: poll a RunComfy request in the triggerer, so no worker slot is held meanwhile.

The trigger's kwargs are stored in Airflow's database and printed in logs, so they hold the request
id, the connection id, the poll interval, a wall-clock ``end_time`` and flags — never a token. The
deadline is wall-clock (epoch seconds) so a triggerer restart or a move to another triggerer does not
restart the clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_runcomfy.jobs import DEFAULT_PROGRESS_INTERVAL, RequestWatch, WaitProgress
from airflow_provider_runcomfy.waiting.aio import acancel_job, await_request, cancel_shielded
from airflow_provider_runcomfy.waiting.core import (
    DEFAULT_MAX_FAILED_POLLS,
    LAST_LOOK_SECONDS,
    WaitCore,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["LAST_LOOK_SECONDS", "RunComfyRequestTrigger"]


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
    table in :mod:`airflow_provider_runcomfy.jobs`, and how a wait goes from
    :mod:`airflow_provider_runcomfy.waiting`, both shared with the in-worker wait and the sensor.

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
        max_failed_polls: int = DEFAULT_MAX_FAILED_POLLS,
        watch_memory: dict[str, Any] | None = None,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger.__init__ is untyped
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
        core = WaitCore(
            RequestWatch(self.request_id, self.log, self.watch_memory, progress),
            poll_interval=self.poll_interval,
            end_time=self.end_time,
            max_failed_polls=self.max_failed_polls,
            cancel_on_timeout=self.cancel_on_timeout,
        )
        return await await_request(hook, core)

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
        await cancel_shielded(self._cancel_job)

    async def _cancel_job(self) -> None:
        hook = self._hook()
        try:
            await acancel_job(hook, self.request_id, self.log)
        finally:
            await hook.aclose()
