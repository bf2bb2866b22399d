"""
The README as a new user meets it: its shell and Python blocks run as written (``readme_check.py``
holds the convention) and its pytest example passes with the shipped plugin. The reference pages in
``docs/`` that the README links to (every page without example-file regions, which
``tests/test_docs.py`` checks instead) run the same way, so nothing moved out of the README goes
unchecked.
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.readme_check import ROOT, ReadmeCheckError, check_env, parse, run

if TYPE_CHECKING:
    from pathlib import Path

README = ROOT / "README.md"
#: The docs pages whose blocks run as written: every page that shows no region of an example DAG
#: (those fragments are compared to their files by tests/test_docs.py, and are not whole programs).
RUN_PAGES = sorted(
    page for page in (ROOT / "docs").glob("*.md") if "<!-- example:" not in page.read_text(encoding="utf-8")
)


def run_pytest(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """pytest in a fresh process, as a user would start it in ``cwd`` (no AIRFLOW_* of this suite)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env or check_env(ROOT, cwd),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_readme_blocks_run_as_written(tmp_path: Path) -> None:
    log = run(README, scratch=tmp_path)
    assert any(entry.endswith("ran (python)") for entry in log)
    assert any(entry.endswith(" ran") for entry in log)
    assert any("started in the background" in entry for entry in log)
    # scripts/demo ran, and kept its outputs in the scratch directory, not in the checkout
    stored = sorted(p.suffix for p in (tmp_path / "demo-output").rglob("*") if p.is_file())
    assert stored == [".avi", ".avi", ".png", ".png"]


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: p.name)
def test_docs_pages_run_as_written(tmp_path: Path, page: Path) -> None:
    log = run(page, scratch=tmp_path)
    assert len(log) == sum(1 for b in parse(page.read_text(encoding="utf-8")) if b.kind or b.marker == "file")


def test_the_moved_reference_blocks_run() -> None:
    """The blocks that left the README (the emulator, any model, cost) are among the ones that run."""
    names = {page.name for page in RUN_PAGES}
    assert {"emulator.md", "any-model.md", "cost.md", "connection.md"} <= names
    runnable = [b for page in RUN_PAGES for b in parse(page.read_text(encoding="utf-8")) if b.kind]
    assert sum(b.kind == "python" and b.marker is None for b in runnable) >= 3
    assert any(b.marker == "background" for b in runnable)


def test_readme_user_test_passes_with_the_plugin(tmp_path: Path) -> None:
    """The README's DAG file and pytest test, written as shown, pass in a new project directory."""
    files = [b for b in parse(README.read_text(encoding="utf-8")) if b.marker == "file"]
    assert {b.arg for b in files} == {"dags/edit_portrait.py", "tests/test_edit_portrait.py"}
    for block in files:
        (tmp_path / block.arg).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / block.arg).write_text(block.code, encoding="utf-8")
    env = check_env(ROOT, tmp_path)
    del env["AIRFLOW_HOME"]  # the plugin's throwaway home, as on a user's machine
    del env["AIRFLOW__CORE__LOAD_EXAMPLES"]
    result = run_pytest(tmp_path, "tests/test_edit_portrait.py", env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "1 passed" in result.stdout


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("```bash\nfalse\n```\n", "shell block exited 1"),
        ("```python\nraise SystemExit(3)\n```\n", "python blocks failed"),
        ("<!-- readme-check: skip -->\n```bash\nfalse\n```\n", "needs a reason"),
        ("<!-- readme-check: later (x) -->\n```bash\ntrue\n```\n", "unknown readme-check marker"),
        ("<!-- readme-check: lines 2 (only the second) -->\n```bash\ntrue\nfalse\n```\n", "exited 1"),
        ("<!-- readme-check: lines 1 -->\n```bash\ntrue\n```\n", "needs line numbers and a reason"),
    ],
)
def test_the_check_fails_on_a_broken_block_or_marker(tmp_path: Path, block: str, message: str) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n```\nan output sample is never run\n```\n\n{block}", encoding="utf-8")
    with pytest.raises(ReadmeCheckError, match=message):
        run(readme, root=tmp_path, scratch=tmp_path)


def test_an_example_dag_region_is_not_run_on_its_own() -> None:
    """A region of an example DAG needs the DAG's other names: the suite runs the DAG whole instead."""
    text = "<!-- example: example_dags/x.py#region -->\n```python\nundefined_name()\n```\n"
    (block,) = parse(text)
    assert block.marker == "skip"
    assert "example_dags/x.py#region" in block.arg
