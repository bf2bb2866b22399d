"""
The main job: run the example DAG ``runcomfy_edit_then_animate`` end to end through Airflow.

Without a token it starts the bundled RunComfy emulator (a separate process on 127.0.0.1), runs the
DAG against it with the emulator's sample images, copies every output into ``./demo-output/`` and
prints what was made. With ``RUNCOMFY_API_TOKEN`` set it runs against the real RunComfy API instead
(and spends money): give your own public image URLs in ``RUNCOMFY_DEMO_IMAGES`` (space separated).

Airflow's own logs go to ``.demo/airflow.log`` so the table stays readable. ``RUNCOMFY_DEMO_OUTPUT``
and ``RUNCOMFY_DEMO_WORK`` move the outputs and the work folder elsewhere (the test suite's runs of
the demo use a temporary folder, never the checkout).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("RUNCOMFY_DEMO_WORK", ROOT / ".demo")).resolve()
OUTPUT = Path(os.environ.get("RUNCOMFY_DEMO_OUTPUT", ROOT / "demo-output")).resolve()
DAG_ID = "runcomfy_edit_then_animate"

os.environ["AIRFLOW_HOME"] = str(WORK / "airflow-home")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "example_dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{WORK / 'airflow-home' / 'airflow.db'}"


def say(message: str) -> None:
    print(message, flush=True)


@contextmanager
def emulator() -> Iterator[str]:
    """Start ``python -m airflow_provider_runcomfy.emulator`` on a free port; stop it by PID afterwards."""
    ready = Path(tempfile.mkdtemp(prefix="runcomfy-demo-")) / "ready.json"
    token = "demo-token"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_runcomfy.emulator",
            "--port",
            "0",
            "--token",
            token,
            "--queue-seconds",
            "1",
            "--run-seconds",
            "2",
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the emulator did not start")
            time.sleep(0.05)
        base_url = json.loads(ready.read_text())["base_url"]
        say(f"RunComfy emulator running at {base_url} (pid {proc.pid})")
        os.environ["AIRFLOW_CONN_RUNCOMFY_DEFAULT"] = json.dumps(
            {"conn_type": "runcomfy", "host": base_url, "password": token}
        )
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        say(f"RunComfy emulator stopped (pid {proc.pid})")
        shutil.rmtree(ready.parent, ignore_errors=True)


@contextmanager
def quiet_airflow(log_file: Path) -> Iterator[None]:
    """Send Airflow's console output (task logs, structlog) to a file while the DAG runs."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_file, "ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def dimensions(path: Path) -> str:
    """Width x height of an image (Pillow) or of a Motion-JPEG AVI (its ``avih`` header); '-' otherwise."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            return f"{image.width}x{image.height}"
    except Exception:
        pass
    head = path.read_bytes()[:4096]
    at = head.find(b"avih")
    if head[:4] == b"RIFF" and at >= 0:
        width, height = struct.unpack_from("<II", head, at + 8 + 32)
        return f"{width}x{height}"
    return "-"


def run_dag(images: list[str]) -> Any:
    """One ``dag.test()`` run of the example DAG with the provider's own helper (what users get from
    its pytest plugin); it drops the DAG's deadline alert, which ``dag.test()`` on 3.3 cannot handle."""
    from airflow_provider_runcomfy.testing import run_dag as dag_test

    conf = {"images": images, "destination": OUTPUT.as_uri()}
    return dag_test(ROOT / "example_dags" / f"{DAG_ID}.py", run_conf=conf, dag_id=DAG_ID)


def xcom(run: Any, task_id: str, key: str = "return_value") -> dict[int, Any]:
    from airflow_provider_runcomfy.testing import xcoms

    return {index: value for (task, index), value in xcoms(run, key).items() if task == task_id}


#: The table must fit a 120-column terminal; the file column wraps at "/" to stay within it.
TABLE_WIDTH = 120
#: Request ids are UUIDs; the first 8 hex digits tell the jobs of one run apart.
SHORT_ID = 8


def shown_path(path: Path) -> str:
    """``path`` relative to the current directory when it is inside it (``demo-output/...``)."""
    return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)


def wrap_path(text: str, width: int) -> list[str]:
    """Split a path into lines of at most ``width`` characters, after a "/" where possible."""
    lines: list[str] = []
    line = ""
    for part in (p + "/" for p in text.split("/")):
        if len(line) + len(part) > width and line:
            lines.append(line)
            line = ""
        while len(part) > width:
            lines.append(part[:width])
            part = part[width:]
        line += part
    lines.append(line[:-1])  # the trailing "/" added to the last part
    return [x for x in lines if x]


def render_table(rows: list[tuple[str, str, str]]) -> list[str]:
    """The demo's table of (task, request id, stored location): sizes from disk, dimensions from headers."""
    header = ("task", "request", "size", "dimensions", "file")
    cells: list[tuple[str, str, str, str, str]] = []
    for task, request_id, stored in rows:
        path = Path(unquote(urlsplit(stored).path)) if stored.startswith("file:") else Path(stored)
        cells.append(
            (task, request_id[:SHORT_ID], f"{path.stat().st_size:,} B", dimensions(path), shown_path(path))
        )
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(4)]
    file_width = TABLE_WIDTH - sum(widths) - 2 * len(widths)
    widths.append(max(len(line) for row in [header, *cells] for line in wrap_path(row[4], file_width)))
    out = []
    for n, row in enumerate([header, *cells]):
        wrapped = wrap_path(row[4], file_width)
        first = (*row[:4], wrapped[0])
        out.append(
            "  ".join(
                c.rjust(w) if i == 2 else c.ljust(w)
                for i, (c, w) in enumerate(zip(first, widths, strict=True))
            ).rstrip()
        )
        out.extend((" " * (sum(widths[:4]) + 8) + more) for more in wrapped[1:])
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def main() -> int:
    token = os.environ.get("RUNCOMFY_API_TOKEN")
    WORK.mkdir(parents=True, exist_ok=True)
    log_file = WORK / "airflow.log"
    if token:
        images = os.environ.get("RUNCOMFY_DEMO_IMAGES", "").split()
        if not images:
            say("RUNCOMFY_DEMO_IMAGES must list your public JPEG/PNG image URLs (space separated).")
            return 2
        os.environ["AIRFLOW_CONN_RUNCOMFY_DEFAULT"] = json.dumps({"conn_type": "runcomfy", "password": token})
        say("Running against the real RunComfy API (this spends credits).")
        runner: Any = nullcontext("")
    else:
        runner = emulator()

    with runner as base_url:
        if not token:
            images = [f"{base_url}/samples/portrait.png", f"{base_url}/samples/landscape.jpg"]
        say(f"Running DAG {DAG_ID} with {len(images)} reference images; Airflow's log: {log_file}")
        started = time.monotonic()
        with quiet_airflow(log_file):
            run = run_dag(images)
        say(f"DAG run {run.run_id}: {run.state} in {time.monotonic() - started:.1f} s")
        if run.state != "success":
            say(f"The run failed; see {log_file}")
            return 1

        edit_id = xcom(run, "edit", "request_id")[-1]
        animate_ids = xcom(run, "animate", "request_id")
        rows = [("edit", edit_id, path) for path in xcom(run, "keep_images")[-1]]
        rows += [("animate", animate_ids[i], path) for i, path in enumerate(xcom(run, "keep_videos")[-1])]

    say("")
    for line in render_table(rows):
        say(line)
    say(f"\n{len(rows)} files in {shown_path(OUTPUT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
