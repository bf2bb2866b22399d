"""
The wait for a RunComfy request, in one place: shared by the operators, the sensor and the triggers.

* :mod:`.core`: :class:`WaitCore`, the rules of a wait without IO (the watch, the count of failed
  polls, the deadline, the cancel decision), and the constants the waiters share;
* :mod:`.outcome`: :class:`WaitOutcome`, what a wait ends with, read from and written to the event
  dict a trigger yields, and how it becomes a task's result or exception;
* :mod:`.sync`: the driver with the sync hook (the in-worker wait, the sensor's poke, the look before
  deferring, the cancels of a task);
* :mod:`.aio`: the driver with the async hook (the triggers), imported only by them;
* :mod:`.many`: many waits at once (the batch trigger's round, a batch retry's look at saved jobs).

Operators, sensors and triggers import from here and never from each other. What each status word
means stays in :mod:`airflow_provider_runcomfy.jobs` (the one table and :class:`RequestWatch`).
"""

from __future__ import annotations

from airflow_provider_runcomfy.waiting.core import (
    DEFAULT_MAX_FAILED_POLLS,
    DEFERRAL_GRACE,
    LAST_LOOK_SECONDS,
    WaitCore,
    note_cancel,
)
from airflow_provider_runcomfy.waiting.outcome import WaitOutcome, finish_wait
from airflow_provider_runcomfy.waiting.sync import (
    cancel_if_queued,
    cancel_job,
    look_before_deferring,
    look_once,
    poll,
    wait_in_worker,
)

__all__ = [
    "DEFAULT_MAX_FAILED_POLLS",
    "DEFERRAL_GRACE",
    "LAST_LOOK_SECONDS",
    "WaitCore",
    "WaitOutcome",
    "cancel_if_queued",
    "cancel_job",
    "finish_wait",
    "look_before_deferring",
    "look_once",
    "note_cancel",
    "poll",
    "wait_in_worker",
]
