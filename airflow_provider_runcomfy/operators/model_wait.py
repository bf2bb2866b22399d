"""
How a model operator waits for its paid job, and reconnects to it on a retry: :class:`ModelWaitMixin`.

Split from the operator's pre-flight (:mod:`.model`) because this is the part that must never pay
twice: it saves the request id for retries before anything else can fail, answers
``ResumableJobMixin``'s questions about a job an earlier try paid for (in flight, succeeded, over
without outputs) with the same word table as every wait, and waits through
:mod:`airflow_provider_runcomfy.waiting` (deferring to the trigger, or in the worker). Its end is a
:class:`~airflow_provider_runcomfy.waiting.WaitOutcome`, turned into the task's URLs or exception.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import ResumableJobMixin

from airflow_provider_runcomfy.exceptions import WAIT_FATAL_ERRORS, RunComfyError, RunComfyNotFoundError
from airflow_provider_runcomfy.jobs import (
    Endpoint,
    Phase,
    RequestWatch,
    WaitProgress,
    parse_phase,
    phase_of,
    settled_phase,
)
from airflow_provider_runcomfy.waiting import (
    DEFERRAL_GRACE,
    WaitOutcome,
    cancel_if_queued,
    look_before_deferring,
    wait_in_worker,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_runcomfy.cost import CostEstimate
    from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook
    from airflow_provider_runcomfy.triggers.runcomfy import RunComfyRequestTrigger


class ModelWaitMixin(ResumableJobMixin):
    """
    The wait of a model operator, and its reconnect on a retry (``ResumableJobMixin``'s methods).

    The operator provides the attributes below (:class:`~.model.RunComfyModelOperator` sets them).
    """

    if TYPE_CHECKING:
        log: Any  # the operator's logger (Airflow's LoggingMixin)
        model_id: str
        runcomfy_conn_id: str
        wait_for_completion: bool
        deferrable: bool
        poll_interval: float
        timeout: float
        cancel_on_kill: bool
        max_cost_usd: float | None
        progress_interval: float
        external_id_key: str
        request_id: str | None
        _estimate: CostEstimate | None
        _urls: list[str] | None
        _end_time: float | None
        _ran: bool

        @property
        def hook(self) -> RunComfyHook: ...

        def defer(self, **kwargs: Any) -> Any: ...

    def _retry_store(self, context: Context) -> Any:
        """``task_state_store`` when a retry will look there for this job (3.3+, waited for, durable)."""
        store = context.get("task_state_store")
        if store is None or not self.wait_for_completion or not getattr(self, "durable", True):
            return None
        return store

    def _claim_before_paying(self, context: Context) -> None:
        """Prove this try still owns its task instance before the paid POST (:mod:`~.ownership`)."""
        store = self._retry_store(context)
        if store is None:
            return
        from airflow_provider_runcomfy.ownership import claim_before_paying

        claim_before_paying(store, self.log, f"a job to model {self.model_id}")

    def _remember_for_retries(self, context: Context, request_id: str) -> None:
        """
        Save the paid job's id in ``task_state_store`` first, before anything else can fail or be killed.

        The mixin saves it as well, but only once ``submit_job`` has returned, after the XCom push (a
        round trip to Airflow's API). The soak killed a worker in that gap: the retry found no id and
        paid for the job again. Saving first leaves only the POST's own answer in the gap, which no
        client can close without an idempotency key.
        """
        store = self._retry_store(context)
        if store is None:
            return
        try:
            store.set(self.external_id_key, request_id)
        except Exception:
            # The 2,000-job soak saw Airflow run a superseded try (its task instance reset by the
            # scheduler meanwhile): the POST went out, saving the id answered 404 "Task instance not
            # found", and the next try paid again while this job ran for no one. It was queued a moment
            # ago, so a cancel normally takes it back; best effort, the original error is reported.
            self.log.error(
                "The id of RunComfy request %s could not be saved for retries; cancelling it so that a "
                "retry does not leave it running for no one",
                request_id,
            )
            cancel_if_queued(self.hook, RequestWatch(request_id, self.log), self.log)
            raise

    def get_job_status(self, external_id: Any, context: Context) -> str:
        """
        The :class:`~airflow_provider_runcomfy.jobs.Phase` of a request saved by an earlier try.

        Read with the same table as every wait (:func:`~airflow_provider_runcomfy.jobs.settled_phase`):
        a final word on the status endpoint sends it to the result endpoint, which says how the job
        ended (``succeeded`` or ``completed`` are a success, returned without paying again). Anything
        not explicitly over, an unknown word included, is ``in_flight``: the retry reconnects and its
        wait settles it; so is a request that cannot be checked now (an outage outlasting the hook's
        retries), rather than failing this try too. A request RunComfy no longer knows is ``expired``.
        Only ``failed``, ``cancelled`` and ``expired`` make the retry submit anew.
        """
        request_id = str(external_id)
        result_word = None
        try:
            status_word = self.hook.get_status(request_id).get("status")
            if phase_of(status_word, Endpoint.STATUS).is_terminal:
                result_word = self.hook.get_result(request_id).get("status")
        except RunComfyNotFoundError:
            phase = Phase.EXPIRED
        except WAIT_FATAL_ERRORS:
            raise
        except RunComfyError as err:
            # An outage (503s, timeouts) must not cost this try, let alone lead to a second payment:
            # wait for the job instead; the wait rides out failed polls and learns how it ended.
            self.log.warning(
                "Could not check RunComfy request %s from an earlier try (%s); waiting for it instead of "
                "submitting again",
                request_id,
                err,
            )
            phase = Phase.IN_FLIGHT
        else:
            phase = settled_phase(status_word, result_word)
        self.log.info("RunComfy request %s from an earlier try is %s", request_id, phase.value)
        return phase.value

    def is_job_active(self, status: str) -> bool:
        """In flight (or not known to be over): reconnect instead of paying again."""
        parsed = parse_phase(status)
        return parsed is not None and parsed.is_active

    def is_job_succeeded(self, status: str) -> bool:
        """Succeeded: return its outputs without submitting."""
        parsed = parse_phase(status)
        return parsed is not None and parsed.is_success

    # The mixin returns this method's value when it reconnects to a running job, so it returns the URLs.
    def poll_until_complete(self, external_id: Any, context: Context) -> list[str]:  # type: ignore[override]
        """Wait for the request: defer to the trigger, or poll in the worker; return the output URLs."""
        request_id = str(external_id)
        if self.request_id != request_id:  # a reconnect: the XCom of the earlier try was cleared
            self._track(context, request_id)
            self._end_time = time.time() + float(self.timeout)
        if self.deferrable:
            # The job may be done already (a quick model, a reconnect): then no deferral at all.
            watch = RequestWatch(request_id, self.log, progress=self._progress())
            outcome = self._outcome_if_finished(watch)
            if outcome is not None:
                return self._finish(context, outcome)
            self.defer(
                trigger=self._trigger(request_id, watch),
                method_name="execute_complete",
                timeout=timedelta(seconds=float(self.timeout)) + DEFERRAL_GRACE,
            )
        outcome = wait_in_worker(
            self.hook,
            request_id,
            poll_interval=float(self.poll_interval),
            end_time=self._end_time,
            cancel_on_timeout=True,
            log=self.log,
            progress_interval=float(self.progress_interval),
            started_at=self._progress().started_at,
        )
        return self._finish(context, outcome)

    def get_job_result(self, external_id: Any, context: Context) -> list[str]:
        """The output URLs: from the wait that just ended, or, for an earlier try's success, from RunComfy."""
        if self._urls is not None:
            return self._urls
        request_id = str(external_id)
        self._track(context, request_id)
        try:
            outcome = RequestWatch(request_id, self.log).outcome(self.hook.get_result(request_id))
        except WAIT_FATAL_ERRORS:
            raise
        except RunComfyError as err:
            # An outage must not fail a try whose paid job already succeeded (with every try failed
            # so, a lost job: found by the soak): wait for that job; the wait rides out failed polls.
            self.log.warning(
                "Could not read the result of RunComfy request %s from an earlier try (%s); waiting for it",
                request_id,
                err,
            )
            self._end_time = time.time() + float(self.timeout)
            return self.poll_until_complete(request_id, context)
        return self._finish(context, outcome)

    # -- deferral ----------------------------------------------------------------------------------

    def _outcome_if_finished(self, watch: RequestWatch) -> dict[str, Any] | None:
        """One status check before deferring: the outcome if the job is over, else ``None``."""
        return look_before_deferring(self.hook, watch, self.log)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> list[str]:
        """Resume after the trigger fired: return the URLs on success, raise on anything else."""
        self._ran = True
        if isinstance(event, dict) and event.get("request_id"):
            self.request_id = str(event["request_id"])  # a fresh object: what it resumed for
        return self._finish(context, event)

    def _trigger(self, request_id: str, watch: RequestWatch) -> RunComfyRequestTrigger:
        from airflow_provider_runcomfy.triggers.runcomfy import RunComfyRequestTrigger

        return RunComfyRequestTrigger(
            request_id=request_id,
            runcomfy_conn_id=self.runcomfy_conn_id,
            poll_interval=float(self.poll_interval),
            end_time=self._end_time,
            cancel_on_timeout=True,
            cancel_on_kill=self.cancel_on_kill,
            watch_memory=watch.memory(),
            progress_interval=float(self.progress_interval),
        )

    def _progress(self) -> WaitProgress:
        """The progress of this try's wait: counted from the submit (or reconnect) that set the deadline."""
        end_time = self._end_time
        started_at = time.time() if end_time is None else end_time - float(self.timeout)
        return WaitProgress(started_at=started_at, end_time=end_time, interval=float(self.progress_interval))

    # -- helpers -----------------------------------------------------------------------------------

    def _track(self, context: Context, request_id: str) -> None:
        self.request_id = request_id
        context["ti"].xcom_push(key="request_id", value=request_id)

    def _finish(self, context: Context, event: Any) -> list[str]:
        """Validate the wait's event (:class:`WaitOutcome`): the URLs of a success, else its exception."""
        outcome = WaitOutcome.from_event(event, model_id=self.model_id)
        self._urls = outcome.finish(self, context, model_id=self.model_id)
        self._warn_if_over_budget(outcome)
        return self._urls

    def _warn_if_over_budget(self, outcome: WaitOutcome) -> None:
        """
        A reported cost over ``max_cost_usd`` is a warning naming both.

        ``max_cost_usd`` guards the estimate before the submit; with a base price that is a lower
        bound, so the bill can still be higher: say so where the user will look.
        """
        limit = self.max_cost_usd
        cost = outcome.result.get("cost_usd")
        if limit is None or isinstance(cost, bool) or not isinstance(cost, int | float) or cost <= limit:
            return
        estimate = self._estimate.describe() if self._estimate is not None else "not made in this try"
        self.log.warning(
            "RunComfy request %s cost $%s, over max_cost_usd $%s: the limit guards the estimate before "
            "the submit (%s), and the job was billed more",
            outcome.request_id,
            f"{cost:g}",
            f"{float(limit):g}",
            estimate,
        )

    def on_kill(self) -> None:
        """Cancel the job when the task is killed while it waits in the worker (``cancel_on_kill``)."""
        if self.cancel_on_kill and self.request_id:
            cancel_if_queued(self.hook, RequestWatch(self.request_id, self.log), self.log)
