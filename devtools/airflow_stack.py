"""
A real Airflow deployment for tests, benchmarks and scripts: :class:`AirflowStack`.

Airflow 3.3 runs ``scheduler`` (LocalExecutor), ``triggerer``, ``dag-processor`` and ``api-server``;
Airflow 2.11 runs ``scheduler`` (SequentialExecutor: it refuses LocalExecutor on SQLite) and
``triggerer``; all from a throwaway ``AIRFLOW_HOME`` on SQLite, each process's output in its own log,
every process stopped by PID. Used by the real-process test, the worker-slot benchmark and
``scripts/ui_check.py``.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from devtools.processes import airflow_cli, airflow_process, base_env, free_port, stop_processes, tail

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Iterable
    from pathlib import Path

AIRFLOW_VERSION = version("apache-airflow")
AIRFLOW_3 = int(AIRFLOW_VERSION.split(".")[0]) >= 3
#: Generous deadlines: the machine may be small and shared.
START_TIMEOUT = 180.0
RUN_TIMEOUT = 240.0


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
