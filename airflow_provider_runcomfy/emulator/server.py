"""The emulator's HTTP server: the RunComfy Model API, its output files, test content and controls.

``EmulatorServer`` is asyncio-native (``await start()`` / ``await close()``); ``RunComfyEmulator``
in ``runner.py`` wraps it in a daemon thread for synchronous tests, and ``__main__`` runs it as a
process. Routes:

- API (bearer token required): ``POST /v1/models/{model_id}``, ``GET /v1/requests/{id}/status``,
  ``GET /v1/requests/{id}/result`` (``?include_cost=true`` adds ``cost``), ``POST /v1/requests/{id}/cancel``;
  the catalog ``GET /v1/models``, ``GET /v1/models/categories``, ``GET /v1/models/{model_id}``
  (``catalog.py``; a model id has slashes, so ``GET`` vs ``POST`` on ``/v1/models/...`` tells a
  catalog read from a submit).
- Public content (no auth, like a CDN or an image host): ``/files/{id}/{name}`` (job outputs),
  ``/samples/{name}`` (demo inputs), ``/images/gen`` and ``/images/notimage`` (test images),
  ``/blobs/{size}`` (large downloads).
- ``GET /``: an index of these routes, the sample URLs and the knobs (``index.py``).
- Controls (never logged or faulted): ``/_emulator/health``, ``/_emulator/requests``,
  ``/_emulator/faults``, ``/_emulator/config``, ``/_emulator/jobs``, ``/_emulator/models``. Open
  by default (the emulator listens on 127.0.0.1); with a ``control_token`` they answer 401 unless
  the request carries ``X-Emulator-Control-Token: <token>``.

How answers are worded (the documented contract, or the wider vocabulary of the live service that
RunComfy's own clients accept) is the server's :class:`~.dialect.Dialect` (``config.dialect``), or a
``dialect`` fault's for one request; see ``dialect.py``.

Error answers follow the contract's documented codes; their HTTP statuses are not documented, so
the emulator uses the statuses RunComfy's own clients map those codes from: 400001 -> 400,
400002 -> 402, 400004 -> 401, 403001 -> 403, 404001 -> 404. Input errors answer 400 with only an
``error_message`` (no code is documented for them).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import ipaddress
import math
import os
import sys
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any

from . import media
from .catalog import SCHEMA_FORMS, AddedModel, Catalog
from .dialect import Dialect, as_dialect
from .index import index_response
from .jobs import (
    CANCELLED,
    FAILED,
    IN_QUEUE,
    SUCCEEDED,
    Job,
    JobFailure,
    iso,
    run_job,
)
from .peers import find_peer_pid
from .records import Fault, FaultBook, RequestLog, RequestRecord
from .rules import MODELS, InputError
from .wire import (
    MAX_HEAD_BYTES,
    HttpError,
    Request,
    Response,
    StreamBody,
    json_response,
    read_request,
    write_response,
)

#: Keep-alive connections idle this long are closed (clients reconnect transparently).
IDLE_TIMEOUT = 300.0
#: Bytes of generated test images kept in memory (15 MB files are cheap to remake, but not free).
IMAGE_CACHE_BYTES = 256 * 1024 * 1024
#: Largest blob ``/blobs/{size}`` serves.
MAX_BLOB_BYTES = 1 << 40
_LOCAL_HOSTS = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
#: The header that carries the control token to ``/_emulator/`` (see ``EmulatorServer``).
CONTROL_TOKEN_HEADER = "X-Emulator-Control-Token"


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the emulator on this machine (``""`` and ``0.0.0.0`` do not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to any interface


_TRUE = {"1", "true", "yes", "on"}


@dataclass
class EmulatorConfig:
    """The knobs that shape new jobs; changing them affects jobs submitted afterwards only.

    ``balance`` is how many more submits the account can pay for (``None``: unlimited); every
    accepted submit uses one, and at 0 a submit answers 402 with error_code 400002.
    ``catalog_available`` False makes the three catalog endpoints answer 503 (submits still work).
    ``hold_until_submits`` N holds the next jobs ``in_queue`` until N of them have been submitted, then
    starts them all at once (each with its own queue and run seconds from then) and clears itself. It
    makes "these N jobs were in flight together" a fact of the emulator rather than of the machine's
    speed: with one worker slot, N deferrable tasks can only all submit if each gave its slot back.

    ``schema_form`` is how the catalog writes input schemas: ``"page"`` (as RunComfy's model pages do:
    the media format on an array's ``items``, some values as strings) or ``"catalog"`` (as the partner
    nodes' catalog does: ``image_uris`` on the field, ``number`` for ``float``, numbers as numbers).

    ``dialect`` is the exception: it shapes every answer from the moment it is set (a preset name
    such as ``"live"``, names joined with ``+``, a ``Dialect``, or a dict of its flags).
    """

    queue_seconds: float = 1.0
    run_seconds: float = 2.0
    failure_message: str | None = None
    result_ttl_seconds: float | None = None
    balance: int | None = None
    catalog_available: bool = True
    hold_until_submits: int | None = None
    dialect: Dialect = field(default_factory=Dialect)
    schema_form: str = "page"

    def update(self, data: dict[str, Any]) -> None:
        """Apply the given knobs after checking them all (``ValueError`` leaves the config unchanged)."""
        if not isinstance(data, dict):
            raise ValueError("config must be a JSON object")
        known = {f.name for f in fields(self)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        checked: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("queue_seconds", "run_seconds"):
                if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                    raise ValueError(f"{key} must be a number >= 0")
                checked[key] = float(value)
            elif key == "result_ttl_seconds":
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0
                ):
                    raise ValueError(f"{key} must be a number >= 0 or null")
                checked[key] = None if value is None else float(value)
            elif key == "dialect":
                checked[key] = as_dialect(value)
            elif key == "failure_message":
                if value is not None and not isinstance(value, str):
                    raise ValueError(f"{key} must be a string or null")
                checked[key] = value
            elif key == "schema_form":
                if value not in SCHEMA_FORMS:
                    raise ValueError(f"{key} must be one of {', '.join(SCHEMA_FORMS)}")
                checked[key] = value
            elif key == "catalog_available":
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be true or false")
                checked[key] = value
            else:  # balance, hold_until_submits
                low = 1 if key == "hold_until_submits" else 0
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, int) or value < low
                ):
                    raise ValueError(f"{key} must be an integer >= {low} or null")
                checked[key] = value
        for key, value in checked.items():
            setattr(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        """The knobs as JSON-able data."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["dialect"] = self.dialect.to_dict()
        return data


class _Conn:
    """Per-connection state: the peer and, with ``record_peer_pid``, the lookup of its process id."""

    __slots__ = ("peer", "pid_future")

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.pid_future: asyncio.Future[int | None] | None = None


class _Ctx:
    """What a handler learned about a request that the request log needs."""

    __slots__ = ("authorized", "fault", "request_id")

    def __init__(self) -> None:
        self.request_id: str | None = None
        self.authorized = False
        self.fault: str | None = None


def _api_error(
    status: int, code: int, message: str, headers: list[tuple[str, str]] | None = None
) -> Response:
    return json_response(status, {"error_code": code, "error_message": message}, headers)


def _not_found(path: str) -> Response:
    return json_response(404, {"error_message": f"not found: {path}"})


def _method_not_allowed(allowed: str) -> Response:
    return json_response(405, {"error_message": f"method not allowed; use {allowed}"}, [("Allow", allowed)])


def _retry_after_value(seconds: float) -> str:
    """Whole seconds as an integer (the RFC form), fractions as a decimal (for fast tests)."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _job_timing(kind: str, inputs: dict[str, Any], cfg: EmulatorConfig) -> tuple[float, float]:
    """
    A new job's queue and run seconds: the config's, or for the echo test model its own inputs'.

    The echo model takes any JSON, so a soak or chaos run can give each job its own life
    (``{"queue_seconds": 600}`` keeps one job queued while its neighbours finish) without racing
    other submits to change the shared config. The documented models never read these fields.
    """
    queue_seconds, run_seconds = cfg.queue_seconds, cfg.run_seconds
    if kind != "echo":
        return queue_seconds, run_seconds
    picked = []
    for key, default in (("queue_seconds", queue_seconds), ("run_seconds", run_seconds)):
        value = inputs.get(key, default)
        ok = not isinstance(value, bool) and isinstance(value, int | float) and value >= 0
        picked.append(float(value) if ok else default)
    return picked[0], picked[1]


def _request_id_in(path: str) -> str | None:
    """The job id a path concerns (``/v1/requests/{id}/...`` or ``/files/{id}/...``)."""
    parts = path.split("/")
    if len(parts) >= 5 and parts[1] == "v1" and parts[2] == "requests":
        return parts[3] or None
    if len(parts) >= 4 and parts[1] == "files":
        return parts[2] or None
    return None


class EmulatorServer:
    """The asyncio server behind ``RunComfyEmulator`` and the CLI.

    Use from a running loop: ``await server.start()``, then ``server.base_url``; ``await
    server.close()`` closes the listening socket, every connection, every job and the thread pool.
    ``tokens`` are the valid bearer tokens; each job belongs to the token that submitted it.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: list[str],
        config: EmulatorConfig | None = None,
        record_peer_pid: bool = False,
        max_output_side: int = 1024,
        public_url: str | None = None,
        verbose: bool = False,
        log_maxlen: int = 200_000,
        workers: int = 16,
        fault_seed: int | None = None,
        control_token: str | None = None,
    ) -> None:
        if not tokens:
            raise ValueError("at least one token is needed")
        self.control_token = control_token or None
        self.host = host
        self.port = port
        self.tokens = frozenset(tokens)
        self.config = config or EmulatorConfig()
        self.record_peer_pid = record_peer_pid
        self.max_output_side = max_output_side
        self.verbose = verbose
        self.faults = FaultBook(fault_seed)
        self.log = RequestLog(log_maxlen)
        self.catalog = Catalog()
        self._public_url = public_url.rstrip("/") if public_url else None
        self._workers = workers
        self._executor: ThreadPoolExecutor | None = None
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: dict[str, Job] = {}
        self._queue: dict[str, Job] = {}
        self._ttl_jobs: set[str] = set()
        #: Jobs held by ``hold_until_submits``, with their own (queue, run) seconds for the release.
        self._held: list[tuple[Job, float, float]] = []
        self._conn_tasks: set[asyncio.Task[Any]] = set()
        self._bg_tasks: set[asyncio.Task[Any]] = set()
        self._samples: dict[str, tuple[bytes, str]] = {}
        self._image_cache: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._image_cache_size = 0
        self._image_inflight: dict[tuple[Any, ...], asyncio.Future[bytes]] = {}
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """The URL clients use (no ``/v1``): ``public_url`` if given, else ``http://host:port``."""
        if self._public_url:
            return self._public_url
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving (port 0 picks a free port, then ``self.port`` holds it)."""
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="runcomfy-emulator")
        self._server = await asyncio.start_server(
            self._on_connection, self.host, self.port, backlog=2048, limit=MAX_HEAD_BYTES, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._spawn(self._warm_samples())
        self._spawn(self._janitor())

    async def close(self) -> None:
        """Stop serving and release everything: sockets, connection tasks, job tasks, threads."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._conn_tasks) + list(self._bg_tasks)
        tasks += [job.task for job in self._jobs.values() if job.task is not None and not job.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._executor is not None:
            executor = self._executor
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: executor.shutdown(wait=True, cancel_futures=True)
            )

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._bg_tasks.add(task)
        task.add_done_callback(self._bg_tasks.discard)
        return task

    async def _warm_samples(self) -> None:
        """Encode the demo images in the background so the first ``/samples/`` hit is instant."""
        for name in media.sample_names():
            self._samples[name] = await self._run_blocking(media.sample_bytes, name)

    async def _janitor(self) -> None:
        """Forget outputs of jobs whose result TTL passed, so long runs do not grow without bound."""
        while True:
            await asyncio.sleep(0.5)
            now = time.time()
            for rid in list(self._ttl_jobs):
                job = self._jobs.get(rid)
                if job is None or job.is_expired(now):
                    self._ttl_jobs.discard(rid)
                    if job is not None:
                        job.expired = True
                        job.files.clear()

    async def _run_blocking(self, func: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)

    # ------------------------------------------------------------------ connections

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conn_tasks.add(task)
        peername = writer.get_extra_info("peername") or ("", 0)
        conn = _Conn((str(peername[0]), int(peername[1])))
        if self.record_peer_pid and conn.peer[0] in _LOCAL_HOSTS:
            loop = asyncio.get_running_loop()
            conn.pid_future = loop.run_in_executor(self._executor, find_peer_pid, conn.peer[1], self.port)
        try:
            while not self._closing:
                try:
                    async with asyncio.timeout(IDLE_TIMEOUT):
                        request = await read_request(reader, writer)
                except HttpError as exc:
                    error = json_response(exc.status, {"error_message": exc.message})
                    await write_response(writer, None, error, keep_alive=False)
                    break
                if request is None:
                    break
                if not await self._serve(request, writer, conn):
                    break
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Only close() cancels connection tasks; ending quietly keeps asyncio from logging it.
            pass
        finally:
            if task is not None:
                self._conn_tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve(self, request: Request, writer: asyncio.StreamWriter, conn: _Conn) -> bool:
        """Answer one request and log it; returns whether the connection stays open."""
        if request.path == "/" or request.path.startswith("/_emulator/"):
            # The index and the controls are for people and tests: never logged, never faulted.
            if request.path == "/":
                response = index_response(self, request)
            elif not self._control_allowed(request):
                response = json_response(
                    401, {"error_message": f"this emulator's controls need the {CONTROL_TOKEN_HEADER} header"}
                )
            else:
                response = self._control(request)
            status = await write_response(writer, request, response, request.keep_alive)
            return status is not None and request.keep_alive
        ctx = _Ctx()
        try:
            response = await self._dispatch(request, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            response = json_response(500, {"error_message": f"internal emulator error: {exc!r}"})

        async def record(outcome: int | None) -> None:
            await self._record(request, conn, outcome, ctx)

        sent = await write_response(writer, request, response, request.keep_alive, before_send=record)
        return (
            sent is not None
            and request.keep_alive
            and not response.close
            and not response.no_length
            and response.truncate_after is None
        )

    async def _record(self, request: Request, conn: _Conn, status: int | None, ctx: _Ctx) -> None:
        pid: int | None = None
        if conn.pid_future is not None:
            try:
                pid = await asyncio.shield(conn.pid_future)
            except Exception:
                pid = None
        record = RequestRecord(
            time=request.received_at,
            method=request.method,
            path=request.path,
            query=request.query,
            status=status,
            authorized=ctx.authorized,
            auth_header_present="authorization" in request.headers,
            user_agent=request.headers.get("user-agent"),
            body=request.json(),
            request_id=ctx.request_id,
            peer=conn.peer,
            pid=pid,
            fault=ctx.fault,
        )
        self.log.append(record)
        if self.verbose:
            print(f"{request.method} {request.target} -> {status}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ routing

    def _token_of(self, request: Request) -> str | None:
        auth = request.headers.get("authorization")
        if not auth:
            return None
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return credentials.strip() or None

    async def _dispatch(self, request: Request, ctx: _Ctx) -> Response:
        path, method = request.path, request.method
        token = self._token_of(request)
        ctx.authorized = token is not None and token in self.tokens
        ctx.request_id = _request_id_in(path)
        dialect = self.config.dialect
        fault = self.faults.take(method, path)
        if fault is not None:
            ctx.fault = fault.kind
            if fault.kind == "dialect":
                dialect = as_dialect(fault.dialect)
            if fault.delay_seconds:
                await asyncio.sleep(fault.delay_seconds)
            if fault.kind == "status":
                headers = []
                if fault.retry_after is not None:
                    headers.append(("Retry-After", _retry_after_value(fault.retry_after)))
                return json_response(fault.status, fault.response_body, headers)
            if fault.kind == "drop":
                return Response(drop=True)
        response = await self._route(request, ctx, token, dialect)
        if fault is not None and fault.kind == "truncate":
            response.truncate_after = fault.truncate_after
        return response

    async def _route(self, request: Request, ctx: _Ctx, token: str | None, dialect: Dialect) -> Response:
        path, method = request.path, request.method
        if path.startswith("/v1/"):
            if token is None:
                return _api_error(
                    401,
                    400004,
                    "UserAccountError: missing API token (Authorization: Bearer)",
                    [("WWW-Authenticate", "Bearer")],
                )
            if not ctx.authorized:
                return _api_error(
                    401,
                    400004,
                    "UserAccountError: invalid or expired API token",
                    [("WWW-Authenticate", "Bearer")],
                )
            if path.rstrip("/") == "/v1/models" or (path.startswith("/v1/models/") and method != "POST"):
                return self._catalog(request)
            if path.startswith("/v1/models/"):
                return self._submit(request, ctx, path[len("/v1/models/") :].strip("/"), token, dialect)
            parts = path.split("/")
            if len(parts) == 5 and parts[2] == "requests" and parts[3]:
                rid, action = parts[3], parts[4]
                if action == "status":
                    if method != "GET":
                        return _method_not_allowed("GET")
                    return self._status(rid, token, dialect)
                if action == "result":
                    if method != "GET":
                        return _method_not_allowed("GET")
                    return self._result(request, rid, token, dialect)
                if action == "cancel":
                    if method != "POST":
                        return _method_not_allowed("POST")
                    return self._cancel(rid, token, dialect)
            return _not_found(path)
        if method not in ("GET", "HEAD"):
            if path.startswith(("/files/", "/samples/", "/images/", "/blobs/")):
                return _method_not_allowed("GET, HEAD")
            return _not_found(path)
        if path.startswith("/files/"):
            return self._file(path)
        if path.startswith("/samples"):
            return await self._sample(path)
        if path == "/images/gen":
            return await self._generated(request)
        if path == "/images/notimage":
            body = b"<!doctype html><html><body><h1>This is not an image</h1></body></html>"
            return Response(body=body, content_type="text/html; charset=utf-8", ranged=True)
        if path.startswith("/blobs/"):
            return self._blob(request, path)
        return _not_found(path)

    # ------------------------------------------------------------------ API

    def _catalog(self, request: Request) -> Response:
        """The three catalog endpoints (read-only), or 503 when the catalog knob is off."""
        if request.method != "GET":
            return _method_not_allowed("GET")
        if not self.config.catalog_available:
            return json_response(503, {"error_message": "the model catalog is unavailable (emulator knob)"})
        path = request.path.rstrip("/")
        if path == "/v1/models":
            try:
                return json_response(200, self.catalog.page(request.query, self.config.schema_form))
            except ValueError as exc:
                return json_response(400, {"error_message": f"bad catalog query: {exc}"})
        if path == "/v1/models/categories":
            return json_response(200, {"categories": self.catalog.categories()})
        model_id = path[len("/v1/models/") :].strip("/")
        entry = self.catalog.get(model_id)
        if entry is None:
            return _api_error(404, 400001, f"InvalidResourceIdentifier: unknown model_id {model_id!r}")
        return json_response(200, entry.to_dict(form=self.config.schema_form))

    def _submit(self, request: Request, ctx: _Ctx, model_id: str, token: str, dialect: Dialect) -> Response:
        spec = MODELS.get(model_id) or self.catalog.catalog_spec(model_id)
        if spec is None:
            return _api_error(400, 400001, f"InvalidResourceIdentifier: unknown model_id {model_id!r}")
        inputs = request.json()
        if not isinstance(inputs, dict):
            return json_response(400, {"error_message": "body: must be a JSON object of the model's inputs"})
        try:
            params = spec.validate(inputs)
        except InputError as exc:
            return json_response(400, {"error_message": str(exc)})
        cfg = self.config
        if cfg.balance is not None:
            if cfg.balance <= 0:
                return _api_error(402, 400002, "InsufficientResources: account balance too low")
            cfg.balance -= 1
        now = time.time()
        rid = str(uuid.uuid4())
        queue_seconds, run_seconds = _job_timing(spec.kind, inputs, cfg)
        start_at = now + queue_seconds
        job = Job(
            request_id=rid,
            spec=spec,
            owner=token,
            inputs=inputs,
            params=params,
            created_at=now,
            start_at=start_at,
            finish_at=start_at + run_seconds,
            failure_message=cfg.failure_message,
            result_ttl=cfg.result_ttl_seconds,
        )
        self._jobs[rid] = job
        self._queue[rid] = job
        if job.result_ttl is not None:
            self._ttl_jobs.add(rid)
        if cfg.hold_until_submits is not None:
            self._hold(job, queue_seconds, run_seconds, cfg.hold_until_submits)
        job.task = asyncio.get_running_loop().create_task(self._run_job(job))
        ctx.request_id = rid
        base = f"{self.base_url}/v1/requests/{rid}"
        return json_response(
            200,
            dialect.decorate(
                {
                    "request_id": rid,
                    "status_url": f"{base}/status",
                    "result_url": f"{base}/result",
                    "cancel_url": f"{base}/cancel",
                }
            ),
        )

    def _hold(self, job: Job, queue_seconds: float, run_seconds: float, until: int) -> None:
        """Keep ``job`` queued with the others held; once ``until`` are held, start them all now."""
        job.start_at = job.finish_at = math.inf
        job.released = asyncio.Event()
        self._held.append((job, queue_seconds, run_seconds))
        if len(self._held) < until:
            return
        now = time.time()
        for held, queue, run in self._held:
            held.start_at = now + queue
            held.finish_at = held.start_at + run
            if held.released is not None:
                held.released.set()
        self._held.clear()
        self.config.hold_until_submits = None

    async def _run_job(self, job: Job) -> None:
        """Wait for the job's start, then do its work in the thread pool so outputs precede completion."""
        if job.released is not None:
            await job.released.wait()
        delay = job.start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        self._queue.pop(job.request_id, None)
        if job.cancelled_at is not None:
            return
        if job.failure_message is not None:
            job.error = job.failure_message
        else:
            try:
                files, names = await self._run_blocking(run_job, job.spec, job.params, self.max_output_side)
            except JobFailure as exc:
                job.error = str(exc)
            except Exception as exc:
                job.error = f"internal emulator error: {exc!r}"
            else:
                job.files = {f.name: f for f in files}
                job.output_names = names
        job.work_done_at = time.time()

    def _find(self, rid: str, token: str) -> Job | Response:
        job = self._jobs.get(rid)
        if job is None:
            return _api_error(404, 404001, f"ResourceNotFound: request {rid} not found")
        if job.owner != token:
            return _api_error(403, 403001, f"PermissionDenied: request {rid} belongs to another account")
        if job.is_expired(time.time()):
            return _api_error(404, 404001, f"ResourceNotFound: request {rid} has expired")
        return job

    def _queue_position(self, job: Job, now: float) -> int:
        """How many older jobs are still queued (pruning the ones that left the queue)."""
        position = 0
        stale = []
        for rid, other in self._queue.items():
            if other is job:
                break
            if other.state(now) == IN_QUEUE:
                position += 1
            else:
                stale.append(rid)
        for rid in stale:
            del self._queue[rid]
        return position

    def _status(self, rid: str, token: str, dialect: Dialect) -> Response:
        found = self._find(rid, token)
        if isinstance(found, Response):
            return found
        now = time.time()
        state = found.state(now)
        body: dict[str, Any] = {"request_id": rid, "status": dialect.status_word(state)}
        if state == IN_QUEUE:
            body["queue_position"] = self._queue_position(found, now)
        base = f"{self.base_url}/v1/requests/{rid}"
        body["status_url"] = f"{base}/status"
        body["result_url"] = f"{base}/result"
        if dialect.extra_fields and state != IN_QUEUE and found.cancelled_at is None:
            body["instance_id"] = f"instance-{rid[:8]}"
        return json_response(200, dialect.decorate(body))

    def _result(self, request: Request, rid: str, token: str, dialect: Dialect) -> Response:
        found = self._find(rid, token)
        if isinstance(found, Response):
            return found
        now = time.time()
        state = found.state(now)
        body: dict[str, Any] = {"request_id": rid, "status": dialect.result_word(state, found.progress(now))}
        if dialect.extra_fields:
            body["model_id"] = found.spec.model_id
        if state == SUCCEEDED:
            body["output"] = found.output(self.base_url)
        body["created_at"] = iso(found.created_at)
        body["finished_at"] = iso(found.finished_at(now))
        if state == FAILED:
            body["error"] = found.error
        if request.query.get("include_cost", "").lower() in _TRUE:
            body["cost"] = found.spec.cost(found.params) if state == SUCCEEDED else 0.0
        return json_response(200, dialect.decorate(body))

    def _cancel(self, rid: str, token: str, dialect: Dialect) -> Response:
        """Cancel a queued job. Like the example in RunComfy's docs, a successful cancel answers
        ``status: "completed"`` with ``outcome: "cancelled"`` (clients must decide on ``outcome``);
        the status endpoint then says ``cancelled``. Running or finished jobs are ``not_cancellable``.
        Other dialects word the answer their way (``Dialect.cancel_body``).
        """
        found = self._find(rid, token)
        if isinstance(found, Response):
            return found
        now = time.time()
        state = found.state(now)
        if state == IN_QUEUE:
            found.cancelled_at = now
            self._queue.pop(rid, None)
            if found.task is not None:
                found.task.cancel()
            state = CANCELLED
        body = dialect.cancel_body(rid, state, cancelled=state == CANCELLED)
        return json_response(202, dialect.decorate(body))

    # ------------------------------------------------------------------ public content

    def _file(self, path: str) -> Response:
        parts = path.split("/")
        if len(parts) != 4:
            return _not_found(path)
        rid, name = parts[2], parts[3]
        job = self._jobs.get(rid)
        now = time.time()
        if job is None or job.is_expired(now) or job.state(now) != SUCCEEDED or name not in job.files:
            return _not_found(path)
        out = job.files[name]
        return Response(
            body=out.data,
            content_type=out.content_type,
            ranged=True,
            headers=[("Cache-Control", "public, max-age=86400")],
        )

    async def _sample(self, path: str) -> Response:
        if path in ("/samples", "/samples/"):
            names = media.sample_names()
            return json_response(
                200, {"samples": [{"name": n, "url": f"{self.base_url}/samples/{n}"} for n in names]}
            )
        name = path[len("/samples/") :]
        if name not in media.sample_names():
            return _not_found(path)
        if name not in self._samples:
            self._samples[name] = await self._run_blocking(media.sample_bytes, name)
        data, content_type = self._samples[name]
        return Response(body=data, content_type=content_type, ranged=True)

    async def _generated(self, request: Request) -> Response:
        q = request.query
        try:
            width = int(q.get("w", "800"))
            height = int(q.get("h", "600"))
            fmt = media.normalize_format(q.get("fmt", "png"))
            size = int(q["bytes"]) if q.get("bytes") else None
            if size is not None and not 0 <= size <= 512 * 1024 * 1024:
                raise ValueError("bytes must be between 0 and 512 MiB")
            if not (1 <= width <= media.MAX_GENERATED_SIDE and 1 <= height <= media.MAX_GENERATED_SIDE):
                raise ValueError(f"w and h must be between 1 and {media.MAX_GENERATED_SIDE}")
            if width * height > media.MAX_GENERATED_PIXELS:
                raise ValueError(f"w*h must be at most {media.MAX_GENERATED_PIXELS}")
        except ValueError as exc:
            return json_response(400, {"error_message": f"bad image parameters: {exc}"})
        head_pad = q.get("pad", "") == "head"
        key = (width, height, fmt, size, head_pad)
        data = self._image_cache.get(key)
        if data is not None:
            self._image_cache.move_to_end(key)
        else:
            future = self._image_inflight.get(key)
            if future is None:
                loop = asyncio.get_running_loop()
                make = functools.partial(
                    media.generate_image, width, height, fmt, size, before_frame=head_pad
                )
                future = loop.run_in_executor(self._executor, make)
                self._image_inflight[key] = future
                future.add_done_callback(lambda fut: self._image_done(key, fut))
            data = await asyncio.shield(future)
        no_length = q.get("nolength", "").lower() in _TRUE
        return Response(
            body=data, content_type=media.IMAGE_CONTENT_TYPES[fmt], no_length=no_length, ranged=not no_length
        )

    def _image_done(self, key: tuple[Any, ...], future: asyncio.Future[bytes]) -> None:
        self._image_inflight.pop(key, None)
        if future.cancelled() or future.exception() is not None:
            return
        data = future.result()
        self._image_cache[key] = data
        self._image_cache_size += len(data)
        while self._image_cache_size > IMAGE_CACHE_BYTES and len(self._image_cache) > 1:
            _, old = self._image_cache.popitem(last=False)
            self._image_cache_size -= len(old)

    def _blob(self, request: Request, path: str) -> Response:
        try:
            size = int(path[len("/blobs/") :])
            if not 0 <= size <= MAX_BLOB_BYTES:
                raise ValueError
        except ValueError:
            message = f"blob size must be an integer from 0 to {MAX_BLOB_BYTES}"
            return json_response(400, {"error_message": message})
        content_type = request.query.get("type") or "application/octet-stream"
        return Response(stream=StreamBody(size, media.iter_blob), content_type=content_type, ranged=True)

    # ------------------------------------------------------------------ controls

    def _control_allowed(self, request: Request) -> bool:
        """Whether a control request may act: always without a control token, else only with it."""
        if self.control_token is None:
            return True
        given = request.headers.get(CONTROL_TOKEN_HEADER.lower(), "")
        return hmac.compare_digest(given.encode(), self.control_token.encode())

    def _control(self, request: Request) -> Response:
        """The ``/_emulator/`` endpoints tests in other processes use (not logged, not faulted)."""
        path, method = request.path.rstrip("/"), request.method
        try:
            if path == "/_emulator/health" and method == "GET":
                return json_response(
                    200,
                    {"status": "ok", "base_url": self.base_url, "pid": os.getpid(), "jobs": len(self._jobs)},
                )
            if path == "/_emulator/requests":
                if method == "GET":
                    since = float(request.query.get("since", "-inf"))
                    records = [r.to_dict() for r in self.log.snapshot() if r.time >= since]
                    return json_response(200, records)
                if method == "DELETE":
                    return json_response(200, {"cleared": self.log.clear()})
            if path == "/_emulator/faults":
                if method == "GET":
                    return json_response(
                        200, [{"fault": f.to_dict(), "remaining": n} for f, n in self.faults.active()]
                    )
                if method == "POST":
                    data = request.json()
                    items = data if isinstance(data, list) else [data]
                    faults = [Fault.from_dict(item) for item in items]
                    for fault in faults:
                        self.faults.add(fault)
                    return json_response(200, {"added": len(faults)})
                if method == "DELETE":
                    return json_response(200, {"cleared": self.faults.clear()})
            if path == "/_emulator/config":
                if method == "POST":
                    self.config.update(request.json())
                if method in ("GET", "POST"):
                    return json_response(200, self.config.to_dict())
            if path == "/_emulator/jobs" and method == "GET":
                return json_response(200, self.jobs_snapshot())
            if path == "/_emulator/models" and method == "POST":
                entry = AddedModel.from_dict(request.json()).entry()
                self.catalog.add(entry)
                return json_response(200, entry.to_dict())
        except (ValueError, TypeError) as exc:
            return json_response(400, {"error_message": str(exc)})
        return _not_found(request.path)

    def jobs_snapshot(self) -> list[dict[str, Any]]:
        """Every known job as JSON-able data (call on the server's loop): id, model, state, times, error."""
        now = time.time()
        out = []
        for job in self._jobs.values():
            finished = job.finished_at(now)
            out.append(
                {
                    "request_id": job.request_id,
                    "model_id": job.spec.model_id,
                    "status": "expired" if job.is_expired(now) else job.state(now),
                    "inputs": job.inputs,
                    "created_at": iso(job.created_at),
                    "finished_at": iso(finished),
                    "error": job.error if finished is not None else None,
                    "output_files": sorted(job.files),
                }
            )
        return out
