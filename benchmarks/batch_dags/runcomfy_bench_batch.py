"""
The two DAGs the batch benchmark compares (``benchmarks/batch.py``): the same N echo jobs as one
mapped ``RunComfyModelOperator`` task instance per job, and as one ``RunComfyBatchOperator`` task.

N, the window and the poll interval come from the environment the benchmark gives the Airflow
processes (``RUNCOMFY_BENCH_JOBS``, ``RUNCOMFY_BENCH_WINDOW``, ``RUNCOMFY_BENCH_POLL``).
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_runcomfy.operators.batch import RunComfyBatchOperator
from airflow_provider_runcomfy.operators.runcomfy import RunComfyModelOperator

JOBS = int(os.environ.get("RUNCOMFY_BENCH_JOBS", "20"))
WINDOW = int(os.environ.get("RUNCOMFY_BENCH_WINDOW", "200"))
POLL = float(os.environ.get("RUNCOMFY_BENCH_POLL", "1"))
ECHO = "runcomfy/emulator/echo"
START = pendulum.datetime(2026, 1, 1, tz="UTC")
#: Both DAGs may retry (a retry reconnects to its paid job on Airflow 3.3, so paid POSTs stay N): on a
#: loaded machine Airflow 3.3's scheduler sometimes fails a deferred task whose trigger fired before the
#: executor reported the deferral ("state changed externally"); the benchmark counts those retries.
RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=2)}


@task
def job_inputs() -> list[dict]:
    """One small echo job per item (the emulator's queue and run times apply)."""
    return [{"prompt": f"item {i}", "i": i} for i in range(JOBS)]


with DAG(
    "rc_bench_mapped",
    schedule=None,
    start_date=START,
    catchup=False,
    max_active_tasks=JOBS,
    default_args=RETRIES,
):
    RunComfyModelOperator.partial(
        task_id="job", model_id=ECHO, deferrable=True, poll_interval=POLL, validate_images=False
    ).expand(inputs=job_inputs())

with DAG("rc_bench_batch", schedule=None, start_date=START, catchup=False, default_args=RETRIES):
    RunComfyBatchOperator(
        task_id="batch",
        model_id=ECHO,
        inputs=job_inputs(),
        max_in_flight=WINDOW,
        deferrable=True,
        poll_interval=POLL,
        progress_interval=10,
    )
