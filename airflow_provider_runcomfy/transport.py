"""
HTTP plumbing shared by the hook, the image checks and the downloads.

One place decides how the provider talks HTTP: timeouts, TLS, the ``User-Agent``, which failures
are transient, how long to wait before trying again, and who may see the token. The hook talks to
the API; the image checks and downloads talk to image hosts and the output CDN, which must never
see the token, so they use clients built here without :class:`BearerAuth`.
"""

from __future__ import annotations

import email.utils
import functools
import random
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from airflow_provider_runcomfy import __version__

if TYPE_CHECKING:
    from collections.abc import Generator, Mapping

USER_AGENT = f"airflow-provider-runcomfy/{__version__}"

#: Statuses after which the same read-only call may well succeed.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_transient_status(status_code: int) -> bool:
    """Tell whether an HTTP status is worth retrying (408, 429 and every 5xx)."""
    return status_code in TRANSIENT_STATUSES or 500 <= status_code <= 599


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """
    Read a ``Retry-After`` header: delta-seconds or an HTTP date; ``None`` when absent or unreadable.

    RunComfy does not document rate limits, so the header is honoured whenever it is sent.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _number(extra: Mapping[str, Any], key: str, default: float) -> float:
    # Airflow's connection form may store a field as ``extra__<conn_type>__<key>`` (older forms).
    raw = extra.get(key, extra.get(f"extra__runcomfy__{key}"))
    if raw is None or raw == "":
        return default
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"connection extra {key!r} must be a number, got {raw!r}") from None
    if number < 0:
        raise ValueError(f"connection extra {key!r} must not be negative, got {raw!r}")
    return number


@dataclass(frozen=True)
class RetryPolicy:
    """
    Bounded exponential backoff with jitter, honouring ``Retry-After``.

    :param max_retries: retries after the first attempt; 0 turns retrying off.
    :param backoff: the first delay in seconds; each retry doubles it.
    :param max_delay: the longest single delay, ``Retry-After`` included, so a server cannot park a
        task for an hour with one header.
    """

    max_retries: int = 5
    backoff: float = 1.0
    max_delay: float = 60.0

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> RetryPolicy:
        """Read ``max_retries``, ``retry_backoff`` and ``retry_max_delay`` from a connection's extra."""
        return cls(
            max_retries=int(_number(extra, "max_retries", cls.max_retries)),
            backoff=_number(extra, "retry_backoff", cls.backoff),
            max_delay=_number(extra, "retry_max_delay", cls.max_delay),
        )

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """
        Seconds to wait before retry number ``retry`` (1-based).

        Jitter spreads the retries of many tasks hit by the same outage ("full jitter" on the upper
        half), and a ``Retry-After`` is a floor, never shortened by jitter.
        """
        ceiling = min(self.max_delay, self.backoff * 2 ** (retry - 1))
        wait = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.max_delay)


@dataclass(frozen=True)
class Timeouts:
    """Connect and read timeouts in seconds (a read timeout bounds each wait for bytes, not a download)."""

    connect: float = 10.0
    read: float = 60.0

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> Timeouts:
        """Build the timeouts from a connection's extra (``connect_timeout``, ``read_timeout``)."""
        return cls(
            connect=_number(extra, "connect_timeout", cls.connect),
            read=_number(extra, "read_timeout", cls.read),
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


def _client_options(timeouts: Timeouts) -> dict[str, Any]:
    return {
        "timeout": timeouts.as_httpx(),
        "verify": shared_ssl_context(),
        "headers": {"User-Agent": USER_AGENT},
        "follow_redirects": False,
    }


def make_client(timeouts: Timeouts, **options: Any) -> httpx.Client:
    """A sync client with the provider's TLS, timeouts and ``User-Agent``; one pool for its life."""
    return httpx.Client(**{**_client_options(timeouts), **options})


def make_async_client(timeouts: Timeouts, **options: Any) -> httpx.AsyncClient:
    """The async twin of :func:`make_client`, for triggers and concurrent image checks."""
    return httpx.AsyncClient(**{**_client_options(timeouts), **options})
