"""
Many waits at once: a bounded gather, and a retry's look at the jobs an earlier try paid for.

Used by the batch trigger (each round polls every job in flight) and by the batch operator (a retry
checks every saved job before it pays for anything), so it lives with the wait rather than in either:
the operator no longer imports a trigger module for a wait helper.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airflow_provider_runcomfy.exceptions import WAIT_FATAL_ERRORS, RunComfyError, RunComfyNotFoundError
from airflow_provider_runcomfy.jobs import EventStatus, RequestWatch
from airflow_provider_runcomfy.waiting.aio import alook_once

if TYPE_CHECKING:
    from collections.abc import Awaitable

#: How many polls (or cancels) of one batch are on the wire at once.
MAX_CONCURRENT_CALLS = 16


class Takeover(StrEnum):
    """What a retry does with a job an earlier try paid for (the single operator's retry rule)."""

    #: Still in flight, or it cannot be checked now: wait for it (never pay again).
    WAIT = "wait"
    #: It succeeded: keep its outputs.
    KEEP = "keep"
    #: It failed, was cancelled, or RunComfy no longer knows it: submit the item anew.
    ANEW = "anew"


async def check_saved_jobs(
    hook: Any, jobs: list[tuple[int, str]], log: Any
) -> list[tuple[int, Takeover, dict[str, Any]]]:
    """
    Look once at each ``(index, request_id)`` an earlier try saved, many at once; decide what to do.

    Returns, per job, the decision and: the final event (``KEEP``, ``ANEW``) or the watching entry to
    wait on (``WAIT``). A job that cannot be checked now is waited for; errors no wait can fix (a bad
    token) raise.
    """

    async def check(index: int, request_id: str) -> tuple[int, Takeover, dict[str, Any]]:
        watch = RequestWatch(request_id, log)
        try:
            event = await alook_once(hook, watch)
        except RunComfyNotFoundError:
            return index, Takeover.ANEW, {"status": "expired", "request_id": request_id}
        except WAIT_FATAL_ERRORS:
            raise
        except RunComfyError as err:
            log.warning(
                "Could not check request %s of item %d (%s); waiting for it", request_id, index, str(err)
            )
            event = None
        if event is None:
            return index, Takeover.WAIT, {"index": index, "request_id": request_id, "memory": watch.memory()}
        if event.get("status") == EventStatus.SUCCESS.value:
            return index, Takeover.KEEP, event
        return index, Takeover.ANEW, event

    return await gather_bounded(asyncio.Semaphore(MAX_CONCURRENT_CALLS), [check(i, r) for i, r in jobs])


async def gather_bounded(gate: asyncio.Semaphore, calls: list[Awaitable[Any]]) -> list[Any]:
    """Run ``calls`` with at most :data:`MAX_CONCURRENT_CALLS` at once; their results in order."""

    async def gated(call: Awaitable[Any]) -> Any:
        async with gate:
            return await call

    return list(await asyncio.gather(*(gated(call) for call in calls)))
