"""
One Dreamina 4.0 edit per input set, mapped over a list given as a DAG param.

``.expand_kwargs`` maps whole input sets (images and prompt together); each mapped task is its own
paid job with its own ``request_id``, retried on its own. Outputs are copied per set.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_runcomfy.operators.runcomfy import RunComfyDownloadOperator, RunComfyImageEditOperator

with DAG(
    dag_id="runcomfy_batch_edit",
    description="Edit many image sets in parallel, one RunComfy job per set.",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "sets": Param(
            [
                {
                    "image_urls": ["https://example.com/product-1.png"],
                    "prompt": "studio lighting, white background",
                },
                {"image_urls": ["https://example.com/product-2.png"], "prompt": "on a marble table"},
            ],
            type="array",
            description="Input sets: each an object with image_urls (list) and prompt.",
        ),
        "destination": Param("file:///tmp/runcomfy-batch", type="string"),
    },
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(hours=1),
    },
    tags=["runcomfy", "example"],
) as dag:

    @task
    def input_sets(**context) -> list[dict]:
        """Read the sets from the run's params: the list the edits are mapped over."""
        return [{"image_urls": s["image_urls"], "prompt": s["prompt"]} for s in context["params"]["sets"]]

    # [START howto_operator_runcomfy_batch_edit]
    edits = RunComfyImageEditOperator.partial(
        task_id="edit", force_single=True, deferrable=True
    ).expand_kwargs(input_sets())
    # [END howto_operator_runcomfy_batch_edit]

    RunComfyDownloadOperator(
        task_id="keep",
        urls=edits.output,
        destination="{{ params.destination }}/{{ run_id | replace(':', '_') | replace('+', '_') }}",
    )
