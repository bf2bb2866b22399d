"""
HTTP plumbing shared by the hook, the image checks and the downloads.

One place decides how the provider talks HTTP: timeouts, TLS, the ``User-Agent``, the bounds of an
answer, and who may see the token. The hook talks to the API; the image checks and downloads talk to
image hosts and the output CDN, which must never see the token, so they use clients built here without
:class:`BearerAuth`. When to try again is :mod:`airflow_provider_runcomfy.retry`'s concern; the sync
clients built here read its :func:`~airflow_provider_runcomfy.retry.call_deadline` at every socket
operation.

The hook's async calls (a triggerer may run a thousand RunComfy triggers in one event loop) go
through :class:`SharedAsyncTransport`: one small set of keep-alive connections per event loop,
shared by every hook on that loop. See that class for why.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import select
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import h11
import httpcore
import httpx

from airflow_provider_runcomfy import __version__

# Their home is retry.py; kept importable from here, where they lived before.
from airflow_provider_runcomfy.retry import RetryPolicy as RetryPolicy
from airflow_provider_runcomfy.retry import call_deadline as call_deadline
from airflow_provider_runcomfy.retry import deadline_left, extra_number
from airflow_provider_runcomfy.retry import is_transient_status as is_transient_status
from airflow_provider_runcomfy.retry import parse_retry_after as parse_retry_after

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterable,
        AsyncIterator,
        Generator,
        Iterable,
        Mapping,
    )

USER_AGENT = f"airflow-provider-runcomfy/{__version__}"


@dataclass(frozen=True)
class Timeouts:
    """
    Connect and read timeouts in seconds (a read timeout bounds each wait for bytes, not a download).

    An API call as a whole (connect, send, the whole answer) is bounded too, by :attr:`total`: a
    server that drips its answer a byte at a time never trips a per-read timeout, and must not hold
    a worker or a triggerer's poll for as long as it likes.
    """

    connect: float = 10.0
    read: float = 60.0

    @property
    def total(self) -> float:
        """The deadline of one API call, connect and whole answer: ``connect + read`` seconds."""
        return self.connect + self.read

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> Timeouts:
        """Build the timeouts from a connection's extra (``connect_timeout``, ``read_timeout``)."""
        return cls(
            connect=extra_number(extra, "connect_timeout", cls.connect),
            read=extra_number(extra, "read_timeout", cls.read),
        )

    def as_httpx(self) -> httpx.Timeout:
        """Return the httpx form; writes and pool waits share the read timeout."""
        return httpx.Timeout(self.read, connect=self.connect)


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """
    One verifying TLS context for the whole process.

    Building a context loads the CA bundle: about 16 ms of CPU and 850 KiB each time. A triggerer
    running a thousand RunComfy triggers must not pay that a thousand times, and an
    :class:`ssl.SSLContext` is safe to share between clients, threads and event loops.
    """
    try:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with httpx
        return ssl.create_default_context()


class BearerAuth(httpx.Auth):
    """
    Send the token only to the API's own origin.

    The hook never follows redirects and only ever asks the base URL, but this is the last line:
    a request to any other scheme, host or port (an image host, the output CDN) goes out without the
    ``Authorization`` header.
    """

    def __init__(self, token: str, base_url: str):
        self._header = f"Bearer {token}"
        self._origin = httpx.URL(base_url)

    def __repr__(self) -> str:
        return f"BearerAuth(origin={self._origin.scheme}://{self._origin.netloc.decode()}, token=***)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        url = request.url
        if (url.scheme, url.host, url.port) == (self._origin.scheme, self._origin.host, self._origin.port):
            request.headers["Authorization"] = self._header
        yield request


# -- bounded answers: a size cap and an overall deadline per call ------------------------------------


class AnswerTooLargeError(Exception):
    """An answer's body went past the size cap; nothing more of it was read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is larger than {limit:,} bytes; reading stopped there")
        self.limit = limit


def read_capped(chunks: Iterable[bytes], limit: int) -> bytes:
    """Join a body's chunks, raising :class:`AnswerTooLargeError` as soon as it passes ``limit`` bytes."""
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise AnswerTooLargeError(limit)
    return bytes(body)


async def aread_capped(chunks: AsyncIterable[bytes], limit: int) -> bytes:
    """The async twin of :func:`read_capped`."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise AnswerTooLargeError(limit)
    return bytes(body)


def _bounded(timeout: float | None, expired: type[Exception]) -> float | None:
    """A socket operation's timeout, shortened to the running call's deadline (raising once it passed)."""
    remaining = deadline_left()
    if remaining is None:
        return timeout
    if remaining <= 0:
        raise expired("the call's overall deadline passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read and write stops at the running call's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sync sockets, with :class:`_DeadlineStream` around each connection."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_tcp(host, port, bounded, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _honour_deadlines(client: httpx.Client) -> httpx.Client:
    """
    Make the direct connections of ``client`` honour :func:`call_deadline`.

    httpx builds its httpcore pool without a way to pass a network backend, so the pool's backend is
    wrapped after the fact. Connections through a proxy from the environment keep per-read timeouts
    (their answers are still capped in size, and the body is read against the deadline).
    """
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(pool, httpcore.ConnectionPool) and isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _DeadlineBackend(backend)
    return client


def _client_options(timeouts: Timeouts) -> dict[str, Any]:
    return {
        "timeout": timeouts.as_httpx(),
        "verify": shared_ssl_context(),
        "headers": {"User-Agent": USER_AGENT},
        "follow_redirects": False,
    }


def make_client(timeouts: Timeouts, **options: Any) -> httpx.Client:
    """
    A sync client with the provider's TLS, timeouts and ``User-Agent``; one pool for its life.

    Its direct connections honour :func:`call_deadline` (without one, per-read timeouts only).
    """
    return _honour_deadlines(httpx.Client(**{**_client_options(timeouts), **options}))


def make_async_client(timeouts: Timeouts, **options: Any) -> httpx.AsyncClient:
    """The async twin of :func:`make_client`, for triggers and concurrent image checks."""
    return httpx.AsyncClient(**{**_client_options(timeouts), **options})


# -- the hook's async transport: keep-alive connections shared per event loop ------------------------

#: The most requests one event loop has in flight at once, so the most connections it opens to one
#: origin; more requests wait their turn (first come, first served). httpx's own default cap.
SHARED_MAX_CONNECTIONS = 100
#: Seconds an idle shared connection is kept: longer than the default poll interval (5 s), so polls
#: reuse it, and shorter than the 60 s idle timeout of common load balancers, so the server rarely
#: closes one just as it is reused.
SHARED_KEEPALIVE_SECONDS = 30.0
_READ_SIZE = 64 * 1024

_Origin = tuple[bytes, bytes, int]


class _Connection:
    """One HTTP/1.1 connection: asyncio streams, and h11 keeping track of the exchange on it."""

    __slots__ = ("h11", "idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0

    def expired(self, now: float) -> bool:
        """
        Idle for too long, or unable to carry another exchange.

        An idle connection with anything to read has been closed by the server (or sent bytes nobody
        asked for): the same check httpcore makes before reusing a connection, so that a poll does not
        fail on a connection the server closed a moment ago.
        """
        if now - self.idle_since >= SHARED_KEEPALIVE_SECONDS or self.writer.is_closing():
            return True
        if self.reader.at_eof():
            return True
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return False
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    async def next_event(self, timeout: float | None) -> Any:
        """The next h11 event of the answer, reading from the socket when h11 needs more bytes."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as err:
                if self.reader.at_eof():
                    message = "the server closed the connection before answering in full"
                    raise httpx.RemoteProtocolError(message) from err
                raise httpx.RemoteProtocolError(f"the server's answer is not valid HTTP: {err}") from err
            if event is not h11.NEED_DATA:
                return event
            try:
                async with asyncio.timeout(timeout):
                    data = await self.reader.read(_READ_SIZE)
            except TimeoutError:
                raise httpx.ReadTimeout("timed out waiting for the server's answer") from None
            except OSError as err:
                raise httpx.ReadError(f"{type(err).__name__}: {err}") from err
            self.h11.receive_data(data)  # b"" tells h11 the server closed the connection

    def close(self) -> None:
        self.writer.close()


class _LoopPool:
    """
    The keep-alive connections of one event loop, by origin; see :class:`SharedAsyncTransport`.

    A request takes one of :data:`SHARED_MAX_CONNECTIONS` slots, then the most recently used idle
    connection to its origin (or opens one), and gives both back when its answer has been read. A
    connection whose answer was not read to the end, or that the server wants closed, is closed.
    """

    def __init__(self) -> None:
        self.leases = 0
        self._slots = asyncio.Semaphore(SHARED_MAX_CONNECTIONS)
        self._idle: dict[_Origin, collections.deque[_Connection]] = {}

    async def request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.raw_scheme, url.raw_host, url.port or (443 if url.scheme == "https" else 80))
        if self._slots.locked():
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    await self._slots.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout("timed out waiting for a free connection") from None
        else:
            await self._slots.acquire()
        conn: _Connection | None = None
        try:
            conn = await self._connection(origin, url, timeouts.get("connect"))
            head = h11.Request(method=request.method, target=url.raw_path, headers=request.headers.raw)
            data = conn.h11.send(head) or b""
            async for chunk in request.stream:  # type: ignore[union-attr]
                data += conn.h11.send(h11.Data(data=chunk)) or b""
            data += conn.h11.send(h11.EndOfMessage()) or b""
            try:
                conn.writer.write(data)
                if conn.writer.transport.get_write_buffer_size():
                    async with asyncio.timeout(timeouts.get("write")):
                        await conn.writer.drain()
            except TimeoutError:
                raise httpx.WriteTimeout("timed out sending the request") from None
            except OSError as err:
                raise httpx.WriteError(f"{type(err).__name__}: {err}") from err
            event = await conn.next_event(timeouts.get("read"))
            while isinstance(event, h11.InformationalResponse):  # 100 Continue and the like
                event = await conn.next_event(timeouts.get("read"))
            if not isinstance(event, h11.Response):
                raise httpx.RemoteProtocolError("the server closed the connection without answering")
        except BaseException as err:
            if conn is not None:
                conn.close()
            self._slots.release()
            if isinstance(err, h11.LocalProtocolError):  # a request h11 refuses to send
                raise httpx.LocalProtocolError(str(err)) from err
            raise
        return httpx.Response(
            status_code=event.status_code,
            headers=event.headers.raw_items(),
            stream=_Body(self, origin, conn, timeouts.get("read")),
            extensions={"http_version": b"HTTP/" + event.http_version, "reason_phrase": event.reason},
        )

    async def _connection(self, origin: _Origin, url: httpx.URL, timeout: float | None) -> _Connection:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            if idle[0].expired(now):  # the oldest first, so unused connections do not linger
                idle.popleft().close()
                continue
            conn = idle.pop()
            if not conn.expired(now):
                return conn
            conn.close()
        tls = shared_ssl_context() if url.scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    url.host, origin[2], ssl=tls, server_hostname=url.host if tls else None, limit=_READ_SIZE
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {url.host}:{origin[2]}") from None
        except OSError as err:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            raise httpx.ConnectError(f"{type(err).__name__}: {err}") from err
        return _Connection(reader, writer)

    def give_back(self, origin: _Origin, conn: _Connection, reusable: bool) -> None:
        """Return a connection after its answer was read (kept if ``reusable``) and free its slot."""
        self._slots.release()
        if reusable and conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            conn.h11.start_next_cycle()
            conn.idle_since = time.monotonic()
            self._idle.setdefault(origin, collections.deque()).append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close every idle connection (those in use are closed when their answers are)."""
        for idle in self._idle.values():
            while idle:
                idle.pop().close()


class _Body(httpx.AsyncByteStream):
    """The body of one answer, read from its connection; closing it gives the connection back."""

    def __init__(self, pool: _LoopPool, origin: _Origin, conn: _Connection, timeout: float | None) -> None:
        self._pool = pool
        self._origin = origin
        self._conn: _Connection | None = conn
        self._timeout = timeout
        self._complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            raise httpx.StreamClosed()
        while True:
            event = await conn.next_event(self._timeout)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._complete = True
                return
            else:
                raise httpx.RemoteProtocolError("the server closed the connection in the middle of an answer")

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.give_back(self._origin, conn, self._complete)


class _ReleasedOnClose(httpx.AsyncByteStream):
    """A body stream that lets go of the stream it wraps once closed; see :func:`release_on_close`."""

    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream: httpx.AsyncByteStream | None = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._stream is None:
            raise httpx.StreamClosed()
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()


async def release_on_close(response: httpx.Response) -> None:
    """
    A response event hook of the hook's async client: each answer is freed as soon as it is closed.

    httpx's client binds every response's body stream back to the response (to time it): a reference
    cycle, which only Python's cyclic garbage collector frees. A triggerer polling a thousand jobs a
    second makes enough of that garbage to run a full collection every few seconds, and a full
    collection stops the event loop (over 100 ms on a 2-core machine, see ``BENCHMARKS.md``).
    Wrapping the stream in one that drops it when closed breaks the cycle, so reference counting frees
    each answer at once.
    """
    if isinstance(response.stream, httpx.AsyncByteStream):
        response.stream = _ReleasedOnClose(response.stream)


#: The pool of each event loop that has one; see :class:`SharedAsyncTransport`.
_POOLS: dict[asyncio.AbstractEventLoop, _LoopPool] = {}


class SharedAsyncTransport(httpx.AsyncBaseTransport):
    """
    The hook's async transport: a lease on the keep-alive connections of the running event loop.

    A triggerer runs every trigger in one event loop, and a fan-out DAG can defer a thousand RunComfy
    waits at once. A client with its own connections per trigger means a thousand connections and a
    thousand pools (about 40 KiB each, and a reconnect per poll once a connection idles past httpx's
    default 5 s keep-alive). Sharing a stock pool instead was measured (``BENCHMARKS.md`` section 6,
    ``scripts/bench --pools``: 1,000 triggers polling every second, the same trigger code over each
    pool, one run): one shared ``httpx.AsyncHTTPTransport`` tuned with ``httpx.Limits(
    max_connections=100, keepalive_expiry=30)`` used 44x this pool's CPU per poll and delivered events
    a minute late, and one
    shared aiohttp session 1.5x the CPU with events 4.8x later at the median. So every hook on a loop
    shares one :class:`_LoopPool`:
    at most :data:`SHARED_MAX_CONNECTIONS` requests in flight (the rest wait in line, first come first
    served, bounded by the pool timeout), each on the most recently used idle HTTP/1.1 connection to
    its origin, straight on asyncio streams with h11 framing the messages. A thousand triggers polling
    every second then share a handful of connections.

    Each hook's client holds one lease (this object). The pool is made by the first lease on a loop
    and closed, with its idle connections, when the last lease is closed; a new loop (a restarted
    triggerer, another ``asyncio.run``) always gets its own pool, since asyncio connections belong to
    the loop that opened them. The pool of a loop that was closed with leases still open is dropped
    when the next pool is made (its sockets are closed when collected).

    Connections carry no credentials: each hook's client adds its own ``Authorization`` header, only
    for the API's origin (:class:`BearerAuth`). Failures are raised as httpx's exceptions, so the
    hook's retry policy reads them exactly as before. Proxies from the environment still go through
    httpx's own proxy transports (the client mounts them), not through this one.

    Must be created inside the running event loop it will serve.
    """

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        pool = _POOLS.get(loop)
        if pool is None:
            for old in [other for other in _POOLS if other.is_closed()]:
                _POOLS.pop(old, None)
            pool = _POOLS[loop] = _LoopPool()
        pool.leases += 1
        self._loop: asyncio.AbstractEventLoop | None = loop
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._loop is None:
            raise RuntimeError("this transport has been closed")
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("a shared transport serves only the event loop it was made in")
        return await self._pool.request(request)

    async def aclose(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        self._pool.leases -= 1
        if self._pool.leases == 0:
            self._pool.close()
            if _POOLS.get(loop) is self._pool:
                del _POOLS[loop]
