"""
Run every benchmark, print one table and write BENCHMARKS.md.

Usage::

    scripts/bench              # the full run (about 6 minutes on 2 cores)
    scripts/bench --quick      # a smoke run: smaller N, fewer samples, no real-process fan-out
    scripts/bench --pools      # only the three-way HTTP pool comparison (section 6), about 5 minutes

Each part runs in its own process (see its module), one after the other, each against its own
emulator process; every figure is printed beside its peer measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, machine, median_run, run_part
from benchmarks.report import render_markdown, render_table, rows

PACKAGES = [
    "apache-airflow",
    "apache-airflow-task-sdk",
    "apache-airflow-providers-http",
    "httpx",
    "h11",
    "aiohttp",
    "Pillow",
]


def _versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "-"
    found["python"] = sys.version.split()[0]
    return found


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "airflow_provider_runcomfy"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' + uncommitted changes' if dirty else ''}"


def _load() -> float:
    return os.getloadavg()[0]


def run(quick: bool, real: bool, log: Path) -> dict[str, Any]:
    """Every part, one after the other; returns all the figures."""
    n = 200 if quick else 1000
    job_seconds = "6" if quick else "10"
    rounds = 1 if quick else 3
    results: dict[str, Any] = {"load_before": _load()}
    started = time.monotonic()

    results["parse"] = run_part("parse_cost", "--repeats", "3" if quick else "9", log=log)
    results["preflight"] = run_part("preflight", log=log)
    results["downloads"] = run_part("downloads", "--repeats", "1" if quick else "5", log=log)
    slot = run_part("worker_slot", "--part", "pre", "--samples", "2" if quick else "5", log=log)
    results["pre_deferral"] = slot["pre_deferral"]

    # Triggerer load: the stress case several times, ours and the peer alternating.
    scenarios: dict[str, list[dict[str, Any]]] = {}
    for _ in range(rounds):
        for impl in ("runcomfy", "http"):
            args = ["--impl", impl, "--n", str(n), "--interval", "1", "--job-seconds", job_seconds]
            scenarios.setdefault(f"{impl}-stress", []).append(run_part("triggerer", *args, log=log))
    for impl in ("runcomfy", "http"):
        args = ["--impl", impl, "--n", str(n), "--job-seconds", job_seconds]
        scenarios.setdefault(f"{impl}-default", []).append(run_part("triggerer", *args, log=log))
    results["triggerer"] = {key: median_run(runs) for key, runs in scenarios.items()}
    results["triggerer_runs"] = scenarios

    if real:  # last: a whole Airflow deployment
        results["real_processes"] = run_part("worker_slot", "--part", "real", log=log)["real_processes"]
    results["load_after"] = _load()
    results["seconds"] = time.monotonic() - started
    return results


def main(argv: list[str] | None = None) -> None:
    """Run the benchmarks, print the table, write the report."""
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: N=200, fewer samples, no real processes"
    )
    parser.add_argument(
        "--real",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="include the real-process fan-out (default: on, off with --quick)",
    )
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="the report to write")
    parser.add_argument("--json", default=None, help="also write every figure as JSON here")
    parser.add_argument(
        "--pools",
        action="store_true",
        help="run only the comparison of async HTTP pools and rewrite its section of the report",
    )
    args = parser.parse_args(argv)
    if args.pools:
        _pools(Path(args.output), quick=args.quick)
        return
    real = (not args.quick) if args.real is None else args.real
    command = (
        "scripts/bench"
        + (" --quick" if args.quick else "")
        + (" --no-real" if not real and not args.quick else "")
    )

    log = Path(tempfile.mkstemp(prefix="runcomfy-bench-", suffix=".log")[1])
    print(f"Running the benchmarks ({'quick' if args.quick else 'full'}); part logs in {log}")
    # Every part's throwaway files (Airflow homes, emulator files, downloads) go under one root.
    scratch = tempfile.mkdtemp(prefix="runcomfy-bench-")
    os.environ["RUNCOMFY_BENCH_TMP"] = scratch
    try:
        results = run(args.quick, real, log)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    meta = {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": _versions(),
        "commit": _commit(),
        "quick": args.quick,
    }
    # The pool comparison (scripts/bench --pools) and the batch benchmark run on their own: keep
    # their last sections.
    previous = Path(args.output).read_text() if Path(args.output).exists() else ""
    kept = []
    for name in ("pools", "batch"):
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        if start in previous and end in previous:
            kept.append(start + previous.split(start, 1)[1].split(end, 1)[0] + end + "\n")
    meta["pools_section"] = "\n".join(kept)
    table = rows(results)
    print()
    print(render_table(table))
    print(
        f"\nload average 1 min: {results['load_before']:.2f} before, {results['load_after']:.2f} after; "
        f"{results['seconds']:.0f} s"
    )
    Path(args.output).write_text(render_markdown(meta, results, table))
    print(f"wrote {args.output}")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str))


def _pools(output: Path, *, quick: bool) -> None:
    """The three-way pool comparison alone (``scripts/bench --pools``): print it, put it in the report."""
    from benchmarks import pools

    log = Path(tempfile.mkstemp(prefix="runcomfy-bench-pools-", suffix=".log")[1])
    print(f"Comparing the async HTTP pools; part logs in {log}")
    scratch = tempfile.mkdtemp(prefix="runcomfy-bench-")
    os.environ["RUNCOMFY_BENCH_TMP"] = scratch
    load_before = _load()
    try:
        figures = pools.compare(200 if quick else 1000, 1 if quick else 3, 6 if quick else 10, log)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    meta = {
        "command": "scripts/bench --pools" + (" --quick" if quick else ""),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "load_before": load_before,
        "load_after": _load(),
        "decision": pools.decision(figures),
    }
    section = pools.render(figures, meta)
    print()
    print(section)
    pools.write_section(output, section)
    print(f"wrote section 6 of {output}")


if __name__ == "__main__":
    main()
