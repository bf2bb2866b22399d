"""
End to end with real Airflow processes: while RunComfy works, deferrable tasks hold no worker slot.

``dag.test()`` runs triggers inline, so it cannot show what users pay for: that a deferred task gives
its worker slot back. Here a real deployment runs against the emulator (its own process) with ONE
worker slot, from a throwaway ``AIRFLOW_HOME`` on SQLite and the DAGs of ``tests/real_process_dags``:

- Airflow 3.3: ``scheduler`` (LocalExecutor, ``parallelism=1``), ``triggerer``, ``dag-processor`` and
  ``api-server --apps execution``;
- Airflow 2.11: ``scheduler`` (SequentialExecutor: one slot by nature; 2.11 refuses LocalExecutor on
  SQLite) and ``triggerer``.

Four mapped deferrable image edits must all be in flight at once although only one task can run at a
time: the emulator holds their jobs queued until the fourth is submitted (``--hold-until-submits 4``),
so with one slot the run can only finish if every deferred task gave its slot back, however slowly
the machine starts tasks (then each job runs 15 s); each task instance must be seen
``deferred``; and the emulator, which records the client process of every request, must show that
every status poll after the submit came from the triggerer's process tree, the only exception being
each task's single status check right before it defers. The same DAG waiting in the worker
(``deferrable=False``) then runs for comparison; both wall times are printed (``pytest -s``) and
written to ``real_process_timings.json`` in the test's tmp dir.

``EmulatorProcess`` (the package's ``airflow_provider_runcomfy.emulator.process``, with a clean environment
from ``devtools/processes.py``) and ``AirflowStack`` (``devtools/airflow_stack.py``) are reusable
(benchmarks, scripts): ``start()``, ``trigger(dag_id)``, ``wait_run(dag_id, run_id)``, ``stop()``.
Skip the test with ``RUNCOMFY_SKIP_REAL_PROCESSES=1`` or ``-k "not real_processes"``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from devtools.airflow_stack import (
    AIRFLOW_3,
    AIRFLOW_VERSION,
    RUN_TIMEOUT,
    AirflowStack,
    RunInfo,
)
from devtools.fanout import DAGS_DIR, DEFERRABLE_DAG, JOB_SECONDS, MAPPED_TASK, N_TASKS, SYNC_DAG, TOKEN
from devtools.processes import EmulatorProcess, process_tree

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from airflow_provider_runcomfy.emulator.records import RequestRecord

pytestmark = pytest.mark.skipif(
    os.environ.get("RUNCOMFY_SKIP_REAL_PROCESSES", "") not in ("", "0") or not Path("/proc/net/tcp").exists(),
    reason="real-process test skipped (RUNCOMFY_SKIP_REAL_PROCESSES, or no /proc to find client PIDs)",
)


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """The emulator in its own process, stopped at teardown."""
    emulator = EmulatorProcess(
        tmp_path, token=TOKEN, run_seconds=JOB_SECONDS, extra_args=["--hold-until-submits", str(N_TASKS)]
    )
    try:
        emulator.start()
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def airflow_stack(tmp_path: Path, emulator_process: EmulatorProcess) -> Iterator[AirflowStack]:
    """A started Airflow deployment wired to the emulator; every process is stopped at teardown."""
    stack = AirflowStack(
        tmp_path,
        DAGS_DIR,
        {
            "AIRFLOW_CONN_RUNCOMFY_DEFAULT": emulator_process.conn_json(),
            "RUNCOMFY_REAL_EMULATOR_URL": emulator_process.base_url,
        },
    )
    try:
        stack.start()
        yield stack
    except BaseException:
        print(stack.tails(), file=sys.stderr)
        raise
    finally:
        stack.stop()


# -- what was observed ------------------------------------------------------------------------------


@dataclass
class Observer:
    """Samples, while a run goes on, the task states and the process trees of scheduler and triggerer."""

    stack: AirflowStack
    dag_id: str
    run_id: str
    seen_states: dict[int, set[str]] = field(default_factory=dict)
    max_running: int = 0
    triggerer_pids: set[int] = field(default_factory=set)
    scheduler_pids: set[int] = field(default_factory=set)

    def __call__(self) -> None:
        self.triggerer_pids |= process_tree(self.stack.pid("triggerer"))
        self.scheduler_pids |= process_tree(self.stack.pid("scheduler"))
        with contextlib.suppress(sqlite3.OperationalError):
            states = self.stack.task_states(self.dag_id, self.run_id)
            running = 0
            for (task_id, map_index), state in states.items():
                if task_id == MAPPED_TASK and state:
                    self.seen_states.setdefault(map_index, set()).add(state)
                    running += state == "running"
            self.max_running = max(self.max_running, running)


def call_kind(record: RequestRecord) -> str | None:
    """``submit``, ``status``, ``result`` or ``cancel`` for a Model API call; ``None`` for anything else."""
    if record.method == "POST" and record.path.startswith("/v1/models/"):
        return "submit"
    if record.path.startswith("/v1/requests/"):
        return record.path.rsplit("/", 1)[-1]
    return None


def calls(records: Iterable[RequestRecord], kind: str, request_id: str | None = None) -> list[RequestRecord]:
    """The API calls of one kind (of one request, when given)."""
    return [r for r in records if call_kind(r) == kind and (request_id is None or r.request_id == request_id)]


def check_all_in_flight(submits: dict[str, RequestRecord], jobs: dict[str, dict[str, Any]]) -> float:
    """Every job was submitted before the first one finished; returns the spread of the submits."""
    first_submit = min(r.time for r in submits.values())
    last_submit = max(r.time for r in submits.values())
    finished = {}
    for rid in submits:
        assert jobs[rid]["status"] == "succeeded", jobs[rid]
        finished[rid] = datetime.fromisoformat(jobs[rid]["finished_at"]).timestamp()
    first_finish = min(finished.values())
    assert last_submit < first_finish, (
        f"the last job was submitted {last_submit - first_submit:.1f} s after the first, "
        f"{last_submit - first_finish:.1f} s after a job had finished: they were not all in flight"
    )
    return last_submit - first_submit


def check_polls_from_triggerer(
    records: list[RequestRecord], submit: RequestRecord, triggerer: set[int]
) -> int:
    """
    Every status poll of one request came from the triggerer's process tree, except at most one: the
    task's check right before it deferred, from the process that submitted, before the triggerer's
    first poll. The result was fetched by the triggerer too. Returns the number of triggerer polls.
    """
    rid = submit.request_id
    assert rid is not None
    polls, results = calls(records, "status", rid), calls(records, "result", rid)
    assert all(r.pid is not None for r in polls + results), f"{rid}: a call without a client PID"
    from_triggerer = [r for r in polls if r.pid in triggerer]
    elsewhere = [r for r in polls if r.pid not in triggerer]
    assert len(from_triggerer) >= 2, f"{rid}: the triggerer polled {len(from_triggerer)} times"
    assert len(elsewhere) <= 1, f"{rid}: {len(elsewhere)} status polls came from outside the triggerer"
    for r in elsewhere:
        assert r.pid == submit.pid, f"{rid}: a status poll from PID {r.pid}, not the submitting task"
        assert submit.time <= r.time < min(p.time for p in from_triggerer), (
            f"{rid}: the task process polled after the triggerer took over"
        )
    assert results, f"{rid}: nobody fetched the result"
    assert all(r.pid in triggerer for r in results), f"{rid}: the result was fetched outside the triggerer"
    return len(from_triggerer)


# -- the test ---------------------------------------------------------------------------------------


def test_real_processes_deferred_tasks_hold_no_worker_slot(
    airflow_stack: AirflowStack, emulator_process: EmulatorProcess, tmp_path: Path
) -> None:
    stack, emulator = airflow_stack, emulator_process
    try:
        stack.wait_parsed([DEFERRABLE_DAG, SYNC_DAG])

        # -- the deferrable run ------------------------------------------------------------------
        before = len(emulator.requests())
        triggered_at = time.time()
        run_id = stack.trigger(DEFERRABLE_DAG)
        seen = Observer(stack, DEFERRABLE_DAG, run_id)
        try:
            deferrable = stack.wait_run(DEFERRABLE_DAG, run_id, triggered_at=triggered_at, on_tick=seen)
        except RuntimeError as exc:
            held = len(calls(emulator.requests()[before:], "submit"))
            raise AssertionError(
                f"{exc}; {held} of {N_TASKS} jobs were submitted: the emulator holds them all queued "
                "until the last one arrives, so a deferred task kept its worker slot"
            ) from exc
        records = emulator.requests()[before:]
        jobs = {job["request_id"]: job for job in emulator.jobs()}

        states = stack.task_states(DEFERRABLE_DAG, run_id)
        assert deferrable.state == "success", f"the deferrable run ended {deferrable.state}: {states}"
        assert states == {(MAPPED_TASK, i): "success" for i in range(N_TASKS)}

        # One worker slot: never two task instances running at once...
        assert seen.max_running <= 1, f"{seen.max_running} tasks ran at once with one slot"
        # ...and each mapped task instance gave it back while its job ran: each was seen deferred.
        not_deferred = [i for i in range(N_TASKS) if "deferred" not in seen.seen_states.get(i, set())]
        assert not not_deferred, f"map indexes never seen deferred: {not_deferred} ({seen.seen_states})"

        # Four paid jobs, each submitted once, by a task process (not the triggerer).
        triggerer = seen.triggerer_pids
        assert triggerer, "the triggerer's process tree was never sampled"
        assert not triggerer & seen.scheduler_pids
        submits = calls(records, "submit")
        assert [r.status for r in submits] == [200] * N_TASKS, submits
        submit_of = {r.request_id: r for r in submits if r.request_id is not None}
        assert len(submit_of) == N_TASKS, submits
        for r in submits:
            assert r.pid is not None, f"no client PID recorded for the submit of {r.request_id}"
            assert r.pid not in triggerer, f"the submit of {r.request_id} came from the triggerer"
        assert not calls(records, "cancel"), "a job was cancelled"

        # All four jobs ran at the same time, although only one task could run at a time.
        spread = check_all_in_flight(submit_of, jobs)
        # While they ran, only the triggerer polled.
        polls = [check_polls_from_triggerer(records, submit, triggerer) for submit in submit_of.values()]

        # -- the same DAG waiting in the worker, for comparison ----------------------------------
        before = len(emulator.requests())
        triggered_at = time.time()
        sync_run_id = stack.trigger(SYNC_DAG)
        sync_seen = Observer(stack, SYNC_DAG, sync_run_id)
        sync = stack.wait_run(
            SYNC_DAG, sync_run_id, triggered_at=triggered_at, on_tick=sync_seen, timeout=2 * RUN_TIMEOUT
        )
        sync_states = stack.task_states(SYNC_DAG, sync_run_id)
        assert sync.state == "success", f"the sync run ended {sync.state}: {sync_states}"
        # The control experiment: waiting in the worker, no poll comes from the triggerer, which shows
        # the PID attribution above tells the two apart.
        sync_polls = calls(emulator.requests()[before:], "status")
        assert len(sync_polls) >= N_TASKS
        assert not [r for r in sync_polls if r.pid is None or r.pid in triggerer | sync_seen.triggerer_pids]
    except BaseException:
        print(stack.tails(), file=sys.stderr)
        raise

    report_timings(tmp_path, deferrable, sync, spread=spread, polls=polls)


def report_timings(
    tmp_path: Path, deferrable: RunInfo, sync: RunInfo, *, spread: float, polls: list[int]
) -> None:
    """Print the two wall times side by side (``pytest -s``) and write them to the test's tmp dir."""

    def seconds(value: float | None) -> str:
        return "?" if value is None else f"{value:.1f} s"

    figures = {
        "airflow": AIRFLOW_VERSION,
        "executor": "LocalExecutor" if AIRFLOW_3 else "SequentialExecutor",
        "worker_slots": 1,
        "tasks": N_TASKS,
        "job_seconds": JOB_SECONDS,
        "deferrable": {
            "run_seconds": deferrable.db_seconds,
            "trigger_to_done_seconds": round(deferrable.wall_seconds, 1),
            "submit_spread_seconds": round(spread, 1),
            "triggerer_polls_per_job": sorted(polls),
        },
        "sync": {"run_seconds": sync.db_seconds, "trigger_to_done_seconds": round(sync.wall_seconds, 1)},
    }
    path = tmp_path / "real_process_timings.json"
    path.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    print(
        f"\nAirflow {AIRFLOW_VERSION}, {N_TASKS} mapped tasks, {JOB_SECONDS:.0f} s jobs, one worker slot:\n"
        f"  deferrable run: {seconds(deferrable.db_seconds)}"
        f" (trigger to done {deferrable.wall_seconds:.1f} s)\n"
        f"  sync run:       {seconds(sync.db_seconds)} (trigger to done {sync.wall_seconds:.1f} s)\n"
        f"  deferrable submits spread over {spread:.1f} s; triggerer polls per job {sorted(polls)}\n"
        f"  figures: {path}"
    )
