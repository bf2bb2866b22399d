"""
The soak's deployment: a throwaway PostgreSQL cluster, Redis (for Celery), and Airflow 3.3's processes.

Everything listens on 127.0.0.1 on free ports and lives in one work directory; every process runs in
its own session so the soak can kill one (``kill -9`` of its whole process group, as when a pod dies)
and start it again, and :meth:`Deployment.stop` ends them all by PID.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devtools.processes import (
    REPO_ROOT,
    airflow_cli,
    airflow_process,
    base_env,
    free_port,
    process_tree,
    stop_processes,
    tail,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

DAGS_DIR = Path(__file__).resolve().parent / "dags"
DAG_ID = "runcomfy_soak"
START_TIMEOUT = 300.0


def wait_for_port(port: int, timeout: float, alive: Any = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port`` (``alive()`` may raise meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.settimeout(1)
            sock.connect(("127.0.0.1", port))
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listened on 127.0.0.1:{port} after {timeout} s")
        time.sleep(0.5)


class Postgres:
    """A PostgreSQL cluster of Debian's ``postgresql`` package in ``workdir/pg``, run as ``postgres``."""

    def __init__(self, workdir: Path) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
        self.bin = Path(found[-1]).parent
        self.data = workdir / "pg"
        self.port = free_port()
        self.log = workdir / "postgres.log"
        self.version = subprocess.run(
            [str(self.bin / "postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()

    def _as_postgres(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)

    def start(self) -> None:
        """initdb (trust auth, local only), start on 127.0.0.1, create the ``airflow`` database."""
        self.data.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
            os.chmod(self.data.parent, 0o755)
            self.log.touch()
            shutil.chown(self.log, "postgres", "postgres")
        subprocess.run(
            self._as_postgres(
                str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"
            ),
            check=True,
            capture_output=True,
        )
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c max_connections=300"
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        subprocess.run(
            self._as_postgres(
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                options,
                "-w",
                "start",
            ),
            check=True,
            capture_output=True,
        )
        subprocess.run(
            self._as_postgres(
                str(self.bin / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-c",
                "CREATE DATABASE airflow",
            ),
            check=True,
            capture_output=True,
        )

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``airflow`` database."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/airflow"

    def stop(self) -> None:
        """Stop the cluster (immediate mode: it is thrown away)."""
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"),
                check=False,
                capture_output=True,
            )


class Redis:
    """Debian's ``redis-server`` on 127.0.0.1, in memory only (Celery's broker)."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()[2]

    def start(self) -> None:
        """Start it and wait for its port."""
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        with (self.workdir / "redis.log").open("wb") as log:
            self.proc = subprocess.Popen(
                args, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for_port(self.port, 30)

    def stop(self) -> None:
        """Stop it."""
        if self.proc is not None:
            stop_processes([self.proc], grace=10)


class Deployment:
    """
    Airflow 3.3 on PostgreSQL: api-server, dag-processor, scheduler, two triggerers and, with Celery,
    two workers. Each process's output goes to ``<workdir>/<name>.log`` (a restart appends).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        db_url: str,
        executor: str,
        extra_env: dict[str, str],
        broker_url: str | None = None,
        parallelism: int = 4,
    ) -> None:
        self.workdir = workdir
        self.home = workdir / "airflow-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.executor = executor
        self.api_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.restarts: dict[str, int] = {}
        self.env = base_env()
        self.env |= {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor" if executor == "celery" else "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "100000",
            "AIRFLOW__CORE__MAX_MAP_LENGTH": "100000",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "benchmarks.soak.identity.hostname",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": "runcomfy-soak-jwt-secret-0123456789abcdef",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            # A triggerer silent this long is dead: its triggers go to the survivor (default 30 s).
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "PYTHONPATH": str(REPO_ROOT),
        }
        if executor == "celery":
            assert broker_url is not None
            self.env |= {
                "AIRFLOW__CELERY__BROKER_URL": broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(max(1, parallelism // 2)),
            }
        self.env |= extra_env

    # -- processes ----------------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = START_TIMEOUT) -> str:
        """Run ``airflow <args>`` to completion; raise with its output on failure."""
        return airflow_cli(args, env=self.env, workdir=self.workdir, timeout=timeout)

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``airflow <args>`` as ``name`` in its own session; output appended to ``<name>.log``."""
        path = self.workdir / f"{name}.log"
        full_env = self.env | {"RUNCOMFY_SOAK_HOSTNAME": name} | (env or {})
        proc = airflow_process(args, env=full_env, workdir=self.workdir, log_path=path)
        self.procs[name], self.logs[name] = proc, path
        return proc

    def _start(self, name: str) -> None:
        if name == "api-server":
            self.spawn(name, "api-server", "--port", str(self.api_port))
        elif name == "dag-processor":
            self.spawn(name, "dag-processor")
        elif name == "scheduler":
            self.spawn(name, "scheduler")
        elif name.startswith("triggerer"):
            self.spawn(name, "triggerer", "--skip-serve-logs")
        elif name.startswith("worker"):
            self.spawn(name, "celery", "worker", "--skip-serve-logs", "--celery-hostname", f"{name}@soak")
        else:
            raise ValueError(name)

    @property
    def names(self) -> list[str]:
        """The long-running processes of this deployment."""
        names = ["api-server", "dag-processor", "scheduler", "triggerer-1", "triggerer-2"]
        if self.executor == "celery":
            names += ["worker-1", "worker-2"]
        return names

    def start(self) -> None:
        """Migrate the database, then start every process and wait for the API."""
        self.cli("db", "migrate")
        for name in self.names:
            self._start(name)
        wait_for_port(self.api_port, START_TIMEOUT, self.check_alive)

    def check_alive(self, skip: Iterable[str] = ()) -> None:
        """Raise if a long-running process exited by itself (killed ones are in ``skip``)."""
        for name, proc in self.procs.items():
            if name not in skip and proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{tail(self.logs[name])}")

    def kill(self, name: str) -> None:
        """``kill -9`` the process and everything in its group, as when its pod or VM dies."""
        proc = self.procs[name]
        family = process_tree(proc.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in family:  # descendants that left the group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def restart(self, name: str, *, graceful: bool = True, grace: float = 60.0) -> None:
        """Stop (SIGTERM, then SIGKILL after ``grace``) and start again, as a deploy does."""
        if graceful:
            stop_processes([self.procs[name]], grace=grace)
        else:
            self.kill(name)
        self.restarts[name] = self.restarts.get(name, 0) + 1
        self._start(name)

    def revive(self, name: str) -> None:
        """Start a killed process again under the same name."""
        self.restarts[name] = self.restarts.get(name, 0) + 1
        self._start(name)

    def pid(self, name: str) -> int:
        """The PID of a process's current incarnation."""
        return self.procs[name].pid

    def stop(self) -> None:
        """Stop every process and its descendants."""
        stop_processes(self.procs.values())

    # -- the REST API ---------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> Any:
        """Call the public REST API (``/api/v2``; the simple auth manager's all-admins mode)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}/api/v2/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")
