"""
A batch's promise that no item is paid twice: the ids saved for retries and the takeover by a retry.

Each paid POST of a batch saves its request id in ``task_state_store`` (Airflow 3.3+) before anything
else can fail (:func:`remember_for_retries`). A retry (a new try: its XComs are cleared) reads them
back and takes over every job an earlier try paid for (:func:`take_over_saved_jobs`), by the same
rule as the single operator's retry, so that only the items that had no job are submitted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_runcomfy.batch import ItemStatus, RetryBook
from airflow_provider_runcomfy.jobs import RequestWatch
from airflow_provider_runcomfy.waiting import cancel_if_queued
from airflow_provider_runcomfy.waiting.many import Takeover

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_runcomfy.batch import Ledger
    from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook

#: ``(index, decision, what the job's check found)`` for each saved job, from ``check_saved_jobs``.
Checked = list[tuple[int, Takeover, dict[str, Any]]]


def retry_book(context: Context) -> RetryBook | None:
    """Where paid ids are saved for retries: ``task_state_store`` (Airflow 3.3+), else nowhere."""
    store = context.get("task_state_store")
    return RetryBook(store) if store is not None else None


def remember_for_retries(
    book: RetryBook | None, index: int, request_id: str, hook: RunComfyHook, log: Any
) -> None:
    """
    Save a paid job's id before anything else can fail; if it cannot be saved, cancel the job.

    As for a single job (see ``RunComfyModelOperator._remember_for_retries``): a job whose id a
    retry cannot find would be paid again by that retry while it runs for no one.
    """
    if book is None:
        return
    try:
        book.save(index, {"id": request_id})
    except Exception:
        log.error(
            "The id of RunComfy request %s (item %d) could not be saved for retries; cancelling it",
            request_id,
            index,
        )
        cancel_if_queued(hook, RequestWatch(request_id, log), log)
        raise


def take_over_saved_jobs(
    book: RetryBook, ledger: Ledger, check: Callable[[list[tuple[int, str]]], Checked], log: Any
) -> list[dict[str, Any]]:
    """
    Take over the jobs an earlier try paid for; return the ones still in flight, to be watched.

    A job still in flight (or that cannot be checked now) is waited for; one that succeeded is
    recorded with its outputs; one that failed, was cancelled or expired is submitted anew. A
    submit whose outcome was uncertain is never sent again: it stays an ``error``. ``check`` looks at
    the saved jobs (many at once, bounded: ``waiting.many.check_saved_jobs``).
    """
    saved = book.read(len(ledger.items))
    if not saved:
        return []
    watching: list[dict[str, Any]] = []
    counts = {"in_flight": 0, "succeeded": 0, "anew": 0, "uncertain": 0}
    jobs: list[tuple[int, str]] = []
    for index, entry in sorted(saved.items()):
        item = ledger.items[index]
        if item.status is ItemStatus.SKIPPED:
            continue
        if entry.get("uncertain"):
            item.status, item.error = ItemStatus.ERROR, str(entry["uncertain"])
            counts["uncertain"] += 1
        else:
            jobs.append((index, str(entry.get("id"))))
    for index, decision, found in check(jobs):
        item = ledger.items[index]
        if decision is Takeover.WAIT:
            item.status, item.request_id = ItemStatus.IN_FLIGHT, found["request_id"]
            watching.append(found)
            counts["in_flight"] += 1
        elif decision is Takeover.KEEP:
            item.request_id = found.get("request_id")
            item.settle(found)
            counts["succeeded"] += 1
        else:
            book.forget(index)
            counts["anew"] += 1
    log.info(
        "Retry: %d item(s) had a job from an earlier try: %d still in flight (reconnected), %d "
        "succeeded (kept), %d failed or expired (submitted anew), %d uncertain submits (not sent again)",
        len(saved),
        counts["in_flight"],
        counts["succeeded"],
        counts["anew"],
        counts["uncertain"],
    )
    return watching
