"""``EmulatorProcess``: the emulator as its own process, for tests and benchmarks of real deployments.

``RunComfyEmulator`` runs in a thread of the caller, which is right for ``dag.test()``. A real
scheduler, triggerer or worker is another process, and a measurement must not count the emulator's
CPU and memory as the client's: then the emulator runs as ``python -m airflow_provider_runcomfy.emulator``
in its own session, says where it listens through a ready file, and is driven through
``EmulatorControl``. The real-process tests, the chaos test, the benchmarks and the soak all use this
one class.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .control import EmulatorControl

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

    from .records import RequestRecord


class EmulatorProcess:
    """
    The emulator CLI in a child process (its own session), with its log in ``workdir``.

    :param workdir: where the ready file and ``emulator.log`` go.
    :param token: the valid API token.
    :param queue_seconds: how long new jobs stay queued (default 0).
    :param run_seconds: how long new jobs run (default 2).
    :param record_peer_pid: log each local client's process id (default on: the real-process tests
        tell the triggerer's polls from the worker's by it).
    :param extra_args: more CLI flags as they are (``--fault-seed``, ``--dialect``...; later ones win).
    :param python: the interpreter to run it with (another venv's, for a peer measured in the same run).
    :param env: the child's environment (default: this process's).
    """

    def __init__(
        self,
        workdir: Path | str,
        *,
        token: str,
        queue_seconds: float = 0.0,
        run_seconds: float = 2.0,
        record_peer_pid: bool = True,
        extra_args: Sequence[str] = (),
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.token = token
        self.queue_seconds = queue_seconds
        self.run_seconds = run_seconds
        self.record_peer_pid = record_peer_pid
        self.extra_args = list(extra_args)
        self.python = python
        self.env = dict(os.environ if env is None else env)
        self.ready_file = self.workdir / "emulator-ready.json"
        self.log_path = self.workdir / "emulator.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.pid = 0
        self._control: EmulatorControl | None = None

    @property
    def control(self) -> EmulatorControl:
        """The control client (``start()`` first)."""
        if self._control is None:
            raise RuntimeError("the emulator process is not started")
        return self._control

    def command(self) -> list[str]:
        """The command line that starts it."""
        return [
            self.python,
            "-m",
            "airflow_provider_runcomfy.emulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ready-file",
            str(self.ready_file),
            *(["--record-peer-pid"] if self.record_peer_pid else []),
            "--queue-seconds",
            str(self.queue_seconds),
            "--run-seconds",
            str(self.run_seconds),
            "--token",
            self.token,
            *self.extra_args,
        ]

    def start(self, timeout: float = 60.0) -> EmulatorProcess:
        """Start it and wait until its ready file says where it listens (its log tail on failure)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(), env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the emulator exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator was not ready in {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)
        info = json.loads(self.ready_file.read_text(encoding="utf-8"))
        self.base_url, self.pid = info["base_url"], int(info["pid"])
        self._control = EmulatorControl(self.base_url, timeout=60.0)
        return self

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of its log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            return f"<cannot read {self.log_path}: {err}>"
        return "\n".join(text.splitlines()[-lines:])

    def conn_json(self) -> str:
        """The ``AIRFLOW_CONN_RUNCOMFY_DEFAULT`` value pointing at it."""
        return json.dumps({"conn_type": "runcomfy", "host": self.base_url, "password": self.token})

    def requests(self) -> list[RequestRecord]:
        """The request log (``GET /_emulator/requests``)."""
        return self.control.requests()

    def clear_requests(self) -> int:
        """Empty the request log; returns how many records were dropped."""
        return self.control.clear_requests()

    def jobs(self) -> list[dict[str, Any]]:
        """Every job it knows (``GET /_emulator/jobs``)."""
        return self.control.jobs()

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs for jobs submitted from now on (``POST /_emulator/config``)."""
        return self.control.configure(**knobs)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to its process group, SIGKILL after ``grace`` seconds; waits for it."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)

    def __enter__(self) -> EmulatorProcess:
        return self if self.proc is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
