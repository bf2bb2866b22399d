"""
New media as an asset: one DAG makes and keeps images, another runs whenever new ones land.

* ``runcomfy_new_media_producer`` edits the reference images with Dreamina 4.0 and copies the
  outputs into your storage. Its download task has the asset as an outlet, so each successful copy
  records an asset event whose ``extra`` says what was stored and which RunComfy jobs made it:
  ``{"stored": [...], "request_ids": [...], "model_ids": [...]}``.
* ``runcomfy_new_media_consumer`` is scheduled on that asset: Airflow starts a run for new events,
  and its task reads the stored locations from the events that triggered it (no XCom of another DAG).

On Airflow 2.11 ``Asset`` is a ``Dataset`` and the context key is ``triggering_dataset_events``;
``airflow.providers.common.compat.sdk.Asset`` and the lookup below make one file work on both.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Asset, Param, task

from airflow_provider_runcomfy.operators.runcomfy import RunComfyDownloadOperator, RunComfyImageEditOperator

#: The asset both DAGs name: "new edited images from RunComfy". Any URI of your choosing.
# [START howto_asset_runcomfy_new_media]
NEW_MEDIA = Asset("runcomfy://example/edited-images")
# [END howto_asset_runcomfy_new_media]

START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG(
    dag_id="runcomfy_new_media_producer",
    description="Edit reference images and keep them; every copy is an event of the new-media asset.",
    schedule=None,
    start_date=START,
    catchup=False,
    render_template_as_native_obj=True,
    params={
        "images": Param(["https://example.com/reference-1.png"], type="array"),
        "prompt": Param("golden hour light, soft film grain", type="string", maxLength=800),
        "destination": Param("file:///tmp/runcomfy-new-media", type="string"),
    },
    tags=["runcomfy", "example", "assets"],
):
    edit = RunComfyImageEditOperator(
        task_id="edit",
        image_urls="{{ params.images }}",
        prompt="{{ params.prompt }}",
        deferrable=True,
    )
    # [START howto_operator_runcomfy_download_outlet]
    RunComfyDownloadOperator(
        task_id="keep",
        urls=edit.output,
        destination="{{ params.destination }}/{{ run_id | replace(':', '_') | replace('+', '_') }}",
        outlets=[NEW_MEDIA],
    )
    # [END howto_operator_runcomfy_download_outlet]

with DAG(
    dag_id="runcomfy_new_media_consumer",
    description="Runs when new RunComfy media lands; lists what was stored and by which jobs.",
    schedule=[NEW_MEDIA],
    start_date=START,
    catchup=False,
    tags=["runcomfy", "example", "assets"],
):
    # [START howto_asset_runcomfy_consumer]
    @task
    def catalogue(**context: Any) -> list[dict[str, Any]]:
        """One entry per triggering event: the stored files, the requests and models that made them."""
        events = context.get("triggering_asset_events") or context.get("triggering_dataset_events") or {}
        entries = []
        for asset_events in events.values():
            for event in asset_events:
                extra = event.extra or {}
                for path in extra.get("stored", []):
                    print(f"new media: {path} (requests {extra.get('request_ids')})")
                entries.append(
                    {
                        "stored": extra.get("stored", []),
                        "request_ids": extra.get("request_ids", []),
                        "model_ids": extra.get("model_ids", []),
                    }
                )
        return entries

    catalogue()
    # [END howto_asset_runcomfy_consumer]
