"""
Part 1, triggerer load: N deferred waits polling the emulator in one asyncio loop.

One scenario per process (so RSS, CPU and imports of one never leak into another)::

    python -m benchmarks.triggerer --impl runcomfy --n 1000 --interval 1 --json-out out.json
    python -m benchmarks.triggerer --impl http --n 1000 --interval 1

``--impl runcomfy`` runs :class:`RunComfyRequestTrigger` (with ``--pool httpx`` or ``--pool
aiohttp`` its hook's async calls go through another connection pool, see :mod:`benchmarks.pools`);
``--impl http`` runs the do-it-yourself
alternative, the HTTP provider's ``HttpSensorTrigger`` (deferrable ``HttpSensor``). Both wait for the
same kind of job on the same emulator (started here, in its own process, so its CPU is not counted):

* the jobs are submitted first and their outputs made before anything is measured;
* the triggers run the way Airflow 3's triggerer runs them (``TriggerRunner.run_trigger``): one task
  per trigger in one loop, each behind a greenback portal, ``async for`` over ``run()``, then
  ``cleanup()``; logs go through Airflow's own structlog set-up as JSON lines, as in the triggerer's
  subprocess (to a file here instead of the supervisor's socket);
* ``HttpSensorTrigger`` fires on the first answer that is not a 404, so it polls the job's output
  file (``/files/{id}/image.png``, 404 until the job has succeeded), with the bearer header from its
  ``http`` connection's extra, like a user would point it at a "done yet?" URL; ours polls the status
  endpoint and reads the result once.

Measured from this process alone: CPU (``time.process_time``, every thread), RSS (``/proc``), the
lateness of a watchdog coroutine that sleeps 10 ms (the event loop's stalls), and the TCP connects
made on the loop (``loop.sock_connect``, used by asyncio's streams and by aiohttp alike). Measured at
the emulator: each poll's arrival time and client port (distinct ports are a lower bound of the
connections: Linux reuses loopback ports in TIME_WAIT) and each job's completion time (same host
clock as the events' times).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
from typing import TYPE_CHECKING, Any

from benchmarks.common import (
    Emulator,
    http_conn,
    median,
    parse_iso,
    percentile,
    prepare_process,
    rss_bytes,
    runcomfy_conn,
    scratch_dir,
    submit_jobs,
    tcp_active_opens,
    wait_until_rendered,
    write_json,
)

if TYPE_CHECKING:
    from airflow_provider_runcomfy.emulator.records import RequestRecord

RUNCOMFY_CONN_ID = "runcomfy_bench"
HTTP_CONN_ID = "runcomfy_bench_http"
#: The watchdog's sleep; its lateness is the loop's stall.
WATCHDOG_TICK = 0.010
#: How often RSS and CPU are sampled while the triggers run.
SAMPLE_EVERY = 0.25
#: The emulator's CPU per echo job (making its PNG), for sizing the jobs' run time.
RENDER_SECONDS_PER_JOB = 0.0045


def _configure_logging(path: str) -> Any:
    """Airflow's logging as the triggerer's subprocess sets it up: JSON lines, unbuffered."""
    from airflow.sdk.log import configure_logging, reset_logging

    out = open(path, "wb", buffering=0)  # noqa: SIM115 - kept open for the whole run
    reset_logging()
    configure_logging(json_output=True, output=out, sending_to_supervisor=True)
    return out


def _make_triggers(impl: str, ids: list[str], interval: float | None) -> list[Any]:
    """Build the triggers through a serialize round trip, as the triggerer gets them from the database."""
    triggers: list[Any] = []
    for rid in ids:
        if impl == "runcomfy":
            from airflow_provider_runcomfy.triggers.runcomfy import RunComfyRequestTrigger

            kwargs: dict[str, Any] = {"request_id": rid, "runcomfy_conn_id": RUNCOMFY_CONN_ID}
            if interval is not None:
                kwargs["poll_interval"] = interval
            trigger: Any = RunComfyRequestTrigger(**kwargs)
            _, data = trigger.serialize()
            triggers.append(RunComfyRequestTrigger(**data))
        else:
            from airflow.providers.http.triggers.http import HttpSensorTrigger

            kwargs = {"endpoint": f"files/{rid}/image.png", "http_conn_id": HTTP_CONN_ID, "method": "GET"}
            if interval is not None:
                kwargs["poke_interval"] = interval
            trigger = HttpSensorTrigger(**kwargs)
            _, data = trigger.serialize()
            triggers.append(HttpSensorTrigger(**data))
    return triggers


async def _run_trigger(trigger: Any, rid: str, events: dict[str, tuple[float, Any]]) -> None:
    """What ``TriggerRunner.run_trigger`` does with one trigger, minus the database and the spans."""
    import greenback

    if os.environ.get("AIRFLOW_DISABLE_GREENBACK_PORTAL", "").lower() != "true":
        await greenback.ensure_portal()
    try:
        async for event in trigger.run():
            events[rid] = (time.time(), event.payload)
    finally:
        trigger.cleanup()


async def _measure(triggers: list[Any], ids: list[str], timeout: float = 600) -> dict[str, Any]:
    events: dict[str, tuple[float, Any]] = {}
    stalls: list[float] = []
    stall_times: list[float] = []  # when each watchdog tick ended
    samples: list[tuple[float, float, int]] = []  # (time, process_time, rss)
    done = asyncio.Event()

    async def watchdog() -> None:
        while not done.is_set():
            before = time.monotonic()
            await asyncio.sleep(WATCHDOG_TICK)
            stalls.append(time.monotonic() - before - WATCHDOG_TICK)
            stall_times.append(time.time())

    async def sampler() -> None:
        while not done.is_set():
            samples.append((time.time(), time.process_time(), rss_bytes()))
            await asyncio.sleep(SAMPLE_EVERY)

    # Count TCP connects: asyncio's streams and aiohttp (aiohappyeyeballs) both call loop.sock_connect.
    loop = asyncio.get_running_loop()
    connects = [0]
    sock_connect = loop.sock_connect

    async def counting_sock_connect(sock: Any, address: Any) -> Any:
        connects[0] += 1
        return await sock_connect(sock, address)

    loop.sock_connect = counting_sock_connect  # type: ignore[method-assign]

    # Garbage-collector pauses, to tell them apart from other stalls.
    gc_pauses: list[tuple[int, float, float]] = []  # (generation, seconds, when)
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_pauses.append((info["generation"], time.perf_counter() - gc_started[0], time.time()))

    gc.callbacks.append(on_gc)
    side = [asyncio.create_task(watchdog()), asyncio.create_task(sampler())]
    started = time.time()
    tasks = [asyncio.create_task(_run_trigger(t, rid, events)) for t, rid in zip(triggers, ids, strict=True)]
    # Bounded: a trigger that never fires is cancelled (and shows as a missing event) instead of hanging.
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    finished = time.time()
    done.set()
    await asyncio.gather(*side)
    gc.callbacks.remove(on_gc)
    return {
        "events": events,
        "stalls": stalls,
        "stall_times": stall_times,
        "samples": samples,
        "started": started,
        "finished": finished,
        "connects": connects[0],
        "gc_pauses": gc_pauses,
    }


def run_scenario(
    impl: str, n: int, interval: float | None, job_seconds: float, pool: str = "shared"
) -> dict[str, Any]:
    """Run one scenario end to end and return its figures."""
    # Long enough for the emulator to make every output before we start, then ``job_seconds`` of polling.
    setup = 1.5 + n * RENDER_SECONDS_PER_JOB
    with Emulator(queue_seconds=0.0, run_seconds=setup + job_seconds) as emu:
        os.environ[f"AIRFLOW_CONN_{RUNCOMFY_CONN_ID.upper()}"] = runcomfy_conn(emu.base_url)
        os.environ[f"AIRFLOW_CONN_{HTTP_CONN_ID.upper()}"] = http_conn(emu.base_url)
        ids = submit_jobs(emu.base_url, n, tag=f"{impl}-{interval}")
        wait_until_rendered(emu, ids)

        # Imports and logging first, so the baseline holds every fixed cost but the triggers' own.
        if impl == "runcomfy":
            import airflow_provider_runcomfy.hooks.runcomfy
            import airflow_provider_runcomfy.triggers.runcomfy  # noqa: F401
            from benchmarks.pools import use_pool

            use_pool(pool)
            if pool == "aiohttp":
                import aiohttp
        else:
            import aiohttp  # noqa: F401
            import airflow.providers.http.triggers.http  # noqa: F401
        import greenback  # noqa: F401

        log_file = _configure_logging(os.path.join(scratch_dir("triggerer-log-"), "triggerer.log"))
        emu.clear_requests()
        gc.collect()
        started_gc = time.perf_counter()
        gc.collect()  # what one full collection of this process costs before any trigger exists
        bare_gc = time.perf_counter() - started_gc
        tracked_before = len(gc.get_objects())
        rss_before = rss_bytes()
        opens_before = tcp_active_opens()
        emu_cpu_before = emu.cpu_seconds()
        cpu_before = time.process_time()
        wall_before = time.monotonic()

        triggers = _make_triggers(impl, ids, interval)
        run = asyncio.run(_measure(triggers, ids, timeout=setup + job_seconds + 120))

        wall = time.monotonic() - wall_before
        cpu = time.process_time() - cpu_before
        opens = tcp_active_opens() - opens_before
        emu_cpu = emu.cpu_seconds() - emu_cpu_before
        log_file.close()
        effective_interval = (
            interval
            if interval is not None
            else triggers[0]
            .serialize()[1]
            .get("poll_interval", triggers[0].serialize()[1].get("poke_interval"))
        )
        records = emu.requests()
        jobs = {job["request_id"]: job for job in emu.jobs()}
    figures = _figures(
        impl=impl,
        n=n,
        interval=float(effective_interval),
        run=run,
        records=records,
        jobs=jobs,
        ids=ids,
        cpu=cpu,
        wall=wall,
        rss_before=rss_before,
        opens=opens,
        emu_cpu=emu_cpu,
        bare_gc=bare_gc,
        tracked_before=tracked_before,
    )
    figures["pool"] = pool
    return figures


def _figures(
    *,
    impl: str,
    n: int,
    interval: float,
    run: dict[str, Any],
    records: list[RequestRecord],
    jobs: dict[str, dict[str, Any]],
    ids: list[str],
    cpu: float,
    wall: float,
    rss_before: int,
    opens: int,
    emu_cpu: float,
    bare_gc: float,
    tracked_before: int,
) -> dict[str, Any]:
    # A "poll" is one look at a job: a status call (ours) or a GET of the output file (HttpSensor).
    # Ours also reads the result once per job; that call is counted apart, its CPU charged to polls.
    def is_poll(rec: RequestRecord) -> bool:
        path = rec.path
        return path.endswith("/status") if impl == "runcomfy" else path.startswith("/files/")

    polls = [r for r in records if is_poll(r)]
    others = [r for r in records if not is_poll(r)]
    by_job: dict[str, list[float]] = {}
    for rec in polls:
        by_job.setdefault(str(rec.request_id), []).append(rec.time)

    # Achieved rate: the mean gap between one job's consecutive polls, against the interval wanted.
    gaps = [
        b - a for times in by_job.values() for a, b in zip(sorted(times), sorted(times)[1:], strict=False)
    ]
    rate_ratio = interval * len(gaps) / sum(gaps) if gaps else float("nan")

    completed = {rid: parse_iso(jobs[rid]["finished_at"]) for rid in ids}
    events = run["events"]
    latencies = [events[rid][0] - completed[rid] for rid in ids if rid in events and completed[rid]]
    polled_for = [completed[rid] - run["started"] for rid in ids if completed[rid]]

    # RSS while every trigger is in flight: samples before the first event.
    first_event = min((t for t, _ in events.values()), default=run["finished"])
    in_flight = [rss for t, _, rss in run["samples"] if t < first_event]
    peak_rss = max(in_flight or [rss for _, _, rss in run["samples"]])

    # Steady state: CPU between the moment every job has been polled once and the first completion.
    first_polls = [min(times) for times in by_job.values()]
    steady_from = max(first_polls) if first_polls else run["started"]
    steady_to = min(c for c in completed.values() if c) if any(completed.values()) else run["finished"]
    window = [(t, c) for t, c, _ in run["samples"] if steady_from <= t <= steady_to]
    steady_cpu_ms = float("nan")
    if len(window) >= 2:
        (t0, c0), (t1, c1) = window[0], window[-1]
        count = sum(1 for r in polls if t0 <= r.time < t1)
        steady_cpu_ms = (c1 - c0) * 1000 / count if count else float("nan")

    stalls = run["stalls"]
    worst_gc = max(run["gc_pauses"], key=lambda p: p[1], default=(0, 0.0, run["started"]))
    # A watchdog tick that overlaps a collection was (at least partly) stalled by the collector.
    gc_spans = [(end - seconds, end) for _, seconds, end in run["gc_pauses"] if seconds > 0.005]

    def during_gc(end: float, late: float) -> bool:
        start = end - late - WATCHDOG_TICK
        return any(a < end and b > start for a, b in gc_spans)

    ticks = zip(stalls, run["stall_times"], strict=True)
    outside_gc = [late for late, end in ticks if not during_gc(end, late)]
    outcomes: dict[str, int] = {}
    for _, payload in events.values():
        key = payload.get("status") if isinstance(payload, dict) else str(payload)
        outcomes[str(key)] = outcomes.get(str(key), 0) + 1
    return {
        "impl": impl,
        "n": n,
        "interval_s": interval,
        "events": len(events),
        "outcomes": outcomes,
        "polls": len(polls),
        "other_requests": len(others),
        "cpu_s": cpu,
        "cpu_ms_per_poll": cpu * 1000 / len(polls) if polls else float("nan"),
        "cpu_ms_per_poll_steady": steady_cpu_ms,
        "cpu_ms_per_trigger": cpu * 1000 / n,
        "wanted_polls_per_s": n / interval,
        "achieved_polls_per_s": n / interval * rate_ratio,
        "achieved_ratio": rate_ratio,
        "rss_before_mib": rss_before / 2**20,
        "rss_peak_in_flight_mib": peak_rss / 2**20,
        "rss_kib_per_trigger": (peak_rss - rss_before) / 1024 / n,
        "tcp_connects": run["connects"],
        "tcp_distinct_client_ports": len({tuple(r.peer) for r in records}),
        "tcp_active_opens_host": opens,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "latency_max_s": max(latencies, default=float("nan")),
        "latency_p95_intervals": percentile(latencies, 95) / interval,
        "polled_for_median_s": median(polled_for),
        "stall_max_ms": max(stalls, default=0.0) * 1000,
        "stall_max_at_s": (run["stall_times"][stalls.index(max(stalls))] - run["started"]) if stalls else 0.0,
        "stall_p99_ms": percentile(stalls, 99) * 1000,
        "stalls_over_100ms": sum(1 for s in stalls if s > 0.1),
        "gc_max_ms": worst_gc[1] * 1000,
        "gc_max_at_s": worst_gc[2] - run["started"],
        "gc_full_collections": sum(1 for p in run["gc_pauses"] if p[0] == 2),
        "gc_bare_full_ms": bare_gc * 1000,
        "gc_tracked_objects_before": tracked_before,
        "stall_max_outside_gc_ms": max(outside_gc, default=0.0) * 1000,
        "wall_s": wall,
        "emulator_cpu_s": emu_cpu,
    }


def main(argv: list[str] | None = None) -> None:
    """Parse the scenario, run it, write its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", choices=("runcomfy", "http"), required=True)
    parser.add_argument("--pool", choices=("shared", "httpx", "aiohttp"), default="shared")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=None, help="poll interval (default: the trigger's)")
    parser.add_argument("--job-seconds", type=float, default=10.0, help="how long each job is polled")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    prepare_process()
    write_json(args.json_out, run_scenario(args.impl, args.n, args.interval, args.job_seconds, args.pool))


if __name__ == "__main__":
    main()
