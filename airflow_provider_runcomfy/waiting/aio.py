"""
The async driver of :class:`~.core.WaitCore`: the waits that run in the triggerer with the async hook.

:func:`await_request` is the single request trigger's whole wait; :func:`apoll` and
:func:`aon_deadline` are also what the batch trigger runs for each of its jobs; :func:`cancel_shielded`
is how a killed trigger cancels. Each call here is IO only; what an answer or an error means is the
core's, shared with the sync driver.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_runcomfy.exceptions import RunComfyError
from airflow_provider_runcomfy.waiting.core import LAST_LOOK_SECONDS, WaitCore, note_cancel

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from airflow_provider_runcomfy.jobs import CancelOutcome, RequestWatch


async def alook_once(hook: Any, watch: RequestWatch) -> dict[str, Any] | None:
    """One poll with the async hook: the final event once the job is over, else ``None`` (``look_once``)."""
    if watch.observe(await hook.aget_status(watch.request_id)).is_terminal:
        return watch.outcome(await hook.aget_result(watch.request_id))
    return None


async def apoll(hook: Any, core: WaitCore, *, last_chance: bool = False) -> dict[str, Any] | None:
    """One poll of ``core``'s request: the final event, or ``None`` while the wait goes on (see ``poll``)."""
    try:
        event = await alook_once(hook, core.watch)
    except RunComfyError as err:
        return core.poll_failed(err, last_chance=last_chance)
    core.poll_answered()
    return event


async def acancel_job(hook: Any, request_id: str, log: Any) -> CancelOutcome | None:
    """Cancel a job and log how it went; a failed cancel is logged, never raised (``None``)."""
    try:
        outcome: CancelOutcome = await hook.acancel(request_id)
    except RunComfyError as err:
        return note_cancel(log, request_id, err)
    return note_cancel(log, request_id, outcome)


def within_deadline(core: WaitCore) -> asyncio.Timeout:
    """Bound one poll by the deadline: a poll that hangs or keeps retrying does not outlive the wait."""
    if core.end_time is None:
        return asyncio.timeout(None)
    loop = asyncio.get_running_loop()
    return asyncio.timeout_at(loop.time() + max(0.0, core.end_time - core.clock()))


async def aon_deadline(hook: Any, core: WaitCore, *, deadline: str = "the deadline") -> dict[str, Any]:
    """
    Ask once more (it may have just finished), then cancel a maybe-queued job and report a timeout.

    The last look gets :data:`~.core.LAST_LOOK_SECONDS` at most: the deadline has passed already.
    """
    try:
        async with asyncio.timeout(LAST_LOOK_SECONDS):
            event = await alook_once(hook, core.watch)
    except TimeoutError:
        event = None
        core.last_look_too_slow()
    except RunComfyError as err:
        return core.last_look_failed(err, deadline)
    if event is not None:
        return event
    cancel = await acancel_job(hook, core.request_id, core.log) if core.wants_cancel else None
    return core.timed_out(cancel)


async def await_request(hook: Any, core: WaitCore) -> dict[str, Any]:
    """
    Poll until the job finishes, the deadline passes or the wait cannot go on; return the final event.

    Polls start ``poll_interval`` apart (the time a poll takes is not added), the first after a
    random part of one interval (:meth:`~.core.WaitCore.first_delay`); a poll is cut at the deadline.
    """
    await asyncio.sleep(core.first_delay())
    while True:
        if core.deadline_passed():
            return await aon_deadline(hook, core)
        poll_started = time.monotonic()
        try:
            async with within_deadline(core):
                event = await apoll(hook, core)
        except TimeoutError:  # the deadline passed inside a poll (a slow API, a hostile one)
            return await aon_deadline(hook, core)
        if event is not None:
            return event
        if core.failed_polls:
            poll_started = time.monotonic()  # after a failed poll, a whole interval from now
        core.between_polls()
        await asyncio.sleep(core.capped(poll_started + core.poll_interval - time.monotonic()))


async def cancel_shielded(cancel: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """
    Run a killed trigger's ``cancel()`` shielded, to its end.

    Airflow 3.3's triggerer cancels a killed trigger's task again at each sync with its supervisor
    (about every second) until the trigger is gone, so a cancel waiting out a 429 or a 503 would be
    cut off and the queued job left to run and be paid for (found by ``scripts/soak``; see
    RELIABILITY.md). The hook's retry policy bounds it.
    """
    task: asyncio.Task[None] = asyncio.get_running_loop().create_task(cancel())
    _KILL_CANCELS.add(task)  # the loop keeps only a weak reference to a task
    task.add_done_callback(_KILL_CANCELS.discard)
    await asyncio.shield(task)


#: Cancels started by a trigger's ``on_kill`` that are still running (a shielded task outlives its caller).
_KILL_CANCELS: set[asyncio.Task[None]] = set()
