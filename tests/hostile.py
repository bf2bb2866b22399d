"""
A small hostile HTTP server on 127.0.0.1: the odd or malicious peers the provider must survive.

The emulator plays RunComfy as documented (and its live dialect); this server plays everything a
broken proxy, a compromised API host or a nasty image host could answer instead: an HTML page or
another JSON shape on a 200, JSON nested a million levels deep, a body of many MiB, a chunked body
that never ends, an answer dripped one byte at a time, a body that echoes the request's
``Authorization`` header back, bytes sent in tiny pieces.

Each test scripts it with :meth:`HostileServer.route` (a regex on the path, and what to answer) and
reads back what it was sent (:attr:`HostileServer.seen`). Every endless or slow answer stops on its
own after :data:`MAX_ANSWER_SECONDS` (or when the client hangs up), so a test that fails never leaves
a thread spinning; the server is stopped when its ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: The longest any one answer of this server lasts (an endless body, a drip), whatever the client does.
MAX_ANSWER_SECONDS = 30.0


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    """
    What to answer: a status, headers and a body, sent in one of a few hostile ways.

    :param status: the HTTP status.
    :param body: the body (bytes, or a callable of the request giving them: an echo).
    :param content_type: its ``Content-Type``.
    :param mode: ``plain`` (with ``Content-Length``), ``endless`` (chunked, never finishing),
        ``drip`` (the head and body one byte per ``interval``), ``pieces`` (the body in
        ``piece``-byte writes, no ``Content-Length``, then close), ``huge`` (``size`` bytes of
        ``fill`` announced and sent), ``ranged`` (a file of ``size`` bytes whose bytes
        ``[start, end)`` are ``file_bytes(start, end)``, served as ``206`` to each ``Range``).
    """

    status: int = 200
    body: bytes | Callable[[Seen], bytes] = b""
    content_type: str = "application/json"
    mode: str = "plain"
    interval: float = 0.2
    piece: int = 1
    size: int = 0
    fill: bytes = b" "
    headers: list[tuple[str, str]] = field(default_factory=list)
    file_bytes: Callable[[int, int], bytes] | None = None


def json_answer(data: Any, status: int = 200) -> Answer:
    return Answer(status=status, body=json.dumps(data).encode())


class HostileServer:
    """The server; use it as a context manager. Routes are matched in the order added."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._routes: list[tuple[str | None, re.Pattern[str], Answer]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hostile-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def route(self, path: str, answer: Answer, method: str | None = None) -> None:
        """Answer requests whose path matches ``path`` (``re.search``) with ``answer``."""
        with self._lock:
            self._routes.append((method, re.compile(path), answer))

    def requests(self, method: str | None = None, path: str = "") -> list[Seen]:
        """The requests received so far, filtered by method and path regex."""
        with self._lock:
            return [
                s for s in self.seen if (method is None or s.method == method) and re.search(path, s.path)
            ]

    def answer_for(self, seen: Seen) -> Answer:
        with self._lock:
            self.seen.append(seen)
            for method, pattern, answer in self._routes:
                if (method is None or method == seen.method) and pattern.search(seen.path):
                    return answer
        return json_answer({"error_message": "not found"}, status=404)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


def _handler_for(server: HostileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: tests read ``seen``

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen = Seen(self.command, self.path.split("?", 1)[0], dict(self.headers.items()), body)
            answer = server.answer_for(seen)
            with contextlib.suppress(OSError):  # the client hung up: exactly what a bounded client does
                _send(self, answer, seen)
            self.close_connection = True

        do_GET = do_POST = do_HEAD = do_DELETE = _answer

    return Handler


def _send(handler: BaseHTTPRequestHandler, answer: Answer, seen: Seen) -> None:
    body = answer.body(seen) if callable(answer.body) else answer.body
    deadline = time.monotonic() + MAX_ANSWER_SECONDS
    out = handler.wfile
    head = [f"HTTP/1.1 {answer.status} Hostile\r\n", f"Content-Type: {answer.content_type}\r\n"]
    head += [f"{k}: {v}\r\n" for k, v in answer.headers]
    if answer.mode == "plain":
        head.append(f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        out.write("".join(head).encode("latin-1") + body)
    elif answer.mode == "huge":
        head.append(f"Content-Length: {answer.size}\r\nConnection: close\r\n\r\n")
        out.write("".join(head).encode("latin-1"))
        block = (answer.fill * (65536 // len(answer.fill) + 1))[:65536]
        sent = 0
        while sent < answer.size and time.monotonic() < deadline:
            part = block[: answer.size - sent]
            out.write(part)
            sent += len(part)
    elif answer.mode == "endless":
        head.append("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        out.write("".join(head).encode("latin-1") + _chunk(body))
        block = answer.fill * max(1, 65536 // len(answer.fill))  # whole fills: a segment stream stays whole
        while time.monotonic() < deadline:
            out.write(_chunk(block))
    elif answer.mode == "drip":
        head.append(f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        for byte in "".join(head).encode("latin-1") + body:
            if time.monotonic() >= deadline:
                return
            out.write(bytes([byte]))
            out.flush()
            time.sleep(answer.interval)
    elif answer.mode == "ranged":
        assert answer.file_bytes is not None
        first, _, last = seen.headers.get("Range", "bytes=0-").split("=", 1)[1].partition("-")
        start = int(first)
        end = min(answer.size, int(last) + 1 if last else answer.size, start + 1024 * 1024)
        data = answer.file_bytes(start, end)
        head[0] = "HTTP/1.1 206 Partial\r\n"
        head.append(f"Content-Range: bytes {start}-{end - 1}/{answer.size}\r\n")
        head.append(f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n")
        out.write("".join(head).encode("latin-1") + data)
    elif answer.mode == "pieces":
        head.append("Connection: close\r\n\r\n")
        out.write("".join(head).encode("latin-1"))
        out.flush()
        for start in range(0, len(body), answer.piece):
            out.write(body[start : start + answer.piece])
            out.flush()
            time.sleep(0.001)
    else:  # pragma: no cover - a typo in a test
        raise ValueError(f"unknown mode {answer.mode!r}")
    out.flush()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n" if data else b""


def echo_authorization(seen: Seen) -> bytes:
    """A body that quotes the request's ``Authorization`` header, as a careless server error might."""
    said = seen.headers.get("Authorization", "")
    return json.dumps({"error_message": f"rejected header: Authorization: {said}"}).encode()


def nested_json(depth: int) -> bytes:
    """JSON nested ``depth`` levels deep (no parser's recursion survives a million)."""
    return b"[" * depth + b"]" * depth


def hostile_server() -> Iterator[HostileServer]:
    """Generator for a pytest fixture: a started server, stopped afterwards."""
    with HostileServer() as server:
        yield server
