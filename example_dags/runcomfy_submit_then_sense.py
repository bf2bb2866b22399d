"""
Submit without waiting, wait elsewhere with a deferrable sensor, then keep the outputs.

Useful when submission and waiting belong to different tasks (or DAGs): the submit task returns
the ``request_id`` at once, the sensor waits in the triggerer and returns the output URLs.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_runcomfy.operators.runcomfy import RunComfyDownloadOperator, RunComfyImageEditOperator
from airflow_provider_runcomfy.sensors.runcomfy import RunComfyRequestSensor

with DAG(
    dag_id="runcomfy_submit_then_sense",
    description="Submit a Dreamina 4.0 edit, wait with a deferrable sensor, copy the result.",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    params={
        "images": Param(["https://example.com/reference-1.png"], type="array"),
        "prompt": Param("turn it into a watercolour", type="string", maxLength=800),
        "destination": Param("file:///tmp/runcomfy-sensed", type="string"),
    },
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["runcomfy", "example"],
) as dag:
    # [START howto_operator_runcomfy_submit_only]
    submit = RunComfyImageEditOperator(
        task_id="submit",
        image_urls="{{ params.images }}",
        prompt="{{ params.prompt }}",
        wait_for_completion=False,  # return_value is the request_id
    )
    # [END howto_operator_runcomfy_submit_only]

    # [START howto_sensor_runcomfy_request]
    wait = RunComfyRequestSensor(
        task_id="wait",
        request_id=submit.output,
        deferrable=True,
        poke_interval=5,
        timeout=3600,
    )
    # [END howto_sensor_runcomfy_request]

    RunComfyDownloadOperator(
        task_id="keep",
        urls=wait.output,
        destination="{{ params.destination }}/{{ run_id | replace(':', '_') | replace('+', '_') }}",
    )
