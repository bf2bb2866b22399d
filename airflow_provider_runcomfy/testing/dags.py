"""Run a DAG with ``dag.test()`` the same way on Airflow 3.3 and 2.11, and read its results back.

Airflow 3's ``dag.test()`` creates its run from the DAG's *serialized* form in the metadata
database, so a DAG that only exists in memory fails with "Cannot create DagRun ... because the dag
is not serialized". ``run_dag`` closes that gap:

- a DAG **file** is parsed where it is, like Airflow parses it (its own directory goes on
  ``sys.path`` so modules beside it still import);
- a DAG (from a file, or an object built in a test or fixture) that is not inside the configured
  DAGs folder is serialized into the metadata database under the ``dags-folder`` bundle, exactly
  what the DAG processor would have written after parsing it there. A DAG inside the DAGs folder
  needs nothing: ``dag.test()`` parses that folder itself.

Nothing is copied or written next to the user's files: an earlier version copied outside files into
the DAGs folder, which, when that folder is a source tree (this project's ``tests/dags``, a user's
``dags/``), leaves stray copies behind.

Airflow 2.11 runs any DAG object as it is. Both lines need the metadata database of the throwaway
``AIRFLOW_HOME``, created here once per process. Airflow is imported only inside the functions.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def airflow_major() -> int:
    """The installed Airflow's major version (imports Airflow)."""
    return int(importlib.import_module("airflow").__version__.split(".")[0])


@functools.cache
def init_db() -> None:
    """Create (or migrate) the metadata database once per process: under 1 s on SQLite."""
    from airflow.utils import db

    db.initdb()


def dags_folder() -> Path:
    """The DAGs folder Airflow is configured with."""
    from airflow.configuration import conf

    return Path(os.path.expanduser(conf.get("core", "dags_folder"))).resolve()


def load_dags(path: Path | str) -> dict[str, Any]:
    """Parse a DAG file (or folder) the way Airflow does; return its DAGs by id. Import errors raise."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    kwargs: dict[str, Any] = {"dag_folder": str(path)}
    if airflow_major() < 3:
        kwargs["include_examples"] = False
    bag = DagBag(**kwargs)
    if bag.import_errors:
        raise ValueError(f"DAG file {path} does not import: {bag.import_errors}")
    return dict(bag.dags)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder)


def _dag_from_file(path: Path, dag_id: str | None) -> Any:
    """Parse the file where it is and pick its DAG (``dag_id``, or its only one)."""
    path = path.resolve()
    # Airflow puts the DAGs folder on sys.path, not a DAG file's own directory: keep the modules
    # beside the file importable (parsing happens in this process).
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    dags = load_dags(path)
    if dag_id is not None:
        if dag_id not in dags:
            raise KeyError(f"no DAG {dag_id!r} in {path}; it defines {sorted(dags)}")
        return dags[dag_id]
    if len(dags) != 1:
        raise ValueError(f"{path} defines {len(dags)} DAGs ({sorted(dags)}): pass dag_id")
    return next(iter(dags.values()))


def _serialize_into_db(dag: Any) -> None:
    """Write an in-memory DAG to the metadata DB under the ``dags-folder`` bundle (Airflow 3 only).

    ``sync_bag_to_db`` is what the DAG processor calls after parsing a folder; it serializes each DAG
    (the same round trip ``dag.test()`` then makes, so serialization bugs still surface here).
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db

    class _OneDag:
        """The part of a ``DagBag`` ``sync_bag_to_db`` reads."""

        dags = {dag.dag_id: dag}  # noqa: RUF012 - one instance, never mutated
        import_errors: dict[str, str] = {}  # noqa: RUF012
        dag_warnings: set[Any] = set()  # noqa: RUF012
        file_last_changed: dict[str, Any] = {}  # noqa: RUF012
        bundle_path = None

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(_OneDag(), "dags-folder", None)  # type: ignore[arg-type]


def run_dag(
    dag: Any,
    *,
    run_conf: dict[str, Any] | None = None,
    dag_id: str | None = None,
    keep_deadlines: bool = False,
) -> Any:
    """Run ``dag`` (a DAG object, or the path of a DAG file) once with ``dag.test()``; return the run.

    Deferrable tasks run their trigger inline, after the serialize round trip a triggerer would
    make. Check ``run.state == "success"``, then ``task_states(run)`` and ``xcoms(run)``.

    :param dag: a DAG object, or a ``.py`` file defining it (anywhere: nothing is copied)
    :param run_conf: the run's ``conf`` (what ``dag_run.conf`` and ``params`` see)
    :param dag_id: which DAG of a file that defines several
    :param keep_deadlines: Airflow 3.3's ``dag.test()`` crashes when a run of a DAG with a deadline
        alert finishes (it looks the alert up by ids only a scheduler-serialized DAG has), so
        deadlines are dropped from the DAG object by default; the scheduler handles them in production.
    """
    init_db()
    if isinstance(dag, str | os.PathLike):
        dag = _dag_from_file(Path(dag), dag_id)
    if airflow_major() >= 3 and not _inside(Path(dag.fileloc), dags_folder()):
        _serialize_into_db(dag)
    if not keep_deadlines and getattr(dag, "deadline", None):
        log.info("dag.test(): dropping the deadline alerts of %s (the scheduler evaluates them)", dag.dag_id)
        dag.deadline = None
    streams = (sys.stdout, sys.stderr)
    try:
        return dag.test(run_conf=run_conf) if run_conf is not None else dag.test()
    finally:
        _drop_handlers_on(streams)


def _drop_handlers_on(streams: tuple[Any, ...]) -> None:
    """
    Remove the log handlers ``dag.test()`` bound to this run's ``sys.stdout`` or ``sys.stderr``.

    Airflow 2's ``dag.test()`` adds a ``StreamHandler(sys.stdout)`` once per process; under pytest
    that stream is the current test's capture, closed when the test ends, and every later test would
    print "Logging error" tracebacks (which repeat the log lines). The next ``dag.test()`` adds a
    handler on its own stream again.
    """
    for logger in (logging.getLogger(), logging.getLogger("airflow.task")):
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler and handler.stream in streams:
                logger.removeHandler(handler)


def _session() -> Any:
    from airflow.utils.session import create_session

    return create_session()


def task_states(dag_run: Any) -> dict[tuple[str, int], str]:
    """``{(task_id, map_index): state}`` of a finished run (``map_index`` is -1 for unmapped tasks)."""
    from airflow.models.taskinstance import TaskInstance

    with _session() as session:
        rows = (
            session.query(TaskInstance)
            .filter(TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)
            .all()
        )
        return {
            (ti.task_id, ti.map_index): str(ti.state.value if hasattr(ti.state, "value") else ti.state)
            for ti in rows
        }


def _xcom_rows(dag_run: Any, key: str | None) -> list[tuple[str, int, Any]]:
    """(task_id, map_index, value) of a run's XComs, deserialized on either Airflow line."""
    try:
        from airflow.models.xcom import XComModel as Row  # type: ignore[attr-defined]
    except ImportError:  # Airflow 2
        from airflow.models.xcom import BaseXCom as Row  # type: ignore[no-redef]

    airflow_3 = airflow_major() >= 3
    with _session() as session:
        query = session.query(Row).filter(Row.dag_id == dag_run.dag_id, Row.run_id == dag_run.run_id)
        if key is not None:
            query = query.filter(Row.key == key)
        return [
            (r.task_id, r.map_index, Row.deserialize_value(r) if airflow_3 else r.value) for r in query.all()
        ]


def xcoms(dag_run: Any, key: str = "return_value") -> dict[tuple[str, int], Any]:
    """``{(task_id, map_index): value}`` of one XCom key in a run, e.g. ``xcoms(run)[("edit", -1)]``."""
    return {(task_id, index): value for task_id, index, value in _xcom_rows(dag_run, key)}


def all_xcom_values(dag_run: Any) -> list[Any]:
    """Every XCom value of a run, whatever its key (for checks that a secret is in none of them)."""
    return [value for _, _, value in _xcom_rows(dag_run, None)]
