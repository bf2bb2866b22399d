"""
The async HTTP pools the hook could use, swapped in for the triggerer benchmark's ``--pool`` option.

The hook builds one async client per trigger and hands it a transport made by calling
``SharedAsyncTransport()`` inside the running loop (:meth:`RunComfyHook.aclient`). To measure the
alternatives under exactly the same trigger code, :func:`use_pool` replaces that name in the hook's
module with a factory for one of:

* ``shared``: the provider's own :class:`~airflow_provider_runcomfy.transport.SharedAsyncTransport`
  (asyncio streams and h11, one pool per loop; nothing is replaced);
* ``httpx``: one ``httpx.AsyncHTTPTransport`` per loop, httpx's own pool (httpcore on anyio), tuned as
  a careful user would tune it: ``httpx.Limits(max_connections=100, keepalive_expiry=30)``, shared by
  every hook on the loop;
* ``aiohttp``: one ``aiohttp.ClientSession`` per loop (``TCPConnector(limit=100,
  keepalive_timeout=30)``), the library Airflow's HTTP provider uses, shared the same way and adapted
  to httpx's transport interface (the body is read whole, as the HTTP provider's triggers do).

Each lease closes nothing shared: the pools live as long as the loop, as the shared transport's do.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import httpx

from benchmarks.common import median_run, run_part

POOLS = ("shared", "httpx", "aiohttp")


class _HttpxLease(httpx.AsyncBaseTransport):
    """A lease on the loop's one tuned ``httpx.AsyncHTTPTransport``."""

    _by_loop: ClassVar[dict[asyncio.AbstractEventLoop, httpx.AsyncHTTPTransport]] = {}

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        transport = self._by_loop.get(loop)
        if transport is None:
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=30)
            transport = self._by_loop[loop] = httpx.AsyncHTTPTransport(limits=limits)
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:  # the pool is the loop's, not this lease's
        return None


class _AiohttpLease(httpx.AsyncBaseTransport):
    """A lease on the loop's one ``aiohttp.ClientSession``, speaking httpx's transport interface."""

    _by_loop: ClassVar[dict[asyncio.AbstractEventLoop, Any]] = {}

    def __init__(self) -> None:
        import aiohttp

        loop = asyncio.get_running_loop()
        session = self._by_loop.get(loop)
        if session is None:
            connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=30)
            session = self._by_loop[loop] = aiohttp.ClientSession(connector=connector)
        self._session = session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import aiohttp

        timeout = request.extensions.get("timeout", {})
        async with self._session.request(
            request.method,
            str(request.url),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            data=await request.aread() or None,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout.get("read")),
        ) as answer:
            body = await answer.read()
            return httpx.Response(
                answer.status, headers=list(answer.raw_headers), content=body, request=request
            )

    async def aclose(self) -> None:
        return None


def use_pool(kind: str) -> None:
    """Make every hook built from now on in this process use the pool ``kind`` (one of :data:`POOLS`)."""
    if kind not in POOLS:
        raise ValueError(f"unknown pool {kind!r}; one of {POOLS}")
    if kind == "shared":
        return
    import airflow_provider_runcomfy.hooks.runcomfy as hook_module

    hook_module.SharedAsyncTransport = _HttpxLease if kind == "httpx" else _AiohttpLease  # type: ignore[misc,assignment]


# -- the comparison: ``scripts/bench --pools`` ---------------------------------------------------------

#: Where the comparison's section sits in BENCHMARKS.md (rewritten in place by each run).
SECTION_START = "<!-- pools:start -->"
SECTION_END = "<!-- pools:end -->"

_ROWS: list[tuple[str, str, int]] = [
    # (label, figure key, digits)
    ("events received (of N)", "events", 0),
    ("CPU per poll (ms)", "cpu_ms_per_poll", 2),
    ("CPU per poll, steady state (ms)", "cpu_ms_per_poll_steady", 2),
    ("polls made per second", "achieved_polls_per_s", 0),
    ("RSS per in-flight trigger (KiB)", "rss_kib_per_trigger", 1),
    ("TCP connections opened", "tcp_connects", 0),
    ("completion -> event p50 (s)", "latency_p50_s", 2),
    ("completion -> event p95 (s)", "latency_p95_s", 2),
    ("worst stall outside garbage collections (ms)", "stall_max_outside_gc_ms", 0),
    ("full garbage collections", "gc_full_collections", 0),
]


def compare(n: int, rounds: int, job_seconds: float, log: Any) -> dict[str, dict[str, Any]]:
    """Run the stress case (poll every 1 s) for each pool, alternating, ``rounds`` times; medians."""
    runs: dict[str, list[dict[str, Any]]] = {pool: [] for pool in POOLS}
    for _ in range(rounds):
        for pool in POOLS:
            args = ["--impl", "runcomfy", "--pool", pool, "--n", str(n), "--interval", "1"]
            runs[pool].append(run_part("triggerer", *args, "--job-seconds", str(job_seconds), log=log))
    return {pool: median_run(found) for pool, found in runs.items()}


def render(figures: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    """The BENCHMARKS.md section: one table, the three pools side by side, ratios against ours."""
    from benchmarks.report import _num, _ratio

    shared, tuned, aio = (figures[pool] for pool in POOLS)
    lines = [
        SECTION_START,
        f"### 6. The hook's async HTTP pool, N={shared['n']:,} triggers polling every 1 s",
        "",
        f"Measured by `{meta['command']}` on {meta['date']} (checkout {meta['commit']}), "
        f"{shared['runs']} alternating runs of each, medians; load average (1 min) "
        f"{meta['load_before']:.2f} before and {meta['load_after']:.2f} after. The same "
        "`RunComfyRequestTrigger` code in each column; only the transport under the hook's async "
        "client differs (`benchmarks/pools.py`).",
        "",
        "| figure | (a) ours: `SharedAsyncTransport` | (b) one shared `httpx.AsyncClient` pool, "
        "`Limits(max_connections=100, keepalive_expiry=30)` | (c) one shared aiohttp session "
        "(`TCPConnector(limit=100, keepalive_timeout=30)`) | (b)/(a) | (c)/(a) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, key, digits in _ROWS:
        a, b, c = shared.get(key), tuned.get(key), aio.get(key)
        lines.append(
            f"| {label} | {_num(a, digits)} | {_num(b, digits)} | {_num(c, digits)} "
            f"| {_ratio(b, a)} | {_ratio(c, a)} |"
        )
    lines += ["", meta["decision"], SECTION_END]
    return "\n".join(lines)


def write_section(path: Any, section: str) -> None:
    """Put ``section`` into the report at its markers (or at the end when it has none yet)."""
    text = path.read_text() if path.exists() else ""
    if SECTION_START in text and SECTION_END in text:
        before, rest = text.split(SECTION_START, 1)
        after = rest.split(SECTION_END, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def decision(figures: dict[str, dict[str, Any]]) -> str:
    """
    The rule the hand-made pool is kept by, applied to this run's figures.

    It stays only if it wins clearly: at most 0.8x the CPU per poll of both alternatives, with at least
    95% of the wanted polls made. Otherwise the simpler stock pool should replace it.
    """
    shared, tuned, aio = (figures[pool] for pool in POOLS)
    cpu = shared["cpu_ms_per_poll"]
    ratios = (cpu / tuned["cpu_ms_per_poll"], cpu / aio["cpu_ms_per_poll"])
    wins = max(ratios) <= 0.8 and shared["achieved_ratio"] >= 0.95
    best = "(b) httpx's own pool" if ratios[0] > ratios[1] else "(c) an aiohttp session"
    verdict = "kept" if wins else f"not clearly better than {best}"
    return (
        f"**Decision: the hand-made pool is {verdict}.** Rule: keep it only if its CPU per poll is at most "
        f"0.8x both alternatives' with at least 95% of the wanted polls made; here {ratios[0]:.2f}x (b)'s "
        f"and {ratios[1]:.2f}x (c)'s, {shared['achieved_ratio']:.0%} of the polls."
    )
