"""
DAGs for the operator tests, run with ``dag.test()`` against the emulator.

Airflow 3's ``dag.test()`` only runs DAGs from files in the DAGs folder, so they live here. The
emulator's URL comes from ``RUNCOMFY_TEST_EMULATOR_URL``, set by the tests before they parse this file.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.compat.sdk import DAG, Asset, task

from airflow_provider_runcomfy.operators.runcomfy import (
    RunComfyDownloadOperator,
    RunComfyImageEditOperator,
    RunComfyImageToVideoOperator,
    RunComfyModelOperator,
)
from airflow_provider_runcomfy.sensors.runcomfy import RunComfyRequestSensor

EMULATOR = os.environ.get("RUNCOMFY_TEST_EMULATOR_URL", "http://127.0.0.1:9")
PORTRAIT = f"{EMULATOR}/samples/portrait.png"
LANDSCAPE = f"{EMULATOR}/samples/landscape.jpg"
START = pendulum.datetime(2026, 1, 1, tz="UTC")


@task
def collect(urls: list[str]) -> list[str]:
    """Gather the mapped outputs into one flat list, as a downstream task would."""
    return [url for item in urls for url in (item if isinstance(item, list) else [item])]


for deferrable in (True, False):
    with DAG(
        f"rc_edit_then_animate_{'deferrable' if deferrable else 'sync'}",
        schedule=None,
        start_date=START,
        catchup=False,
    ):
        edit = RunComfyImageEditOperator(
            task_id="edit",
            image_urls=[PORTRAIT, LANDSCAPE],
            prompt="golden hour light, film grain",
            size="2048x2048",
            deferrable=deferrable,
            poll_interval=0.2,
        )
        animate = RunComfyImageToVideoOperator.partial(
            task_id="animate",
            prompt="slow push-in, leaves moving in the wind",
            frames=121,
            deferrable=deferrable,
            poll_interval=0.2,
        ).expand(image_url=edit.output)
        collect.override(task_id="videos")(animate.output)

with DAG("rc_submit_then_sense", schedule=None, start_date=START, catchup=False):
    submit = RunComfyImageEditOperator(
        task_id="submit",
        image_urls=[PORTRAIT],
        prompt="watercolour",
        wait_for_completion=False,
    )
    RunComfyRequestSensor(
        task_id="sense",
        request_id=submit.output,
        deferrable=True,
        poke_interval=0.2,
        timeout=120,
    )

# One edit, waited for with different timeouts: the default (an hour), 1 s (the timeout tests), and
# 20 s for the dialect tests: long enough for any wait that ends as it should, short enough that a
# wait which does not end fails its test in seconds instead of hanging it.
for deferrable in (True, False):
    mode = "deferrable" if deferrable else "sync"
    for name, timeout in (("single_edit", 3600), ("short_timeout", 1), ("dialect", 20)):
        with DAG(f"rc_{name}_{mode}", schedule=None, start_date=START, catchup=False):
            RunComfyImageEditOperator(
                task_id="edit",
                image_urls=[PORTRAIT],
                prompt="pencil sketch",
                deferrable=deferrable,
                poll_interval=0.2,
                timeout=timeout,
            )

with DAG("rc_any_model", schedule=None, start_date=START, catchup=False, render_template_as_native_obj=True):
    RunComfyModelOperator(
        task_id="echo",
        model_id="runcomfy/emulator/echo",
        inputs={"prompt": "{{ dag_run.run_id }}", "numbers": [1, 2, 3]},
        deferrable=True,
        poll_interval=0.2,
    )

for deferrable in (True, False):
    with DAG(
        f"rc_durable_{'deferrable' if deferrable else 'sync'}",
        schedule=None,
        start_date=START,
        catchup=False,
        default_args={"retries": 1, "retry_delay": 0},
    ):
        RunComfyImageEditOperator(
            task_id="edit",
            image_urls=[PORTRAIT],
            prompt="ink drawing",
            deferrable=deferrable,
            poll_interval=0.1,
        )

with DAG(
    "rc_download",
    schedule=None,
    start_date=START,
    catchup=False,
    render_template_as_native_obj=True,
    params={"urls": [], "destination": ""},
):
    RunComfyDownloadOperator(task_id="keep", urls="{{ params.urls }}", destination="{{ params.destination }}")

# Edit, animate every output, keep the videos: the pipeline whose links, lineage and asset event are
# checked (tests/test_links.py, tests/test_lineage.py, tests/test_assets.py).
with DAG(
    "rc_edit_animate_keep",
    schedule=None,
    start_date=START,
    catchup=False,
    render_template_as_native_obj=True,
    params={"destination": "/tmp/runcomfy-test-outputs"},
):
    edit = RunComfyImageEditOperator(
        task_id="edit",
        image_urls=[PORTRAIT, LANDSCAPE],
        prompt="golden hour light",
        deferrable=True,
        poll_interval=0.2,
    )
    animate = RunComfyImageToVideoOperator.partial(
        task_id="animate", prompt="slow push-in", frames=121, deferrable=True, poll_interval=0.2
    ).expand(image_url=edit.output)
    RunComfyDownloadOperator(
        task_id="keep",
        urls=animate.output,
        destination="{{ params.destination }}",
        outlets=[Asset("runcomfy://test/videos")],
    )


def _keep_failure_text(context: dict) -> None:
    """Append the failure's exception text to ``$RUNCOMFY_TEST_FAILURES``, as an alerting callback sees it."""
    path = os.environ.get("RUNCOMFY_TEST_FAILURES")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{type(context.get('exception')).__name__}: {context.get('exception')}\n")


# One model task against a hostile API (tests/test_hostile.py), which Airflow may retry twice: a
# submit wrongly left retryable shows as three POSTs, and whatever text reaches the failure callback
# (where alerting sends it, unmasked) is kept for the test to read.
for deferrable in (True, False):
    with DAG(
        f"rc_hostile_{'deferrable' if deferrable else 'sync'}",
        schedule=None,
        start_date=START,
        catchup=False,
        default_args={"retries": 2, "retry_delay": 0},
    ):
        RunComfyModelOperator(
            task_id="run",
            model_id="someone/hostile-model",
            inputs={"prompt": "a lighthouse"},
            deferrable=deferrable,
            poll_interval=0.1,
            timeout=60,
            on_failure_callback=_keep_failure_text,
        )


# A sensor whose polls meet an outage of RunComfy's status endpoint (tests/test_sensor_outage.py): up
# to max_failed_polls polls in a row may fail after the hook's retries; one more fails the task, and
# the failure text is kept for the test to read.
for deferrable in (True, False):
    with DAG(
        f"rc_sense_outage_{'deferrable' if deferrable else 'poke'}",
        schedule=None,
        start_date=START,
        catchup=False,
        params={"request_id": ""},
    ):
        RunComfyRequestSensor(
            task_id="sense",
            request_id="{{ params.request_id }}",
            deferrable=deferrable,
            poke_interval=0.2,
            timeout=60,
            max_failed_polls=3,
            on_failure_callback=_keep_failure_text,
        )
