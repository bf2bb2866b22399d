"""
Before money is spent, ask Airflow whether this try still owns its task instance.

A retry finds the jobs an earlier try paid for through ``task_state_store`` (Airflow 3.3+), and so
pays for nothing twice. That holds only if the process that pays is the task instance's current try.
Measured on a loaded Airflow 3.3 deployment (``benchmarks/batch.py``, mapped arm, BENCHMARKS.md
section 7): when the scheduler fails a deferred task instance in the race between its trigger and the
executor, the LocalExecutor may still start the stale resume workload, whose ``/run`` Airflow accepts
against the new try. That process runs ``execute()`` from the start; by the time it reads the store
the task instance is archived, the read answers "not found", and it paid for a second job (12 items
of 1,000 there; each then failed to save its id and cancelled the job while queued).

The store answers for the live task instance only, so a write to it is the cheapest proof of
ownership there is: :func:`claim_before_paying` writes a small claim just before the first paid POST
(of a job, or of a batch's window refill). A stale try's write fails and nothing is paid; a
transient failure of Airflow's API fails the try before paying too, and a retry goes on, so nothing is
lost either. The id saved after the POST stays the second guard (a cancel) for the few milliseconds
between the two.
"""

from __future__ import annotations

import time
from typing import Any

from airflow_provider_runcomfy.exceptions import RunComfyNotOwnerError

#: The ``task_state_store`` key of the claim: a different key from any saved id, never read back.
CLAIM_KEY = "runcomfy_submit_claim"


def claim_before_paying(store: Any, log: Any, what: str) -> None:
    """
    Write the claim to ``task_state_store``; raise :class:`RunComfyNotOwnerError` if Airflow refuses it.

    :param store: the task's ``task_state_store`` (the caller skips this when there is none).
    :param log: the task's logger.
    :param what: what would be paid, for the message (``"the job"``, ``"3 jobs of the batch"``).
    """
    try:
        store.set(CLAIM_KEY, {"at": round(time.time(), 3)})
    except Exception as err:
        message = (
            f"Not submitting {what}: Airflow did not let this try write to its task_state_store "
            f"({type(err).__name__}: {str(err)[:200]}). Either this process is a stale try of a task "
            "instance the scheduler has moved on, or Airflow's API failed; either way nothing was paid, "
            "and the current try (or a retry) finds every job paid for so far."
        )
        log.error("%s", message)
        raise RunComfyNotOwnerError(message) from None
