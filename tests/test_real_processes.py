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
from ``tests/processes.py``) and ``AirflowStack`` are reusable (benchmarks):
``start()``, ``trigger(dag_id)``, ``wait_run(dag_id, run_id)``, ``stop()``. Skip the test with
``RUNCOMFY_SKIP_REAL_PROCESSES=1`` or ``-k "not real_processes"``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.processes import (
    TESTS_DIR,
    EmulatorProcess,
    airflow_cli,
    airflow_process,
    base_env,
    free_port,
    process_tree,
    stop_processes,
    tail,
)

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Iterable, Iterator

    from airflow_provider_runcomfy.emulator.records import RequestRecord

DAGS_DIR = TESTS_DIR / "real_process_dags"
AIRFLOW_VERSION = version("apache-airflow")
AIRFLOW_3 = int(AIRFLOW_VERSION.split(".")[0]) >= 3

TOKEN = "rc-real-process-token-5e4d3c2b1a"
#: How long each emulated job runs once the emulator lets the four start together. The hold (not this
#: figure) makes the test independent of how fast the machine starts tasks: Airflow 2's
#: SequentialExecutor starts a new ``airflow tasks run`` interpreter for each (about 4.5 s idle, 8 s
#: and more under load), so without it the four submits could spread past the first job's end.
JOB_SECONDS = 15.0
DEFERRABLE_DAG = "rc_real_fanout_deferrable"
SYNC_DAG = "rc_real_fanout_sync"
MAPPED_TASK = "edit"
N_TASKS = 4
#: Generous deadlines: the machine may be small and shared. Only the assertions are exact.
START_TIMEOUT = 180.0
RUN_TIMEOUT = 240.0

pytestmark = pytest.mark.skipif(
    os.environ.get("RUNCOMFY_SKIP_REAL_PROCESSES", "") not in ("", "0") or not Path("/proc/net/tcp").exists(),
    reason="real-process test skipped (RUNCOMFY_SKIP_REAL_PROCESSES, or no /proc to find client PIDs)",
)


@dataclass
class RunInfo:
    """A finished DAG run: its state, the DB's start and end times, and our own trigger-to-end wall time."""

    dag_id: str
    run_id: str
    state: str
    start: datetime | None
    end: datetime | None
    wall_seconds: float

    @property
    def db_seconds(self) -> float | None:
        """The run's duration as Airflow recorded it (start_date to end_date)."""
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds()


def _db_time(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class AirflowStack:
    """
    A real Airflow deployment in a throwaway ``AIRFLOW_HOME`` on SQLite, with one worker slot.

    Every process gets the same explicit environment (nothing inherited from the pytest process's
    Airflow settings), its output goes to ``<workdir>/<name>.log``, and ``stop()`` ends them all by
    PID. ``extra_env`` adds variables (the connection, the emulator URL for the DAG file).
    """

    def __init__(self, workdir: Path, dags_folder: Path, extra_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.home = workdir / "airflow-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.db_path = self.home / "airflow.db"
        self.dags_folder = dags_folder
        self.api_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.env = self._build_env(extra_env or {})

    def _build_env(self, extra_env: dict[str, str]) -> dict[str, str]:
        env = base_env()
        settings = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
            "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor" if AIRFLOW_3 else "SequentialExecutor",
            "AIRFLOW__CORE__PARALLELISM": "1",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            # Fast loops: the scheduler, the triggerer and the DAG parser react within a second or two.
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        }
        if AIRFLOW_3:
            settings |= {
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": "rc-real-process-jwt-secret-0123456789abcdef",
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            }
        else:
            settings |= {
                "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "2",
                "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "2",
                "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
                "AIRFLOW__METRICS__TIMER_UNIT_CONSISTENCY": "True",  # silences a warning in every process
            }
        env |= settings
        env |= extra_env
        return env

    # -- life cycle ---------------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = START_TIMEOUT) -> str:
        """Run ``airflow <args>`` to completion and return its output; raise with the output on failure."""
        return airflow_cli(args, env=self.env, workdir=self.workdir, timeout=timeout)

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``airflow <args>`` in its own session, its output in ``<workdir>/<name>.log``."""
        path = self.workdir / f"{name}.log"
        proc = airflow_process(args, env=self.env, workdir=self.workdir, log_path=path)
        self.procs[name], self.logs[name] = proc, path
        return proc

    def start(self) -> None:
        """Migrate the DB, then start the scheduler, the triggerer (and on Airflow 3 the rest)."""
        self.cli("db", "migrate")
        if AIRFLOW_3:
            self.spawn("api-server", "api-server", "--apps", "execution", "--port", str(self.api_port))
            self.spawn("dag-processor", "dag-processor")
        self.spawn("scheduler", "scheduler")
        self.spawn("triggerer", "triggerer")
        if AIRFLOW_3:
            self._wait_for_port(self.api_port)

    def _wait_for_port(self, port: int, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            with socket.socket() as sock, contextlib.suppress(OSError):
                sock.settimeout(1)
                sock.connect(("127.0.0.1", port))
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listened on port {port} after {timeout} s")
            time.sleep(0.5)

    def check_alive(self) -> None:
        """Raise if one of the long-running processes has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{tail(self.logs[name])}")

    def pid(self, name: str) -> int:
        """The PID of one of the started processes (``scheduler``, ``triggerer``, ...)."""
        return self.procs[name].pid

    def stop(self) -> None:
        """Stop every started process and its descendants (SIGTERM, then SIGKILL after a grace period)."""
        stop_processes(self.procs.values())

    def tails(self, lines: int = 60) -> str:
        """The last lines of every process's log and of the CLI log, for failure reports."""
        paths = [*self.logs.items(), ("cli", self.workdir / "cli.log")]
        return "\n".join(f"----- {name} ({path}) -----\n{tail(path, lines)}" for name, path in paths)

    # -- the metadata DB (read-only, with sqlite3: no Airflow import in the test process) ------------

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one read query on the metadata DB."""
        if not self.db_path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def wait_parsed(self, dag_ids: Iterable[str], timeout: float = START_TIMEOUT) -> None:
        """Wait until every DAG id is serialized in the DB (so it can run); fail on import errors."""
        wanted = set(dag_ids)
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            with contextlib.suppress(sqlite3.OperationalError):
                errors = self.query("SELECT filename, stacktrace FROM import_error")
                if errors:
                    raise RuntimeError(f"DAG import errors: {errors}")
                found = {row[0] for row in self.query("SELECT dag_id FROM serialized_dag")}
                if wanted <= found:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"DAGs {sorted(wanted)} not parsed after {timeout} s")
            time.sleep(0.5)

    def trigger(self, dag_id: str) -> str:
        """Trigger a run with the CLI and return its run id."""
        run_id = f"rc_real__{dag_id}__{time.time_ns()}"
        self.cli("dags", "trigger", dag_id, "--run-id", run_id)
        return run_id

    def run_state(self, dag_id: str, run_id: str) -> tuple[str | None, datetime | None, datetime | None]:
        """The run's state, start_date and end_date."""
        rows = self.query(
            "SELECT state, start_date, end_date FROM dag_run WHERE dag_id = ? AND run_id = ?", dag_id, run_id
        )
        if not rows:
            return None, None, None
        state, start, end = rows[0]
        return state, _db_time(start), _db_time(end)

    def task_states(self, dag_id: str, run_id: str) -> dict[tuple[str, int], str | None]:
        """``{(task_id, map_index): state}`` of a run."""
        rows = self.query(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
            dag_id,
            run_id,
        )
        return {(task_id, map_index): state for task_id, map_index, state in rows}

    def wait_run(
        self,
        dag_id: str,
        run_id: str,
        *,
        timeout: float = RUN_TIMEOUT,
        triggered_at: float | None = None,
        on_tick: Callable[[], None] | None = None,
        tick: float = 0.5,
    ) -> RunInfo:
        """Poll the DB until the run is finished (``success`` or ``failed``); call ``on_tick`` meanwhile."""
        started = time.time() if triggered_at is None else triggered_at
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            if on_tick is not None:
                on_tick()
            with contextlib.suppress(sqlite3.OperationalError):
                state, start, end = self.run_state(dag_id, run_id)
                if state in ("success", "failed"):
                    return RunInfo(dag_id, run_id, state, start, end, time.time() - started)
            if time.monotonic() > deadline:
                states = self.task_states(dag_id, run_id)
                raise RuntimeError(f"run {run_id} not finished after {timeout} s; task states: {states}")
            time.sleep(tick)


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
