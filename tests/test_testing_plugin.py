"""
The pytest plugin the provider ships (``airflow_provider_runcomfy.testing``): its fixtures, its
``dag.test()`` helper for DAG objects, and that it stays out of the way of other test suites.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import pytest

from airflow_provider_runcomfy.testing.dags import dags_folder
from tests import airflow_utils as au
from tests.test_readme import run_pytest

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_runcomfy.emulator import RunComfyEmulator


def test_emulator_fixture_defaults_and_connection(runcomfy_emulator: RunComfyEmulator) -> None:
    assert runcomfy_emulator.running
    assert (runcomfy_emulator.queue_seconds, runcomfy_emulator.run_seconds) == (0.2, 0.5)
    conn = json.loads(os.environ["AIRFLOW_CONN_RUNCOMFY_DEFAULT"])
    assert conn == {"conn_type": "runcomfy", "host": runcomfy_emulator.base_url, "password": "emulator-token"}


@pytest.mark.runcomfy_emulator(run_seconds=2, failure_message="boom", balance=0, token="my-token")
def test_emulator_fixture_takes_arguments_from_the_marker(runcomfy_emulator: RunComfyEmulator) -> None:
    assert runcomfy_emulator.run_seconds == 2
    assert runcomfy_emulator.failure_message == "boom"
    assert runcomfy_emulator.balance == 0
    assert json.loads(os.environ["AIRFLOW_CONN_RUNCOMFY_DEFAULT"])["password"] == "my-token"


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
    result = run_pytest(tmp_path, *args, env=env)
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


def test_run_dag_runs_a_dag_file_outside_the_dags_folder(emu: object, tmp_path: Path) -> None:
    """A user's DAG file elsewhere, importing a module beside it: it runs, and nothing is copied."""
    (tmp_path / "my_prompts.py").write_text('PROMPT = "from a module beside the DAG"\n')
    dag_file = tmp_path / "my_outside_dag.py"
    dag_file.write_text(
        "from airflow.providers.common.compat.sdk import DAG\n"
        "from airflow_provider_runcomfy.operators.runcomfy import RunComfyImageEditOperator\n"
        "from my_prompts import PROMPT\n"
        "with DAG('outside_dag', schedule=None, params={'image': ''}) as dag:\n"
        "    RunComfyImageEditOperator(task_id='edit', image_urls=['{{ params.image }}'], prompt=PROMPT,\n"
        "                              deferrable=True, poll_interval=0.2)\n"
    )
    image = emu.sample_url("landscape.jpg")  # type: ignore[attr-defined]
    suite_files = sorted(p.name for p in dags_folder().glob("*.py"))
    run_ = au.run_dag(dag_file, run_conf={"image": image})
    assert run_.state == "success", au.task_states(run_)
    [submit] = [r for r in emu.requests if r.method == "POST"]  # type: ignore[attr-defined]
    assert submit.body == {"image_urls": [image], "prompt": "from a module beside the DAG"}
    assert "runcomfy_test_dags.py" in suite_files
    assert sorted(p.name for p in dags_folder().glob("*.py")) == suite_files  # no copy
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".py") == [
        "my_outside_dag.py",
        "my_prompts.py",
    ]
