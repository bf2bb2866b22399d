"""
DAGs for ``tests/test_real_processes.py``: four RunComfy image edits fanned out with ``.expand()``.

A real scheduler, triggerer (and, on Airflow 3, a DAG processor and an execution API server) parse
and run this file with ONE worker slot. ``rc_real_fanout_deferrable`` waits in the triggerer, so all
four paid jobs should run at the same time; ``rc_real_fanout_sync`` is the same DAG waiting in the
worker, one job after the other. The emulator's URL comes from ``RUNCOMFY_REAL_EMULATOR_URL``, set by
the test in every Airflow process's environment.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_runcomfy.operators.runcomfy import RunComfyImageEditOperator

EMULATOR = os.environ.get("RUNCOMFY_REAL_EMULATOR_URL", "http://127.0.0.1:9")
#: One input image per mapped task: the emulator's three demo samples and one generated JPEG.
IMAGES = [
    [f"{EMULATOR}/samples/portrait.png"],
    [f"{EMULATOR}/samples/landscape.jpg"],
    [f"{EMULATOR}/samples/square.png"],
    [f"{EMULATOR}/images/gen?w=900&h=700&fmt=jpeg"],
]

for deferrable in (True, False):
    with DAG(
        f"rc_real_fanout_{'deferrable' if deferrable else 'sync'}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        tags=["runcomfy-test"],
    ):
        RunComfyImageEditOperator.partial(
            task_id="edit",
            prompt="the same scene at golden hour",
            size="1024x1024",
            force_single=True,
            validate_images=True,
            deferrable=deferrable,
            poll_interval=1,
        ).expand(image_urls=IMAGES)
