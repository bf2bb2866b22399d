"""
Run the README's code blocks as a user would copy them, and fail on any that breaks.

THE CONVENTION (for everyone who adds a README section):

* Every fenced block tagged ``bash``, ``sh``, ``shell`` or ``python`` RUNS, in README order, unless
  the line right before its opening fence is one of these markers:

  - ``<!-- readme-check: skip (REASON) -->``: never run. The reason is required, e.g.
    ``(needs a real token)``, ``(installs into the current environment)``, ``(takes minutes: scripts/test)``.
  - ``<!-- readme-check: background (REASON) -->``: a shell block that starts a server. It is started
    in the background, must print a first line on stdout within 60 s (then later blocks run while it
    lives) and is stopped at the end.
  - ``<!-- readme-check: lines N[,M...] (REASON) -->``: run only the listed lines (1-based) of a
    shell block, e.g. ``scripts/demo`` but not ``scripts/test`` (this suite) from the same block.
  - ``<!-- readme-check: file PATH -->``: not run; written to ``PATH`` in a scratch directory (a DAG
    file, a test file) for a test that uses it (``tests/test_readme.py`` runs the pytest example).
  - ``<!-- example: example_dags/FILE.py#REGION -->`` (``tests/test_docs.py``'s marker): not run
    here. The block is a region of an example DAG, kept identical to it by ``tests/test_docs.py``;
    the suite runs that DAG whole, where the region's names are defined.

* Blocks without a language, or with another one (output samples, diagrams, tables), never run.
* Shell blocks run one by one with ``bash -e`` (as typed: no pipefail) in the repository root
  (what a fresh clone has), with the test environment's ``bin`` first on ``PATH`` (``python``,
  ``airflow``, ``pytest``), a throwaway ``AIRFLOW_HOME`` and no ``AIRFLOW_CONN_*`` variable;
  ``export`` does not carry over to the next block, so a block must set what it needs.
* Python blocks run in one interpreter, in README order, sharing one namespace (a later block may use
  a name an earlier one defined, as a reader would), in the repository root, after the shell blocks
  (background servers still run then).
* An unknown marker, or a ``skip`` without a reason, is an error: the convention cannot rot silently.

``python tests/readme_check.py [README.md]`` runs the check by hand and exits non-zero on a failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_LANGUAGES = {"bash": "shell", "sh": "shell", "shell": "shell", "python": "python"}
_MARKER = re.compile(r"^<!--\s*readme-check:\s*(?P<kind>\w+)\s*(?P<arg>.*?)\s*-->$")
_EXAMPLE = re.compile(r"^<!--\s*example:\s*(?P<path>\S+)\s*-->$")
_FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")


class ReadmeCheckError(Exception):
    """A README block that failed, or a marker that breaks the convention."""


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts (1-based line of its fence), its language, code and marker."""

    line: int
    lang: str
    code: str
    marker: str | None = None  # skip, background, file
    arg: str = ""

    @property
    def kind(self) -> str | None:
        """``shell``, ``python`` or ``None`` (never run)."""
        return RUN_LANGUAGES.get(self.lang)


def parse(text: str) -> list[Block]:
    """Every fenced block of ``text`` with the marker right before it; bad markers raise."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            if "readme-check" in lines[i] and not (i + 1 < len(lines) and lines[i + 1].startswith("```")):
                raise ReadmeCheckError(
                    f"README line {i + 1}: a readme-check marker must be right before a fence"
                )
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        marker = arg = None
        if start > 0 and (m := _MARKER.match(lines[start - 1].strip())):
            marker, arg = m["kind"], m["arg"]
            if marker not in ("skip", "background", "file", "lines"):
                raise ReadmeCheckError(f"README line {start}: unknown readme-check marker {marker!r}")
            if marker == "lines" and not re.fullmatch(r"\d+(,\d+)* \(.+\)", arg):
                raise ReadmeCheckError(
                    f"README line {start}: 'lines' needs line numbers and a reason: 1,3 (why)"
                )
            if marker in ("skip", "background") and not re.fullmatch(r"\(.+\)", arg):
                raise ReadmeCheckError(f"README line {start}: '{marker}' needs a reason in parentheses")
            if marker == "file" and not arg:
                raise ReadmeCheckError(f"README line {start}: 'file' needs a path")
        elif start > 0 and (m := _EXAMPLE.match(lines[start - 1].strip())):
            marker, arg = "skip", f"(a region of {m['path']}: the suite runs that DAG whole)"
        blocks.append(Block(start + 1, fence["lang"], "\n".join(body) + "\n", marker, arg or ""))
    return blocks


def check_env(bin_dir: Path, airflow_home: Path) -> dict[str, str]:
    """A new user's shell: the test environment's tools first, a throwaway Airflow, no connections."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RUNCOMFY", "PYTEST"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["AIRFLOW_HOME"] = str(airflow_home)
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    return env


_PYTHON_RUNNER = """
import json, sys, traceback
namespace = {"__name__": "__readme__"}
for line, code in json.load(open(sys.argv[1])):
    try:
        exec(compile(code, f"README.md:{line}", "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"README python block at line {line} failed", file=sys.stderr)
        sys.exit(1)
"""


def run(readme: Path, *, root: Path = ROOT, scratch: Path | None = None, timeout: float = 300) -> list[str]:
    """Run every runnable block of ``readme``; return a log line per block; raise on the first failure.

    ``file`` blocks are written under ``scratch`` (a new temporary directory when not given).
    """
    blocks = parse(readme.read_text(encoding="utf-8"))
    scratch = scratch or Path(tempfile.mkdtemp(prefix="readme-check-"))
    env = check_env(Path(sys.executable).parent, scratch / "airflow-home")
    # scripts/demo keeps its outputs and work folder in the scratch directory, not in the checkout
    env["RUNCOMFY_DEMO_OUTPUT"] = str(scratch / "demo-output")
    env["RUNCOMFY_DEMO_WORK"] = str(scratch / "demo-work")
    log: list[str] = []
    background: list[subprocess.Popen[str]] = []
    python_blocks: list[tuple[int, str]] = []
    try:
        for block in blocks:
            where = f"{readme.name}:{block.line}"
            if block.marker == "file":
                target = scratch / block.arg
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.code, encoding="utf-8")
                log.append(f"{where} written to {block.arg}")
            elif block.kind is None:
                continue
            elif block.marker == "skip":
                log.append(f"{where} skipped {block.arg}")
            elif block.marker == "background":
                if block.kind != "shell":
                    raise ReadmeCheckError(f"{where}: only shell blocks can run in the background")
                background.append(_start_background(block, where, root, env))
                log.append(f"{where} started in the background")
            elif block.kind == "shell":
                code = block.code
                if block.marker == "lines":
                    wanted = [int(n) for n in block.arg.split(" ", 1)[0].split(",")]
                    code = "\n".join(block.code.splitlines()[n - 1] for n in wanted) + "\n"
                result = _run_command(["bash", "-e", "-c", code], root, env, timeout)
                if result.returncode != 0:
                    raise ReadmeCheckError(
                        f"{where}: shell block exited {result.returncode}\n{block.code}\n"
                        f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
                    )
                log.append(f"{where} ran" + (f" lines {block.arg}" if block.marker == "lines" else ""))
            else:
                python_blocks.append((block.line, block.code))
                log.append(f"{where} ran (python)")
        if python_blocks:
            blocks_file = scratch / "python-blocks.json"
            blocks_file.write_text(json.dumps(python_blocks), encoding="utf-8")
            result = _run_command(
                [sys.executable, "-c", _PYTHON_RUNNER, str(blocks_file)], root, env, timeout
            )
            if result.returncode != 0:
                raise ReadmeCheckError(f"python blocks failed:\n{result.stderr[-5000:]}")
    finally:
        for proc in background:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return log


def _run_command(
    command: list[str], root: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """One block's process in the repository root, its output captured for the failure message."""
    return subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _start_background(block: Block, where: str, root: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start a server block; wait for its first stdout line (it is ready then), or fail."""
    proc = subprocess.Popen(
        ["bash", "-e", "-c", f"exec {block.code.strip()}"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    first = proc.stdout.readline()
    if not first or time.monotonic() > deadline:
        proc.kill()
        _, err = proc.communicate()
        raise ReadmeCheckError(f"{where}: background block printed nothing and exited: {err[-2000:]}")
    return proc


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "README.md"
    try:
        for entry in run(target):
            print(entry)
    except ReadmeCheckError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
