"""
The sync driver of :class:`~.core.WaitCore`: the waits that run in a worker with the sync hook.

The operators' in-worker wait (:func:`wait_in_worker`), their one look before deferring
(:func:`look_before_deferring`), the sensor's pokes (:func:`poll`) and the cancels of a task that is
killed or cannot save its job's id (:func:`cancel_if_queued`). Each call here is IO only; what an
answer or an error means is the core's.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow_provider_runcomfy.exceptions import WAIT_FATAL_ERRORS, RunComfyError
from airflow_provider_runcomfy.jobs import DEFAULT_PROGRESS_INTERVAL, RequestWatch, WaitProgress
from airflow_provider_runcomfy.waiting.core import DEFAULT_MAX_FAILED_POLLS, WaitCore, note_cancel

if TYPE_CHECKING:
    from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook
    from airflow_provider_runcomfy.jobs import CancelOutcome


def look_once(hook: RunComfyHook, watch: RequestWatch) -> dict[str, Any] | None:
    """
    One poll with the sync hook: the final event once the job is over, else ``None``.

    Any final word on the status endpoint sends it to the result endpoint, which alone says how the
    job ended (:meth:`RequestWatch.outcome`). Errors are raised, for the caller to weigh.
    """
    if watch.observe(hook.get_status(watch.request_id)).is_terminal:
        return watch.outcome(hook.get_result(watch.request_id))
    return None


def poll(
    hook: RunComfyHook, core: WaitCore, *, last_chance: bool = False, fatal_raises: bool = False
) -> dict[str, Any] | None:
    """
    One poll of ``core``'s request: the final event, or ``None`` while the wait goes on.

    A poll that fails after the hook's retries counts in the core's streak and returns ``None``
    until the streak is too long (then the error event). ``fatal_raises`` raises the errors no poll
    can fix (auth, not found) as they are, for a task that should fail with them (the sensor).
    """
    try:
        event = look_once(hook, core.watch)
    except RunComfyError as err:
        if fatal_raises and isinstance(err, WAIT_FATAL_ERRORS):
            raise
        return core.poll_failed(err, last_chance=last_chance)
    core.poll_answered()
    return event


def cancel_job(hook: RunComfyHook, request_id: str, log: Any) -> CancelOutcome | None:
    """Cancel a job and log how it went; a failed cancel is logged, never raised (``None``)."""
    try:
        outcome = hook.cancel(request_id)
    except RunComfyError as err:
        return note_cancel(log, request_id, err)
    return note_cancel(log, request_id, outcome)


def cancel_if_queued(hook: RunComfyHook, watch: RequestWatch, log: Any) -> CancelOutcome | None:
    """
    Cancel a job that may still be queued; ``None`` when no cancel was made (or it failed).

    A running job cannot be cancelled, so none is asked for when the watch last saw it running.
    """
    if not watch.may_be_queued:
        return None
    return cancel_job(hook, watch.request_id, log)


def look_before_deferring(hook: RunComfyHook, watch: RequestWatch, log: Any) -> dict[str, Any] | None:
    """
    One status check before deferring: the outcome if the job is over, else ``None``.

    Only a shortcut, so a transient failure here is no reason to fail the task: the trigger polls
    with the same retry policy. Errors no poll can fix (auth, not found) still fail at once.
    """
    try:
        return look_once(hook, watch)
    except WAIT_FATAL_ERRORS:
        raise
    except RunComfyError as err:
        log.warning("Status check of request %s failed (%s); the trigger will poll", watch.request_id, err)
        return None


def wait_in_worker(
    hook: RunComfyHook,
    request_id: str,
    *,
    poll_interval: float,
    end_time: float | None,
    cancel_on_timeout: bool,
    log: Any,
    max_failed_polls: int = DEFAULT_MAX_FAILED_POLLS,
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
    started_at: float | None = None,
) -> dict[str, Any]:
    """
    The in-worker twin of the trigger's wait: the same :class:`WaitCore` with the sync hook.

    Returns the same event the trigger would yield, so both paths end in
    :meth:`~.outcome.WaitOutcome.finish`. Like the trigger it logs each change, and every
    ``progress_interval`` seconds without one a progress line, counting from ``started_at`` (the
    submit; now when not given). The poll after the deadline is the last look: a job that just
    finished is reported so, else a maybe-queued job is cancelled (``cancel_on_timeout``).
    """
    progress = WaitProgress(
        started_at=time.time() if started_at is None else started_at,
        end_time=end_time,
        interval=progress_interval,
    )
    core = WaitCore(
        RequestWatch(request_id, log, progress=progress),
        poll_interval=poll_interval,
        end_time=end_time,
        max_failed_polls=max_failed_polls,
        cancel_on_timeout=cancel_on_timeout,
    )
    while True:
        deadline_passed = core.deadline_passed()
        event = poll(hook, core, last_chance=deadline_passed)
        if event is not None:
            return event
        if deadline_passed:
            cancel = cancel_job(hook, request_id, log) if core.wants_cancel else None
            return core.timed_out(cancel)
        core.between_polls()
        time.sleep(core.capped(core.poll_interval))
