"""
What a batch task leaves in Airflow: its ledger in XCom between rounds, and its verdict at the end.

A deferred :class:`~airflow_provider_runcomfy.operators.batch.RunComfyBatchOperator` loses its process
between rounds, so its :class:`~airflow_provider_runcomfy.batch.Ledger` is pushed to the ``results``
and ``batch`` XComs at every round (they also show the progress in the UI) and read back when the task
resumes. Once every job ended, :func:`finish_batch` pushes the final records and decides: the per-item
URL lists, or a :class:`~airflow_provider_runcomfy.batch.RunComfyBatchError` naming the items without
outputs. The ledger itself (``batch.py``) knows nothing of Airflow; this module is the glue, apart from
the operator's window so that each reads as one job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_runcomfy.batch import (
    BATCH_XCOM_KEY,
    RESULTS_XCOM_KEY,
    ItemStatus,
    Ledger,
    RunComfyBatchError,
    describe_failures,
)
from airflow_provider_runcomfy.exceptions import RunComfyError

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


def push_ledger(context: Context, ledger: Ledger, *, finished: bool = False) -> None:
    """Push the ``results`` (one record per item) and ``batch`` (the counts) XComs."""
    ti = context["ti"]
    ti.xcom_push(key=RESULTS_XCOM_KEY, value=ledger.results())
    ti.xcom_push(key=BATCH_XCOM_KEY, value=ledger.summary(finished=finished))


def load_ledger(context: Context, task_id: str) -> Ledger:
    """The ledger the task pushed before it deferred (this try's, this map index's)."""
    ti = context["ti"]
    results = ti.xcom_pull(task_ids=task_id, key=RESULTS_XCOM_KEY, map_indexes=ti.map_index)
    batch = ti.xcom_pull(task_ids=task_id, key=BATCH_XCOM_KEY, map_indexes=ti.map_index)
    if not isinstance(results, list) or not isinstance(batch, dict):
        raise RunComfyError("The batch resumed but its ledger (XCom results and batch) is gone")
    return Ledger.from_xcom(results, batch)


def finish_batch(
    context: Context, ledger: Ledger, *, model_id: str, allow_failures: int, log: Any
) -> list[list[str] | None]:
    """
    Push the final records; fail when submitting stopped or too many items failed.

    Items still pending (submitting stopped, or the deadline came first) are recorded as ``error``.
    :returns: per item, in input order, its output URLs or ``None`` (the task's ``return_value``).
    :raises RunComfyBatchError: when an item was not submitted, or more than ``allow_failures`` items
        ended without outputs; it names them.
    """
    not_submitted = ledger.pending
    for item in not_submitted:
        item.status = ItemStatus.ERROR
        item.error = f"not submitted: {ledger.halted or 'the batch ended first'}"
    push_ledger(context, ledger, finished=True)
    counts = ledger.counts()
    log.info(
        "Batch of %d item(s) done: %d succeeded, %d failed, %d cancelled, %d skipped; $%s reported "
        "by RunComfy (estimated $%s)",
        counts["total"],
        counts["succeeded"],
        counts["failed"],
        counts["cancelled"],
        counts["skipped"],
        f"{ledger.reported_cost_usd:g}",
        "?" if ledger.estimated_cost_usd is None else f"{ledger.estimated_cost_usd:g}",
    )
    failures = ledger.failures
    if not_submitted:
        raise RunComfyBatchError(
            f"The batch of model {model_id} did not run every item: {ledger.halted}. "
            f"{len(failures)} item(s) without outputs: {describe_failures(failures)}",
            failures,
        )
    if len(failures) > allow_failures:
        raise RunComfyBatchError(
            f"{len(failures)} of {counts['total']} item(s) of the batch of model {model_id} "
            f"ended without outputs, more than allow_failures={allow_failures}: "
            f"{describe_failures(failures)}",
            failures,
        )
    return ledger.return_value()
