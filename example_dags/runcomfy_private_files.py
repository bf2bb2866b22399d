"""
Edit images kept in a private bucket or on disk: no public copy, no pre-signed URL.

A media input may be an ``http(s)`` URL RunComfy fetches, a ``data:`` URI, or a file the provider
reads itself: an absolute local path, a ``file://`` URL, or an object-storage URL that Airflow's
``ObjectStoragePath`` understands (``s3://``, ``gs://``, ``az://``...; ``source_conn_id`` names the
storage connection). A file is read (at most one byte past the model's size limit), checked like a
fetched image (format, size, width, height, ratio), and sent inline as a ``data:`` URI, the way
RunComfy's own ComfyUI nodes send media. The request body stays under 64 MiB. XCom, the trigger and
the rendered fields keep the paths you wrote, never the file's bytes.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param

from airflow_provider_runcomfy.operators.runcomfy import RunComfyImageEditOperator

with DAG(
    dag_id="runcomfy_private_files",
    description="Edit images read from a private S3 bucket (or local disk) and sent inline.",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,  # "{{ params.images }}" renders as a list, not its text
    params={
        "images": Param(
            ["s3://my-private-bucket/shoots/2026-12/look-01.jpg", "/data/shoots/2026-12/look-02.png"],
            type="array",
            description="s3://, gs://, file:// or absolute paths (or public URLs), mixed as you like.",
        ),
        "prompt": Param("the same outfit on a beach at golden hour", type="string"),
    },
    tags=["runcomfy", "example"],
):
    # [START howto_operator_runcomfy_private_files]
    edit = RunComfyImageEditOperator(
        task_id="edit_private_images",
        image_urls="{{ params.images }}",
        prompt="{{ params.prompt }}",
        source_conn_id="aws_default",  # the connection of the private bucket
        deferrable=True,
    )
    # [END howto_operator_runcomfy_private_files]
