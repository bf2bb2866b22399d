"""
The RunComfy hook: authentication and HTTP for the Model API, sync for workers, async for triggers.

The rules that keep a paid API safe live here, once, for every operator, sensor and trigger:

* status, result and cancel are free and idempotent, so they are retried on transport errors,
  timeouts, 408, 429 and 5xx, with bounded exponential backoff and jitter, honouring ``Retry-After``;
* a submit is paid and RunComfy has no idempotency key, so it is sent again only when the server
  certainly did not take it (no connection could be made, or 429); otherwise the error says the job
  may exist and how to check;
* a body carrying a non-null ``error_code`` is an error whatever the HTTP status, and each
  documented code becomes its own exception (``"error_code": null`` on a 200 is a normal answer, as
  RunComfy's own clients read it);
* a submit answer that carries a ``request_id`` is an accepted (paid) job whatever else it says: it
  is returned so the job is tracked and waited for, never sent again;
* a 2xx submit answer without a readable ``request_id`` (an HTML page, another shape, JSON nested
  too deep, an answer over the size cap) means the job may exist: it is
  :class:`RunComfySubmitUncertainError`, never retried;
* every answer is read against a size cap (:data:`MAX_ANSWER_BYTES`) and each call against an
  overall deadline (connect + whole answer, :attr:`Timeouts.total`), so a hostile or broken server
  can neither exhaust memory nor hold a worker or a triggerer's poll;
* request ids and model ids must be safe URL path segments, checked before anything is sent;
* the token comes only from the Airflow connection, is registered with the secret masker, goes
  only to the API's own origin and never into a log, a message, an event, XCom or a ``repr``:
  every answer is scrubbed of it as soon as it is read, so server-echoed text is safe downstream.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import httpx
from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from airflow.providers.common.compat.sdk import BaseHook, mask_secret

from airflow_provider_runcomfy import conn_fields, ui_field_behaviour
from airflow_provider_runcomfy.catalog import CATALOG_CACHE, ModelInfo, ModelPage
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
from airflow_provider_runcomfy.transport import (
    AnswerTooLargeError,
    BearerAuth,
    RetryPolicy,
    SharedAsyncTransport,
    Timeouts,
    aread_capped,
    call_deadline,
    is_transient_status,
    make_async_client,
    make_client,
    parse_retry_after,
    read_capped,
    release_on_close,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

DEFAULT_BASE_URL = "https://model-api.runcomfy.net"

#: A request id no job can have: its status costs nothing and tells a working token from a bad one.
PROBE_REQUEST_ID = "00000000-0000-0000-0000-000000000000"

#: Failures after which a submit certainly did not reach RunComfy: nothing was sent.
_NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

#: The largest API answer read, in bytes. RunComfy's answers are a few hundred bytes (a catalog page
#: with schemas a few hundred KiB): 8 MiB is generous, and bounds what a broken or hostile server
#: can make a worker or a triggerer hold.
MAX_ANSWER_BYTES = 8 * 1024 * 1024

#: A request id or one model id segment: letters, digits and ``-_.~``, never ``.`` or ``..``.
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,199}")


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
    return "/".join(segments)


def _without_userinfo(url: str) -> str:
    """A URL without ``user:password@``: a password in the host field is never shown nor sent."""
    parsed = httpx.URL(url)
    if not parsed.userinfo:
        return url
    return str(parsed.copy_with(username=None, password=None))


def normalize_base_url(host: str | None, port: int | None = None) -> str:
    """
    Turn the connection's host into the API base URL, without ``/v1`` and without a trailing slash.

    Empty means RunComfy's public API; a host without a scheme gets ``https://``; a trailing ``/v1``
    is dropped because every path the hook builds starts with it.
    """
    url = (host or "").strip().rstrip("/")
    if not url:
        return DEFAULT_BASE_URL
    if "://" not in url:
        url = f"https://{url}"
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    url = _without_userinfo(url).rstrip("/")
    parsed = httpx.URL(url)
    if port and parsed.port is None:
        url = str(parsed.copy_with(port=port)).rstrip("/")
    return url


@dataclass(frozen=True)
class ApiSettings:
    """Everything the hook needs from the connection; the token is left out of ``repr``."""

    base_url: str
    token: str = field(repr=False)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)

    @classmethod
    def from_connection(cls, conn: Any, extra: Mapping[str, Any]) -> ApiSettings:
        """Read a ``runcomfy`` connection: host = API base URL, password = token, extra = knobs."""
        token = (conn.password or "").strip()
        if not token:
            raise RunComfyAuthError(
                f"Connection {conn.conn_id!r} has no RunComfy API token: put it in the connection's "
                "password field (shown as 'API token')."
            )
        try:
            retry, timeouts = RetryPolicy.from_extra(extra), Timeouts.from_extra(extra)
        except ValueError as err:
            raise RunComfyBadRequestError(f"Connection {conn.conn_id!r}: {err}") from None
        return cls(
            base_url=normalize_base_url(conn.host, conn.port),
            token=token,
            retry=retry,
            timeouts=timeouts,
        )


@dataclass(frozen=True)
class _Call:
    """One API call: what to send, how to name it in messages, and whether it costs money."""

    method: str
    path: str
    what: str
    json: Any = None
    params: dict[str, str] | None = None
    paid: bool = False

    def may_retry(self, outcome: httpx.Response | Exception) -> bool:
        """Free calls retry every transient failure; a paid submit only when it certainly was not taken."""
        if isinstance(outcome, httpx.Response):
            if self.paid:
                return outcome.status_code == 429
            return is_transient_status(outcome.status_code)
        if self.paid:
            return isinstance(outcome, _NOTHING_SENT)
        return isinstance(outcome, httpx.TransportError)


class RunComfyHook(BaseHook):
    """
    Talk to the RunComfy Model API through an Airflow connection of type ``runcomfy``.

    The connection's host is the API base URL without ``/v1`` (empty means
    ``https://model-api.runcomfy.net``; the bundled emulator is ``http://127.0.0.1:PORT``), its
    password the API token, and its extra may set ``max_retries``, ``retry_backoff``,
    ``retry_max_delay``, ``connect_timeout`` and ``read_timeout``.

    One HTTP connection pool serves the sync calls for the hook's whole life; the async calls share
    the keep-alive connections of the running event loop with every other hook on it
    (:class:`~airflow_provider_runcomfy.transport.SharedAsyncTransport`). Call :meth:`close` /
    :meth:`aclose`, or use the hook as a context manager, to release them early.

    :param runcomfy_conn_id: the Airflow connection id.
    """

    conn_name_attr = "runcomfy_conn_id"
    default_conn_name = "runcomfy_default"
    conn_type = "runcomfy"
    hook_name = "RunComfy"

    submit_path: ClassVar[str] = "/v1/models/{model_id}"
    catalog_path: ClassVar[str] = "/v1/models"
    request_path: ClassVar[str] = "/v1/requests/{request_id}/{action}"

    def __init__(self, runcomfy_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runcomfy_conn_id = runcomfy_conn_id
        self._settings: ApiSettings | None = None
        self._client: httpx.Client | None = None
        self._async_client: httpx.AsyncClient | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(runcomfy_conn_id={self.runcomfy_conn_id!r})"

    # -- connection form ---------------------------------------------------------------------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """
        Relabel and hide the connection form's fields (2.11 asks the hook; 3.2+ the provider info).

        Both come from ``provider.yaml``'s ``ui-field-behaviour``.
        """
        return ui_field_behaviour()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Form fields for the retry and timeout knobs (Airflow 2.11's form; 3.2+ reads ``conn-fields``)."""
        try:
            from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
            from flask_babel import lazy_gettext
            from wtforms import StringField
        except ImportError:  # Airflow 3 has no Flask form; it reads ``conn-fields`` instead.
            return {}
        return {
            name: StringField(lazy_gettext(spec["label"]), widget=BS3TextFieldWidget())
            for name, spec in conn_fields().items()
        }

    # -- settings and clients ----------------------------------------------------------------------

    @property
    def settings(self) -> ApiSettings:
        """The connection's settings, looked up once (synchronously: not for use inside an event loop)."""
        if self._settings is None:
            conn = self.get_connection(self.runcomfy_conn_id)
            if conn.password:
                mask_secret(conn.password)
            self._settings = ApiSettings.from_connection(conn, conn.extra_dejson)
        return self._settings

    async def asettings(self) -> ApiSettings:
        """The connection's settings, looked up without blocking the event loop (for triggers)."""
        if self._settings is None:
            conn = await get_async_connection(self.runcomfy_conn_id, hook=self)
            extra = await get_async_extra_dejson(conn)
            self._settings = ApiSettings.from_connection(conn, extra)
        return self._settings

    @property
    def client(self) -> httpx.Client:
        """The hook's sync client, built on first use and kept for the hook's life."""
        if self._client is None:
            settings = self.settings
            self._client = make_client(
                settings.timeouts,
                base_url=settings.base_url,
                auth=BearerAuth(settings.token, settings.base_url),
            )
        return self._client

    async def aclient(self) -> httpx.AsyncClient:
        """
        The hook's async client for the running event loop.

        An async client belongs to the loop it first ran on, so a hook used from a new loop (a
        restarted triggerer, a second ``asyncio.run``) gets a new client instead of a broken one.
        The client is light (its token, timeouts and base URL): its requests go through the
        connections the loop shares among all hooks (:class:`SharedAsyncTransport`), so a triggerer
        running a thousand RunComfy triggers keeps a handful of connections, not a thousand, and its
        answers are freed without the garbage collector (:func:`release_on_close`).
        """
        loop = asyncio.get_running_loop()
        if self._async_client is None or self._async_loop is not loop:
            settings = await self.asettings()
            self._async_client = make_async_client(
                settings.timeouts,
                base_url=settings.base_url,
                auth=BearerAuth(settings.token, settings.base_url),
                transport=SharedAsyncTransport(),
                event_hooks={"response": [release_on_close]},
            )
            self._async_loop = loop
        return self._async_client

    def close(self) -> None:
        """Close the sync connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Release the async client and its lease on the loop's connections (only from that loop)."""
        if self._async_client is not None and self._async_loop is asyncio.get_running_loop():
            await self._async_client.aclose()
        self._async_client = None
        self._async_loop = None

    def __enter__(self) -> RunComfyHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the API -----------------------------------------------------------------------------------

    def submit(self, model_id: str, inputs: dict[str, Any]) -> str:
        """
        Submit a job (a paid action) and return its ``request_id``.

        Sent once; sent again only when nothing reached RunComfy (the connection could not be made)
        or RunComfy answered 429. A timeout, a dropped connection or a 5xx raises
        :class:`RunComfySubmitUncertainError`: the job may exist.
        """
        body = self._request(self._submit_call(model_id, inputs))
        return self._request_id_of(body, model_id)

    def get_status(self, request_id: str) -> dict[str, Any]:
        """Return the body of ``GET /v1/requests/{id}/status`` (``status``, maybe ``queue_position``)."""
        return self._request(self._request_call("GET", request_id, "status"))

    def get_result(self, request_id: str, include_cost: bool = True) -> dict[str, Any]:
        """
        Return the body of ``GET /v1/requests/{id}/result`` (``status``, ``output`` when succeeded...).

        :param include_cost: ask for the job's ``cost`` too (``include_cost=true``, as RunComfy's own
            clients do); RunComfy may leave it out, so callers treat it as optional.
        """
        return self._request(self._result_call(request_id, include_cost))

    def cancel(self, request_id: str) -> CancelOutcome:
        """
        Ask RunComfy to cancel a job and say what came of it (see :class:`CancelOutcome`).

        ``CANCELLED`` when it is cancelled, ``REQUESTED`` when RunComfy took the cancel without
        confirming it yet (the next status poll tells how the job ends), ``NOT_CANCELLABLE`` when it
        is already running or finished. Only a queued job can be cancelled. ``bool(outcome)`` is
        ``True`` only for a confirmed cancel, so ``if hook.cancel(rid):`` reads as it did when this
        returned ``bool``; ``is_accepted`` also counts a cancel that is on its way.
        """
        return self._cancel_outcome(self._request(self._request_call("POST", request_id, "cancel")))

    async def aget_status(self, request_id: str) -> dict[str, Any]:
        """Async :meth:`get_status`."""
        return await self._arequest(self._request_call("GET", request_id, "status"))

    async def aget_result(self, request_id: str, include_cost: bool = True) -> dict[str, Any]:
        """Async :meth:`get_result`."""
        return await self._arequest(self._result_call(request_id, include_cost))

    async def acancel(self, request_id: str) -> CancelOutcome:
        """Async :meth:`cancel`."""
        return self._cancel_outcome(await self._arequest(self._request_call("POST", request_id, "cancel")))

    # -- the model catalog (read-only, free, cached per process) ----------------------------------

    def get_model(self, model_id: str) -> ModelInfo:
        """
        Describe one model: ``GET /v1/models/{model_id}`` (name, categories, price, input schema).

        Answers are cached per process for
        :data:`~airflow_provider_runcomfy.catalog.CATALOG_TTL_SECONDS`, so a mapped fan-out asks once.
        """
        call = self._model_call(model_id)
        return self._catalog(call, lambda body: _model_info(call, body, model_id))

    def list_models(
        self,
        search: str | None = None,
        category: str | None = None,
        kind: str | None = None,
        include_schema: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> ModelPage:
        """
        One page of the catalog: ``GET /v1/models?search=&category=&kind=&include_schema=&limit=&offset=``.

        :param search: words to look for in model names.
        :param category: e.g. ``image-to-image``.
        :param kind: RunComfy's kind of entry (its own clients ask for ``model``).
        :param include_schema: also return each model's input schema (a larger answer).
        :param limit: the page size.
        :param offset: how many matches to skip.
        """
        call = self._list_call(search, category, kind, include_schema, limit, offset)
        return self._catalog(call, lambda body: _model_page(call, body))

    def list_categories(self) -> list[str]:
        """The catalog's categories: ``GET /v1/models/categories``."""
        call = _Call(method="GET", path=f"{self.catalog_path}/categories", what="RunComfy model categories")
        return self._catalog(call, lambda body: _categories(call, body))

    async def aget_model(self, model_id: str) -> ModelInfo:
        """Async :meth:`get_model`."""
        call = self._model_call(model_id)
        return await self._acatalog(call, lambda body: _model_info(call, body, model_id))

    async def alist_models(
        self,
        search: str | None = None,
        category: str | None = None,
        kind: str | None = None,
        include_schema: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> ModelPage:
        """Async :meth:`list_models`."""
        call = self._list_call(search, category, kind, include_schema, limit, offset)
        return await self._acatalog(call, lambda body: _model_page(call, body))

    async def alist_categories(self) -> list[str]:
        """Async :meth:`list_categories`."""
        call = _Call(method="GET", path=f"{self.catalog_path}/categories", what="RunComfy model categories")
        return await self._acatalog(call, lambda body: _categories(call, body))

    def test_connection(self) -> tuple[bool, str]:
        """
        Check the token without spending anything: ask the status of a request id that cannot exist.

        "Not found" (or "belongs to another account") proves RunComfy accepted the token; an auth
        error proves it did not.
        """
        try:
            base_url = self.settings.base_url
            self.get_status(PROBE_REQUEST_ID)
        except (RunComfyNotFoundError, RunComfyPermissionError):
            return True, f"Connection works: RunComfy at {base_url} accepted the API token."
        except RunComfyAuthError as err:
            return False, f"RunComfy refused the API token: {err}"
        except Exception as err:
            return False, f"Could not check the connection: {type(err).__name__}: {err}"
        return True, f"Connection works: RunComfy at {base_url} accepted the API token."

    # -- request machinery -------------------------------------------------------------------------

    def _submit_call(self, model_id: str, inputs: dict[str, Any]) -> _Call:
        return _Call(
            method="POST",
            path=self.submit_path.format(model_id=quote(_model_path(model_id), safe="/-_.~")),
            what=f"Submit to model {model_id!r}",
            json=inputs,
            paid=True,
        )

    def _request_call(self, method: str, request_id: str, action: str) -> _Call:
        if not isinstance(request_id, str) or not request_id.strip():
            raise RunComfyBadRequestError(f"request_id must be a non-empty string, got {request_id!r}")
        if not _safe_segment(request_id.strip()):
            # ``..`` or ``x/../..`` would reach another endpoint than this request's.
            raise RunComfyBadRequestError(
                f"request_id must be one URL path segment of letters, digits and '-_.~' (not '.' or "
                f"'..'), got {request_id[:200]!r}"
            )
        return _Call(
            method=method,
            path=self.request_path.format(request_id=quote(request_id.strip(), safe=""), action=action),
            what=f"RunComfy {action} of request {request_id}",
        )

    def _result_call(self, request_id: str, include_cost: bool) -> _Call:
        call = self._request_call("GET", request_id, "result")
        return replace(call, params={"include_cost": "true"}) if include_cost else call

    def _model_call(self, model_id: str) -> _Call:
        return _Call(
            method="GET",
            path=f"{self.catalog_path}/{quote(_model_path(model_id), safe='/-_.~')}",
            what=f"RunComfy catalog entry of model {model_id!r}",
        )

    def _list_call(
        self,
        search: str | None,
        category: str | None,
        kind: str | None,
        include_schema: bool,
        limit: int,
        offset: int,
    ) -> _Call:
        params = {"limit": str(int(limit)), "offset": str(int(offset))}
        for name, value in (("search", search), ("category", category), ("kind", kind)):
            if value is not None and str(value).strip():
                params[name] = str(value)
        if include_schema:
            params["include_schema"] = "true"
        return _Call(method="GET", path=self.catalog_path, what="RunComfy model list", params=params)

    def _catalog_key(self, settings: ApiSettings, call: _Call) -> tuple[Any, ...]:
        # Per API origin and connection (a price may depend on the account), never the token itself.
        return (
            settings.base_url,
            self.runcomfy_conn_id,
            call.path,
            tuple(sorted((call.params or {}).items())),
        )

    def _catalog(self, call: _Call, parse: Callable[[dict[str, Any]], Any]) -> Any:
        key = self._catalog_key(self.settings, call)
        found = CATALOG_CACHE.get(key)
        if found is None:
            found = parse(self._request(call))
            CATALOG_CACHE.put(key, found)
        return found

    async def _acatalog(self, call: _Call, parse: Callable[[dict[str, Any]], Any]) -> Any:
        key = self._catalog_key(await self.asettings(), call)
        found = CATALOG_CACHE.get(key)
        if found is None:
            found = parse(await self._arequest(call))
            CATALOG_CACHE.put(key, found)
        return found

    def _request(self, call: _Call) -> dict[str, Any]:
        settings = self.settings
        retry = 0
        while True:
            outcome: httpx.Response | Exception
            try:
                outcome = self._exchange(call, settings)
            except (httpx.TransportError, AnswerTooLargeError) as err:
                outcome = err
            retry += 1
            delay = self._next_step(call, outcome, retry, settings)
            if not isinstance(delay, float):
                return delay
            time.sleep(delay)

    async def _arequest(self, call: _Call) -> dict[str, Any]:
        settings = await self.asettings()
        client = await self.aclient()
        retry = 0
        while True:
            outcome: httpx.Response | Exception
            try:
                outcome = await self._aexchange(client, call, settings)
            except (httpx.TransportError, AnswerTooLargeError) as err:
                outcome = err
            retry += 1
            delay = self._next_step(call, outcome, retry, settings)
            if not isinstance(delay, float):
                return delay
            await asyncio.sleep(delay)

    def _exchange(self, call: _Call, settings: ApiSettings) -> httpx.Response:
        """
        One attempt: send, read the answer whole but capped, all within the call's overall deadline.

        The answer comes back scrubbed of the token (see :func:`_scrubbed_answer`).
        """
        client = self.client
        with call_deadline(settings.timeouts.total):
            request = client.build_request(call.method, call.path, json=call.json, params=call.params)
            response = client.send(request, stream=True)
            try:
                body = read_capped(response.iter_bytes(), MAX_ANSWER_BYTES)
            finally:
                response.close()
        return _scrubbed_answer(response, body, settings.token)

    async def _aexchange(
        self, client: httpx.AsyncClient, call: _Call, settings: ApiSettings
    ) -> httpx.Response:
        """The async :meth:`_exchange`: the deadline covers the connection, the send and the whole answer."""
        try:
            async with asyncio.timeout(settings.timeouts.total):
                request = client.build_request(call.method, call.path, json=call.json, params=call.params)
                response = await client.send(request, stream=True)
                try:
                    body = await aread_capped(response.aiter_bytes(), MAX_ANSWER_BYTES)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise httpx.ReadTimeout(
                f"no complete answer within the call's deadline of {settings.timeouts.total:g} s"
            ) from None
        return _scrubbed_answer(response, body, settings.token)

    def _next_step(
        self, call: _Call, outcome: httpx.Response | Exception, retry: int, settings: ApiSettings
    ) -> dict[str, Any] | float:
        """
        Decide what one attempt means: the parsed body, seconds to wait before retrying, or an error.

        Shared by the sync and async loops so both follow exactly the same policy.
        """
        if isinstance(outcome, AnswerTooLargeError):
            if call.paid:
                raise self._uncertain_submit(call, f"its answer could not be read: {outcome}")
            raise RunComfyInvalidResponseError(f"{call.what}: RunComfy's {outcome}")
        if call.paid and isinstance(outcome, httpx.Response):
            accepted = self._accepted_submit(call, outcome)
            if accepted is not None:
                return accepted
            if not outcome.is_error and _error_code_of(outcome) is None:
                # Taken (2xx, or a 3xx, never followed) without a readable job id: the job may
                # exist, so it is never sent again.
                raise self._uncertain_submit(
                    call,
                    f"RunComfy answered HTTP {outcome.status_code} without a readable request_id "
                    f"({_excerpt(outcome, settings.token)})",
                )
        policy = settings.retry
        if call.may_retry(outcome) and retry <= policy.max_retries:
            retry_after = None
            if isinstance(outcome, httpx.Response):
                retry_after = parse_retry_after(outcome.headers.get("Retry-After"))
            delay = policy.delay(retry, retry_after)
            self.log.warning(
                "%s: %s; retry %d of %d in %.1f s",
                call.what,
                _describe_outcome(outcome),
                retry,
                policy.max_retries,
                delay,
            )
            return float(delay)

        if isinstance(outcome, httpx.Response):
            if call.paid and is_transient_status(outcome.status_code) and outcome.status_code != 429:
                raise self._uncertain_submit(call, f"RunComfy answered HTTP {outcome.status_code}")
            if not call.paid and is_transient_status(outcome.status_code):
                raise RunComfyUnavailableError(
                    f"{call.what} failed after {retry} attempts: RunComfy answered HTTP "
                    f"{outcome.status_code} ({_excerpt(outcome, settings.token)}).",
                    status_code=outcome.status_code,
                )
            return _parse_body(call, outcome, settings.token)

        if call.paid and not isinstance(outcome, _NOTHING_SENT):
            raise self._uncertain_submit(
                call, f"{type(outcome).__name__}: {scrub(str(outcome), settings.token)}"
            )
        raise RunComfyUnavailableError(
            f"{call.what} failed after {retry} attempts: {type(outcome).__name__}: "
            f"{scrub(str(outcome), settings.token)}"
            + (" (nothing was sent, so no job was created)" if call.paid else "")
        )

    def _accepted_submit(self, call: _Call, response: httpx.Response) -> dict[str, Any] | None:
        """
        The body of a submit answer that names a job, whatever else it says; else ``None``.

        A ``request_id`` means RunComfy created (and will charge for) a job, so the job is tracked and
        waited for: sending the submit again, or failing the task so that a retry sends it, would pay
        twice. The wait then tells how the job really ends. An odd answer around it is logged.
        """
        body = _json_of(response)
        if not isinstance(body, dict):
            return None
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not request_id.strip():
            return None
        if response.is_error or body.get("error_code") is not None:
            self.log.warning(
                "%s: RunComfy answered HTTP %s with error_code %s but also request_id %s; the job is "
                "taken as accepted and waited for (it is never sent again)",
                call.what,
                response.status_code,
                body.get("error_code"),
                request_id,
            )
        return body

    def _uncertain_submit(self, call: _Call, reason: str) -> RunComfySubmitUncertainError:
        return RunComfySubmitUncertainError(
            f"{call.what} may have created a job: {reason}. RunComfy has no idempotency key, so the "
            "submit was not sent again, to avoid paying twice. Look for the request in your RunComfy "
            "account's request history; if it is there, wait for it with RunComfyRequestSensor "
            "(request_id=...), otherwise clear this task to submit again."
        )

    @staticmethod
    def _request_id_of(body: dict[str, Any], model_id: str) -> str:
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            # Only an accepted answer reaches here; should one ever lack its id, the job may exist.
            raise RunComfySubmitUncertainError(
                f"Submit to model {model_id!r}: RunComfy's answer has no request_id: {_shown(body)}"
            )
        return request_id

    @staticmethod
    def _cancel_outcome(body: dict[str, Any]) -> CancelOutcome:
        outcome = CancelOutcome.from_answer(body)
        if outcome is None:
            raise RunComfyInvalidResponseError(
                f"Cancel: an answer that says neither cancelled, cancellation_requested nor "
                f"not_cancellable: {_shown(body)}"
            )
        return outcome


def _model_info(call: _Call, body: dict[str, Any], model_id: str) -> ModelInfo:
    try:
        return ModelInfo.from_api(body, model_id=model_id.strip("/"))
    except ValueError as err:
        raise RunComfyInvalidResponseError(f"{call.what}: {err}: {_shown(body)}") from None


def _model_page(call: _Call, body: dict[str, Any]) -> ModelPage:
    entries = body.get("models")
    if not isinstance(entries, list):
        raise RunComfyInvalidResponseError(f"{call.what}: the answer has no models list: {_shown(body)}")
    models = []
    for entry in entries:
        try:
            models.append(ModelInfo.from_api(entry))
        except ValueError:  # one odd entry should not hide the others
            continue
    total = body.get("total")
    if isinstance(total, bool) or not isinstance(total, int):
        total = len(models)
    return ModelPage(models=tuple(models), total=total)


def _categories(call: _Call, body: dict[str, Any]) -> list[str]:
    found = body.get("categories")
    if not isinstance(found, list):
        raise RunComfyInvalidResponseError(
            f"{call.what}: the answer has no categories list: {_shown(body)}"
        )
    return [item for item in found if isinstance(item, str)]


def _describe_outcome(outcome: httpx.Response | Exception) -> str:
    if isinstance(outcome, httpx.Response):
        return f"HTTP {outcome.status_code}"
    return f"{type(outcome).__name__}"


def _scrub_deep(value: Any, token: str) -> Any:
    """``value`` with ``token`` replaced in every string, keys included (for JSON-escaped echoes)."""
    if isinstance(value, str):
        return scrub(value, token)
    if isinstance(value, list):
        return [_scrub_deep(item, token) for item in value]
    if isinstance(value, dict):
        return {scrub(str(key), token): _scrub_deep(item, token) for key, item in value.items()}
    return value


def _scrubbed_answer(response: httpx.Response, body: bytes, token: str) -> httpx.Response:
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


#: Headers about the wire form of a body, which no longer apply once it is read and decoded.
_BODY_FRAMING = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _shown(body: Any, limit: int = 200) -> str:
    """The start of an answer's body for a message; a body too deep to print is described instead."""
    try:
        return str(body)[:limit]
    except RecursionError:
        return "(an answer nested too deep to show)"


def _json_of(response: httpx.Response) -> Any:
    """The answer's JSON, or ``None`` when it is not JSON or nested too deep for the parser."""
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


def _error_code_of(response: httpx.Response) -> Any:
    body = _json_of(response)
    return body.get("error_code") if isinstance(body, dict) else None


def _excerpt(response: httpx.Response, token: str, limit: int = 200) -> str:
    text = scrub(response.text, token).strip().replace("\n", " ")
    return text[:limit] + ("..." if len(text) > limit else "") if text else "empty body"


def _parse_body(call: _Call, response: httpx.Response, token: str) -> dict[str, Any]:
    """Return the JSON body of a final answer, or raise the domain error it stands for."""
    status = response.status_code
    body = _json_of(response)
    if not isinstance(body, dict):
        if response.is_error:
            raise _api_error(call, status, {"error_message": _excerpt(response, token)}, token)
        raise RunComfyInvalidResponseError(
            f"{call.what}: RunComfy answered HTTP {status} with a body that is not a JSON object: "
            f"{_excerpt(response, token)}",
            status_code=status,
        )
    # ``"error_code": null`` is how some answers say "no error" (RunComfy's clients test ``is not None``).
    if response.is_error or body.get("error_code") is not None:
        raise _api_error(call, status, body, token)
    return body


def _api_error(call: _Call, status: int, body: dict[str, Any], token: str) -> RunComfyApiError:
    """Map RunComfy's documented error codes (and, failing those, HTTP statuses) to domain errors."""
    raw_code = body.get("error_code")
    try:
        code = int(raw_code) if raw_code is not None else None
    except (TypeError, ValueError):
        code = None
    detail = scrub(describe_error_body(body), token)
    head = f"{call.what} failed: RunComfy answered HTTP {status}" + (
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
