"""
DAGs for the any-model tests: models known only from the emulator's catalog, run with ``dag.test()``.

Outside ``tests/dags`` on purpose: the suite's ``run_dag`` serializes DAGs from anywhere.

The inputs come from the run's conf (``params.inputs``), so one DAG covers every refusal case.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_runcomfy.operators.runcomfy import RunComfyModelOperator

DEMO_IMAGE = "runcomfy/emulator/demo-image"
DEMO_VIDEO = "runcomfy/emulator/demo-video"
START = pendulum.datetime(2026, 1, 1, tz="UTC")


def _dag(dag_id: str) -> DAG:
    return DAG(
        dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        render_template_as_native_obj=True,
        params={"inputs": {}},
    )


with _dag("rc_catalog_image"):
    RunComfyModelOperator(
        task_id="generate",
        model_id=DEMO_IMAGE,
        inputs="{{ params.inputs }}",
        deferrable=True,
        poll_interval=0.2,
    )

with _dag("rc_catalog_video_sync"):
    RunComfyModelOperator(
        task_id="generate", model_id=DEMO_VIDEO, inputs="{{ params.inputs }}", poll_interval=0.2
    )

with _dag("rc_catalog_budget"):
    RunComfyModelOperator(
        task_id="generate",
        model_id=DEMO_IMAGE,
        inputs="{{ params.inputs }}",
        max_cost_usd=0.05,
        deferrable=True,
        poll_interval=0.2,
    )

with _dag("rc_catalog_strict"):
    RunComfyModelOperator(
        task_id="generate",
        model_id=DEMO_IMAGE,
        inputs="{{ params.inputs }}",
        strict_schema=True,
        deferrable=True,
        poll_interval=0.2,
    )
