"""
Command line of the soak (``scripts/soak`` runs it in its own virtualenv)::

    python -m benchmarks.soak --jobs 20                       # a small LocalExecutor run
    python -m benchmarks.soak --jobs 200 --executor celery    # Celery with two workers
    python -m benchmarks.soak --jobs 200 --report RELIABILITY.md

Prints the figures as a Markdown table; ``--report`` also writes them into that file (one section per
executor and size, replaced by a new run), and ``<workdir>/figures.json`` keeps them all. Every process
it started is stopped on exit, on Ctrl-C and on SIGTERM; ``--keep`` keeps the work directory's logs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchmarks.soak.report import figures, markdown, update_section
from benchmarks.soak.run import Options, Soak


def _stop_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def machine() -> dict[str, str]:
    """The machine and versions line of the report."""
    cpus = os.cpu_count() or 0
    with open("/proc/meminfo", encoding="ascii") as fh:
        mem_gib = int(fh.readline().split()[1]) / 2**20
    load = os.getloadavg()[0]
    return {
        "machine": f"{platform.machine()}, {cpus} CPUs, {mem_gib:.0f} GiB RAM, Linux {platform.release()}, "
        f"load {load:.1f} at start",
        "versions": f"Python {platform.python_version()}, apache-airflow {version('apache-airflow')}, "
        f"provider {version('airflow-provider-runcomfy')}",
    }


def main(argv: list[str] | None = None) -> int:
    """Parse, run one soak, print (and maybe write) the report; 0 when nothing was lost or paid twice."""
    p = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=200, help="jobs in the fan-out (default 200)")
    p.add_argument("--executor", choices=("local", "celery"), default="local")
    p.add_argument(
        "--in-worker", type=int, default=None, help="how many wait in the worker (default jobs/10, >= 4)"
    )
    p.add_argument("--poll-interval", type=float, default=5.0)
    p.add_argument("--queue-seconds", type=float, default=10.0, help="queue time of the deferred jobs")
    p.add_argument("--run-seconds", type=float, default=50.0, help="run time of the deferred jobs")
    p.add_argument("--worker-run-seconds", type=float, default=10.0, help="run time of the in-worker jobs")
    p.add_argument("--fault-scale", type=float, default=1.0, help="multiply every background fault rate")
    p.add_argument("--timeout", type=float, default=1800.0, help="longest wait for the run, seconds")
    p.add_argument(
        "--triggerer-down", type=float, default=30.0, help="seconds before the killed triggerer restarts"
    )
    p.add_argument("--seed", type=int, default=20261203)
    p.add_argument("--report", type=Path, default=None, help="write the section into this Markdown file")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, figures.json)")
    args = p.parse_args(argv)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _stop_on_signal)
    workdir = Path(tempfile.mkdtemp(prefix="runcomfy-soak-"))
    options = Options(
        jobs=args.jobs,
        executor=args.executor,
        in_worker=args.in_worker,
        poll_interval=args.poll_interval,
        deferred_job=(args.queue_seconds, args.run_seconds),
        worker_job_seconds=args.worker_run_seconds,
        fault_scale=args.fault_scale,
        timeout=args.timeout,
        triggerer_down_seconds=args.triggerer_down,
        workdir=workdir,
        seed=args.seed,
    )
    print(f"soak: {args.jobs} jobs, {args.executor} executor, work directory {workdir}", flush=True)
    info = machine()
    soak = Soak(options)
    started = time.monotonic()
    try:
        soak.start()
        print(f"soak: started in {time.monotonic() - started:.0f} s; running", flush=True)
        raw = soak.run()
    finally:
        soak.stop()
    info["versions"] += f", {raw['versions']['postgres']}"
    if raw["versions"]["redis"]:
        info["versions"] += f", redis {raw['versions']['redis']}, celery {version('celery')}"
    result = figures(raw)
    command = "scripts/soak " + " ".join(argv if argv is not None else sys.argv[1:])
    shape = "CeleryExecutor (2 workers x 2)" if args.executor == "celery" else "LocalExecutor (parallelism 4)"
    title = f"{args.jobs} jobs, {shape}"
    section = markdown(title, command.strip(), result, info)
    print(section)
    (workdir / "figures.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    if args.report is not None:
        update_section(args.report, f"{args.executor}-{args.jobs}", section)
    if args.keep:
        print(f"soak: logs and figures kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    clean = (
        result["lost_jobs"] == 0
        and result["tis_paid_more_than_once"] == 0
        and not result["mismatched"]
        and result["tis_unfinished"] == 0
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
