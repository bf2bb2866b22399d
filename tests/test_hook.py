"""
RunComfyHook against the emulator over real HTTP on 127.0.0.1, plus edge cases on mock transports.

The request log of the emulator is the witness for the money rules: it counts how many submits
(POSTs) really reached the server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import pytest

from airflow_provider_runcomfy.emulator import Fault
from airflow_provider_runcomfy.exceptions import (
    RunComfyAuthError,
    RunComfyBadRequestError,
    RunComfyInsufficientBalanceError,
    RunComfyInvalidResponseError,
    RunComfyNotFoundError,
    RunComfyPermissionError,
    RunComfySubmitUncertainError,
    RunComfyUnavailableError,
    RunComfyUnknownModelError,
)
from airflow_provider_runcomfy.hooks.runcomfy import ApiSettings, RunComfyHook, normalize_base_url
from airflow_provider_runcomfy.jobs import CancelOutcome, output_urls
from airflow_provider_runcomfy.transport import USER_AGENT, BearerAuth, RetryPolicy, parse_retry_after
from tests.conftest import TEST_TOKEN, conn_json

EDIT = "bytedance/dreamina-4-0/edit"
VIDEO = "bytedance/dreamina-3-0/pro/image-to-video"


def edit_inputs(emu: Any, prompt: str = "make it golden hour") -> dict[str, Any]:
    return {"image_urls": [emu.sample_url("portrait.png")], "prompt": prompt}


def wait_logged(emu: Any, count: int, path_end: str, timeout: float = 5) -> list[Any]:
    """Wait for delayed requests to reach the log: the emulator logs a request when it answers."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in emu.requests if r.path.endswith(path_end)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def posts(emu: Any, path_start: str = "/v1/models/") -> list[Any]:
    return [r for r in emu.requests if r.method == "POST" and r.path.startswith(path_start)]


def wait_result(hook: RunComfyHook, request_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hook.get_status(request_id)["status"] in ("completed", "cancelled"):
            return hook.get_result(request_id)
        time.sleep(0.1)
    raise AssertionError(f"request {request_id} did not finish in {timeout} s")


# -- the happy path ------------------------------------------------------------------------------


def test_submit_status_result_give_output_urls(emu: Any) -> None:
    hook = RunComfyHook()
    request_id = hook.submit(EDIT, edit_inputs(emu))
    status = hook.get_status(request_id)
    assert status["request_id"] == request_id
    assert status["status"] == "in_queue"
    assert isinstance(status["queue_position"], int)

    result = wait_result(hook, request_id)
    assert result["status"] == "succeeded"
    urls = output_urls(result["output"])
    assert urls
    assert all(url.startswith(emu.base_url) for url in urls)
    # The outputs are real files, served without the token.
    image = httpx.get(urls[0])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"


def test_every_api_call_sends_token_user_agent_and_reuses_one_connection(emu: Any) -> None:
    with RunComfyHook() as hook:
        request_id = hook.submit(EDIT, edit_inputs(emu))
        for _ in range(3):
            hook.get_status(request_id)
        hook.get_result(request_id)
    api = [r for r in emu.requests if r.path.startswith("/v1/")]
    assert len(api) == 5
    assert all(r.authorized and r.user_agent == USER_AGENT for r in api)
    assert len({r.peer for r in api}) == 1, "one keep-alive connection serves the hook's calls"


def test_cancel_queued_job_cancelled_running_job_not_cancellable(emu: Any) -> None:
    emu.queue_seconds = 30
    hook = RunComfyHook()
    queued = hook.submit(EDIT, edit_inputs(emu))
    assert hook.cancel(queued) is CancelOutcome.CANCELLED
    assert hook.get_status(queued)["status"] == "cancelled"

    emu.queue_seconds = 0
    emu.run_seconds = 30
    running = hook.submit(EDIT, edit_inputs(emu))
    deadline = time.monotonic() + 10
    while hook.get_status(running)["status"] != "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert hook.cancel(running) is CancelOutcome.NOT_CANCELLABLE


def test_a_cancel_outcome_is_true_only_when_confirmed(emu: Any) -> None:
    """Code written to the first ``cancel() -> bool`` contract reads a refused cancel as not done."""
    emu.queue_seconds = 0
    emu.run_seconds = 30
    hook = RunComfyHook()
    running = hook.submit(EDIT, edit_inputs(emu))
    deadline = time.monotonic() + 10
    while hook.get_status(running)["status"] != "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not hook.cancel(running), "not_cancellable must read as false"
    emu.queue_seconds = 30
    assert hook.cancel(hook.submit(EDIT, edit_inputs(emu))), "a confirmed cancel reads as true"
    assert [bool(outcome) for outcome in CancelOutcome] == [True, False, False]


def test_async_twins_look_the_connection_up_without_blocking(emu: Any) -> None:
    emu.queue_seconds = 30
    request_id = RunComfyHook().submit(EDIT, edit_inputs(emu))

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], CancelOutcome]:
        hook = RunComfyHook()
        try:
            return (
                await hook.aget_status(request_id),
                await hook.aget_result(request_id),
                await hook.acancel(request_id),
            )
        finally:
            await hook.aclose()

    status, result, cancelled = asyncio.run(scenario())
    assert status["status"] == "in_queue"
    assert result["status"] == "in_queue"
    assert cancelled is CancelOutcome.CANCELLED


def test_async_client_is_rebuilt_for_a_new_event_loop(emu: Any) -> None:
    emu.queue_seconds = 30
    hook = RunComfyHook()
    request_id = RunComfyHook().submit(EDIT, edit_inputs(emu))
    first = asyncio.run(hook.aget_status(request_id))
    second = asyncio.run(hook.aget_status(request_id))  # a new loop: the old client would fail here
    assert first["status"] == second["status"] == "in_queue"


# -- retries of free calls -----------------------------------------------------------------------


def test_two_503s_on_status_then_success(emu: Any) -> None:
    hook = RunComfyHook()
    request_id = hook.submit(EDIT, edit_inputs(emu))
    emu.add_fault(Fault(path=r"/status$", kind="status", status=503, times=2))
    assert hook.get_status(request_id)["request_id"] == request_id
    gets = [r for r in emu.requests if r.path.endswith("/status")]
    assert [r.status for r in gets] == [503, 503, 200]


@pytest.mark.parametrize(
    "fault",
    [
        Fault(path=r"/result$", kind="status", status=429, times=2),
        Fault(path=r"/result$", kind="status", status=408, times=2),
        Fault(path=r"/result$", kind="status", status=502, times=2),
        Fault(path=r"/result$", kind="drop", times=2),
    ],
    ids=["429", "408", "502", "dropped-connection"],
)
def test_result_retries_transient_failures(emu: Any, fault: Fault) -> None:
    hook = RunComfyHook()
    request_id = hook.submit(EDIT, edit_inputs(emu))
    emu.add_fault(fault)
    assert hook.get_result(request_id)["request_id"] == request_id
    assert len([r for r in emu.requests if r.path.endswith("/result")]) == 3


def test_read_timeout_is_retried(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", conn_json(emu.base_url, read_timeout=0.3))
    hook = RunComfyHook()
    request_id = hook.submit(EDIT, edit_inputs(emu))
    emu.add_fault(Fault(path=r"/status$", kind="delay", delay_seconds=1.0, times=1))
    assert hook.get_status(request_id)["request_id"] == request_id
    assert len(wait_logged(emu, 2, "/status")) == 2


def test_retries_are_bounded_then_raise_a_clear_error(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", conn_json(emu.base_url, max_retries=3))
    hook = RunComfyHook()
    request_id = hook.submit(EDIT, edit_inputs(emu))
    emu.add_fault(Fault(path=r"/status$", kind="status", status=503, times=None))
    with pytest.raises(RunComfyUnavailableError, match=r"after 4 attempts.*HTTP 503"):
        hook.get_status(request_id)
    assert len([r for r in emu.requests if r.path.endswith("/status")]) == 4


def test_retry_after_is_honoured(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", conn_json(emu.base_url, retry_max_delay=30))
    slept: list[float] = []
    monkeypatch.setattr("airflow_provider_runcomfy.retry._sleep", slept.append)
    hook = RunComfyHook()
    request_id = hook.submit(EDIT, edit_inputs(emu))
    emu.add_fault(Fault(path=r"/status$", kind="status", status=429, retry_after=7, times=1))
    hook.get_status(request_id)
    assert slept == [7.0]


# -- the paid submit -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault(path=r"^/v1/models/", kind="status", status=500, times=1),
        Fault(path=r"^/v1/models/", kind="status", status=503, times=1),
        Fault(path=r"^/v1/models/", kind="drop", times=1),
    ],
    ids=["500", "503", "dropped-connection"],
)
def test_submit_is_never_sent_twice_when_it_may_have_been_taken(emu: Any, fault: Fault) -> None:
    emu.add_fault(fault)
    with pytest.raises(RunComfySubmitUncertainError, match="may have created a job") as err:
        RunComfyHook().submit(EDIT, edit_inputs(emu))
    assert len(posts(emu)) == 1
    assert "request history" in str(err.value)


def test_submit_read_timeout_is_not_retried(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", conn_json(emu.base_url, read_timeout=0.3))
    emu.add_fault(Fault(path=r"^/v1/models/", kind="delay", delay_seconds=1.0, times=1))
    with pytest.raises(RunComfySubmitUncertainError, match="ReadTimeout"):
        RunComfyHook().submit(EDIT, edit_inputs(emu))
    time.sleep(1.0)  # the delayed submit is logged when the emulator answers it
    assert len(posts(emu)) == 1


def test_submit_429_is_retried_because_it_was_refused(emu: Any) -> None:
    emu.add_fault(Fault(path=r"^/v1/models/", kind="status", status=429, retry_after=0, times=2))
    request_id = RunComfyHook().submit(EDIT, edit_inputs(emu))
    assert [r.status for r in posts(emu)] == [429, 429, 200]
    assert posts(emu)[-1].request_id == request_id


def test_submit_retries_when_nothing_could_be_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    # A port nobody listens on: the connection is refused before a byte is sent.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", conn_json(f"http://127.0.0.1:{port}", max_retries=2))
    attempts: list[float] = []
    monkeypatch.setattr("airflow_provider_runcomfy.retry._sleep", attempts.append)
    with pytest.raises(RunComfyUnavailableError, match=r"after 3 attempts.*nothing was sent"):
        RunComfyHook().submit(EDIT, {"image_urls": ["https://example.invalid/a.png"], "prompt": "x"})
    assert len(attempts) == 2


# -- errors --------------------------------------------------------------------------------------


def test_bad_token_gives_auth_error_without_the_token(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bad_token = "rc-wrong-token-0123456789"
    monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", conn_json(emu.base_url, token=bad_token))
    with pytest.raises(RunComfyAuthError, match="400004") as err:
        RunComfyHook().submit(EDIT, edit_inputs(emu))
    assert bad_token not in str(err.value)
    assert bad_token not in repr(err.value)
    assert posts(emu)[0].status == 401


def test_unknown_request_is_not_found(emu: Any) -> None:
    with pytest.raises(RunComfyNotFoundError, match="404001"):
        RunComfyHook().get_status("4b1d0c6e-0000-4000-8000-000000000000")


def test_expired_request_is_not_found(emu: Any) -> None:
    emu.queue_seconds, emu.run_seconds, emu.result_ttl_seconds = 0, 0.1, 0.3
    hook = RunComfyHook()
    request_id = hook.submit(EDIT, edit_inputs(emu))
    wait_result(hook, request_id)
    time.sleep(0.5)
    with pytest.raises(RunComfyNotFoundError, match="expired"):
        hook.get_result(request_id)


def test_request_of_another_account_is_permission_error(emu: Any) -> None:
    other = "rc-other-account-token"
    emu.add_token(other)
    request_id = RunComfyHook().submit(EDIT, edit_inputs(emu))
    hook_of_other = RunComfyHook()
    hook_of_other._settings = ApiSettings(base_url=emu.base_url, token=other)
    with pytest.raises(RunComfyPermissionError, match="403001"):
        hook_of_other.get_status(request_id)


def test_unknown_model(emu: Any) -> None:
    with pytest.raises(RunComfyUnknownModelError, match="400001"):
        RunComfyHook().submit("nobody/no-such-model", {"prompt": "x"})
    assert len(posts(emu)) == 1


def test_insufficient_balance(emu: Any) -> None:
    emu.balance = 0
    with pytest.raises(RunComfyInsufficientBalanceError, match="top it up"):
        RunComfyHook().submit(EDIT, edit_inputs(emu))


def test_input_refused_by_server_is_not_retried(emu: Any) -> None:
    with pytest.raises(RunComfyBadRequestError, match="prompt"):
        RunComfyHook().submit(EDIT, {"image_urls": [emu.sample_url("portrait.png")]})
    assert len(posts(emu)) == 1


def test_error_code_on_http_200_is_an_error(emu: Any) -> None:
    emu.add_fault(
        Fault(
            path=r"^/v1/models/",
            kind="status",
            status=200,
            body={"error_code": 400002, "error_message": "balance too low"},
            times=1,
        )
    )
    with pytest.raises(RunComfyInsufficientBalanceError, match="balance too low"):
        RunComfyHook().submit(EDIT, edit_inputs(emu))


# -- the token stays secret ----------------------------------------------------------------------


def test_token_is_in_no_log_message_or_repr(
    emu: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    hook = RunComfyHook()
    emu.add_fault(Fault(path=r"/status$", kind="status", status=503, times=1))
    request_id = hook.submit(EDIT, edit_inputs(emu))
    hook.get_status(request_id)
    with pytest.raises(RunComfyNotFoundError) as err:
        hook.get_result("no-such-request")
    logs = caplog.text + "".join(capfd.readouterr())  # Airflow 3 logs through structlog to the console
    texts = [
        logs,
        str(err.value),
        repr(err.value),
        repr(hook),
        repr(hook.settings),
        repr(hook.client.auth),
    ]
    for text in texts:
        assert TEST_TOKEN not in text
    assert "retry 1 of" in logs  # the retry was logged, without the token


def test_token_is_registered_with_the_secret_masker(emu: Any) -> None:
    from airflow.providers.common.compat.sdk import redact

    RunComfyHook().settings  # noqa: B018 - loading the connection registers the mask
    assert TEST_TOKEN not in str(redact(f"token={TEST_TOKEN}"))


def test_authorization_goes_only_to_the_api_origin() -> None:
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[str(request.url)] = request.headers.get("Authorization")
        return httpx.Response(200, json={})

    auth = BearerAuth("secret-token", "https://model-api.runcomfy.net")
    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        client.get("https://model-api.runcomfy.net/v1/requests/x/status")
        client.get("https://cdn.runcomfy.net/out.png")
        client.get("http://model-api.runcomfy.net/v1/requests/x/status")  # same host, other scheme
        client.get("https://model-api.runcomfy.net:8443/v1/requests/x/status")  # other port
    assert list(seen.values()) == ["Bearer secret-token", None, None, None]
    assert "secret-token" not in repr(auth)


def test_test_connection(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = RunComfyHook().test_connection()
    assert ok, message
    assert posts(emu) == [], "checking the connection pays for nothing"

    monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", conn_json(emu.base_url, token="rc-bad-token-xyz"))
    ok, message = RunComfyHook().test_connection()
    assert not ok
    assert "refused the API token" in message
    assert "rc-bad-token-xyz" not in message


def test_connection_without_token_fails_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_RUNCOMFY_DEFAULT", '{"conn_type": "runcomfy", "host": "http://127.0.0.1:9"}'
    )
    with pytest.raises(RunComfyAuthError, match="no RunComfy API token"):
        RunComfyHook().get_status("abc")


# -- edge cases on mock transports ---------------------------------------------------------------


def mock_hook(handler: Any, **retry: Any) -> RunComfyHook:
    hook = RunComfyHook()
    hook._settings = ApiSettings(
        base_url="https://api.test",
        token="tok-123456",
        retry=RetryPolicy(**{"backoff": 0.0, "max_delay": 0.0, **retry}),
    )
    hook._client = httpx.Client(
        base_url="https://api.test",
        transport=httpx.MockTransport(handler),
        auth=BearerAuth("tok-123456", "https://api.test"),
    )
    return hook


def test_body_that_is_not_json_gives_status_and_excerpt() -> None:
    hook = mock_hook(lambda request: httpx.Response(200, text="<html>maintenance page</html>"))
    with pytest.raises(RunComfyInvalidResponseError, match=r"HTTP 200.*not a JSON object.*maintenance page"):
        hook.get_status("abc")


def test_5xx_html_after_retries_names_status_and_excerpt() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(502, text="<h1>Bad gateway</h1>")

    with pytest.raises(RunComfyUnavailableError, match=r"after 3 attempts.*HTTP 502.*Bad gateway"):
        mock_hook(handler, max_retries=2).get_result("abc")
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"error_message": "no"}, RunComfyAuthError),
        (403, {"message": "forbidden"}, RunComfyAuthError),
        (400, {"error_code": 400004, "error": "token expired"}, RunComfyAuthError),
        (402, {"detail": "pay"}, RunComfyInsufficientBalanceError),
        (400, {"error_code": "400001"}, RunComfyUnknownModelError),
        (403, {"error_code": 403001}, RunComfyPermissionError),
        (404, {"error_code": 404001}, RunComfyNotFoundError),
        (200, {"error_code": 404001, "error_message": "expired"}, RunComfyNotFoundError),
        (422, {"error": {"field": "prompt", "msg": "too long"}}, RunComfyBadRequestError),
    ],
)
def test_error_mapping(status: int, body: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        mock_hook(lambda request: httpx.Response(status, json=body)).get_status("abc")


def test_server_echo_of_token_is_scrubbed() -> None:
    hook = mock_hook(lambda request: httpx.Response(401, json={"error_message": "bad token tok-123456"}))
    with pytest.raises(RunComfyAuthError) as err:
        hook.get_status("abc")
    assert "tok-123456" not in str(err.value)


def test_cancel_decides_on_outcome_not_status() -> None:
    body = {"request_id": "abc", "status": "completed", "outcome": "cancelled"}
    assert mock_hook(lambda request: httpx.Response(202, json=body)).cancel("abc") is CancelOutcome.CANCELLED


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"outcome": "not_cancellable", "status": "in_progress"}, CancelOutcome.NOT_CANCELLABLE),
        ({"outcome": "Canceled", "status": "completed"}, CancelOutcome.CANCELLED),
        ({"status": "cancelled"}, CancelOutcome.CANCELLED),
        ({"status": "CANCELED"}, CancelOutcome.CANCELLED),
        ({"status": "cancellation_requested"}, CancelOutcome.REQUESTED),
        ({"outcome": "cancellation_requested"}, CancelOutcome.REQUESTED),
        # RunComfy's ComfyUI nodes' own test: the status says cancelled, the outcome only "requested".
        ({"status": "cancelled", "outcome": "cancellation_requested"}, CancelOutcome.CANCELLED),
        ({"status": "cancellation_requested", "error_code": None}, CancelOutcome.REQUESTED),
    ],
)
def test_cancel_reads_every_answer_runcomfy_clients_accept(
    body: dict[str, Any], expected: CancelOutcome
) -> None:
    answer = {"request_id": "abc", **body}
    assert mock_hook(lambda request: httpx.Response(202, json=answer)).cancel("abc") is expected


@pytest.mark.parametrize("body", [{"status": "in_progress"}, {"outcome": "maybe"}, {}])
def test_cancel_answer_that_says_nothing_known_is_invalid(body: dict[str, Any]) -> None:
    hook = mock_hook(lambda request: httpx.Response(202, json={"request_id": "abc", **body}))
    with pytest.raises(RunComfyInvalidResponseError, match="neither cancelled"):
        hook.cancel("abc")


def test_error_code_null_is_no_error() -> None:
    body = {"request_id": "abc", "status": "in_queue", "error_code": None}
    assert mock_hook(lambda request: httpx.Response(200, json=body)).get_status("abc") == body


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, {"request_id": "req-1", "error_code": None}),
        (200, {"request_id": "req-1", "error_code": 400002, "error_message": "odd"}),
        (429, {"request_id": "req-1", "error_message": "slow down"}),
        (503, {"request_id": "req-1"}),
    ],
)
def test_a_submit_answer_with_a_request_id_is_an_accepted_job_never_sent_again(
    status: int, body: dict[str, Any]
) -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(status, json=body)

    assert mock_hook(answer).submit(EDIT, {"prompt": "x"}) == "req-1"
    assert len(sent) == 1


def test_submit_answer_without_request_id() -> None:
    # A 200 means RunComfy took the submit: without a readable id the job may exist (issue 19, item 1),
    # so it is the uncertain error Airflow does not retry, not an invalid answer a retry would pay for.
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"status_url": "x"})

    hook = mock_hook(handler)
    with pytest.raises(RunComfySubmitUncertainError, match="without a readable request_id"):
        hook.submit(EDIT, {"prompt": "x"})
    assert len(sent) == 1


def test_model_id_with_slashes_is_one_path() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json={"request_id": "r1"})

    assert mock_hook(handler).submit(VIDEO, {"prompt": "x"}) == "r1"
    assert paths == [f"/v1/models/{VIDEO}"]


def test_retry_policy_is_bounded_and_jittered() -> None:
    policy = RetryPolicy(max_retries=5, backoff=1.0, max_delay=10.0)
    for retry in range(1, 6):
        ceiling = min(10.0, 2 ** (retry - 1))
        assert ceiling / 2 <= policy.delay(retry) <= ceiling
    assert policy.delay(1, retry_after=4.0) == 4.0
    assert policy.delay(1, retry_after=400.0) == 10.0
    assert len({policy.delay(5) for _ in range(20)}) > 1


def test_retry_policy_from_extra() -> None:
    policy = RetryPolicy.from_extra({"max_retries": "2", "extra__runcomfy__retry_backoff": 0.5})
    assert (policy.max_retries, policy.backoff, policy.max_delay) == (2, 0.5, 60.0)
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy.from_extra({"max_retries": "many"})


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 25 Nov 2026 10:00:10 GMT", now=1795600800.0) == pytest.approx(10.0, abs=1)


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, "https://model-api.runcomfy.net"),
        ("", None, "https://model-api.runcomfy.net"),
        ("https://model-api.runcomfy.net/v1/", None, "https://model-api.runcomfy.net"),
        ("model-api.runcomfy.net", None, "https://model-api.runcomfy.net"),
        ("http://127.0.0.1:8765", None, "http://127.0.0.1:8765"),
        ("http://127.0.0.1", 8765, "http://127.0.0.1:8765"),
    ],
)
def test_normalize_base_url(host: str | None, port: int | None, expected: str) -> None:
    assert normalize_base_url(host, port) == expected


def test_ui_field_behaviour_and_provider_info() -> None:
    from airflow_provider_runcomfy import get_provider_info

    behaviour = RunComfyHook.get_ui_field_behaviour()
    assert behaviour["relabeling"] == {"host": "API base URL", "password": "API token"}
    assert behaviour["placeholders"]["host"] == "https://model-api.runcomfy.net"
    assert {"schema", "login"} <= set(behaviour["hidden_fields"])
    info = get_provider_info()
    (conn_type,) = info["connection-types"]
    assert conn_type["connection-type"] == "runcomfy"
    assert conn_type["hook-class-name"] == "airflow_provider_runcomfy.hooks.runcomfy.RunComfyHook"
    assert conn_type["ui-field-behaviour"]["relabeling"]["password"] == "API token"
