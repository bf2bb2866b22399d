"""
The life of a RunComfy request, as the API reports it.

RunComfy uses two vocabularies: the status endpoint says ``completed`` for every finished job, and
only the result endpoint says whether it ``succeeded`` or ``failed``. Mixing them up reports a failed
(paid) job as a success, so each has its own enum and the predicates say what a word means.

This module is light on purpose (no httpx, no Pillow): operators import it while a DAG file is parsed.
The trigger and the operators' in-worker wait share :class:`RequestWatch`, so both read the API alike.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from airflow_provider_runcomfy.exceptions import describe_error_body


class RequestStatus(StrEnum):
    """The ``status`` word of ``GET /v1/requests/{id}/status``."""

    IN_QUEUE = "in_queue"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    @property
    def is_active(self) -> bool:
        """Still waiting or running: keep polling."""
        return self in (RequestStatus.IN_QUEUE, RequestStatus.IN_PROGRESS)

    @property
    def is_terminal(self) -> bool:
        """Finished; ``completed`` still needs the result endpoint to tell success from failure."""
        return not self.is_active

    @property
    def is_cancellable(self) -> bool:
        """Only a queued job can be cancelled (a running one answers ``not_cancellable``)."""
        return self is RequestStatus.IN_QUEUE


class ResultStatus(StrEnum):
    """The ``status`` word of ``GET /v1/requests/{id}/result``."""

    IN_QUEUE = "in_queue"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_active(self) -> bool:
        """Not finished yet."""
        return self in (ResultStatus.IN_QUEUE, ResultStatus.IN_PROGRESS)

    @property
    def is_terminal(self) -> bool:
        """Finished, one way or another."""
        return not self.is_active

    @property
    def is_success(self) -> bool:
        """The only word that means the outputs exist."""
        return self is ResultStatus.SUCCEEDED


def parse_status(value: Any) -> RequestStatus | None:
    """Read a status word; ``None`` for a word the contract does not know (never guess it means done)."""
    try:
        return RequestStatus(value)
    except ValueError:
        return None


def parse_result_status(value: Any) -> ResultStatus | None:
    """Read a result status word; ``None`` for an unknown one."""
    try:
        return ResultStatus(value)
    except ValueError:
        return None


#: The order of :func:`output_urls`: single outputs first, images before videos.
OUTPUT_KEYS = ("image", "images", "video", "videos")


def output_urls(output: Any) -> list[str]:
    """
    Flatten RunComfy's output object into a list of URLs in a stable order.

    The object is the same for every model: ``{"image", "images", "video", "videos"}``, any subset.
    The order is image, images..., video, videos..., so ``return_value`` is the same list on every
    run and a downstream ``.expand()`` maps the same index to the same file.
    """
    if not isinstance(output, dict):
        return []
    urls: list[str] = []
    for key in OUTPUT_KEYS:
        value = output.get(key)
        if isinstance(value, str) and value:
            urls.append(value)
        elif isinstance(value, list):
            urls.extend(item for item in value if isinstance(item, str) and item)
    return urls


def summarize_result(result: dict[str, Any], *, model_id: str | None) -> dict[str, Any]:
    """
    Build the ``result`` XCom of a succeeded job: small, JSON-able, no bytes.

    ``cost_usd`` is added when RunComfy reported the job's cost on the result.

    :param result: the body of the result endpoint.
    :param model_id: the model, or ``None`` when only the request id is known (the sensor).
    """
    output = result.get("output") or {}
    summary = {
        "request_id": result.get("request_id"),
        "model_id": model_id,
        "status": ResultStatus.SUCCEEDED.value,
        "urls": output_urls(output),
        "output": output,
        "created_at": result.get("created_at"),
        "finished_at": result.get("finished_at"),
    }
    from airflow_provider_runcomfy.cost import reported_cost  # only once a job is over, not at parse time

    cost = reported_cost(result)
    if cost is not None:  # only when RunComfy reports it (``include_cost=true``; optional)
        summary["cost_usd"] = cost
    return summary


class EventStatus(StrEnum):
    """The ``status`` of the one event a :class:`RunComfyRequestTrigger` yields (and of the sync wait)."""

    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    ERROR = "error"


def make_event(status: EventStatus, request_id: str, **fields: Any) -> dict[str, Any]:
    """Build a wait outcome: ``{"status", "request_id", "result"?, "message"?}``, JSON-able and small."""
    return {"status": status.value, "request_id": request_id, **fields}


class RequestWatch:
    """
    What one waiter has seen of one request, and what each answer means.

    The trigger (async) and the operator's in-worker wait (sync) poll with different hooks but must
    log and decide exactly alike; both feed their answers to a watch. It logs each change once (a
    new queue position, the start of the run) instead of every poll, because a thousand jobs polled
    every few seconds would otherwise drown the task log.

    :param request_id: the RunComfy request id.
    :param log: the logger of the trigger or the task.
    """

    def __init__(self, request_id: str, log: Any) -> None:
        self.request_id = request_id
        self.log = log
        self._last: tuple[RequestStatus | None, Any] | None = None

    def observe(self, body: dict[str, Any]) -> RequestStatus | None:
        """Read a status answer, log it if it changed, and return its status (``None``: an unknown word)."""
        status = parse_status(body.get("status"))
        seen = (status, body.get("queue_position"))
        if seen != self._last:
            self._last = seen
            if status is RequestStatus.IN_QUEUE:
                self.log.info("RunComfy request %s is queued at position %s", self.request_id, seen[1])
            elif status is RequestStatus.IN_PROGRESS:
                self.log.info("RunComfy request %s is running", self.request_id)
            elif status is None:
                self.log.warning(
                    "RunComfy request %s has an unknown status %r; polling on",
                    self.request_id,
                    body.get("status"),
                )
            else:
                self.log.info("RunComfy request %s is %s", self.request_id, status.value)
        return status

    def outcome(self, result: dict[str, Any]) -> dict[str, Any] | None:
        """
        Turn a result answer into the final event, or ``None`` while the result says it is not finished.

        Only ``succeeded`` is a success: ``completed`` on the status endpoint covers failures too.
        """
        status = parse_result_status(result.get("status"))
        if status is ResultStatus.SUCCEEDED:
            return make_event(
                EventStatus.SUCCESS, self.request_id, result=summarize_result(result, model_id=None)
            )
        if status is ResultStatus.FAILED:
            error = result.get("error")
            message = (
                describe_error_body(error)
                if error
                else "RunComfy reported the job failed without an error text"
            )
            return make_event(EventStatus.FAILED, self.request_id, message=message)
        if status is ResultStatus.CANCELLED:
            return self.cancelled()
        if status is None:
            return make_event(
                EventStatus.ERROR,
                self.request_id,
                message=f"unknown result status {result.get('status')!r}",
            )
        return None

    def cancelled(self) -> dict[str, Any]:
        """The event of a job that was cancelled."""
        return make_event(EventStatus.CANCELLED, self.request_id, message="the job was cancelled")

    def timed_out(self, cancelled: bool) -> dict[str, Any]:
        """The event of a job that did not finish in time; says whether the queued job was cancelled."""
        tail = "it was still queued and has been cancelled" if cancelled else "it was not cancelled"
        return make_event(
            EventStatus.TIMEOUT, self.request_id, message=f"not finished within the timeout; {tail}"
        )

    def error(self, message: str) -> dict[str, Any]:
        """The event of a wait that could not go on (auth, not found, too many failed polls)."""
        return make_event(EventStatus.ERROR, self.request_id, message=message)


def describe_cancel(cancelled: bool) -> str:
    """How a cancel went, for logs: RunComfy can only cancel a job that is still queued."""
    return "cancelled" if cancelled else "could not be cancelled (already running or finished)"
