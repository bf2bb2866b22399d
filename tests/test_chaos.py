"""
Chaos in one triggerer loop: thousands of ``RunComfyRequestTrigger``s against an emulator that fails
at random, and every one of them still ends with exactly the outcome its job really had.

A triggerer runs every deferred task of a deployment as one coroutine in one event loop, so a fan-out
DAG puts thousands of RunComfy waits side by side while the API misbehaves: 503 storms and 429s with
``Retry-After``, dropped connections, slow and cut-off answers, ``error_code`` bodies on HTTP 200, and
answers in RunComfy's live vocabulary (``completed`` results, ``canceled``, ``pending``...).
Here :data:`N_TRIGGERS` triggers (short polls) run in one loop against the emulator in its own
process (so its CPU and memory are not this process's), with those faults drawn at random on every
status and result call. The jobs have four real fates, fixed before the triggers start: succeeded,
failed with an error text, cancelled while the triggers wait, and expired (RunComfy forgot the id).

Asserted, exactly: every trigger yields one event and only one, whose status is its job's fate
(with the job's own output URL, error text or request id); every fault kind was really served; no
asyncio task is left when the triggers are done; no trigger, hook or connection pool outlives the run
(weak references, the transport's pool table). RSS before and after is printed; only a generous
bound is asserted (the allocator keeps some freed memory, and machines differ).

``RUNCOMFY_CHAOS_TRIGGERS`` changes the number of triggers (for a quick local run).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import inspect
import json
import os
import time
import weakref
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from airflow_provider_runcomfy.emulator import ECHO_MODEL, Fault
from devtools.processes import EmulatorProcess
from tests.conftest import conn_json

if TYPE_CHECKING:
    from collections.abc import Iterator

TOKEN = "rc-chaos-token-0a1b2c3d4e"
N_TRIGGERS = int(os.environ.get("RUNCOMFY_CHAOS_TRIGGERS", "3000"))
POLL_INTERVAL = 0.5
#: The share of each fate: most jobs succeed (each success costs the emulator a small PNG).
FATES = {"success": 0.4, "failed": 0.3, "cancelled": 0.15, "expired": 0.15}
FAILURE_TEXT = "chaos: the model ran out of memory"
#: Faults on every status and result call, each drawn at random at its rate (about 16% of calls in all).
FAULTS = [
    Fault(path=r"/(status|result)$", status=503, retry_after=0.05, times=None, rate=0.04),
    Fault(path=r"/(status|result)$", status=429, retry_after=0.1, times=None, rate=0.03),
    Fault(path=r"/(status|result)$", kind="drop", times=None, rate=0.03),
    Fault(path=r"/(status|result)$", kind="delay", delay_seconds=0.3, times=None, rate=0.03),
    Fault(path=r"/status$", kind="truncate", truncate_after=7, times=None, rate=0.02),
    # RunComfy's live vocabulary (completed results, canceled, pending/processing, error_code null...).
    Fault(path=r"/(status|result)$", kind="dialect", dialect="live", times=None, rate=0.2),
    Fault(
        path=r"/(status|result)$",
        status=200,
        body={"error_code": 500001, "error_message": "InternalError: try again later"},
        times=None,
        rate=0.01,
    ),
]
#: Generous bounds, never timing assertions: only a hang or a real leak trips them.
RUN_TIMEOUT = float(os.environ.get("RUNCOMFY_CHAOS_TIMEOUT", "600"))
RSS_GROWTH_LIMIT = 96 * 2**20


def rss_bytes() -> int:
    """This process's resident set size, from ``/proc``."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def settled_rss() -> int:
    """RSS after a full collection and after glibc hands its free pages back (what is really live)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_bytes()


pytestmark = pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc for RSS")


@pytest.fixture
def chaos_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorProcess]:
    """The emulator in its own process (no client-PID lookups: thousands of connections would crawl)."""
    emulator = EmulatorProcess(
        tmp_path,
        token=TOKEN,
        run_seconds=1.0,
        record_peer_pid=False,
        extra_args=["--fault-seed", "20261203", "--log-maxlen", "1000000"],
    )
    try:
        emulator.start()
        monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_CHAOS", conn_json(emulator.base_url, token=TOKEN))
        yield emulator
    finally:
        emulator.stop()


def make_jobs(emulator: EmulatorProcess, n: int) -> dict[str, str]:
    """Submit ``n`` echo jobs whose fates are set now; returns ``{request_id: fate}``."""
    control = emulator.control
    counts = {fate: int(n * share) for fate, share in FATES.items()}
    counts["success"] += n - sum(counts.values())
    fates: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=emulator.base_url, headers=headers, timeout=30) as client:

        def submit(fate: str, count: int, **knobs: Any) -> None:
            control.configure(**knobs)
            for i in range(count):
                answer = client.post(f"/v1/models/{ECHO_MODEL}", json={"chaos": fate, "i": i})
                answer.raise_for_status()
                fates[answer.json()["request_id"]] = fate

        # Successes and failures end over a few seconds, so triggers finish at different times.
        for part, run_seconds in enumerate((0.5, 1.5, 3.0)):
            share = counts["success"] // 3 + (counts["success"] % 3 if part == 2 else 0)
            submit("success", share, queue_seconds=0.2, run_seconds=run_seconds, failure_message=None)
        submit("failed", counts["failed"], queue_seconds=0.5, run_seconds=1.0, failure_message=FAILURE_TEXT)
        # Queued for ever, until the test cancels them while their triggers wait.
        submit("cancelled", counts["cancelled"], queue_seconds=3600, run_seconds=1.0, failure_message=None)
        # Finished and forgotten at once: their ids answer 404001 (an expired request).
        submit(
            "expired",
            counts["expired"],
            queue_seconds=0,
            run_seconds=0,
            failure_message="gone",
            result_ttl_seconds=0,
        )
        control.configure(result_ttl_seconds=None, failure_message=None)
    return fates


async def cancel_later(base_url: str, request_ids: list[str], after: float) -> int:
    """Cancel the queued jobs ``after`` seconds into the run (a user in RunComfy's console, say)."""
    await asyncio.sleep(after)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    cancelled = 0
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        for rid in request_ids:
            answer = await client.post(f"/v1/requests/{rid}/cancel")
            cancelled += answer.json().get("outcome") == "cancelled"
    return cancelled


async def run_all(triggers: list[Any], ids: list[str], cancel: Any) -> dict[str, Any]:
    """Run every trigger as the triggerer does (one task each, ``async for`` over ``run()``, then cleanup)."""
    events: dict[str, list[dict[str, Any]]] = {rid: [] for rid in ids}
    peak = [rss_bytes()]

    async def one(trigger: Any, rid: str) -> None:
        try:
            async for event in trigger.run():
                events[rid].append(event.payload)
        finally:
            done = trigger.cleanup()  # a coroutine on Airflow 3, a plain call on Airflow 2
            if inspect.isawaitable(done):
                await done

    async def sample_rss() -> None:
        while True:
            peak[0] = max(peak[0], rss_bytes())
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample_rss())
    canceller = asyncio.create_task(cancel)
    tasks = [asyncio.create_task(one(t, rid)) for t, rid in zip(triggers, ids, strict=True)]
    _, pending = await asyncio.wait(tasks, timeout=RUN_TIMEOUT)
    for task in pending:  # bounded: a trigger that never fires shows as a missing event, not a hang
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    cancelled = await canceller
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    await asyncio.sleep(0)  # let closed connections' callbacks run
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    return {
        "events": events,
        "errors": [r for r in results if isinstance(r, BaseException)],
        "timed_out": len(pending),
        "left": left,
        "cancelled": cancelled,
        "peak_rss": peak[0],
    }


def build_triggers(ids: list[str]) -> list[Any]:
    """Triggers through a serialize round trip, as the triggerer gets them from the database."""
    from airflow_provider_runcomfy.triggers.runcomfy import RunComfyRequestTrigger

    triggers = []
    for rid in ids:
        _, kwargs = RunComfyRequestTrigger(
            request_id=rid, runcomfy_conn_id="runcomfy_chaos", poll_interval=POLL_INTERVAL
        ).serialize()
        triggers.append(RunComfyRequestTrigger(**kwargs))
    return triggers


def test_chaos_thousands_of_triggers_each_yield_their_jobs_real_outcome(
    chaos_emulator: EmulatorProcess,
) -> None:
    from airflow_provider_runcomfy import transport

    emulator = chaos_emulator

    # Warm up (imports, logging, the first pool), so the baseline holds every one-time cost.
    warm = make_jobs(emulator, 20)
    warm_cancels = [rid for rid, fate in warm.items() if fate == "cancelled"]
    asyncio.run(
        run_all(build_triggers(list(warm)), list(warm), cancel_later(emulator.base_url, warm_cancels, 0.5))
    )

    fates = make_jobs(emulator, N_TRIGGERS)
    ids = list(fates)
    jobs = {job["request_id"]: job for job in emulator.jobs()}
    emulator.control.clear_requests()
    for fault in FAULTS:
        emulator.control.add_fault(fault)

    rss_before = settled_rss()
    started = time.monotonic()
    triggers = build_triggers(ids)
    watched = [weakref.ref(t) for t in triggers]
    to_cancel = [rid for rid in ids if fates[rid] == "cancelled"]
    run = asyncio.run(run_all(triggers, ids, cancel_later(emulator.base_url, to_cancel, 2.0)))
    wall = time.monotonic() - started
    del triggers
    rss_after = settled_rss()
    emulator.control.clear_faults()
    records = emulator.requests()

    # Every fault kind was really served, many times.
    served = Counter(r.fault for r in records if r.fault)
    codes = Counter(r.status for r in records if r.fault == "status")
    print(
        f"\n{N_TRIGGERS} triggers, poll every {POLL_INTERVAL} s: {wall:.1f} s; {len(records)} API calls,"
        f" faults served {dict(served)}, fault statuses {dict(codes)}\n"
        f"RSS before {rss_before / 2**20:.1f} MiB, peak {run['peak_rss'] / 2**20:.1f} MiB,"
        f" after {rss_after / 2**20:.1f} MiB ({(rss_after - rss_before) / 2**20:+.1f} MiB)"
    )
    assert set(served) == {"status", "drop", "delay", "truncate", "dialect"}, served
    assert {503, 429, 200} <= set(codes), codes
    assert min(served.values()) >= N_TRIGGERS // 500, served

    # The run ended by itself, without errors, and left no task behind.
    assert run["timed_out"] == 0, f"{run['timed_out']} triggers never fired"
    assert run["errors"] == [], run["errors"][:3]
    assert run["left"] == [], run["left"][:3]
    assert run["cancelled"] == len(to_cancel)

    # Exactly one event per trigger, and it is the job's real fate.
    counts = Counter(len(evs) for evs in run["events"].values())
    assert counts == {1: N_TRIGGERS}, counts
    wrong = []
    for rid, (event,) in run["events"].items():
        fate = fates[rid]
        ok = event["request_id"] == rid
        if fate == "success":
            expected_url = f"{emulator.base_url}/files/{rid}/image.png"
            ok = ok and event["status"] == "success" and event["result"]["urls"] == [expected_url]
            ok = ok and jobs[rid]["model_id"] == ECHO_MODEL
        elif fate == "failed":
            ok = ok and event["status"] == "failed" and FAILURE_TEXT in event["message"]
        elif fate == "cancelled":
            ok = ok and event["status"] == "cancelled"
        else:
            ok = ok and event["status"] == "error" and "404001" in event["message"]
        if not ok:
            wrong.append((fate, event))
    assert not wrong, f"{len(wrong)} triggers reported the wrong outcome, e.g. {json.dumps(wrong[:3])}"
    final = {job["request_id"]: job["status"] for job in emulator.jobs()}
    by_fate = {
        fate: Counter(final[rid] for rid in ids if fates[rid] == fate)
        for fate in ("success", "failed", "cancelled")
    }
    wanted = Counter(fates.values())
    assert by_fate == {
        "success": {"succeeded": wanted["success"]},
        "failed": {"failed": wanted["failed"]},
        "cancelled": {"cancelled": wanted["cancelled"]},
    }, by_fate

    # Nothing outlives the run: triggers, and the loop's shared connection pool.
    for _ in range(3):  # cycles through frames and async generators can take more than one pass
        gc.collect()
    alive = [t for t in (ref() for ref in watched) if t is not None]
    holders = Counter(type(r).__name__ for t in alive[:5] for r in gc.get_referrers(t))
    assert not alive, f"{len(alive)} triggers are still referenced after the run, by {dict(holders)}"
    del alive
    assert not [loop for loop in transport._POOLS if not loop.is_closed()], (
        "a connection pool outlived its loop"
    )
    assert rss_after - rss_before < RSS_GROWTH_LIMIT, (
        f"RSS grew {(rss_after - rss_before) / 2**20:.1f} MiB over the run"
    )
