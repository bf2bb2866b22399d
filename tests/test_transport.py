"""
SharedAsyncTransport: the keep-alive connections every hook on an event loop shares.

Against the emulator for the normal case, and against tiny raw HTTP servers on 127.0.0.1 for the
answers the emulator never gives (chunked, close-delimited, a server closing an idle connection).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from airflow_provider_runcomfy import transport
from airflow_provider_runcomfy.emulator import Fault
from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook
from airflow_provider_runcomfy.transport import SharedAsyncTransport, Timeouts, make_async_client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def serve(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    """A raw server on a free port; returns it, its base URL and a list of its connection count."""
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", connections


def client(base_url: str, read: float = 5.0) -> httpx.AsyncClient:
    return make_async_client(
        Timeouts(connect=2, read=read), base_url=base_url, transport=SharedAsyncTransport()
    )


def test_hooks_on_one_loop_share_keep_alive_connections(emu: Any) -> None:
    request_id = RunComfyHook().submit(
        "bytedance/dreamina-4-0/edit", {"image_urls": [emu.sample_url()], "prompt": "x"}
    )
    emu.clear_requests()

    async def many_hooks() -> None:
        hooks = [RunComfyHook() for _ in range(20)]
        for hook in hooks:  # one after the other: each finds the previous one's idle connection
            await hook.aget_status(request_id)
        for hook in hooks:
            await hook.aclose()

    asyncio.run(many_hooks())
    polls = [r for r in emu.requests if r.path.endswith("/status")]
    assert len(polls) == 20
    assert len({r.peer for r in polls}) == 1
    assert all(r.authorized for r in polls)


def test_connections_are_capped_and_requests_wait_their_turn(
    emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "SHARED_MAX_CONNECTIONS", 3)
    request_id = RunComfyHook().submit(
        "bytedance/dreamina-4-0/edit", {"image_urls": [emu.sample_url()], "prompt": "x"}
    )
    emu.clear_requests()
    emu.add_fault(Fault(path=r"/status$", kind="delay", delay_seconds=0.2, times=None))

    async def burst() -> list[dict[str, Any]]:
        hooks = [RunComfyHook() for _ in range(12)]
        try:
            return list(await asyncio.gather(*(hook.aget_status(request_id) for hook in hooks)))
        finally:
            for hook in hooks:
                await hook.aclose()

    answers = asyncio.run(burst())
    assert [a["request_id"] for a in answers] == [request_id] * 12
    assert len({r.peer for r in emu.requests if r.path.endswith("/status")}) <= 3


def test_a_new_event_loop_gets_its_own_pool(emu: Any) -> None:
    request_id = RunComfyHook().submit(
        "bytedance/dreamina-4-0/edit", {"image_urls": [emu.sample_url()], "prompt": "x"}
    )
    hook = RunComfyHook()
    pools = []
    for _ in range(2):

        async def once() -> None:
            await hook.aget_status(request_id)
            pools.append(transport._POOLS[asyncio.get_running_loop()])

        asyncio.run(once())
    assert pools[0] is not pools[1]


def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async def answer_once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}")
        await writer.drain()

    async def scenario() -> tuple[int, int]:
        server, url, connections = await serve(answer_once_then_close)
        async with server, client(url) as http:
            first = await http.get("/a")
            await asyncio.sleep(0.2)  # the server's close reaches the idle connection
            second = await http.get("/b")
            return first.status_code + second.status_code, len(connections)

    statuses, connections = asyncio.run(scenario())
    assert statuses == 400
    assert connections == 2


def test_chunked_and_close_delimited_answers_are_read_whole() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n3\r\n 1}\r\n0\r\n\r\n'
        )
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"b": 2}')
        await writer.drain()

    async def scenario() -> tuple[Any, Any]:
        server, url, _ = await serve(chunked)
        async with server, client(url) as http:
            return (await http.get("/chunked")).json(), (await http.get("/close")).json()

    assert asyncio.run(scenario()) == ({"a": 1}, {"b": 2})


def test_read_timeout_and_refused_connection_are_httpx_errors() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(2)

    async def scenario() -> None:
        server, url, _ = await serve(silent)
        async with server, client(url, read=0.2) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get("/slow")
        server.close()
        await server.wait_closed()
        async with client(url) as http:
            with pytest.raises(httpx.ConnectError):
                await http.get("/gone")

    asyncio.run(scenario())
