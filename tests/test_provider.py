"""
The provider as Airflow sees it once installed: the entry point, ``airflow providers list``, the
``runcomfy`` connection type and its form, and the example DAGs importing cleanly.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import airflow_utils as au

ROOT = Path(__file__).resolve().parents[1]


def installed() -> bool:
    return any(
        ep.value == "airflow_provider_runcomfy:get_provider_info"
        for ep in importlib.metadata.entry_points(group="apache_airflow_provider")
    )


needs_install = pytest.mark.skipif(not installed(), reason="the package is not pip-installed here")


@needs_install
def test_airflow_providers_list_shows_the_provider() -> None:
    airflow = Path(sys.executable).parent / "airflow"
    out = subprocess.run(
        [str(airflow), "providers", "list", "--output", "json"], capture_output=True, text=True, check=True
    ).stdout
    providers = {p["package_name"]: p for p in json.loads(out[out.index("[") :])}
    assert "airflow-provider-runcomfy" in providers


@needs_install
def test_connection_form_knows_the_runcomfy_type() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    hook_info = manager.hooks["runcomfy"]
    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_provider_runcomfy.hooks.runcomfy.RunComfyHook"
    assert hook_info.connection_type == "runcomfy"
    behaviour = manager.field_behaviours["runcomfy"]
    assert behaviour["relabeling"] == {"host": "API base URL", "password": "API token"}
    assert "port" in behaviour["hidden_fields"]
    widgets = manager.connection_form_widgets
    assert any(name.endswith("max_retries") for name in widgets), sorted(widgets)[:20]


def test_example_dags_import_cleanly() -> None:
    dags = au.load_dags(ROOT / "example_dags")
    assert {"runcomfy_edit_then_animate", "runcomfy_batch_edit", "runcomfy_submit_then_sense"} <= set(dags)
    animate = dags["runcomfy_edit_then_animate"]
    assert {"edit", "animate", "keep_images", "keep_videos", "summary"} <= set(animate.task_ids)
    assert animate.default_args["retries"] == 2
    if au.AIRFLOW_3 and hasattr(animate, "deadline"):
        assert animate.deadline, "a deadline alert on Airflow 3.1+"


def test_parsing_a_dag_loads_no_pillow_hook_or_emulator() -> None:
    """DAG files import the operators on every parse: the heavy parts load only when a task runs."""
    heavy = (
        "PIL",
        "airflow_provider_runcomfy.emulator",
        "airflow_provider_runcomfy.hooks.runcomfy",
        "airflow_provider_runcomfy.images",
        "airflow_provider_runcomfy.downloads",
    )
    code = (
        "import sys; import airflow_provider_runcomfy.operators.runcomfy;"
        "import airflow_provider_runcomfy.sensors.runcomfy;"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert out == "[]"
