"""
The operators' first import path, kept: every public name that was importable from here still is.

DAGs, docs and earlier releases import ``airflow_provider_runcomfy.operators.runcomfy``; the operators
now live by kind (:mod:`.model`, :mod:`.dreamina`, :mod:`.download`) and the wait helpers in
:mod:`airflow_provider_runcomfy.waiting`. Nothing is defined here.
"""

from __future__ import annotations

from airflow_provider_runcomfy.operators.download import RunComfyDownloadOperator
from airflow_provider_runcomfy.operators.dreamina import (
    RunComfyImageEditOperator,
    RunComfyImageToVideoOperator,
)
from airflow_provider_runcomfy.operators.model import (
    DEFAULT_DEFERRABLE,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    RunComfyModelOperator,
)
from airflow_provider_runcomfy.operators.schema_lookup import load_input_schema
from airflow_provider_runcomfy.waiting import (
    DEFERRAL_GRACE,
    cancel_if_queued,
    finish_wait,
    look_once,
    wait_in_worker,
)

__all__ = [
    "DEFAULT_DEFERRABLE",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_TIMEOUT",
    "DEFERRAL_GRACE",
    "RunComfyDownloadOperator",
    "RunComfyImageEditOperator",
    "RunComfyImageToVideoOperator",
    "RunComfyModelOperator",
    "cancel_if_queued",
    "finish_wait",
    "load_input_schema",
    "look_once",
    "wait_in_worker",
]
