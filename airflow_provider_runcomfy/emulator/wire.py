"""A small HTTP/1.1 layer on asyncio streams: parse requests, write responses.

Written on ``asyncio.start_server`` with the standard library only, so the emulator runs under any
Airflow version without a web framework, and one event loop holds thousands of keep-alive
connections (no thread per connection). It implements what API clients and downloaders use:
keep-alive, ``Content-Length`` and chunked request bodies, ``Expect: 100-continue``, ``HEAD``,
single byte ``Range`` requests, and responses without a length (closed to delimit the body).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

#: Largest request head (request line plus headers) and body the emulator reads.
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024

SERVER_NAME = "runcomfy-emulator"


class HttpError(Exception):
    """A request that cannot be parsed; answered with ``status`` and the connection is closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    """One parsed HTTP request. Header names are lower-case; ``path`` is percent-decoded."""

    method: str
    target: str
    path: str
    query: dict[str, str]
    version: str
    headers: dict[str, str]
    body: bytes
    received_at: float

    @property
    def keep_alive(self) -> bool:
        """Whether the client allows the connection to be reused (HTTP/1.1 default: yes)."""
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn

    def json(self) -> Any:
        """The body parsed as JSON, or ``None`` when it is empty or not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None


@dataclass
class StreamBody:
    """A response body produced in chunks (``chunks(start, end)`` yields bytes ``[start, end)``)."""

    length: int
    chunks: Callable[[int, int], Iterator[bytes]]


@dataclass
class Response:
    """A response to write. ``body`` or ``stream`` holds the content.

    ``ranged`` allows byte-range answers (static content); ``no_length`` sends no
    ``Content-Length`` and closes the connection after the body; ``truncate_after`` sends only that
    many body bytes (after announcing the full length) and closes; ``drop`` closes without answering.
    """

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: StreamBody | None = None
    content_type: str | None = "application/json"
    ranged: bool = False
    no_length: bool = False
    truncate_after: int | None = None
    drop: bool = False
    close: bool = False


def json_response(status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    """A JSON response (compact encoding: status polls are the hot path)."""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(status=status, body=body, headers=headers or [], content_type="application/json")


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The ``Date`` header value, formatted once per second (formatting costs more than a poll)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
    """Read one request from the connection; ``None`` when the client closed it between requests.

    Raises ``HttpError`` for malformed or oversized requests.
    """
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise HttpError(400, "incomplete request head") from exc
        return None
    except asyncio.LimitOverrunError as exc:
        raise HttpError(431, "request head too large") from exc
    received = time.time()
    lines = head[:-4].decode("latin-1").split("\r\n")
    while lines and not lines[0]:  # tolerate stray CRLF between pipelined requests
        lines.pop(0)
    if not lines:
        return None
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(400, "bad header line")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    split = urlsplit(target)
    path = unquote(split.path) or "/"
    query = dict(parse_qsl(split.query, keep_blank_values=True)) if split.query else {}
    body = b""
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError as exc:
            raise HttpError(400, "bad Content-Length") from exc
        if length < 0:
            raise HttpError(400, "bad Content-Length")
        if length > MAX_BODY_BYTES:
            raise HttpError(413, "request body too large")
        if length:
            try:
                body = await reader.readexactly(length)
            except asyncio.IncompleteReadError as exc:
                raise HttpError(400, "incomplete request body") from exc
    return Request(method.upper(), target, path, query, version, headers, body, received)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """Decode a chunked request body (trailers are read and ignored)."""
    out = bytearray()
    try:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return bytes(out)
            if len(out) + size > MAX_BODY_BYTES:
                raise HttpError(413, "request body too large")
            out += await reader.readexactly(size)
            await reader.readexactly(2)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise HttpError(400, "bad chunked body") from exc


def _parse_range(header: str, length: int) -> tuple[int, int] | bool | None:
    """Parse one ``bytes=`` range: (start, end-exclusive); ``None``: ignore it; ``False``: unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first:
            suffix = int(last)
            if suffix <= 0:
                return False
            return max(0, length - suffix), length
        start = int(first)
        end = int(last) + 1 if last else length
    except ValueError:
        return None
    if start >= length or end <= start:
        return False
    return start, min(end, length)


async def write_response(
    writer: asyncio.StreamWriter,
    request: Request | None,
    response: Response,
    keep_alive: bool,
    before_send: Callable[[int | None], Awaitable[None]] | None = None,
) -> int | None:
    """Write ``response``; returns the status sent, or ``None`` when no complete answer was sent.

    ``before_send`` is awaited with that same outcome before the first byte goes out: the request
    log is written there, so a client that has its answer always finds its request in the log.
    The caller closes the connection when ``keep_alive`` is false, when the response asks for it,
    or when this returns ``None``.
    """
    if response.drop:
        if before_send is not None:
            await before_send(None)
        return None
    status = response.status
    head_only = request is not None and request.method == "HEAD"
    total = response.stream.length if response.stream is not None else len(response.body)
    start, end = 0, total
    headers = [("Server", SERVER_NAME), ("Date", _http_date())]
    if response.content_type is not None:
        headers.append(("Content-Type", response.content_type))
    headers.extend(response.headers)
    if response.ranged:
        headers.append(("Accept-Ranges", "bytes"))
        range_header = request.headers.get("range") if request is not None else None
        if range_header and status == 200:
            parsed = _parse_range(range_header, total)
            if parsed is False:
                status, start, end = 416, 0, 0
                headers.append(("Content-Range", f"bytes */{total}"))
            elif isinstance(parsed, tuple):
                status = 206
                start, end = parsed
                headers.append(("Content-Range", f"bytes {start}-{end - 1}/{total}"))
    close = not keep_alive or response.close or response.no_length or response.truncate_after is not None
    if not response.no_length:
        headers.append(("Content-Length", str(end - start)))
    headers.append(("Connection", "close" if close else "keep-alive"))
    head = f"HTTP/1.1 {status} {_reason(status)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    budget = end - start if response.truncate_after is None else min(end - start, response.truncate_after)
    cut = not head_only and status != 416 and budget < end - start
    if before_send is not None:
        await before_send(None if cut else status)
    writer.write(head.encode("latin-1"))
    if head_only or status == 416:
        await writer.drain()
        return status
    if response.stream is None:
        body = response.body
        writer.write(body[start : start + budget] if (start, budget) != (0, total) else body)
        await writer.drain()
    else:
        sent = 0
        for chunk in response.stream.chunks(start, start + budget):
            writer.write(chunk)
            sent += len(chunk)
            await writer.drain()
    if response.truncate_after is not None and budget < end - start:
        return None
    return status
