"""
Helpers of this suite. Loading DAG files, running ``dag.test()`` and reading XCom and task states
back on Airflow 2.11 and 3.x are the provider's own ``airflow_provider_runcomfy.testing`` helpers
(what users get from the pytest plugin), re-exported here; this module adds the suite's DAGs and a
stand-in task instance for direct operator calls.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow_provider_runcomfy import testing
from airflow_provider_runcomfy.testing.dags import (
    airflow_major,
    all_xcom_values,
    init_db,
    load_dags,
    task_states,
    xcoms,
)

__all__ = [
    "AIRFLOW_3",
    "FakeTI",
    "all_xcom_values",
    "init_db",
    "load_dags",
    "run_dag",
    "task_states",
    "test_dags",
    "xcoms",
]

AIRFLOW_3 = airflow_major() >= 3


def test_dags(emulator_url: str) -> dict[str, Any]:
    """The DAGs of ``tests/dags``, parsed with the emulator's URL."""
    os.environ["RUNCOMFY_TEST_EMULATOR_URL"] = emulator_url
    return load_dags(Path(__file__).parent / "dags" / "runcomfy_test_dags.py")


def run_dag(dag: Any, run_conf: dict[str, Any] | None = None) -> Any:
    """The plugin's ``run_dag`` (one implementation for users and for this suite)."""
    return testing.run_dag(dag, run_conf=run_conf)


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
