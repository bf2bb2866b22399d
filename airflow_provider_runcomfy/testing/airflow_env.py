"""A throwaway ``AIRFLOW_HOME`` for tests, set up before anything imports Airflow.

Airflow reads its configuration once, when it is first imported, so a test run that wants its own
metadata database must set the variables before that. The pytest plugin does it in
``pytest_load_initial_conftests`` (before any conftest or test module is imported), and only when
the user has not configured Airflow: if ``AIRFLOW_HOME`` or ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``
is already set, or Airflow is already imported, nothing is changed. That keeps the plugin harmless
for other test suites in the same environment (they either configure Airflow themselves or do not
use it), while a new user's ``dag.test()`` never touches ``~/airflow``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

#: Variables that mean "the user configured Airflow": the plugin leaves everything alone then.
USER_SETTINGS = ("AIRFLOW_HOME", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")

_created: Path | None = None


def user_configured_airflow() -> bool:
    """Whether Airflow is already configured for this process (by the user, or by an import)."""
    return "airflow" in sys.modules or any(name in os.environ for name in USER_SETTINGS)


def isolated_airflow_env(*, dags_folder: Path | str | None = None, force: bool = False) -> Path | None:
    """Point Airflow at a fresh temporary home (SQLite DB inside, removed at exit); return it.

    Sets ``AIRFLOW_HOME``, ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``, ``AIRFLOW__CORE__DAGS_FOLDER``
    (``dags_folder``, else an empty ``$AIRFLOW_HOME/dags``: Airflow 3's ``dag.test()`` parses it on
    every run, so an empty one keeps that cheap) and turns off example DAGs. Without ``force`` it
    does nothing and returns ``None`` when ``user_configured_airflow()``; with ``force`` (this
    project's suite) it replaces any home. Calling it again reuses the home it made, only moving the
    DAGs folder.
    """
    global _created
    if "airflow" in sys.modules:  # too late: Airflow has read its configuration
        if force:
            raise RuntimeError("Airflow is already imported: set up its environment before importing it")
        return _created
    if not force and _created is None and user_configured_airflow():
        return None
    if _created is None:
        _created = Path(tempfile.mkdtemp(prefix="runcomfy-airflow-home-"))
        atexit.register(shutil.rmtree, _created, ignore_errors=True)
    home = _created
    dags = Path(dags_folder) if dags_folder is not None else home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home / 'airflow.db'}"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    return home
