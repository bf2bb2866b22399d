"""
When to try again, and how long a call may take: the one retry loop of the provider.

The hook (API calls), the image checks (image hosts) and the downloads (the output CDN) all meet
failures that another attempt may fix: a 503, a 429 with ``Retry-After``, a dropped connection.
:meth:`RetryPolicy.run` (sync) and :meth:`RetryPolicy.arun` (async) are the one loop around an
attempt that they share: it counts the failed attempts (across several loops with a
:class:`RetryCounter`), waits with backoff and jitter, honours ``Retry-After`` (capped), bounds each
attempt by a deadline when asked, and gives up with :class:`RetriesExhausted`. What may be retried
stays the caller's call: the hook never sends a paid submit again unless the answer proves nothing was
created.

:func:`call_deadline` sets the overall deadline of one sync call; the clients of
:mod:`airflow_provider_runcomfy.transport` read it at every socket operation.

Standard library and httpx only: no Airflow and no sibling module, so every module may use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import email.utils
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Mapping

T = TypeVar("T")


def _sleep(seconds: float) -> None:
    """The wait between two attempts (a function of this module, so a test replaces only this one)."""
    time.sleep(seconds)


async def _asleep(seconds: float) -> None:
    """The async wait between two attempts (replacing ``asyncio.sleep`` would reach every event loop)."""
    await asyncio.sleep(seconds)


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


def extra_number(extra: Mapping[str, Any], key: str, default: float) -> float:
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


@dataclass
class RetryCounter:
    """Failed attempts of one piece of work, counted across the :meth:`RetryPolicy.run` calls it takes."""

    failures: int = 0


class RetriesExhausted(Exception):
    """
    Every attempt :class:`RetryPolicy` allowed failed.

    :param last: the last failure: the outcome ``attempt`` returned, or the exception it raised.
    :param attempts: how many attempts failed (in all, for a shared :class:`RetryCounter`).
    """

    def __init__(self, last: object, attempts: int) -> None:
        super().__init__(f"gave up after {attempts} attempts: {last}")
        self.last = last
        self.attempts = attempts


class TransientError(Exception):
    """
    An attempt failed in a way another attempt may fix (the default of what :meth:`RetryPolicy.run` retries).

    :param cause: what went wrong, for messages and logs.
    :param retry_after: the server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(self, cause: str, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.retry_after = retry_after


def is_transient_failure(outcome: object) -> bool:
    """The default judgement of :meth:`RetryPolicy.run`: only a :class:`TransientError` is retried."""
    return isinstance(outcome, TransientError)


def retry_after_of(failure: object) -> float | None:
    """The ``Retry-After`` of a failed attempt: an HTTP answer's header, or a :class:`TransientError`'s."""
    if isinstance(failure, httpx.Response):
        return parse_retry_after(failure.headers.get("Retry-After"))
    if isinstance(failure, TransientError):
        return failure.retry_after
    return None


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
            max_retries=int(extra_number(extra, "max_retries", cls.max_retries)),
            backoff=extra_number(extra, "retry_backoff", cls.backoff),
            max_delay=extra_number(extra, "retry_max_delay", cls.max_delay),
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

    def run(
        self,
        attempt: Callable[[], T],
        *,
        may_retry: Callable[[T | Exception], bool] = is_transient_failure,
        on_retry: Callable[[T | Exception, int, float], None] | None = None,
        deadline: float | None = None,
        counter: RetryCounter | None = None,
    ) -> T:
        """
        Call ``attempt`` until it gives an outcome that ``may_retry`` refuses, waiting between tries.

        An outcome is what ``attempt`` returns or the exception it raises: one that ``may_retry``
        refuses is returned or raised as it is; one it accepts is another failed attempt. After
        :attr:`max_retries` retries the next failure raises :class:`RetriesExhausted` (chained to the
        last exception, if it was one). Before each retry the wait is :meth:`delay`, with the
        ``Retry-After`` of the failure (:func:`retry_after_of`), and ``on_retry`` hears of it.

        :param attempt: one try, e.g. one HTTP exchange.
        :param may_retry: whether an outcome is a failure worth another try (default: a
            :class:`TransientError`). Deciding this is the caller's: a paid call retries only what
            proves nothing was created.
        :param on_retry: called with the failure, the retry number (1-based) and the wait in seconds,
            before the wait (to log it).
        :param deadline: seconds each attempt may take in all (connect, send, the whole answer);
            enforced on the sockets of :func:`make_client`'s clients (:func:`call_deadline`).
        :param counter: failures counted across several runs (every request for one file); by
            default each run counts its own.
        :raises RetriesExhausted: when the last allowed attempt failed too.
        """
        counter = counter if counter is not None else RetryCounter()
        while True:
            outcome: T | Exception
            try:
                with call_deadline(deadline) if deadline is not None else contextlib.nullcontext():
                    outcome = attempt()
            except Exception as err:
                if not may_retry(err):
                    raise
                outcome = err
            else:
                if not may_retry(outcome):
                    return outcome
            _sleep(self._next_wait(outcome, counter, on_retry))

    async def arun(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        may_retry: Callable[[T | Exception], bool] = is_transient_failure,
        on_retry: Callable[[T | Exception, int, float], None] | None = None,
        deadline: float | None = None,
        counter: RetryCounter | None = None,
    ) -> T:
        """
        The async :meth:`run`: the same rules, waiting with :func:`asyncio.sleep`.

        An attempt that outlives ``deadline`` is cancelled and counts as an :class:`httpx.ReadTimeout`
        (what the sync form raises at the socket), so ``may_retry`` reads both forms alike.
        """
        counter = counter if counter is not None else RetryCounter()
        while True:
            outcome: T | Exception
            try:
                outcome = await (attempt() if deadline is None else _before(deadline, attempt))
            except Exception as err:
                if not may_retry(err):
                    raise
                outcome = err
            else:
                if not may_retry(outcome):
                    return outcome
            await _asleep(self._next_wait(outcome, counter, on_retry))

    def _next_wait(
        self,
        failure: T | Exception,
        counter: RetryCounter,
        on_retry: Callable[[T | Exception, int, float], None] | None,
    ) -> float:
        """Count one failure: the seconds to wait before the next try, or :class:`RetriesExhausted`."""
        counter.failures += 1
        if counter.failures > self.max_retries:
            cause = failure if isinstance(failure, BaseException) else None
            raise RetriesExhausted(failure, counter.failures) from cause
        wait = self.delay(counter.failures, retry_after_of(failure))
        if on_retry is not None:
            on_retry(failure, counter.failures, wait)
        return wait


async def _before(deadline: float, attempt: Callable[[], Awaitable[T]]) -> T:
    """Await ``attempt`` for at most ``deadline`` seconds; past it, fail as a read timeout."""
    try:
        async with asyncio.timeout(deadline):
            return await attempt()
    except TimeoutError:
        raise httpx.ReadTimeout(f"no complete answer within the call's deadline of {deadline:g} s") from None


#: The monotonic deadline of the sync call running in this thread (``None``: per-read timeouts only).
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("runcomfy_deadline", default=None)


@contextlib.contextmanager
def call_deadline(seconds: float) -> Iterator[None]:
    """
    Bound every socket operation of the sync calls inside the block by one overall deadline.

    httpx only has per-operation timeouts; the clients of :func:`make_client` read this deadline at
    each connect, read and write (see :class:`_DeadlineBackend`), so a dripping server is cut off when
    the call's time is up, whether it drips its headers or its body.
    """
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def deadline_left() -> float | None:
    """Seconds left before the running sync call's deadline (``None``: no deadline is set)."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()
