"""
Processes that tests, benchmarks and scripts start and stop themselves: the emulator as its own
process (the package's ``EmulatorProcess`` with a clean environment), and the helpers to give a child
a clean environment, find its descendants and stop them all by PID.

Shared by the real-process test (a real Airflow deployment), the trigger chaos test (thousands of
triggers against an emulator whose CPU and memory are not the test process's), the benchmarks and the
soak.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from airflow_provider_runcomfy.emulator.process import EmulatorProcess as _EmulatorProcess

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence


REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = REPO_ROOT / "tests"
AIRFLOW_BIN = Path(sys.executable).parent / "airflow"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env() -> dict[str, str]:
    """
    ``os.environ`` without any Airflow setting, with this checkout importable and this venv first.

    The pytest process carries conftest's ``AIRFLOW_*`` variables: none of them may leak into the
    processes under test. The venv's ``bin`` goes first on ``PATH`` because Airflow 2's executors
    start ``airflow tasks run`` by name.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("AIRFLOW", "_AIRFLOW")) or k.startswith("RUNCOMFY_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    env["PATH"] = os.pathsep.join([str(AIRFLOW_BIN.parent), os.environ.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def process_tree(pid: int) -> set[int]:
    """``pid`` and all its descendants alive now (empty when ``pid`` is gone)."""
    try:
        parent = psutil.Process(pid)
        return {pid, *(child.pid for child in parent.children(recursive=True))}
    except psutil.Error:
        return set()


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], grace: float = 20.0) -> None:
    """
    Stop processes this test started, and everything they started, by PID.

    Each was started in its own session, so SIGTERM goes to its process group; descendants that
    moved to a group of their own (Airflow 2's task runner does) are signalled one by one. After
    ``grace`` seconds, whatever is left is killed.
    """
    procs = [p for p in procs if p is not None]
    family: list[psutil.Process] = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            family.extend(psutil.Process(proc.pid).children(recursive=True))
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
    for child in family:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    _, alive = psutil.wait_procs(family, timeout=max(0.1, deadline - time.monotonic()))
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=10)


def tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a log file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        return f"<cannot read {path}: {err}>"
    return "\n".join(text.splitlines()[-lines:])


class EmulatorProcess(_EmulatorProcess):
    """The package's ``EmulatorProcess`` with the tests' clean environment (:func:`base_env`)."""

    def __init__(self, workdir: Path, **kwargs: Any) -> None:
        kwargs.setdefault("env", base_env())
        super().__init__(workdir, **kwargs)


def airflow_cli(args: Sequence[str], *, env: dict[str, str], workdir: Path, timeout: float) -> str:
    """
    Run ``airflow <args>`` to completion and return its output; raise with the output on failure.

    Every call and its output are appended to ``<workdir>/cli.log``.
    """
    result = subprocess.run(
        [str(AIRFLOW_BIN), *args],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    with (workdir / "cli.log").open("a", encoding="utf-8") as log:
        log.write(f"$ airflow {' '.join(args)}  -> {result.returncode}\n{output}\n")
    if result.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} exited {result.returncode}:\n{output[-4000:]}")
    return output


def airflow_process(
    args: Sequence[str], *, env: dict[str, str], workdir: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    """Start ``airflow <args>`` in its own session (its group can be signalled), output appended to a log."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [str(AIRFLOW_BIN), *args],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
