"""
What every benchmark part shares: the emulator in its own process, a throwaway Airflow home, and
the measuring helpers (CPU, RSS, TCP connections, percentiles).

Nothing here imports Airflow: the parse-cost part must start from a clean interpreter, and each part
sets its ``AIRFLOW_*`` variables (see :func:`airflow_env`) before it imports Airflow.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_runcomfy.emulator.process import EmulatorProcess

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent
#: The API token the benchmark emulators accept.
TOKEN = "bench-token-5c1d2e3f4a"
#: Where benchmark processes keep compiled bytecode (reused across runs).
PYCACHE = os.path.join(tempfile.gettempdir(), "runcomfy-bench-pycache")
#: The echo model: any JSON in, one PNG out; the cheapest real job of the emulator.
ECHO_MODEL = "runcomfy/emulator/echo"


def scratch_dir(prefix: str) -> str:
    """
    A new directory for throwaway files, under one root per benchmark run.

    ``scripts/bench`` sets ``RUNCOMFY_BENCH_TMP`` and deletes the root at the end; a part run on its
    own makes its root here and deletes it when it exits.
    """
    root = os.environ.get("RUNCOMFY_BENCH_TMP")
    if not root:
        root = os.environ["RUNCOMFY_BENCH_TMP"] = tempfile.mkdtemp(prefix="runcomfy-bench-")
        atexit.register(shutil.rmtree, root, True)
    return tempfile.mkdtemp(prefix=prefix, dir=root)


def airflow_env(home: str | None = None) -> dict[str, str]:
    """
    Environment for a benchmark process: a throwaway ``AIRFLOW_HOME`` and no database access.

    Connections come from ``AIRFLOW_CONN_*`` variables, which Airflow's secrets backends read before
    the metastore, so no process ever opens a database.
    """
    home = home or scratch_dir("home-")
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/unused.db",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
            # Compiled bytecode, as in any real deployment (without it every import compiles from
            # source: 2.7 s for ``import airflow.sdk``), kept outside the venv and the checkout.
            "PYTHONPYCACHEPREFIX": PYCACHE,
        }
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def prepare_process() -> None:
    """Give this process a throwaway ``AIRFLOW_HOME`` and the rest of :func:`airflow_env`, before Airflow."""
    if "airflow" in sys.modules:
        raise RuntimeError("prepare_process() must run before anything imports Airflow")
    os.environ.update(airflow_env())


def runcomfy_conn(base_url: str, **extra: Any) -> str:
    """The ``AIRFLOW_CONN_...`` JSON of a runcomfy connection to the emulator."""
    body: dict[str, Any] = {"conn_type": "runcomfy", "host": base_url, "password": TOKEN}
    if extra:
        body["extra"] = extra
    return json.dumps(body)


def http_conn(base_url: str) -> str:
    """An ``http`` connection to the emulator with the bearer header in its extra (HttpAsyncHook style)."""
    return json.dumps({"conn_type": "http", "host": base_url, "extra": {"Authorization": f"Bearer {TOKEN}"}})


# -- the emulator, in its own process ---------------------------------------------------------------


class Emulator(EmulatorProcess):
    """
    The package's :class:`EmulatorProcess`, started at once, in a scratch directory and the
    benchmark environment, without client-PID lookups (thousands of connections would crawl).

    Its CPU and memory are never counted against the client being measured (:meth:`cpu_seconds` is
    the emulator's own). The control endpoints are not in the request log.
    """

    def __init__(
        self, *, queue_seconds: float = 0.0, run_seconds: float = 10.0, python: str = sys.executable
    ) -> None:
        super().__init__(
            scratch_dir("emulator-"),
            token=TOKEN,
            queue_seconds=queue_seconds,
            run_seconds=run_seconds,
            record_peer_pid=False,
            python=python,
            env=airflow_env(),
        )
        self.start(timeout=30)

    def cpu_seconds(self) -> float:
        """The emulator process's CPU time so far (user + system), from ``/proc``."""
        return proc_cpu_seconds(self.pid)


@contextmanager
def emulator(**knobs: Any) -> Iterator[Emulator]:
    """An :class:`Emulator` for the duration of a ``with`` block."""
    emu = Emulator(**knobs)
    try:
        yield emu
    finally:
        emu.stop()


def submit_jobs(base_url: str, count: int, *, tag: str) -> list[str]:
    """Submit ``count`` echo jobs with one keep-alive connection; return their request ids."""
    import httpx

    ids = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        for i in range(count):
            response = client.post(f"/v1/models/{ECHO_MODEL}", json={"bench": tag, "i": i})
            response.raise_for_status()
            ids.append(response.json()["request_id"])
    return ids


def wait_until_rendered(emu: Emulator, ids: Sequence[str], timeout: float = 300) -> None:
    """
    Wait until the emulator has made every job's output file.

    The emulator makes an echo job's PNG when the job starts (about 10 ms of its CPU each); waiting
    for all of them before measuring keeps that work out of the measured window, where it would
    compete with the measured process for the machine's two cores.
    """
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = {job["request_id"] for job in emu.jobs() if job["output_files"]}
        if wanted <= done:
            return
        time.sleep(0.5)
    raise TimeoutError("the emulator did not make the jobs' outputs in time")


def parse_iso(text: str | None) -> float | None:
    """Epoch seconds of the emulator's ``2026-01-01T00:00:00.000Z`` timestamps."""
    if not text:
        return None
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- measuring --------------------------------------------------------------------------------------


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), from ``/proc/PID/statm``."""
    with open(f"/proc/{pid or 'self'}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tcp_active_opens() -> int:
    """The kernel's count of TCP connections opened by clients on this host (``/proc/net/snmp``)."""
    with open("/proc/net/snmp") as fh:
        lines = [line.split() for line in fh if line.startswith("Tcp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("ActiveOpens")])


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between the closest ranks; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def median(values: Sequence[float]) -> float:
    """The median; NaN when empty."""
    return statistics.median(values) if values else float("nan")


def write_json(path: str | None, data: Any) -> None:
    """Write a part's result for the orchestrator (or print it when no path is given)."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str)
    if path:
        Path(path).write_text(text)
    else:
        print(text)


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, memory, kernel, Python."""
    import platform

    model = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    with open("/proc/meminfo") as fh:
        mem_kib = int(fh.readline().split()[1])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def run_part(module: str, *args: str, log: Path) -> Any:
    """Run ``python -m benchmarks.<module> args`` in its own process and return its JSON."""
    out = Path(tempfile.mkstemp(prefix=f"{module}-", suffix=".json", dir=os.environ["RUNCOMFY_BENCH_TMP"])[1])
    started = time.monotonic()
    print(f"  {module} {' '.join(args)} ...", end="", flush=True)
    with log.open("a") as fh:
        fh.write(f"\n===== {module} {' '.join(args)} =====\n")
        fh.flush()
        subprocess.run(
            [sys.executable, "-m", f"benchmarks.{module}", *args, "--json-out", str(out)],
            cwd=ROOT,
            env=airflow_env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=True,
        )
    print(f" {time.monotonic() - started:.0f} s", flush=True)
    data = json.loads(out.read_text())
    out.unlink()
    return data


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every numeric figure over the runs of one scenario (the rest from the first run)."""
    merged = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            merged[key] = median([run[key] for run in runs])
    merged["runs"] = len(runs)
    return merged
