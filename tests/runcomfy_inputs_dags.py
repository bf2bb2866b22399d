"""
DAGs for the input-form tests: private files sent inline, run with ``dag.test()``.

Outside ``tests/dags`` on purpose: the suite's ``run_dag`` serializes DAGs from anywhere. The files
come from the run's conf (``params.images``), so the rendered field is the path the user wrote.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_runcomfy.operators.runcomfy import RunComfyImageEditOperator

with DAG(
    "rc_inputs_local_file",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    params={"images": []},
):
    RunComfyImageEditOperator(
        task_id="edit",
        image_urls="{{ params.images }}",
        prompt="a photo from a private folder",
        deferrable=True,
        poll_interval=0.2,
    )

with DAG(
    "rc_inputs_billed_over_budget",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    params={"images": []},
):
    # The estimate (one output at least, $0.03) is under the limit; the edit returns one image per
    # input, so three inputs are billed $0.09.
    RunComfyImageEditOperator(
        task_id="edit",
        image_urls="{{ params.images }}",
        prompt="three photos, one bill",
        max_cost_usd=0.05,
        poll_interval=0.2,
    )
