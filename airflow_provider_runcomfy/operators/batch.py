"""
Thousands of RunComfy jobs from one task instance: a sliding window of paid jobs, waited for in rounds.

A mapped ``RunComfyModelOperator`` costs Airflow one task instance per image, and Airflow maps at most
``[core] max_map_length`` items. :class:`RunComfyBatchOperator` runs a whole list in one task:

1. **pre-flight** (:mod:`~airflow_provider_runcomfy.operators.batch_preflight`): every item is checked,
   its images probed and the batch's cost guarded before any POST;
2. **a window**: up to ``max_in_flight`` jobs are submitted (each paid once, its id saved in
   ``task_state_store`` at once on Airflow 3.3+), then waited for in one round: deferred to one
   :class:`~airflow_provider_runcomfy.triggers.batch.RunComfyBatchTrigger`, or in the worker with the
   very same round. When enough jobs ended, the task records them, submits the next items, waits again;
3. **per-item results** (:mod:`~airflow_provider_runcomfy.operators.batch_records`), in input order;
   more failed items than ``allow_failures`` fail the task once every job ended, naming them.

Between rounds the ledger lives in the ``results`` and ``batch`` XComs. A retry (XComs cleared)
reconnects to every job an earlier try paid for through ``task_state_store`` and submits only the
items that have none, so no item is paid twice.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_provider_runcomfy.batch import (
    BatchItem,
    ItemStatus,
    Ledger,
    RetryBook,
    RunComfyBatchError,
    RunComfyBatchInputError,
)
from airflow_provider_runcomfy.exceptions import (
    RunComfyBadRequestError,
    RunComfyError,
    RunComfyInputError,
    RunComfySubmitUncertainError,
)
from airflow_provider_runcomfy.jobs import RequestWatch
from airflow_provider_runcomfy.operators.batch_preflight import BatchPreflight, check_settings
from airflow_provider_runcomfy.operators.batch_records import finish_batch, load_ledger, push_ledger
from airflow_provider_runcomfy.operators.batch_retries import (
    Checked,
    remember_for_retries,
    retry_book,
    take_over_saved_jobs,
)
from airflow_provider_runcomfy.ownership import claim_before_paying
from airflow_provider_runcomfy.waiting import DEFERRAL_GRACE, cancel_if_queued
from airflow_provider_runcomfy.waiting.many import check_saved_jobs

if TYPE_CHECKING:
    import os
    from collections.abc import Awaitable, Callable, Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook
    from airflow_provider_runcomfy.triggers.batch import RunComfyBatchTrigger

_T = TypeVar("_T")

#: A round ends (and the window is refilled) once this share of the window ended, so that a window
#: of 200 is not refilled (one deferral, one resume) for every single job that ends.
REFILL_SHARE = 0.25


class RunComfyBatchOperator(BaseOperator):
    """
    Run one RunComfy model over a list of inputs from one task, keeping ``max_in_flight`` jobs in flight.

    XCom: ``cost_estimate`` (the whole batch's, ``{"usd", "price_unit", "basis"}``) before the first
    submit; ``results`` (one record per item: ``{"index", "status", "request_id", "urls", "error",
    "cost_usd"}``) and ``batch`` (``{"total", "succeeded", "failed", "skipped", "cancelled",
    "cost_usd", "estimated_cost_usd", "wall_seconds", ...}``), updated at every round; at the end
    ``return_value``, per item in input order, its list of output URLs or ``None`` (a failed or
    skipped item), ready for a ``RunComfyDownloadOperator`` or a mapped task.

    An item's status is one of ``succeeded``, ``failed``, ``cancelled``, ``timed_out``, ``error``
    (its wait could not go on, or its submit may have created a job without saying so: it is never
    sent again), ``skipped`` (refused by the pre-flight with ``skip_invalid=True``).

    :param model_id: the RunComfy model id. (templated)
    :param inputs: the list of the jobs' input dicts, one per item, e.g. an upstream task's output.
        (templated)
    :param runcomfy_conn_id: the Airflow connection of type ``runcomfy``.
    :param max_in_flight: how many jobs may be submitted and unfinished at once.
    :param deferrable: wait in the triggerer between refills, holding no worker slot.
    :param poll_interval: seconds between status polls of each job.
    :param timeout: the longest run of the whole batch in seconds, counted from the try's start;
        jobs still queued then are cancelled, items not submitted yet are not submitted.
    :param max_cost_usd: refuse to submit anything when the batch's estimated cost is higher, or
        cannot be estimated.
    :param allow_failures: how many items may end without outputs (failed, cancelled, timed out)
        before the task fails; skipped items do not count.
    :param skip_invalid: skip the items the pre-flight refuses (recorded as ``skipped`` with the
        reason) instead of refusing the whole batch.
    :param validate_images: probe every input image (format, bytes, size) before paying.
    :param strict_schema: refuse to submit when no input schema of the model can be found, or when
        it states a rule the provider cannot apply.
    :param input_schema: the model's input schema (a dict or a JSON file path) instead of the catalog's.
    :param source_conn_id: the Airflow connection of the object store that media inputs such as
        ``s3://bucket/key.png`` are read from (local paths and ``file://`` need none); such files are
        checked and sent inline as ``data:`` URIs, as by the single operators.
    :param cancel_on_kill: cancel the batch's queued jobs when the task is killed (running ones finish).
    :param probe_concurrency: how many input images are probed at once.
    :param progress_interval: seconds between progress lines while the batch waits.
    """

    template_fields: Sequence[str] = ("model_id", "inputs")
    template_fields_renderers: ClassVar[dict[str, str]] = {"inputs": "json"}
    ui_color = "#e8f0ff"

    def __init__(
        self,
        *,
        model_id: str,
        inputs: Any,
        runcomfy_conn_id: str = "runcomfy_default",
        max_in_flight: int = 50,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 5,
        timeout: float = 6 * 3600,
        max_cost_usd: float | None = None,
        allow_failures: int = 0,
        skip_invalid: bool = False,
        validate_images: bool = True,
        strict_schema: bool = False,
        input_schema: dict[str, Any] | str | os.PathLike[str] | None = None,
        source_conn_id: str | None = None,
        cancel_on_kill: bool = True,
        probe_concurrency: int = 16,
        progress_interval: float = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_id = model_id
        self.inputs = inputs
        self.runcomfy_conn_id = runcomfy_conn_id
        self.max_in_flight = max_in_flight
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.max_cost_usd = max_cost_usd
        self.allow_failures = allow_failures
        self.skip_invalid = skip_invalid
        self.validate_images = validate_images
        self.strict_schema = strict_schema
        self.input_schema = input_schema
        self.source_conn_id = source_conn_id
        self.cancel_on_kill = cancel_on_kill
        self.probe_concurrency = probe_concurrency
        self.progress_interval = progress_interval
        self._in_flight: dict[int, str] = {}

    @cached_property
    def hook(self) -> RunComfyHook:
        """The RunComfy hook (imported here so that parsing a DAG file never loads httpx)."""
        from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook

        return RunComfyHook(runcomfy_conn_id=self.runcomfy_conn_id)

    @cached_property
    def _checks(self) -> BatchPreflight:
        """The pre-flight, made when the task runs (its settings are rendered by then)."""
        return BatchPreflight(
            model_id=self.model_id,
            input_schema=self.input_schema,
            strict_schema=self.strict_schema,
            validate_images=self.validate_images,
            skip_invalid=self.skip_invalid,
            source_conn_id=self.source_conn_id,
            probe_concurrency=int(self.probe_concurrency),
            max_cost_usd=self.max_cost_usd,
            get_hook=lambda: self.hook,
            log=self.log,
        )

    # -- execute -----------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        """Pre-flight every item, reconnect to an earlier try's jobs, then run the window."""
        check_settings(self)
        items = self._read_inputs()
        ledger = Ledger.new(len(items), timeout=float(self.timeout))
        payloads = self._checks.run(context, items, ledger)  # every item checked before any POST
        book = retry_book(context)
        watching = self._reconnect(book, ledger) if book is not None else []
        return self._run(context, ledger, watching, book, payloads)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after a round in the triggerer: record the outcomes, refill the window, wait again."""
        if not isinstance(event, dict) or "finished" not in event:
            raise RunComfyError(f"The batch's wait ended without its event (got {event!r})")
        ledger = load_ledger(context, self.task_id)
        watching = self._apply(ledger, event)
        return self._run(context, ledger, watching, retry_book(context), None)

    def _read_inputs(self) -> list[Any]:
        return self._checks.read_inputs(self.inputs)

    # -- retries -----------------------------------------------------------------------------------

    def _reconnect(self, book: RetryBook, ledger: Ledger) -> list[dict[str, Any]]:
        """Take over the jobs an earlier try paid for (:func:`take_over_saved_jobs`); the ones to watch."""

        def check(jobs: list[tuple[int, str]]) -> Checked:
            return asyncio.run(self._with_async_hook(lambda hook: check_saved_jobs(hook, jobs, self.log)))

        return take_over_saved_jobs(book, ledger, check, self.log)

    # -- the window --------------------------------------------------------------------------------

    def _run(
        self,
        context: Context,
        ledger: Ledger,
        watching: list[dict[str, Any]],
        book: RetryBook | None,
        payloads: dict[int, dict[str, Any]] | None,
    ) -> Any:
        """Refill the window, wait a round (deferred or here), record, repeat; then finish."""
        while True:
            can_submit = ledger.halted is None and time.time() < ledger.end_time
            if can_submit and ledger.pending:
                watching += self._fill(ledger, len(watching), book, payloads)
            ledger.rounds += 1
            push_ledger(context, ledger)
            self.log.info("%s", ledger.progress())
            if not watching:
                return self._finish(context, ledger)
            self._in_flight = {int(w["index"]): str(w["request_id"]) for w in watching}
            still_to_submit = len(ledger.pending) if ledger.halted is None else 0
            if self.deferrable:
                self.defer(
                    trigger=self._trigger(ledger, watching, still_to_submit),
                    method_name="execute_complete",
                    timeout=timedelta(seconds=max(0.0, ledger.end_time - time.time())) + DEFERRAL_GRACE,
                )
            round_ = self._trigger(ledger, watching, still_to_submit).round()
            round_.log = self.log  # in the worker, the round logs to the task's log
            event = asyncio.run(self._with_async_hook(round_.run))
            watching = self._apply(ledger, event)

    def _fill(
        self,
        ledger: Ledger,
        in_flight: int,
        book: RetryBook | None,
        payloads: dict[int, dict[str, Any]] | None,
    ) -> list[dict[str, Any]]:
        """
        Submit pending items until the window is full: one paid POST per item, its id saved at once.

        An item RunComfy refuses (HTTP 400) fails alone; a submit that may have created a job is never
        sent again (``error``); anything that would refuse every submit (balance, token, an outage
        outlasting the retries) stops submitting: the jobs in flight are still waited for.
        """
        submitted: list[dict[str, Any]] = []
        to_submit = ledger.pending[: max(0, self.max_in_flight - in_flight)]
        if to_submit and book is not None:
            claim_before_paying(book.store, self.log, f"{len(to_submit)} job(s) of the batch")
        for item in to_submit:
            payload = payloads[item.index] if payloads is not None else self._resumed_payload(item.index)
            try:
                request_id = self.hook.submit(self.model_id, payload)
            except RunComfySubmitUncertainError as err:
                item.status, item.error = ItemStatus.ERROR, str(err)
                self.log.error("Item %d: %s", item.index, err)
                if book is not None:
                    book.save(item.index, {"uncertain": str(err)})
                continue
            except (RunComfyBadRequestError, RunComfyInputError) as err:
                item.status, item.error = ItemStatus.FAILED, f"RunComfy refused the inputs: {err}"
                self.log.error("Item %d was refused (nothing was paid): %s", item.index, err)
                continue
            except RunComfyError as err:
                ledger.halted = f"submitting stopped at item {item.index}: {err}"
                self.log.error("Stopped submitting at item %d: %s", item.index, err)
                break
            remember_for_retries(book, item.index, request_id, self.hook, self.log)
            item.status, item.request_id = ItemStatus.IN_FLIGHT, request_id
            submitted.append({"index": item.index, "request_id": request_id, "memory": None})
        if submitted:
            self.log.info(
                "Submitted %d job(s) (items %d..%d); %d in flight",
                len(submitted),
                submitted[0]["index"],
                submitted[-1]["index"],
                in_flight + len(submitted),
            )
        return submitted

    def _resumed_payload(self, index: int) -> dict[str, Any]:
        return self._checks.payload_after_resume(self._read_inputs(), index)

    def _trigger(
        self, ledger: Ledger, watching: list[dict[str, Any]], still_to_submit: int
    ) -> RunComfyBatchTrigger:
        """The round to wait for next: the window's room worth refilling, or every job when none is left."""
        from airflow_provider_runcomfy.triggers.batch import RunComfyBatchTrigger

        if still_to_submit:
            room = max(1, math.ceil(self.max_in_flight * REFILL_SHARE))
            yield_after = min(len(watching), still_to_submit, room)
        else:
            yield_after = len(watching)  # nothing left to submit: wait for every job
        counts = ledger.counts()
        return RunComfyBatchTrigger(
            watching=watching,
            runcomfy_conn_id=self.runcomfy_conn_id,
            poll_interval=float(self.poll_interval),
            end_time=ledger.end_time,
            yield_after=yield_after,
            cancel_on_timeout=True,
            cancel_on_kill=self.cancel_on_kill,
            progress={
                "done": sum(1 for item in ledger.items if item.status.is_settled),
                "total": counts["total"],
                "failed": len(ledger.failures) - counts["pending"],
                "cost_usd": ledger.reported_cost_usd,
                "started_at": ledger.started_at,
            },
            progress_interval=float(self.progress_interval),
        )

    async def _with_async_hook(self, work: Callable[[RunComfyHook], Awaitable[_T]]) -> _T:
        """Run ``work`` with an async hook made for this event loop (the worker's own rounds and checks)."""
        from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook

        hook = RunComfyHook(runcomfy_conn_id=self.runcomfy_conn_id)
        try:
            return await work(hook)
        finally:
            await hook.aclose()

    def _apply(self, ledger: Ledger, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Record a round's finished jobs; return the jobs still in flight."""
        for outcome in event.get("finished") or []:
            item = ledger.items[int(outcome["index"])]
            item.request_id = outcome.get("request_id") or item.request_id
            item.settle(outcome)
            if item.status is not ItemStatus.SUCCEEDED:
                self.log.warning("%s", item.describe())
        if event.get("round") == "timeout" and ledger.halted is None:
            ledger.halted = f"the batch's timeout ({self.timeout:g} s) passed"
        return list(event.get("watching") or [])

    # -- XCom and the end (batch_records.py) -----------------------------------------------------

    def _finish(self, context: Context, ledger: Ledger) -> list[list[str] | None]:
        """Push the final records; fail when submitting stopped or too many items failed."""
        self._in_flight = {}
        return finish_batch(
            context, ledger, model_id=self.model_id, allow_failures=self.allow_failures, log=self.log
        )

    def on_kill(self) -> None:
        """Cancel the batch's queued jobs when the task is killed while it waits in the worker."""
        if not self.cancel_on_kill:
            return
        for request_id in list(self._in_flight.values()):
            cancel_if_queued(self.hook, RequestWatch(request_id, self.log), self.log)


__all__ = [
    "BatchItem",
    "ItemStatus",
    "RunComfyBatchError",
    "RunComfyBatchInputError",
    "RunComfyBatchOperator",
]
