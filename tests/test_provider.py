"""
The provider as Airflow sees it once installed: the entry point, ``airflow providers list``, the
``runcomfy`` connection type and its form, and the example DAGs importing cleanly.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import airflow_utils as au


def import_string(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


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
    assert {"schema", "login"} <= set(behaviour["hidden_fields"])
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


# -- provider.yaml: the one description ------------------------------------------------------------


def airflow_schema(name: str) -> dict[str, Any]:
    """A JSON schema that the installed Airflow ships and its providers manager validates with."""
    return json.loads((importlib.resources.files("airflow") / name).read_text(encoding="utf-8"))


def test_provider_info_validates_against_airflows_schema() -> None:
    import jsonschema

    from airflow_provider_runcomfy import __version__, get_provider_info

    info = get_provider_info()
    jsonschema.validate(info, airflow_schema("provider_info.schema.json"))
    # The hook's snake_case form of the same behaviour, as Airflow 2.11 checks it.
    from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook

    jsonschema.validate(
        RunComfyHook.get_ui_field_behaviour(), airflow_schema("customized_form_field_behaviours.schema.json")
    )
    assert info["versions"] == [__version__], "the version comes from __version__ only"
    assert info["package-name"] == importlib.metadata.metadata("airflow-provider-runcomfy")["Name"]


def test_provider_info_names_only_things_that_exist() -> None:
    """Every module, class and file that provider.yaml names is importable or shipped."""
    from airflow.providers.common.compat.sdk import BaseOperatorLink

    import airflow_provider_runcomfy as pkg

    info = pkg.get_provider_info()
    for kind in ("hooks", "operators", "sensors", "triggers"):
        (entry,) = info[kind]
        assert entry["integration-name"] == "RunComfy"
        for module in entry["python-modules"]:
            importlib.import_module(module)
    (conn_type,) = info["connection-types"]
    hook = import_string(conn_type["hook-class-name"])
    assert hook.conn_type == conn_type["connection-type"]
    assert hook.hook_name == conn_type["hook-name"]
    assert info["extra-links"], "the operators' links are declared"
    for path in info["extra-links"]:
        assert issubclass(import_string(path), BaseOperatorLink), path
    (integration,) = info["integrations"]
    logo = Path(pkg.__file__).parent / integration["logo"].lstrip("/")
    assert logo.is_file()
    assert logo.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hook_form_and_provider_info_share_one_source() -> None:
    """Airflow 2.11 asks the hook for the form; 3.2+ reads provider info: both say the same."""
    from airflow_provider_runcomfy import CONN_FIELDS, UI_FIELD_BEHAVIOUR, get_provider_info
    from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook

    (conn_type,) = get_provider_info()["connection-types"]
    behaviour = conn_type["ui-field-behaviour"]
    assert RunComfyHook.get_ui_field_behaviour() == {
        "hidden_fields": behaviour["hidden-fields"],
        "relabeling": behaviour["relabeling"],
        "placeholders": behaviour["placeholders"],
    }
    assert RunComfyHook.get_ui_field_behaviour() == UI_FIELD_BEHAVIOUR
    assert conn_type["conn-fields"] == CONN_FIELDS
    assert set(CONN_FIELDS) == {
        "max_retries",
        "retry_backoff",
        "retry_max_delay",
        "connect_timeout",
        "read_timeout",
    }
    widgets = RunComfyHook.get_connection_form_widgets()
    if widgets:  # Airflow 2.11's Flask form
        assert set(widgets) == set(CONN_FIELDS)
    # A caller editing what it got back cannot change what the next caller sees.
    get_provider_info()["connection-types"][0]["hook-name"] = "changed"
    assert get_provider_info()["connection-types"][0]["hook-name"] == "RunComfy"


def test_importing_the_package_reads_no_yaml() -> None:
    """The providers manager and every DAG file import the package: provider.yaml waits to be asked."""
    code = (
        "import airflow_provider_runcomfy as p; before = p._provider_yaml.cache_info().currsize;"
        "p.get_provider_info(); print(before, p._provider_yaml.cache_info().currsize)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    assert out == ["0", "1"]


@needs_install
def test_providers_manager_registers_the_links() -> None:
    """What lets Airflow 2.11 deserialize a DAG whose tasks carry the links (3.x lists them too)."""
    from airflow.providers_manager import ProvidersManager

    from airflow_provider_runcomfy import get_provider_info

    registered = set(ProvidersManager().extra_links_class_names)
    assert set(get_provider_info()["extra-links"]) <= registered
