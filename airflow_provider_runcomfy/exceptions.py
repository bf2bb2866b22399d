"""
Domain exceptions of the RunComfy provider.

Every error a DAG author can meet is one of these classes, so a ``try``/``except`` or an
``on_failure_callback`` can tell "the token is wrong" from "the job failed" from "RunComfy is
down". They all subclass :class:`AirflowException`. The ones that no retry can fix (bad input, an
unknown model, a submit whose fate is unknown) subclass :class:`AirflowFailException` as well, so
Airflow fails the task at once instead of spending retries on them — for a paid API a blind retry is
not free.

No message here ever contains the API token: messages are built from the server's error text, which
:func:`scrub` cleans before it is used. Nor does one ever carry an input file's bytes: a ``data:`` URI
in a message is shown as ``data:image/png (812,344 bytes, sha256 3fa1c2d4…)``
(:func:`redact_data_uris`), whoever built the message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

#: A ``data:`` URI inside a text: its media type, its parameters, and the payload up to a quote or space.
_DATA_URI_IN_TEXT = re.compile(
    r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[^;,\s'\"]*)*)(?P<b64>;base64)?,"
    r"(?P<payload>[^\s'\"]*)",
    re.IGNORECASE,
)


def describe_data_uri(mime: str, data: bytes) -> str:
    """How an inline file is shown wherever an input is shown: its type, size and a short digest."""
    return f"data:{mime} ({len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()[:8]}\u2026)"


def redact_data_uris(text: str) -> str:
    """
    ``text`` with every ``data:`` URI replaced by :func:`describe_data_uri`'s short form.

    Inputs may be whole files inlined as base64 (up to 64 MiB); they must never reach a log line, an
    exception text or the metadata database. A payload cut short (a shortened ``repr``) is shown by
    its length only.
    """
    if "data:" not in text.lower():
        return text

    def shown(match: re.Match[str]) -> str:
        mime = (match.group("mime") or "text/plain").lower()
        payload = match.group("payload")
        if match.group("b64"):
            try:
                return describe_data_uri(mime, base64.b64decode(payload, validate=True))
            except (binascii.Error, ValueError):
                pass
        return f"data:{mime} ({len(payload):,} characters, not shown)"

    return _DATA_URI_IN_TEXT.sub(shown, text)


class RunComfyError(AirflowException):
    """Base class of every RunComfy provider error; its text never carries a ``data:`` URI's payload."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*(redact_data_uris(arg) if isinstance(arg, str) else arg for arg in args))


class RunComfyNotOwnerError(RunComfyError):
    """
    Airflow refused this try a write to its ``task_state_store`` just before a paid POST: nothing was paid.

    Either the process is a stale try of a task instance the scheduler has moved on (it must not pay
    for a job that no try would find), or Airflow's API failed; a retry goes on either way.
    """


class RunComfyApiError(RunComfyError):
    """
    RunComfy answered with an error.

    :param message: what went wrong, for people.
    :param status_code: the HTTP status of the answer (``None`` when there was no answer); kept as
        ``http_status`` (``AirflowException.status_code`` means something else).
    :param error_code: RunComfy's ``error_code`` when the body carried one.
    """

    def __init__(self, message: str, *, status_code: int | None = None, error_code: int | None = None):
        super().__init__(message)
        self.http_status = status_code
        self.error_code = error_code


class RunComfyAuthError(RunComfyApiError):
    """The token is missing, wrong or expired, or the account is inactive (400004, HTTP 401/403)."""


class RunComfyInsufficientBalanceError(RunComfyApiError):
    """The account's balance is too low to pay for the job (400002, HTTP 402)."""


class RunComfyUnknownModelError(RunComfyApiError, AirflowFailException):
    """The model id does not exist (400001); retrying cannot fix a typo in a DAG."""


class RunComfyPermissionError(RunComfyApiError):
    """The request id belongs to another RunComfy account (403001)."""


class RunComfyNotFoundError(RunComfyApiError):
    """The request id is unknown, deleted or expired (404001)."""


class RunComfyBadRequestError(RunComfyApiError, AirflowFailException):
    """RunComfy refused the request's content (another 4xx); the same request would be refused again."""


class RunComfyInvalidResponseError(RunComfyApiError):
    """RunComfy's answer was not the JSON the contract promises (a proxy page, a truncated body...)."""


class RunComfyUnavailableError(RunComfyApiError):
    """RunComfy stayed unreachable or kept answering 408/429/5xx after every allowed retry."""


class RunComfySubmitUncertainError(RunComfyApiError, AirflowFailException):
    """
    A submit may or may not have created a (paid) job.

    RunComfy offers no idempotency key, so the provider never sends a submit twice unless the server
    certainly did not take the first. Airflow does not retry this error either: a retry would submit
    again and could pay twice. Check the account's request history first, then clear the task.
    """


class RunComfyInputError(RunComfyError, AirflowFailException):
    """
    An input breaks a documented rule of the model; found before anything is paid for.

    :param field: the input's name with its index, e.g. ``image_urls[2]``.
    :param rule: the rule it breaks, in words.
    """

    def __init__(self, field: str, rule: str):
        super().__init__(f"{field}: {rule}")
        self.field = redact_data_uris(field)
        self.rule = redact_data_uris(rule)


class RunComfySchemaError(RunComfyError, AirflowFailException):
    """A model's input schema cannot be used: not an object of fields, or not valid JSON Schema."""


class RunComfySchemaUnavailableError(RunComfyError):
    """
    ``strict_schema=True`` and no schema of the model could be found, so nothing was submitted.

    Not an :class:`AirflowFailException`: the catalog may answer again on a retry.
    """


class RunComfyBudgetExceededError(RunComfyError, AirflowFailException):
    """
    A job's estimated cost is over the task's ``max_cost_usd``, or cannot be estimated: not submitted.

    :param message: names the limit and the estimate.
    :param limit_usd: the task's ``max_cost_usd``.
    :param estimate_usd: the estimate, ``None`` when none could be made.
    """

    def __init__(self, message: str, *, limit_usd: float, estimate_usd: float | None):
        super().__init__(message)
        self.limit_usd = limit_usd
        self.estimate_usd = estimate_usd


class RunComfyJobError(RunComfyError):
    """
    A job ended without a usable result.

    :param message: what happened.
    :param request_id: the RunComfy request id.
    :param model_id: the model, when known.
    """

    def __init__(self, message: str, *, request_id: str | None = None, model_id: str | None = None):
        super().__init__(message)
        self.request_id = request_id
        self.model_id = model_id


class RunComfyJobFailedError(RunComfyJobError):
    """RunComfy ran the job and it failed; the message carries RunComfy's error text."""


class RunComfyJobCancelledError(RunComfyJobError):
    """The job was cancelled (by a user, by this provider on kill or on timeout)."""


class RunComfyJobTimeoutError(RunComfyJobError):
    """The job did not finish within the operator's ``timeout``."""


class RunComfyOutputExpiredError(RunComfyError, AirflowFailException):
    """
    An output URL no longer serves its file (HTTP 403/404/410 from the CDN): the output has expired.

    No retry of the copy can bring it back, so none is spent; the job must be run again.
    """


class RunComfyDownloadError(RunComfyError):
    """An output could not be copied (transport errors after retries, a short body, a corrupt image)."""


#: Errors that another status poll cannot fix: a wait ends at once with an ``error`` outcome.
WAIT_FATAL_ERRORS: tuple[type[RunComfyError], ...] = (
    RunComfyAuthError,
    RunComfyNotFoundError,
    RunComfyPermissionError,
)


def scrub(text: str, secret: str | None) -> str:
    """Return ``text`` with ``secret`` replaced, so server-echoed text can go into a message safely."""
    if secret and secret in text:
        return text.replace(secret, "***")
    return text


def describe_error_body(body: Any) -> str:
    """
    Pick a human message out of an error body, the way RunComfy's own clients do.

    The body's shape is not documented: try ``error_message``, then ``message``, ``error`` and
    ``detail``; a nested object is shown as it is.
    """
    if isinstance(body, dict):
        for key in ("error_message", "message", "error", "detail"):
            value = body.get(key)
            if value:
                return describe_error_body(value) if isinstance(value, dict) else str(value)
        return str(body)
    return str(body)
