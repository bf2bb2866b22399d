"""The ``runcomfy`` pytest plugin: offline tests of your own RunComfy DAGs.

Loaded automatically in every pytest run of an environment where the provider is installed
(entry point group ``pytest11``), so it is careful:

- it imports only the standard library and pytest when it loads; the emulator and Airflow are
  imported when a fixture is used;
- it sets up a throwaway ``AIRFLOW_HOME`` (see ``airflow_env``) only when the user has not
  configured Airflow, before any conftest is imported, and says so in pytest's header;
- ``-p no:runcomfy`` turns all of it off.

Fixtures:

- ``runcomfy_emulator``: a started ``RunComfyEmulator`` with ``AIRFLOW_CONN_RUNCOMFY_DEFAULT`` set to
  it for the test, stopped afterwards. Quick jobs by default (0.2 s queued, 0.5 s running); change
  any constructor argument with ``@pytest.mark.runcomfy_emulator(run_seconds=2, balance=1, ...)``.
- ``runcomfy_dag_test``: ``airflow_provider_runcomfy.testing.run_dag`` (a DAG object or file through
  ``dag.test()`` on Airflow 3.3 and 2.11 alike).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .airflow_env import isolated_airflow_env

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_runcomfy.emulator import RunComfyEmulator

#: Job durations of the fixture's emulator unless a marker says otherwise: quick, but still long
#: enough that a deferrable task really defers and polls.
EMULATOR_DEFAULTS: dict[str, Any] = {"queue_seconds": 0.2, "run_seconds": 0.5}

_home_key = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Before any conftest imports Airflow: a throwaway home, unless the user configured Airflow."""
    home = isolated_airflow_env()
    if home is not None:
        early_config.stash[_home_key] = str(home)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "runcomfy_emulator(**kwargs): RunComfyEmulator arguments for the runcomfy_emulator fixture",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    home = config.stash.get(_home_key, None)
    if home is None:
        return None
    return f"runcomfy: throwaway AIRFLOW_HOME={home} (set AIRFLOW_HOME to use yours; -p no:runcomfy: off)"


@pytest.fixture
def runcomfy_emulator(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunComfyEmulator]:
    """A RunComfy emulator on 127.0.0.1, wired to the ``runcomfy_default`` connection for this test."""
    from airflow_provider_runcomfy.emulator import RunComfyEmulator

    marker = request.node.get_closest_marker("runcomfy_emulator")
    kwargs = {**EMULATOR_DEFAULTS, **(marker.kwargs if marker else {})}
    with RunComfyEmulator(**kwargs) as emulator:
        monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", emulator.connection_json())
        yield emulator


@pytest.fixture
def runcomfy_dag_test() -> Callable[..., Any]:
    """``run_dag(dag_or_file, *, run_conf=None, dag_id=None)``: one ``dag.test()`` run, returned."""
    from .dags import run_dag

    return run_dag
