"""
The nightly catalog edit: every product photo of the day through one RunComfy model, from one task.

``runcomfy_batch_catalog`` runs the whole list in one ``RunComfyBatchOperator``: every item is checked
(schema, image probes, the batch's cost against ``max_cost_usd``) before anything is paid, up to
``max_in_flight`` jobs run at once, the task waits in the triggerer between refills, and the outputs
are copied to your storage. A few photos may fail (``allow_failures``) without failing the night;
photos the pre-flight refuses are skipped and recorded (``skip_invalid``).

``runcomfy_batch_catalog_chunked`` spreads a very large list over several workers and triggerers: the
list is cut into chunks and one batch task is mapped over them with ``.expand(inputs=...)``, the way
a deployment with Celery or Kubernetes executors and several triggerers shares the load.

Run it, e.g.::

    airflow dags trigger runcomfy_batch_catalog --conf '{"photos": ["https://.../1.png", "https://.../2.png"]}'
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_runcomfy.operators.batch import RunComfyBatchOperator
from airflow_provider_runcomfy.operators.runcomfy import RunComfyDownloadOperator

PARAMS = {
    "photos": Param(
        ["https://example.com/product-1.png", "https://example.com/product-2.png"],
        type="array",
        description="The public URLs of the photos to edit.",
    ),
    "prompt": Param("studio lighting, white background", type="string"),
    "destination": Param("file:///tmp/runcomfy-catalog", type="string"),
    "chunk_size": Param(250, type="integer", minimum=1, description="Photos per batch task (chunked DAG)."),
}
DEFAULTS = {"retries": 2, "retry_delay": timedelta(minutes=1)}


@task
def catalog_inputs(**context: Any) -> list[dict[str, Any]]:
    """One input dict per photo: what each RunComfy job receives."""
    params = context["params"]
    return [
        {"image_urls": [url], "prompt": params["prompt"], "force_single": True} for url in params["photos"]
    ]


@task
def chunks(inputs: list[dict[str, Any]], **context: Any) -> list[list[dict[str, Any]]]:
    """Cut the list into chunks of ``chunk_size``: one batch task each."""
    size = int(context["params"]["chunk_size"])
    return [inputs[start : start + size] for start in range(0, len(inputs), size)]


@task
def made(per_item: Any) -> list[str]:
    """The output URLs of the items that succeeded (a failed or skipped item's entry is ``None``)."""
    flat: list[str] = []

    def visit(value: Any) -> None:
        if isinstance(value, str):
            flat.append(value)
        elif value is not None:
            for child in value:
                visit(child)

    visit(per_item)
    return flat


with DAG(
    dag_id="runcomfy_batch_catalog",
    description="Edit every product photo of the day in one batch task, then keep the outputs.",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params=PARAMS,
    default_args=DEFAULTS,
    tags=["runcomfy", "example"],
):
    # [START howto_operator_runcomfy_batch]
    edits = RunComfyBatchOperator(
        task_id="edit_catalog",
        model_id="bytedance/dreamina-4-0/edit",
        inputs=catalog_inputs(),
        max_in_flight=50,
        deferrable=True,
        allow_failures=5,
        skip_invalid=True,
        max_cost_usd=200,
    )
    RunComfyDownloadOperator(
        task_id="keep",
        urls=made(edits.output),
        destination="{{ params.destination }}/{{ run_id | replace(':', '_') | replace('+', '_') }}",
    )
    # [END howto_operator_runcomfy_batch]

with DAG(
    dag_id="runcomfy_batch_catalog_chunked",
    description="The same edit over a very large list, one batch task per chunk of photos.",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params=PARAMS,
    default_args=DEFAULTS,
    tags=["runcomfy", "example"],
):
    # [START howto_operator_runcomfy_batch_chunks]
    chunked = RunComfyBatchOperator.partial(
        task_id="edit_chunk",
        model_id="bytedance/dreamina-4-0/edit",
        max_in_flight=50,
        deferrable=True,
        allow_failures=5,
        skip_invalid=True,
    ).expand(inputs=chunks(catalog_inputs()))
    RunComfyDownloadOperator(
        task_id="keep",
        urls=made(chunked.output),
        destination="{{ params.destination }}/{{ run_id | replace(':', '_') | replace('+', '_') }}",
    )
    # [END howto_operator_runcomfy_batch_chunks]
