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
(each must equal N). Usage::

    python -m benchmarks.batch --jobs 200 --slots 8 --window 200
"""

from __future__ import annotations

import argparse
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


def run_benchmark(
    jobs: int, slots: int, window: int, poll: float, queue: float, run: float
) -> dict[str, Any]:
    """Start the deployment and the emulator, run both DAGs one after the other, return the figures."""
    from devtools.airflow_stack import AIRFLOW_3, AIRFLOW_VERSION, AirflowStack
    from devtools.fanout import TOKEN
    from devtools.processes import EmulatorProcess

    workdir = Path(scratch_dir("batch-bench-"))
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
            stack.wait_parsed([dag_id for _, dag_id in RUNS])
            for name, dag_id in RUNS:
                emulator.control.clear_requests()
                meter = CpuMeter({key: stack.pid(key) for key in stack.procs})
                started = time.time()
                run_id = stack.trigger(dag_id)
                info = stack.wait_run(dag_id, run_id, triggered_at=started, timeout=max(3600, jobs * 4))
                cpu = meter.seconds()
                paid = [
                    r
                    for r in emulator.control.requests()
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
                print(f"{name}: {figures[name]}", flush=True)
        except BaseException:
            print(stack.tails(), file=sys.stderr)
            raise
        finally:
            stack.stop()
    finally:
        emulator.stop()
    mapped, batch = figures["mapped"], figures["batch"]
    return {
        "jobs": jobs,
        "worker_slots": slots,
        "max_in_flight": window,
        "poll_interval": poll,
        "job_seconds": {"queue": queue, "run": run},
        "airflow": AIRFLOW_VERSION,
        "executor": "LocalExecutor" if AIRFLOW_3 else "SequentialExecutor",
        **figures,
        "ratio": {
            "wall": round(batch["wall_seconds"] / mapped["wall_seconds"], 3),
            "cpu": round(batch["cpu_seconds"] / mapped["cpu_seconds"], 3),
        },
    }


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
    args = parser.parse_args(argv)
    result = run_benchmark(
        args.jobs, args.slots, args.window, args.poll, args.queue_seconds, args.run_seconds
    )
    print(render(result))
    print(f"ratio (b)/(a): wall {result['ratio']['wall']}x, CPU {result['ratio']['cpu']}x")
    write_json(args.json_out, result)


if __name__ == "__main__":
    main()
