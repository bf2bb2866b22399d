"""
Callbacks for DAGs that run RunComfy jobs.

Deadline alerts (Airflow 3.1+, the successor of SLAs) call an importable callable when a run is late;
this one writes a warning that names the DAG run, so a late media batch shows up in the logs even
without a notification channel. Swap it for a Slack or e-mail notifier in production.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


async def warn_run_is_late(**kwargs: Any) -> None:
    """Log that a DAG run missed its deadline (an ``AsyncCallback`` target: it runs in the triggerer)."""
    context = kwargs.get("context") or {}
    dag_run = context.get("dag_run") if isinstance(context, dict) else None
    what = kwargs.get("what") or "RunComfy DAG run"
    log.warning("%s missed its deadline: %s", what, getattr(dag_run, "run_id", dag_run) or kwargs)
