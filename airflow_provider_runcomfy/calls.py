"""
The Model API's calls as values: what each one sends, its name in messages, whether it is paid.

Building a call checks its ids before anything is sent (a request id, each part of a model id, must
be a safe URL path segment: ``..`` would reach another endpoint), and :meth:`ApiCall.may_retry` is
the one rule that keeps a paid submit from being sent twice. The hook sends these calls
(:mod:`airflow_provider_runcomfy.hooks.runcomfy`); they know nothing of clients or connections.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from airflow_provider_runcomfy.answers import NOTHING_SENT, job_of
from airflow_provider_runcomfy.catalog import list_query
from airflow_provider_runcomfy.exceptions import RunComfyBadRequestError
from airflow_provider_runcomfy.retry import is_transient_status

SUBMIT_PATH = "/v1/models/{model_id}"
CATALOG_PATH = "/v1/models"
REQUEST_PATH = "/v1/requests/{request_id}/{action}"

#: A request id or one model id segment: letters, digits and ``-_.~``, never ``.`` or ``..``.
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,199}")


@dataclass(frozen=True)
class ApiCall:
    """One API call: what to send, how to name it in messages, and whether it costs money."""

    method: str
    path: str
    what: str
    json: Any = None
    params: dict[str, str] | None = None
    paid: bool = False

    def may_retry(self, outcome: httpx.Response | Exception) -> bool:
        """
        Free calls retry every transient failure; a paid submit only when it certainly was not taken.

        A 429 that names a job anyway is an accepted job (see :func:`.answers.job_of`), never retried.
        """
        if isinstance(outcome, httpx.Response):
            if self.paid:
                return outcome.status_code == 429 and job_of(outcome) is None
            return is_transient_status(outcome.status_code)
        if self.paid:
            return isinstance(outcome, NOTHING_SENT)
        return isinstance(outcome, httpx.TransportError)


def _safe_segment(text: str) -> bool:
    return _SAFE_SEGMENT.fullmatch(text) is not None and text not in (".", "..")


def _model_path(model_id: Any) -> str:
    """
    A model id as a URL path: ``owner/name[/...]``, each segment a safe one; refused before any request.

    ``..`` or ``.`` segments, an empty segment, ``%``, ``?`` or ``#`` would send the call to another
    endpoint (``../requests/x/cancel`` is a cancel), so they never reach the URL.
    """
    if not isinstance(model_id, str) or not model_id.strip("/ "):
        raise RunComfyBadRequestError(f"model_id must be a non-empty string, got {model_id!r}")
    segments = model_id.strip().strip("/").split("/")
    if len(segments) < 2 or len(segments) > 8 or not all(_safe_segment(part) for part in segments):
        raise RunComfyBadRequestError(
            f"model_id must have the form owner/name[/...], each part made of letters, digits and "
            f"'-_.~' (not '.' or '..'), got {model_id[:200]!r}"
        )
    return quote("/".join(segments), safe="/-_.~")


def submit(model_id: str, inputs: dict[str, Any]) -> ApiCall:
    """``POST /v1/models/{model_id}``: the paid call."""
    return ApiCall(
        method="POST",
        path=SUBMIT_PATH.format(model_id=_model_path(model_id)),
        what=f"Submit to model {model_id!r}",
        json=inputs,
        paid=True,
    )


def of_request(method: str, request_id: str, action: str, params: dict[str, str] | None = None) -> ApiCall:
    """``/v1/requests/{request_id}/{action}``: status, result or cancel of one job."""
    if not isinstance(request_id, str) or not request_id.strip():
        raise RunComfyBadRequestError(f"request_id must be a non-empty string, got {request_id!r}")
    if not _safe_segment(request_id.strip()):
        # ``..`` or ``x/../..`` would reach another endpoint than this request's.
        raise RunComfyBadRequestError(
            f"request_id must be one URL path segment of letters, digits and '-_.~' (not '.' or "
            f"'..'), got {request_id[:200]!r}"
        )
    return ApiCall(
        method=method,
        path=REQUEST_PATH.format(request_id=quote(request_id.strip(), safe=""), action=action),
        what=f"RunComfy {action} of request {request_id}",
        params=params,
    )


def result(request_id: str, include_cost: bool) -> ApiCall:
    """``GET /v1/requests/{request_id}/result``, with ``include_cost=true`` when asked."""
    return of_request("GET", request_id, "result", {"include_cost": "true"} if include_cost else None)


def model(model_id: str) -> ApiCall:
    """``GET /v1/models/{model_id}``: one catalog entry."""
    return ApiCall(
        method="GET",
        path=f"{CATALOG_PATH}/{_model_path(model_id)}",
        what=f"RunComfy catalog entry of model {model_id!r}",
    )


def model_list(
    search: str | None, category: str | None, kind: str | None, include_schema: bool, limit: int, offset: int
) -> ApiCall:
    """``GET /v1/models?...``: one page of the catalog (see :func:`.catalog.list_query`)."""
    params = list_query(search, category, kind, include_schema, limit, offset)
    return ApiCall(method="GET", path=CATALOG_PATH, what="RunComfy model list", params=params)


def categories() -> ApiCall:
    """``GET /v1/models/categories``."""
    return ApiCall(method="GET", path=f"{CATALOG_PATH}/categories", what="RunComfy model categories")
