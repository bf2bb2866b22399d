"""
DAGs for the batch operator's tests, run with ``dag.test()`` against the emulator.

The items come from the run's ``conf`` (``inputs`` is a template field, rendered as native objects),
so each test picks its own list; the operator settings are fixed per DAG.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_runcomfy.operators.batch import RunComfyBatchOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")
INPUTS = "{{ dag_run.conf['inputs'] }}"
MODEL = "{{ dag_run.conf.get('model_id', 'bytedance/dreamina-4-0/edit') }}"
FAST = {"poll_interval": 0.1, "progress_interval": 0.3}


def batch_dag(dag_id: str, *, retries: int = 0, **settings: object) -> DAG:
    with DAG(
        dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        render_template_as_native_obj=True,
        default_args={"retries": retries, "retry_delay": timedelta(0)},
    ) as dag:
        RunComfyBatchOperator(task_id="batch", model_id=MODEL, inputs=INPUTS, **{**FAST, **settings})
    return dag


for deferrable in (True, False):
    mode = "deferrable" if deferrable else "sync"
    # A small window, so a dozen items need several refills (several deferrals when deferrable).
    batch_dag(f"rc_batch_{mode}", deferrable=deferrable, max_in_flight=3)
    # Items whose images break the model's rules only when RunComfy runs them: one failure allowed.
    batch_dag(
        f"rc_batch_failures_{mode}",
        deferrable=deferrable,
        max_in_flight=3,
        validate_images=False,
        allow_failures=1,
    )

batch_dag("rc_batch_skip_invalid", deferrable=True, max_in_flight=3, skip_invalid=True)
batch_dag("rc_batch_budget", deferrable=True, max_in_flight=3, max_cost_usd=0.05)
batch_dag("rc_batch_short_timeout", deferrable=True, max_in_flight=2, timeout=2)
# The 200-item run under random faults: a window of 50, one failure allowed for nothing.
batch_dag("rc_batch_chaos", deferrable=True, max_in_flight=50, poll_interval=0.3, progress_interval=1)
batch_dag("rc_batch_chaos_sync", deferrable=False, max_in_flight=50, poll_interval=0.3, progress_interval=1)

# A try killed by its execution_timeout (6 s) while jobs run (their cancel is off: they go on), then a retry.
with DAG(
    "rc_batch_killed",
    schedule=None,
    start_date=START,
    catchup=False,
    render_template_as_native_obj=True,
    default_args={"retries": 1, "retry_delay": timedelta(0)},
):
    RunComfyBatchOperator(
        task_id="batch",
        model_id="runcomfy/emulator/echo",
        inputs=INPUTS,
        deferrable=False,
        max_in_flight=3,
        cancel_on_kill=False,
        execution_timeout=timedelta(seconds=6),
        **FAST,
    )

# A try that has to stop submitting (the balance ran out), then a retry.
batch_dag("rc_batch_retry_deferrable", retries=1, deferrable=True, max_in_flight=3)
