"""
Small helpers that hide the differences between Airflow 2.11 and 3.x in tests: loading DAG files,
running ``dag.test()``, and reading XCom and task states back from the metadata database.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

AIRFLOW_3 = int(importlib.import_module("airflow").__version__.split(".")[0]) >= 3


@functools.cache
def init_db() -> None:
    """Create the metadata database of the throwaway ``AIRFLOW_HOME`` once per test session."""
    from airflow.utils import db

    db.initdb()


def load_dags(path: Path | str) -> dict[str, Any]:
    """Parse DAG files the way Airflow does and return the DAGs by id; import errors fail loudly."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag

    kwargs: dict[str, Any] = {"dag_folder": str(path)}
    if not AIRFLOW_3:
        kwargs["include_examples"] = False
    bag = DagBag(**kwargs)
    assert not bag.import_errors, bag.import_errors
    return dict(bag.dags)


def test_dags(emulator_url: str) -> dict[str, Any]:
    """The DAGs of ``tests/dags``, parsed with the emulator's URL."""
    os.environ["RUNCOMFY_TEST_EMULATOR_URL"] = emulator_url
    return load_dags(Path(__file__).parent / "dags" / "runcomfy_test_dags.py")


def run_dag(dag: Any, run_conf: dict[str, Any] | None = None) -> Any:
    """Run a DAG with ``dag.test()`` (triggers run inline after a serialize round trip) and return the run."""
    init_db()
    streams = (sys.stdout, sys.stderr)
    try:
        return dag.test(run_conf=run_conf) if run_conf is not None else dag.test()
    finally:
        _drop_handlers_on(streams)


def _drop_handlers_on(streams: tuple[Any, ...]) -> None:
    """
    Remove the log handlers ``dag.test()`` bound to this test's ``sys.stdout`` or ``sys.stderr``.

    Airflow 2's ``dag.test()`` adds a ``StreamHandler(sys.stdout)`` once per process; under pytest
    that stream is the current test's capture, closed when the test ends, and every later test would
    print "Logging error" tracebacks (which repeat the log lines). The next ``dag.test()`` adds a
    handler on its own test's stream again.
    """
    for logger in (logging.getLogger(), logging.getLogger("airflow.task")):
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler and handler.stream in streams:
                logger.removeHandler(handler)


def task_states(dag_run: Any) -> dict[tuple[str, int], str]:
    """``{(task_id, map_index): state}`` of a finished run."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(TaskInstance)
            .filter(TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)
            .all()
        )
        return {
            (ti.task_id, ti.map_index): str(ti.state.value if hasattr(ti.state, "value") else ti.state)
            for ti in rows
        }


def xcoms(dag_run: Any, key: str = "return_value") -> dict[tuple[str, int], Any]:
    """``{(task_id, map_index): value}`` of one XCom key in a run, deserialized on either Airflow."""
    from airflow.utils.session import create_session

    try:
        from airflow.models.xcom import XComModel as Row
    except ImportError:  # Airflow 2
        from airflow.models.xcom import BaseXCom as Row

    with create_session() as session:
        rows = (
            session.query(Row)
            .filter(Row.dag_id == dag_run.dag_id, Row.run_id == dag_run.run_id, Row.key == key)
            .all()
        )
        if AIRFLOW_3:
            return {(r.task_id, r.map_index): Row.deserialize_value(r) for r in rows}
        return {(r.task_id, r.map_index): r.value for r in rows}


def all_xcom_values(dag_run: Any) -> list[Any]:
    """Every XCom value of a run, whatever its key (for secrecy checks)."""
    from airflow.utils.session import create_session

    try:
        from airflow.models.xcom import XComModel as Row
    except ImportError:
        from airflow.models.xcom import BaseXCom as Row

    with create_session() as session:
        rows = session.query(Row).filter(Row.dag_id == dag_run.dag_id, Row.run_id == dag_run.run_id).all()
        return [Row.deserialize_value(r) if AIRFLOW_3 else r.value for r in rows]


class FakeTI:
    """
    The part of a task instance an operator's ``execute()`` touches, for calling it directly.

    Direct calls test the operator's logic (what it sends, what it pushes) without a DAG run; the
    ``dag.test()`` tests cover the same paths in real Airflow.
    """

    stats_tags: dict[str, str] = {}  # noqa: RUF012 - read by ResumableJobMixin's metrics

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def extra_link(dag: Any, dag_run: Any, task_id: str, name: str, map_index: int = -1) -> str | None:
    """
    An extra link of one task instance, resolved the way the Airflow UI resolves it.

    The UI draws links from the *serialized* DAG: on Airflow 3 the API server's operator reads the
    ``_link_<class>`` XCom that the worker wrote when the task ended; on Airflow 2.11 the webserver
    deserializes the task (the link class must be registered, here through provider info) and calls
    its ``get_link``. ``None`` means no such link at all; ``""`` a link with nothing to open yet.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    if AIRFLOW_3:
        from airflow.models.serialized_dag import SerializedDagModel

        serialized = SerializedDagModel.get_dag(dag.dag_id)
    else:
        from airflow.serialization.serialized_objects import SerializedDAG

        serialized = SerializedDAG.from_dict(SerializedDAG.to_dict(dag))
    task = serialized.get_task(task_id)
    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter(
                TaskInstance.dag_id == dag.dag_id,
                TaskInstance.run_id == dag_run.run_id,
                TaskInstance.task_id == task_id,
                TaskInstance.map_index == map_index,
            )
            .one()
        )
        return task.get_extra_links(ti, name)
