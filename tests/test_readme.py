"""
The README as a new user meets it: its shell and Python blocks run as written (``readme_check.py``
holds the convention), its pytest example passes with the shipped plugin, and the plugin stays out
of the way of other test suites.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests import airflow_utils as au
from tests.readme_check import ROOT, ReadmeCheckError, check_env, parse, run

if TYPE_CHECKING:
    from pathlib import Path

README = ROOT / "README.md"


def _pytest(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
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
    result = _pytest(tmp_path, "tests/test_edit_portrait.py", env=env)
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


_UNRELATED_TEST = """
import os, sys

def test_unrelated():
    assert "airflow" not in sys.modules  # the plugin imported nothing heavy
    with open("seen.txt", "w") as fh:
        fh.write(os.environ.get("AIRFLOW_HOME", "<unset>"))
"""


@pytest.mark.parametrize(
    ("args", "user_home", "expected"),
    [
        ((), None, "runcomfy-airflow-home-"),  # a throwaway home when the user set none
        ((), "/tmp/users-own-airflow-home", "/tmp/users-own-airflow-home"),  # the user's is kept
        (("-p", "no:runcomfy"), None, "<unset>"),  # opted out: nothing set
    ],
)
def test_the_plugin_stays_out_of_other_suites(
    tmp_path: Path, args: tuple[str, ...], user_home: str | None, expected: str
) -> None:
    (tmp_path / "test_unrelated.py").write_text(_UNRELATED_TEST, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
    if user_home:
        env["AIRFLOW_HOME"] = user_home
    result = _pytest(tmp_path, *args, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert expected in (tmp_path / "seen.txt").read_text()


def test_run_dag_runs_a_dag_object_built_in_a_test(emu: object) -> None:
    """A DAG defined here (outside the DAGs folder) runs: Airflow 3 gets it serialized first."""
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_runcomfy.operators.runcomfy import RunComfyImageEditOperator

    with DAG("readme_inline_dag", schedule=None) as dag:
        RunComfyImageEditOperator(
            task_id="edit",
            image_urls=[emu.sample_url("square.png")],  # type: ignore[attr-defined]
            prompt="inline",
            deferrable=True,
            poll_interval=0.2,
        )
    run_ = au.run_dag(dag)
    assert run_.state == "success", au.task_states(run_)
    [url] = au.xcoms(run_)[("edit", -1)]
    assert url.startswith(emu.base_url)  # type: ignore[attr-defined]
