"""
Asset events for new media: what a download stored, so DAGs scheduled on the asset run when it lands.

Give ``RunComfyDownloadOperator`` an Asset outlet (``outlets=[Asset("...")]``; a ``Dataset`` on
Airflow 2.11, the same class through ``airflow.providers.common.compat.sdk.Asset``). Airflow records
an event for the outlet when the task succeeds, as for any task; this module fills the event's
``extra`` with what a consumer needs to find the media without parsing XCom of another DAG:

``{"stored": [...], "request_ids": [...], "model_ids": [...]}``

``stored`` are the stored locations in the order of the task's ``return_value``; ``request_ids`` and
``model_ids`` name the RunComfy jobs that made them, found in the ``result`` XCom of the upstream
tasks whose output URLs were copied. Only plain values go in (strings), so the extra is valid JSON on
every Airflow line. Asset aliases are left alone: they need the asset named per event, which is the
DAG author's choice, not the operator's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_runcomfy.links import RESULT_XCOM_KEY

if TYPE_CHECKING:
    from collections.abc import Iterable

    from airflow.providers.common.compat.sdk import BaseOperator, Context


def jobs_behind(context: Context, task: BaseOperator, urls: Iterable[str]) -> list[dict[str, Any]]:
    """
    The ``result`` summaries of the upstream RunComfy jobs that made any of ``urls``, in task order.

    Pulled for every upstream task at once (all map indexes: a mapped ``animate`` made one video per
    task instance); upstream tasks that are not RunComfy tasks simply have no ``result``.
    """
    upstream = sorted(task.upstream_task_ids)
    if not upstream:
        return []
    wanted = set(urls)
    pulled = context["ti"].xcom_pull(task_ids=upstream, key=RESULT_XCOM_KEY)
    results: list[dict[str, Any]] = []
    for result in pulled or []:
        if isinstance(result, dict) and wanted.intersection(result.get("urls") or []):
            results.append(result)
    return results


def event_extra(stored: list[str], results: list[dict[str, Any]]) -> dict[str, Any]:
    """The asset event's ``extra``: the stored locations and the jobs behind them, each listed once."""

    def distinct(key: str) -> list[str]:
        values: list[str] = []
        for result in results:
            value = result.get(key)
            if isinstance(value, str) and value not in values:
                values.append(value)
        return values

    return {"stored": list(stored), "request_ids": distinct("request_id"), "model_ids": distinct("model_id")}


def annotate_asset_events(task: BaseOperator, context: Context, extra: dict[str, Any]) -> int:
    """
    Put ``extra`` on the event of every Asset outlet of ``task``; returns how many were annotated.

    Through the ``outlet_events`` accessor of the task's context, the documented way on Airflow 3
    and on 2.11 (where the outlets are Datasets).
    """
    from airflow.providers.common.compat.sdk import Asset

    assets = [outlet for outlet in (task.outlets or []) if isinstance(outlet, Asset)]
    if not assets:
        return 0
    outlet_events = context["outlet_events"]
    for asset in assets:
        outlet_events[asset].extra.update(extra)
    return len(assets)


def announce_stored(task: BaseOperator, context: Context, urls: list[str], stored: list[str]) -> None:
    """Fill the events of ``task``'s Asset outlets with what it stored (nothing to do without any)."""
    if not task.outlets:
        return
    extra = event_extra(stored, jobs_behind(context, task, urls))
    if annotate_asset_events(task, context, extra):
        task.log.info("Asset event: %d stored file(s) from request(s) %s", len(stored), extra["request_ids"])
