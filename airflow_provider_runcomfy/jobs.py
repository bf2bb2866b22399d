"""
The life of a RunComfy request, as the API reports it.

RunComfy uses two vocabularies: the status endpoint says ``completed`` for every finished job, and
only the result endpoint says whether it ``succeeded`` or ``failed``. Mixing them up reports a failed
(paid) job as a success, so each has its own enum and the predicates say what a word means.

This module is light on purpose (no httpx, no Pillow): operators import it while a DAG file is parsed.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class RequestStatus(str, Enum):
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


class ResultStatus(str, Enum):
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

    :param result: the body of the result endpoint.
    :param model_id: the model, or ``None`` when only the request id is known (the sensor).
    """
    output = result.get("output") or {}
    return {
        "request_id": result.get("request_id"),
        "model_id": model_id,
        "status": ResultStatus.SUCCEEDED.value,
        "urls": output_urls(output),
        "output": output,
        "created_at": result.get("created_at"),
        "finished_at": result.get("finished_at"),
    }
