"""
Mapped tasks against one batch task: the same N RunComfy jobs through a real scheduler and triggerer.

A real Airflow deployment (``devtools.airflow_stack.AirflowStack``: scheduler with
LocalExecutor on Airflow 3, triggerer, DAG processor and execution API server on SQLite; here with
``--slots`` worker slots and ``[core] max_map_length`` raised) runs, one after the other against one
emulator process with short jobs, the two DAGs of ``benchmarks/batch_dags``:

(a) ``rc_bench_mapped``: a mapped deferrable ``RunComfyModelOperator``, one task instance per job;
(b) ``rc_bench_batch``: one deferrable ``RunComfyBatchOperator`` with ``max_in_flight=--window``.

For each: the wall time from trigger to the run's end, the CPU seconds of every Airflow process
(scheduler and its workers, triggerer, DAG processor, API server; the emulator's own CPU is not
counted), the task instances and XCom rows the run created, and the paid POSTs the emulator received
(each must equal N); an item paid more than once is listed in ``duplicate_items`` with the time and
request id of each of its POSTs. Usage::

    python -m benchmarks.batch --jobs 200 --slots 8 --window 200

``--only mapped`` (or ``batch``) runs one of the two DAGs (the figures then have no table and no
ratio); ``--keep DIR`` runs in ``DIR`` (new or empty) and keeps it: the Airflow home with its task logs
and SQLite database, each process's log, the emulator's request log of each run as
``requests-<run>.jsonl`` (one record a line) and its jobs at the run's end as ``jobs-<run>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import scratch_dir, write_json

DAGS_DIR = Path(__file__).resolve().parent / "batch_dags"
RUNS = (("mapped", "rc_bench_mapped"), ("batch", "rc_bench_batch"))


def _stat(pid: int) -> tuple[float, float] | None:
    """``(own CPU, own + reaped children's CPU)`` seconds of a live process; ``None`` once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / tick
    return own, own + (int(fields[13]) + int(fields[14])) / tick


class CpuMeter:
    """
    CPU seconds of process trees between two snapshots.

    A task process that ended was reaped by its parent, whose ``cutime``/``cstime`` then hold its CPU,
    so each tree counts its root's own-plus-children time and the own-plus-children time of the
    descendants alive at the end (less what they had at the start).
    """

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.start = self._snapshot()

    def _snapshot(self) -> dict[int, float]:
        from devtools.processes import process_tree

        seen: dict[int, float] = {}
        for root in self.roots.values():
            for pid in process_tree(root) | {root}:
                stat = _stat(pid)
                if stat is not None:
                    seen[pid] = stat[1]
        return seen

    def seconds(self) -> float:
        """CPU seconds used by the trees since the meter was made."""
        end = self._snapshot()
        return round(sum(total - self.start.get(pid, 0.0) for pid, total in end.items()), 2)


def _count(stack: Any, table: str, dag_id: str, run_id: str) -> int:
    return int(
        stack.query(f"SELECT count(*) FROM {table} WHERE dag_id = ? AND run_id = ?", dag_id, run_id)[0][0]
    )


def duplicate_items(paid: list[Any]) -> list[dict[str, Any]]:
    """The items (``i`` of the POST body) paid more than once, with the time and request id of each POST."""
    by_item: dict[Any, list[Any]] = {}
    for record in paid:
        by_item.setdefault(record.body.get("i"), []).append(record)
    return [
        {
            "i": item,
            "posts": [
                {
                    "time": record.time,
                    "at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.time))
                    + f".{int(record.time % 1 * 1000):03d}Z",
                    "request_id": record.request_id,
                }
                for record in sorted(records, key=lambda r: r.time)
            ],
        }
        for item, records in sorted(by_item.items(), key=lambda kv: _item_order(kv[0]))
        if len(records) > 1
    ]


def _item_order(item: Any) -> tuple[int, Any]:
    """Numbers first, in numeric order, then anything else by its text."""
    return (0, item) if isinstance(item, int) else (1, str(item))


def _workdir(keep: Path | None) -> Path:
    """``keep`` (made if missing; it must be empty) or a throwaway scratch directory."""
    if keep is None:
        return Path(scratch_dir("batch-bench-"))
    keep = keep.resolve()
    keep.mkdir(parents=True, exist_ok=True)
    if any(keep.iterdir()):
        raise SystemExit(f"--keep {keep}: the directory is not empty")
    return keep


def run_benchmark(
    jobs: int,
    slots: int,
    window: int,
    poll: float,
    queue: float,
    run: float,
    only: str | None = None,
    keep: Path | None = None,
) -> dict[str, Any]:
    """
    Start the deployment and the emulator, run both DAGs (or the ``only`` one) one after the other,
    return the figures; with ``keep`` the whole working directory stays there.
    """
    from devtools.airflow_stack import AIRFLOW_3, AIRFLOW_VERSION, AirflowStack
    from devtools.fanout import TOKEN
    from devtools.processes import EmulatorProcess

    runs = [(name, dag_id) for name, dag_id in RUNS if only in (None, name)]
    workdir = _workdir(keep)
    emulator = EmulatorProcess(
        workdir,
        token=TOKEN,
        queue_seconds=queue,
        run_seconds=run,
        record_peer_pid=False,
        extra_args=["--log-maxlen", str(max(100_000, jobs * 40))],
    )
    emulator.start()
    figures: dict[str, Any] = {}
    try:
        stack = AirflowStack(
            workdir,
            DAGS_DIR,
            {
                "AIRFLOW_CONN_RUNCOMFY_DEFAULT": emulator.conn_json(),
                "PYTHONPYCACHEPREFIX": os.environ.get("PYTHONPYCACHEPREFIX", ""),
                "AIRFLOW__CORE__PARALLELISM": str(slots),
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(max(slots, jobs)),
                "AIRFLOW__CORE__MAX_MAP_LENGTH": str(max(1024, jobs)),
                "AIRFLOW__TRIGGERER__CAPACITY": str(max(1000, jobs + 10)),
                "RUNCOMFY_BENCH_JOBS": str(jobs),
                "RUNCOMFY_BENCH_WINDOW": str(window),
                "RUNCOMFY_BENCH_POLL": str(poll),
            },
        )
        try:
            stack.start()
            stack.wait_parsed([dag_id for _, dag_id in runs])
            for name, dag_id in runs:
                emulator.control.clear_requests()
                meter = CpuMeter({key: stack.pid(key) for key in stack.procs})
                started = time.time()
                run_id = stack.trigger(dag_id)
                info = stack.wait_run(dag_id, run_id, triggered_at=started, timeout=max(3600, jobs * 4))
                cpu = meter.seconds()
                requests = emulator.control.requests()
                if keep is not None:
                    with (workdir / f"requests-{name}.jsonl").open("w", encoding="utf-8") as fh:
                        for record in requests:
                            fh.write(json.dumps(record.to_dict(), default=str) + "\n")
                    (workdir / f"jobs-{name}.json").write_text(
                        json.dumps(emulator.control.jobs(), indent=1, default=str), encoding="utf-8"
                    )
                paid = [
                    r
                    for r in requests
                    if r.method == "POST" and r.path.startswith("/v1/models/") and r.request_id
                ]
                figures[name] = {
                    "state": info.state,
                    "wall_seconds": round(info.wall_seconds, 1),
                    "cpu_seconds": cpu,
                    "task_instances": _count(stack, "task_instance", dag_id, run_id),
                    "xcom_rows": _count(stack, "xcom", dag_id, run_id),
                    "retried_task_instances": int(
                        stack.query(
                            "SELECT count(*) FROM task_instance"
                            " WHERE dag_id = ? AND run_id = ? AND try_number > 1",
                            dag_id,
                            run_id,
                        )[0][0]
                    ),
                    "paid_posts": len(paid),
                    "items_paid_once": len({r.body.get("i") for r in paid}) == len(paid) == jobs,
                }
                duplicates = duplicate_items(paid)
                if duplicates:
                    figures[name]["duplicate_items"] = duplicates
                print(f"{name}: {figures[name]}", flush=True)
        except BaseException:
            print(stack.tails(), file=sys.stderr)
            raise
        finally:
            stack.stop()
    finally:
        if keep is not None and len(figures) < len(runs):
            try:  # a run that did not end: keep what the emulator saw
                with (workdir / "requests-unfinished.jsonl").open("w", encoding="utf-8") as fh:
                    for record in emulator.control.requests():
                        fh.write(json.dumps(record.to_dict(), default=str) + "\n")
            except Exception as err:  # the original error matters more
                print(f"could not keep the emulator's request log: {err}", file=sys.stderr)
        emulator.stop()
    result: dict[str, Any] = {
        "jobs": jobs,
        "worker_slots": slots,
        "max_in_flight": window,
        "poll_interval": poll,
        "job_seconds": {"queue": queue, "run": run},
        "airflow": AIRFLOW_VERSION,
        "executor": "LocalExecutor" if AIRFLOW_3 else "SequentialExecutor",
        **figures,
    }
    if keep is not None:
        result["kept"] = str(workdir)
    if "mapped" in figures and "batch" in figures:
        mapped, batch = figures["mapped"], figures["batch"]
        result["ratio"] = {
            "wall": round(batch["wall_seconds"] / mapped["wall_seconds"], 3),
            "cpu": round(batch["cpu_seconds"] / mapped["cpu_seconds"], 3),
        }
    return result


def render(result: dict[str, Any]) -> str:
    """The result as the Markdown table of BENCHMARKS.md."""
    mapped, batch = result["mapped"], result["batch"]
    lines = [
        f"| figure | (a) mapped `RunComfyModelOperator` | (b) `RunComfyBatchOperator` "
        f"(max_in_flight={result['max_in_flight']}) | (b) / (a) |",
        "|---|---:|---:|---:|",
    ]
    for key, label in (
        ("wall_seconds", "wall time, trigger to end (s)"),
        ("cpu_seconds", "CPU of scheduler + workers + triggerer + DAG processor + API server (s)"),
        ("task_instances", "task instances created"),
        ("xcom_rows", "XCom rows created"),
        ("paid_posts", "paid POSTs"),
        ("retried_task_instances", "task instances retried"),
    ):
        a, b = mapped[key], batch[key]
        ratio = f"{b / a:.2f}x" if a else "-"
        lines.append(f"| {label} | {a:,} | {b:,} | {ratio} |")
    lines.append(f"| run state | {mapped['state']} | {batch['state']} | - |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the comparison and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=8, help="worker slots ([core] parallelism)")
    parser.add_argument("--window", type=int, default=200, help="the batch's max_in_flight")
    parser.add_argument("--poll", type=float, default=1.0, help="poll interval of every wait (s)")
    parser.add_argument("--queue-seconds", type=float, default=0.2)
    parser.add_argument("--run-seconds", type=float, default=2.0)
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--only", choices=[name for name, _ in RUNS], help="run only this DAG")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="work in DIR (new or empty) and keep it: Airflow logs and database, emulator request logs",
    )
    args = parser.parse_args(argv)
    result = run_benchmark(
        args.jobs,
        args.slots,
        args.window,
        args.poll,
        args.queue_seconds,
        args.run_seconds,
        only=args.only,
        keep=args.keep,
    )
    if "ratio" in result:
        print(render(result))
        print(f"ratio (b)/(a): wall {result['ratio']['wall']}x, CPU {result['ratio']['cpu']}x")
    elif args.json_out:  # without a path write_json prints it
        print(json.dumps(result, indent=2))
    if "kept" in result:
        print(f"kept: {result['kept']}")
    write_json(args.json_out, result)


if __name__ == "__main__":
    main()
