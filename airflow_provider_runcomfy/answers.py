"""
What an answer of the RunComfy Model API means: scrubbed of the token, parsed, or mapped to an error.

The hook sends; this module judges what came back, so the rules that turn an HTTP status and a body
into one of :mod:`~airflow_provider_runcomfy.exceptions`' classes live in one place beside them:

* every answer is scrubbed of the token as soon as it is read (:func:`scrubbed_answer`), so any
  message, log line, event or XCom value built from it downstream is safe;
* a body carrying a non-null ``error_code`` is an error whatever the HTTP status, and each
  documented code becomes its own exception (:func:`api_error`);
* a submit answer that names a job is an accepted, paid job whatever else it says
  (:func:`job_of`); a submit whose fate cannot be read is :class:`RunComfySubmitUncertainError`.

It imports httpx, so it is imported by the hook, never at DAG parse time (:mod:`.exceptions` is).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx

from airflow_provider_runcomfy.exceptions import (
    RunComfyApiError,
    RunComfyAuthError,
    RunComfyBadRequestError,
    RunComfyInsufficientBalanceError,
    RunComfyInvalidResponseError,
    RunComfyNotFoundError,
    RunComfyPermissionError,
    RunComfySubmitUncertainError,
    RunComfyUnavailableError,
    RunComfyUnknownModelError,
    describe_error_body,
    scrub,
)
from airflow_provider_runcomfy.jobs import CancelOutcome
from airflow_provider_runcomfy.retry import RetriesExhausted, is_transient_status
from airflow_provider_runcomfy.transport import AnswerTooLargeError

if TYPE_CHECKING:
    from collections.abc import Callable

R = TypeVar("R")


class WarningLog(Protocol):
    """Where an odd answer is reported: the hook's own logger (stdlib or Airflow's structlog one)."""

    def warning(self, msg: str, /, *args: Any) -> Any: ...


#: Failures after which a submit certainly did not reach RunComfy: nothing was sent.
NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

#: What a call may end with instead of an answer; :func:`failure_error` maps each to a domain error.
NO_ANSWER = (httpx.TransportError, AnswerTooLargeError, RetriesExhausted)

#: Headers about the wire form of a body, which no longer apply once it is read and decoded.
_BODY_FRAMING = frozenset({"content-encoding", "content-length", "transfer-encoding"})


# -- reading an answer -------------------------------------------------------------------------------


def _scrub_deep(value: Any, token: str) -> Any:
    """``value`` with ``token`` replaced in every string, keys included (for JSON-escaped echoes)."""
    if isinstance(value, str):
        return scrub(value, token)
    if isinstance(value, list):
        return [_scrub_deep(item, token) for item in value]
    if isinstance(value, dict):
        return {scrub(str(key), token): _scrub_deep(item, token) for key, item in value.items()}
    return value


def scrubbed_answer(response: httpx.Response, body: bytes, token: str) -> httpx.Response:
    """
    The answer with its body read, and the token replaced wherever the server echoed it.

    Scrubbed once, here, so every message, log line, trigger event and XCom value built from an
    answer downstream is safe without each place having to remember. A token the server wrote with
    JSON escapes (``\\u0072c-...``) is caught too: such bodies are parsed, scrubbed and written back.
    """
    secret = token.encode()
    if secret:
        body = body.replace(secret, b"***")
        if b"\\u" in body:
            try:
                decoded = json.loads(body)
                cleaned = _scrub_deep(decoded, token)
                if cleaned != decoded:
                    body = json.dumps(cleaned).encode()
            except ValueError:
                pass  # not JSON: no escapes to decode, and reported as unreadable later
            except RecursionError:
                # Parsed but too deep to scrub: never let it be parsed later, unscrubbed.
                body = b'"an answer nested too deep to read"'

    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _BODY_FRAMING]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=body,
        request=response.request,
        extensions={"reason_phrase": response.reason_phrase.encode("ascii", "replace")},
    )


def shown(body: Any, limit: int = 200) -> str:
    """The start of an answer's body for a message; a body too deep to print is described instead."""
    try:
        return str(body)[:limit]
    except RecursionError:
        return "(an answer nested too deep to show)"


def json_of(response: httpx.Response) -> Any:
    """The answer's JSON, or ``None`` when it is not JSON or nested too deep for the parser."""
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


def error_code_of(response: httpx.Response) -> Any:
    """The answer's ``error_code``, or ``None`` (also for a body that is not a JSON object)."""
    body = json_of(response)
    return body.get("error_code") if isinstance(body, dict) else None


def excerpt(response: httpx.Response, token: str, limit: int = 200) -> str:
    """The start of an answer's text on one line, for a message."""
    text = scrub(response.text, token).strip().replace("\n", " ")
    return text[:limit] + ("..." if len(text) > limit else "") if text else "empty body"


def describe_outcome(outcome: httpx.Response | Exception) -> str:
    """An attempt's outcome in a few words, for a retry's log line: ``HTTP 503``, ``ReadTimeout``."""
    if isinstance(outcome, httpx.Response):
        return f"HTTP {outcome.status_code}"
    return f"{type(outcome).__name__}"


def job_of(response: httpx.Response) -> dict[str, Any] | None:
    """
    The body of a submit answer that names a job (a non-empty ``request_id``), whatever else it says.

    A ``request_id`` means RunComfy created (and will charge for) a job, so the job is tracked and
    waited for: sending the submit again, or failing the task so that a retry sends it, would pay
    twice. The wait then tells how the job really ends.
    """
    body = json_of(response)
    if not isinstance(body, dict):
        return None
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not request_id.strip():
        return None
    return body


# -- from an answer to a domain error ----------------------------------------------------------------


def parse_body(what: str, response: httpx.Response, token: str) -> dict[str, Any]:
    """Return the JSON body of a final answer, or raise the domain error it stands for."""
    body = json_of(response)
    if not isinstance(body, dict):
        if response.is_error:
            raise error_of(what, response, token)
        raise RunComfyInvalidResponseError(
            f"{what}: RunComfy answered HTTP {response.status_code} with a body that is not a JSON "
            f"object: {excerpt(response, token)}",
            status_code=response.status_code,
        )
    # ``"error_code": null`` is how some answers say "no error" (RunComfy's clients test ``is not None``).
    if response.is_error or body.get("error_code") is not None:
        raise error_of(what, response, token)
    return body


def error_of(what: str, response: httpx.Response, token: str) -> RunComfyApiError:
    """The domain error of an error answer, from its JSON body or, failing that, its text."""
    body = json_of(response)
    if not isinstance(body, dict):
        body = {"error_message": excerpt(response, token)}
    return api_error(what, response.status_code, body, token)


def api_error(what: str, status: int, body: dict[str, Any], token: str) -> RunComfyApiError:
    """Map RunComfy's documented error codes (and, failing those, HTTP statuses) to domain errors."""
    raw_code = body.get("error_code")
    try:
        code = int(raw_code) if raw_code is not None else None
    except (TypeError, ValueError):
        code = None
    detail = scrub(describe_error_body(body), token)
    head = f"{what} failed: RunComfy answered HTTP {status}" + (
        f" with error_code {raw_code}" if raw_code is not None else ""
    )
    kind: type[RunComfyApiError]
    if code == 400001:
        kind, hint = RunComfyUnknownModelError, "the model id does not exist; check its spelling"
    elif code == 400002 or status == 402:
        kind, hint = RunComfyInsufficientBalanceError, "the account's balance is too low; top it up"
    elif code == 403001:
        kind, hint = RunComfyPermissionError, "the request belongs to another RunComfy account"
    elif code == 400004 or status in (401, 403):
        kind, hint = RunComfyAuthError, "the API token is wrong or expired, or the account is inactive"
    elif code == 404001 or status == 404:
        kind, hint = RunComfyNotFoundError, "the request id is unknown, deleted or expired"
    elif is_transient_status(status):
        kind, hint = RunComfyUnavailableError, "RunComfy is busy or unavailable"
    elif 400 <= status < 500:
        kind, hint = RunComfyBadRequestError, "RunComfy refused the request"
    else:
        kind, hint = RunComfyApiError, "RunComfy reported an error"
    return kind(f"{head}: {hint}: {detail}", status_code=status, error_code=code)


def uncertain_submit(what: str, reason: str) -> RunComfySubmitUncertainError:
    """The error of a submit that may have created a (paid) job, with how to find out."""
    return RunComfySubmitUncertainError(
        f"{what} may have created a job: {reason}. RunComfy has no idempotency key, so the "
        "submit was not sent again, to avoid paying twice. Look for the request in your RunComfy "
        "account's request history; if it is there, wait for it with RunComfyRequestSensor "
        "(request_id=...), otherwise clear this task to submit again."
    )


def final_answer(
    what: str, paid: bool, response: httpx.Response, token: str, log: WarningLog
) -> dict[str, Any]:
    """
    The body of the answer a call ended with, or the error it stands for.

    A submit answer that names a job is returned whatever else it says (the job is paid for and
    waited for, never sent again); an odd answer around it is logged to ``log``. A submit answered
    2xx (or 3xx, never followed) without a readable job id, or answered 5xx/408, may have created a
    job, so it is :class:`RunComfySubmitUncertainError`, never sent again.
    """
    job = job_of(response) if paid else None
    if job is not None:
        if response.is_error or job.get("error_code") is not None:
            log.warning(
                "%s: RunComfy answered HTTP %s with error_code %s but also request_id %s; the job is "
                "taken as accepted and waited for (it is never sent again)",
                what,
                response.status_code,
                job.get("error_code"),
                job.get("request_id"),
            )
        return job
    status = response.status_code
    if paid and not response.is_error and error_code_of(response) is None:
        reason = f"RunComfy answered HTTP {status} without a readable request_id ({excerpt(response, token)})"
        raise uncertain_submit(what, reason)
    if paid and is_transient_status(status) and status != 429:
        raise uncertain_submit(what, f"RunComfy answered HTTP {status}")
    return parse_body(what, response, token)


def failure_error(what: str, paid: bool, failure: Exception, token: str) -> RunComfyApiError:
    """
    The domain error of a call that got no usable answer: retries ran out, or a failure was not retried.

    :param failure: :class:`RetriesExhausted`, :class:`AnswerTooLargeError` or an httpx transport error.
    """
    if isinstance(failure, RetriesExhausted):
        last, attempts = failure.last, failure.attempts
        if isinstance(last, httpx.Response):
            if paid:  # a 429: refused, so nothing was created
                return error_of(what, last, token)
            return RunComfyUnavailableError(
                f"{what} failed after {attempts} attempts: RunComfy answered HTTP "
                f"{last.status_code} ({excerpt(last, token)}).",
                status_code=last.status_code,
            )
        return RunComfyUnavailableError(
            f"{what} failed after {attempts} attempts: {type(last).__name__}: {scrub(str(last), token)}"
            + (" (nothing was sent, so no job was created)" if paid else "")
        )
    if isinstance(failure, AnswerTooLargeError):
        if paid:
            return uncertain_submit(what, f"its answer could not be read: {failure}")
        return RunComfyInvalidResponseError(f"{what}: RunComfy's {failure}")
    if paid:  # sent, and the answer lost: the job may exist
        return uncertain_submit(what, f"{type(failure).__name__}: {scrub(str(failure), token)}")
    return RunComfyUnavailableError(f"{what} failed: {type(failure).__name__}: {scrub(str(failure), token)}")


def read_answer(what: str, body: dict[str, Any], read: Callable[[dict[str, Any]], R]) -> R:
    """A body read by ``read`` (a catalog reader); one it cannot read is an invalid response."""
    try:
        return read(body)
    except ValueError as err:
        raise RunComfyInvalidResponseError(f"{what}: {err}: {shown(body)}") from None


def request_id_of(body: dict[str, Any], model_id: str) -> str:
    """The ``request_id`` of an accepted submit's answer."""
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        # Only an accepted answer reaches here; should one ever lack its id, the job may exist.
        raise RunComfySubmitUncertainError(
            f"Submit to model {model_id!r}: RunComfy's answer has no request_id: {shown(body)}"
        )
    return request_id


def cancel_outcome(body: dict[str, Any]) -> CancelOutcome:
    """What a cancel answer says came of it (see :class:`CancelOutcome`)."""
    outcome = CancelOutcome.from_answer(body)
    if outcome is None:
        raise RunComfyInvalidResponseError(
            f"Cancel: an answer that says neither cancelled, cancellation_requested nor "
            f"not_cancellable: {shown(body)}"
        )
    return outcome
