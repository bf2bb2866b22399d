"""
What a wait ends with, as one typed value: :class:`WaitOutcome`.

A wait (the trigger, the in-worker wait, the sensor, one job of a batch) ends in one of five ways:
success with output URLs and a result summary, failed, cancelled, timed out (saying what became of the
cancel), or an error (the wait could not go on). On the wire it is the small dict a trigger yields,
``{"status", "request_id", "result"?, "message"?}`` (plus ``"cancel"`` on a timeout since this
version): that shape is kept so that an event serialized by an earlier release's trigger, still
waiting in Airflow's database across an upgrade, reads back. :meth:`WaitOutcome.from_event` is the one
reader of such a dict, :meth:`WaitOutcome.to_event` the writer, and :meth:`WaitOutcome.finish` turns an
outcome into a task's result or its domain exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_provider_runcomfy.exceptions import (
    RunComfyJobCancelledError,
    RunComfyJobError,
    RunComfyJobFailedError,
    RunComfyJobTimeoutError,
)
from airflow_provider_runcomfy.jobs import CancelOutcome, EventStatus, make_event

#: The exception each unsuccessful end raises, and how its text reads (``where`` names request and model).
_ERRORS: dict[EventStatus, tuple[type[RunComfyJobError], str]] = {
    EventStatus.FAILED: (RunComfyJobFailedError, "{where} failed: {message}"),
    EventStatus.CANCELLED: (RunComfyJobCancelledError, "{where} was cancelled"),
    EventStatus.TIMEOUT: (RunComfyJobTimeoutError, "{where} timed out: {message}"),
    EventStatus.ERROR: (RunComfyJobError, "Waiting for {where} failed: {message}"),
}


@dataclass(frozen=True, slots=True)
class WaitOutcome:
    """
    How one wait for one request ended.

    :param status: success, failed, cancelled, timeout or error.
    :param request_id: the request waited for (as the event said it; ``None`` when it said none).
    :param result: on success, the ``result`` summary (``urls``, ``output``, ``cost_usd``...).
    :param message: on anything else, what happened, in words.
    :param cancel: on a timeout, what the cancel of a maybe-queued job achieved (``None``: none made).
    """

    status: EventStatus
    request_id: str | None
    result: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    cancel: CancelOutcome | None = None

    @property
    def is_success(self) -> bool:
        """The job succeeded: its outputs exist."""
        return self.status is EventStatus.SUCCESS

    @property
    def urls(self) -> list[str]:
        """The output URLs of a success (empty otherwise)."""
        return list(self.result.get("urls") or [])

    @classmethod
    def from_event(cls, event: Any, *, model_id: str | None = None) -> WaitOutcome:
        """
        Read a trigger's event (or the sync wait's), of this release or an earlier one.

        Raises :class:`RunComfyJobError` for anything that is no outcome: a missing event, a value that
        is not a dict, an unknown status. ``model_id`` only names the model in that error's text.
        """
        if not isinstance(event, dict):
            raise RunComfyJobError(f"RunComfy wait ended without an event (got {event!r}); model {model_id}")
        request_id = event.get("request_id")
        status = event.get("status")
        known = next((s for s in EventStatus if s.value == status), None) if isinstance(status, str) else None
        if known is None:
            where = _where(request_id, model_id)
            raise RunComfyJobError(
                f"{where}: unknown wait outcome {status!r}", request_id=request_id, model_id=model_id
            )
        result = event.get("result")
        return cls(
            status=known,
            request_id=request_id,
            result=dict(result) if isinstance(result, dict) else {},
            message=str(event.get("message") or ""),
            cancel=_cancel_outcome(event.get("cancel")),
        )

    def to_event(self) -> dict[str, Any]:
        """The event dict a trigger yields: ``{"status", "request_id", "result"?, "message"?, "cancel"?}``."""
        fields: dict[str, Any] = {}
        if self.is_success:
            fields["result"] = self.result
        else:
            fields["message"] = self.message
        if self.cancel is not None:
            fields["cancel"] = self.cancel.value
        return make_event(self.status, str(self.request_id), **fields)

    def error(self, model_id: str | None) -> RunComfyJobError | None:
        """The domain exception this outcome raises in a task (``None`` for a success)."""
        if self.is_success:
            return None
        error, text = _ERRORS[self.status]
        where = _where(self.request_id, model_id)
        return error(
            text.format(where=where, message=self.message), request_id=self.request_id, model_id=model_id
        )

    def finish(self, task: Any, context: Any, *, model_id: str | None) -> list[str]:
        """
        Turn this outcome into the task's result, or raise its domain exception.

        Shared by the operators and the sensor. On success the ``result`` XCom is pushed (with
        ``model_id``) and the URL list returned, so it becomes ``return_value``.
        """
        error = self.error(model_id)
        if error is not None:
            raise error
        where = _where(self.request_id, model_id)
        result = {**self.result, "model_id": model_id}
        urls = self.urls
        if not urls:
            task.log.warning("%s succeeded without any output URL (output: %s)", where, result.get("output"))
        context["ti"].xcom_push(key="result", value=result)
        task.log.info("%s succeeded with %d output(s)", where, len(urls))
        if result.get("cost_usd") is not None:
            task.log.info("%s cost $%s (as RunComfy reported it)", where, f"{result['cost_usd']:g}")
        return urls


def _cancel_outcome(value: Any) -> CancelOutcome | None:
    """The ``cancel`` of an event, when it names one (events of earlier releases have none)."""
    try:
        return CancelOutcome(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _where(request_id: Any, model_id: str | None) -> str:
    return f"RunComfy request {request_id} (model {model_id or 'unknown'})"


def finish_wait(task: Any, context: Any, event: Any, *, model_id: str | None) -> list[str]:
    """
    Turn a wait's event into the task's result, or raise (:meth:`WaitOutcome.finish`).

    Only an explicit success returns: a failed, cancelled, timed-out or broken wait, a missing event
    or an unknown status raises a domain exception that names the request and the model.
    """
    return WaitOutcome.from_event(event, model_id=model_id).finish(task, context, model_id=model_id)
