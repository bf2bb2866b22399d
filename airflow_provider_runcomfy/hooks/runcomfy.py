"""
The RunComfy hook: authentication and HTTP for the Model API, sync for workers, async for triggers.

The rules that keep a paid API safe are applied here, once, for every operator, sensor and trigger:

* status, result and cancel are free and idempotent, so they are retried on transport errors,
  timeouts, 408, 429 and 5xx, with bounded exponential backoff and jitter, honouring ``Retry-After``
  (:meth:`RetryPolicy.run <airflow_provider_runcomfy.retry.RetryPolicy.run>`);
* a submit is paid and RunComfy has no idempotency key, so it is sent again only when the server
  certainly did not take it (no connection could be made, or 429); an answer naming a job is that
  job, whatever else it says; otherwise the error says the job may exist and how to check;
* every answer is read against a size cap (:data:`MAX_ANSWER_BYTES`) and each call against an
  overall deadline (connect + whole answer, :attr:`Timeouts.total`), so a hostile or broken server
  can neither exhaust memory nor hold a worker or a triggerer's poll;
* the token comes only from the Airflow connection, is registered with the secret masker, goes
  only to the API's own origin and never into a log, a message, an event, XCom or a ``repr``.

This module only makes the calls. What each call sends, and the checks of its ids, is in
:mod:`~airflow_provider_runcomfy.calls`; what an answer means (scrubbing, parsing, the error codes)
in :mod:`~airflow_provider_runcomfy.answers`; the connection's fields in
:mod:`~airflow_provider_runcomfy.connection`; the catalog's answers in
:mod:`~airflow_provider_runcomfy.catalog`. :class:`ApiSettings`, :func:`normalize_base_url` and
:data:`DEFAULT_BASE_URL` are re-exported, so they stay importable from here.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from airflow.providers.common.compat.sdk import BaseHook, mask_secret

from airflow_provider_runcomfy import calls, ui_field_behaviour
from airflow_provider_runcomfy.answers import (
    NO_ANSWER,
    cancel_outcome,
    describe_outcome,
    failure_error,
    final_answer,
    read_answer,
    request_id_of,
    scrubbed_answer,
)
from airflow_provider_runcomfy.catalog import (
    CATALOG_CACHE,
    ModelInfo,
    ModelPage,
    read_categories,
    read_model,
    read_model_page,
)
from airflow_provider_runcomfy.connection import (
    DEFAULT_BASE_URL,
    ApiSettings,
    connection_form_widgets,
    normalize_base_url,
)
from airflow_provider_runcomfy.exceptions import (
    RunComfyAuthError,
    RunComfyNotFoundError,
    RunComfyPermissionError,
)
from airflow_provider_runcomfy.transport import (
    BearerAuth,
    SharedAsyncTransport,
    aread_capped,
    make_async_client,
    make_client,
    read_capped,
    release_on_close,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from airflow_provider_runcomfy.calls import ApiCall
    from airflow_provider_runcomfy.jobs import CancelOutcome

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_ANSWER_BYTES",
    "PROBE_REQUEST_ID",
    "ApiSettings",
    "RunComfyHook",
    "normalize_base_url",
]

R = TypeVar("R")

#: A request id no job can have: its status costs nothing and tells a working token from a bad one.
PROBE_REQUEST_ID = "00000000-0000-0000-0000-000000000000"

#: The largest API answer read, in bytes. RunComfy's answers are a few hundred bytes (a catalog page
#: with schemas a few hundred KiB): 8 MiB is generous, and bounds what a broken or hostile server
#: can make a worker or a triggerer hold.
MAX_ANSWER_BYTES = 8 * 1024 * 1024


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
        return connection_form_widgets()

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
        body = self._request(calls.submit(model_id, inputs))
        return request_id_of(body, model_id)

    def get_status(self, request_id: str) -> dict[str, Any]:
        """Return the body of ``GET /v1/requests/{id}/status`` (``status``, maybe ``queue_position``)."""
        return self._request(calls.of_request("GET", request_id, "status"))

    def get_result(self, request_id: str, include_cost: bool = True) -> dict[str, Any]:
        """
        Return the body of ``GET /v1/requests/{id}/result`` (``status``, ``output`` when succeeded...).

        :param include_cost: ask for the job's ``cost`` too (``include_cost=true``, as RunComfy's own
            clients do); RunComfy may leave it out, so callers treat it as optional.
        """
        return self._request(calls.result(request_id, include_cost))

    def cancel(self, request_id: str) -> CancelOutcome:
        """
        Ask RunComfy to cancel a job and say what came of it (see :class:`CancelOutcome`).

        ``CANCELLED`` when it is cancelled, ``REQUESTED`` when RunComfy took the cancel without
        confirming it yet (the next status poll tells how the job ends), ``NOT_CANCELLABLE`` when it
        is already running or finished. Only a queued job can be cancelled. ``bool(outcome)`` is
        ``True`` only for a confirmed cancel, so ``if hook.cancel(rid):`` reads as it did when this
        returned ``bool``; ``is_accepted`` also counts a cancel that is on its way.
        """
        return cancel_outcome(self._request(calls.of_request("POST", request_id, "cancel")))

    async def aget_status(self, request_id: str) -> dict[str, Any]:
        """Async :meth:`get_status`."""
        return await self._arequest(calls.of_request("GET", request_id, "status"))

    async def aget_result(self, request_id: str, include_cost: bool = True) -> dict[str, Any]:
        """Async :meth:`get_result`."""
        return await self._arequest(calls.result(request_id, include_cost))

    async def acancel(self, request_id: str) -> CancelOutcome:
        """Async :meth:`cancel`."""
        return cancel_outcome(await self._arequest(calls.of_request("POST", request_id, "cancel")))

    # -- the model catalog (read-only, free, cached per process) ----------------------------------

    def get_model(self, model_id: str) -> ModelInfo:
        """
        Describe one model: ``GET /v1/models/{model_id}`` (name, categories, price, input schema).

        Answers are cached per process for
        :data:`~airflow_provider_runcomfy.catalog.CATALOG_TTL_SECONDS`, so a mapped fan-out asks once.
        """
        return self._catalog(calls.model(model_id), functools.partial(read_model, model_id=model_id))

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
        call = calls.model_list(search, category, kind, include_schema, limit, offset)
        return self._catalog(call, read_model_page)

    def list_categories(self) -> list[str]:
        """The catalog's categories: ``GET /v1/models/categories``."""
        return self._catalog(calls.categories(), read_categories)

    async def aget_model(self, model_id: str) -> ModelInfo:
        """Async :meth:`get_model`."""
        return await self._acatalog(calls.model(model_id), functools.partial(read_model, model_id=model_id))

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
        call = calls.model_list(search, category, kind, include_schema, limit, offset)
        return await self._acatalog(call, read_model_page)

    async def alist_categories(self) -> list[str]:
        """Async :meth:`list_categories`."""
        return await self._acatalog(calls.categories(), read_categories)

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

    def _catalog_key(self, settings: ApiSettings, call: ApiCall) -> tuple[Any, ...]:
        # Per API origin and connection (a price may depend on the account), never the token itself.
        return (
            settings.base_url,
            self.runcomfy_conn_id,
            call.path,
            tuple(sorted((call.params or {}).items())),
        )

    def _catalog(self, call: ApiCall, parse: Callable[[dict[str, Any]], R]) -> R:
        key = self._catalog_key(self.settings, call)
        found: R | None = CATALOG_CACHE.get(key)
        if found is None:
            found = read_answer(call.what, self._request(call), parse)
            CATALOG_CACHE.put(key, found)
        return found

    async def _acatalog(self, call: ApiCall, parse: Callable[[dict[str, Any]], R]) -> R:
        key = self._catalog_key(await self.asettings(), call)
        found: R | None = CATALOG_CACHE.get(key)
        if found is None:
            found = read_answer(call.what, await self._arequest(call), parse)
            CATALOG_CACHE.put(key, found)
        return found

    def _request(self, call: ApiCall) -> dict[str, Any]:
        """Make one API call, retried as :meth:`ApiCall.may_retry` allows; its body, or its domain error."""
        settings = self.settings
        try:
            response = settings.retry.run(
                lambda: self._exchange(call, settings),
                may_retry=call.may_retry,
                on_retry=functools.partial(self._log_retry, call, settings.retry.max_retries),
                deadline=settings.timeouts.total,
            )
        except NO_ANSWER as failure:
            raise failure_error(call.what, call.paid, failure, settings.token) from None
        return final_answer(call.what, call.paid, response, settings.token, self.log)

    async def _arequest(self, call: ApiCall) -> dict[str, Any]:
        """The async :meth:`_request`."""
        settings = await self.asettings()
        client = await self.aclient()
        try:
            response = await settings.retry.arun(
                lambda: self._aexchange(client, call, settings),
                may_retry=call.may_retry,
                on_retry=functools.partial(self._log_retry, call, settings.retry.max_retries),
                deadline=settings.timeouts.total,
            )
        except NO_ANSWER as failure:
            raise failure_error(call.what, call.paid, failure, settings.token) from None
        return final_answer(call.what, call.paid, response, settings.token, self.log)

    def _exchange(self, call: ApiCall, settings: ApiSettings) -> httpx.Response:
        """
        One attempt: send, read the answer whole but capped (the retry helper bounds it in time).

        The answer comes back scrubbed of the token (see :func:`.answers.scrubbed_answer`).
        """
        client = self.client
        request = client.build_request(call.method, call.path, json=call.json, params=call.params)
        response = client.send(request, stream=True)
        try:
            body = read_capped(response.iter_bytes(), MAX_ANSWER_BYTES)
        finally:
            response.close()
        return scrubbed_answer(response, body, settings.token)

    async def _aexchange(
        self, client: httpx.AsyncClient, call: ApiCall, settings: ApiSettings
    ) -> httpx.Response:
        """The async :meth:`_exchange`."""
        request = client.build_request(call.method, call.path, json=call.json, params=call.params)
        response = await client.send(request, stream=True)
        try:
            body = await aread_capped(response.aiter_bytes(), MAX_ANSWER_BYTES)
        finally:
            await response.aclose()
        return scrubbed_answer(response, body, settings.token)

    def _log_retry(
        self, call: ApiCall, max_retries: int, outcome: httpx.Response | Exception, retry: int, delay: float
    ) -> None:
        self.log.warning(
            "%s: %s; retry %d of %d in %.1f s",
            call.what,
            describe_outcome(outcome),
            retry,
            max_retries,
            delay,
        )
