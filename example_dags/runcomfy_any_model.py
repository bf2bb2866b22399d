"""
Run any RunComfy model by its id, with its JSON inputs as RunComfy documents them.

``RunComfyModelOperator`` is what the Dreamina operators are built on. Every model's inputs are checked
against its input schema from RunComfy's catalog before anything is paid for (the two Dreamina models'
schemas also ship with the provider); a model whose schema cannot be found is sent unchecked with a
warning, unless ``strict_schema=True``. Inputs are templated, so they can come from params or XCom.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_runcomfy.operators.runcomfy import RunComfyDownloadOperator, RunComfyModelOperator

with DAG(
    dag_id="runcomfy_any_model",
    description="Run one RunComfy model by id with JSON inputs, keep what it made.",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,  # "{{ params.inputs }}" renders as a dict, not its text
    params={
        "model_id": Param("bytedance/dreamina-4-0/edit", type="string"),
        "inputs": Param(
            {"image_urls": ["https://example.com/reference-1.png"], "prompt": "pencil sketch"},
            type="object",
            description="The model's inputs, as its RunComfy page documents them.",
        ),
        "destination": Param("file:///tmp/runcomfy-any-model", type="string"),
    },
    tags=["runcomfy", "example"],
):
    # [START howto_operator_runcomfy_model]
    run = RunComfyModelOperator(
        task_id="run",
        model_id="{{ params.model_id }}",
        inputs="{{ params.inputs }}",
        deferrable=True,
        poll_interval=5,
        timeout=3600,
    )
    # [END howto_operator_runcomfy_model]
    RunComfyDownloadOperator(
        task_id="keep",
        urls=run.output,
        destination="{{ params.destination }}/{{ run_id | replace(':', '_') | replace('+', '_') }}",
    )
