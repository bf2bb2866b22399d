"""
The soak's DAG: ``RUNCOMFY_SOAK_JOBS`` RunComfy jobs fanned out with ``.expand()``, most waiting in
the triggerer (``deferred``), some in the worker (``in_worker``), all with ``retries=2``, plus ``held``:
one deferred job that stays queued for an hour, for a user to mark failed.

Every job's inputs name its task instance (``soak``, ``map_index``) and its try, so the emulator's
request log attributes each paid submit to one task instance. The echo model takes any JSON; its
``queue_seconds``/``run_seconds`` inputs set each job's life. Settings come from the environment
the soak gives every Airflow process.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_runcomfy.operators.runcomfy import RunComfyModelOperator

ECHO = "runcomfy/emulator/echo"
JOBS = int(os.environ.get("RUNCOMFY_SOAK_JOBS", "200"))
IN_WORKER = int(os.environ.get("RUNCOMFY_SOAK_IN_WORKER", str(max(4, JOBS // 10))))
POLL = float(os.environ.get("RUNCOMFY_SOAK_POLL", "5"))
DEFERRED_JOB = (
    float(os.environ.get("RUNCOMFY_SOAK_QUEUE", "10")),
    float(os.environ.get("RUNCOMFY_SOAK_RUN", "50")),
)
WORKER_JOB = (2.0, float(os.environ.get("RUNCOMFY_SOAK_WORKER_RUN", "10")))


def inputs(kind: str, index: int, timing: tuple[float, float]) -> dict[str, object]:
    """One job's inputs: who submits it (task and map index), which try, and how long it lasts."""
    return {
        "soak": kind,
        "map_index": index,
        "try": "{{ ti.try_number }}",
        "queue_seconds": timing[0],
        "run_seconds": timing[1],
    }


with DAG(
    "runcomfy_soak",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=100_000,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    tags=["runcomfy-soak"],
):
    RunComfyModelOperator.partial(
        task_id="deferred", model_id=ECHO, deferrable=True, poll_interval=POLL, timeout=3600
    ).expand(inputs=[inputs("deferred", i, DEFERRED_JOB) for i in range(JOBS - IN_WORKER)])
    RunComfyModelOperator.partial(
        task_id="in_worker", model_id=ECHO, deferrable=False, poll_interval=POLL, timeout=3600
    ).expand(inputs=[inputs("in_worker", i, WORKER_JOB) for i in range(IN_WORKER)])
    RunComfyModelOperator(
        task_id="held",
        model_id=ECHO,
        deferrable=True,
        poll_interval=POLL,
        timeout=3600,
        retries=0,
        inputs=inputs("held", -1, (3600.0, 1.0)),
    )
