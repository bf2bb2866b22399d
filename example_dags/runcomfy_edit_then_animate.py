"""
Edit reference images with Dreamina 4.0, animate every result with Dreamina 3.0 Pro, keep the files.

The idioms worth copying:

* ``deferrable=True``: while RunComfy works, the tasks wait in the triggerer and hold no worker slot;
* ``.partial(...).expand(image_url=edit.output)``: one video per edited image, however many there are
  (the operators' ``return_value`` is the list of output URLs, so it can be mapped over);
* ``RunComfyDownloadOperator`` copies every output into your own storage in the same run, because
  RunComfy's output links are temporary;
* retries with a delay, an ``execution_timeout``, and (Airflow 3.1+) a deadline alert. A retry never
  pays twice for a job that is still running on Airflow 3.3+ (see the README).

Run it against the bundled emulator with ``scripts/demo``, or trigger it with your own images::

    airflow dags trigger runcomfy_edit_then_animate --conf '{"images": ["https://.../a.png",
        "https://.../b.jpg"], "destination": "s3://my-bucket/runcomfy"}'
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_runcomfy.operators.runcomfy import (
    RunComfyDownloadOperator,
    RunComfyImageEditOperator,
    RunComfyImageToVideoOperator,
)

try:  # Deadline alerts came with Airflow 3.1; on older versions the DAG simply has none.
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    deadline: Any = DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(hours=2),
        callback=AsyncCallback(
            "airflow_provider_runcomfy.callbacks.warn_run_is_late",
            kwargs={"what": "runcomfy_edit_then_animate"},
        ),
    )
except ImportError:
    deadline = None

with DAG(
    dag_id="runcomfy_edit_then_animate",
    description="Edit two reference images, animate every output, copy images and videos to storage.",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,  # "{{ params.images }}" renders as a list, not its text
    params={
        "images": Param(
            ["https://example.com/reference-1.png", "https://example.com/reference-2.jpg"],
            type="array",
            description="Public JPEG/PNG URLs of the reference images.",
        ),
        "prompt": Param("golden hour light, soft film grain", type="string", maxLength=800),
        "motion": Param("slow push-in, gentle wind", type="string", maxLength=800),
        "destination": Param(
            "file:///tmp/runcomfy-outputs",
            type="string",
            description="Where outputs are kept: a local path, file://, s3://, gs://...",
        ),
    },
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(hours=1),
    },
    tags=["runcomfy", "example"],
    **({"deadline": deadline} if deadline is not None else {}),
) as dag:
    # [START howto_operator_runcomfy_image_edit]
    edit = RunComfyImageEditOperator(
        task_id="edit",
        image_urls="{{ params.images }}",
        prompt="{{ params.prompt }}",
        size="2048x2048",
        deferrable=True,
    )
    # [END howto_operator_runcomfy_image_edit]

    # [START howto_operator_runcomfy_image_to_video]
    animate = RunComfyImageToVideoOperator.partial(
        task_id="animate",
        prompt="{{ params.motion }}",
        frames=121,
        deferrable=True,
    ).expand(image_url=edit.output)
    # [END howto_operator_runcomfy_image_to_video]

    # [START howto_operator_runcomfy_download]
    keep_images = RunComfyDownloadOperator(
        task_id="keep_images",
        urls=edit.output,
        destination="{{ params.destination }}/{{ run_id | replace(':', '_') | replace('+', '_') }}/images",
    )
    # [END howto_operator_runcomfy_download]
    keep_videos = RunComfyDownloadOperator(
        task_id="keep_videos",
        urls=animate.output,
        destination="{{ params.destination }}/{{ run_id | replace(':', '_') | replace('+', '_') }}/videos",
    )

    @task
    def summary(images: list[str], videos: list[str], **context: Any) -> dict[str, Any]:
        """One line per kept file in the log, and a small dict downstream tasks or people can read."""
        ti = context["ti"]
        request_ids = {
            "edit": ti.xcom_pull(task_ids="edit", key="request_id"),
            "animate": ti.xcom_pull(task_ids="animate", key="request_id"),
        }
        for path in [*images, *videos]:
            print(f"kept {path}")
        return {"images": images, "videos": videos, "request_ids": request_ids}

    summary(keep_images.output, keep_videos.output)
