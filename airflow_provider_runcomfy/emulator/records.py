"""The emulator's plain data types: injected faults and request-log records.

Both are frozen dataclasses with ``to_dict``/``from_dict`` so that a test in another process (an
Airflow worker, the triggerer) can add faults and read the log through the ``/_emulator/`` control
endpoints with the same shapes the in-process API uses.
"""

from __future__ import annotations

import random
import re
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from .dialect import dialect_named

FAULT_KINDS = ("status", "drop", "delay", "truncate", "dialect")


@dataclass(frozen=True)
class Fault:
    """A failure to inject into the requests whose path matches ``path`` (``re.search``).

    Kinds:

    - ``status``: answer ``status`` with the JSON ``body`` (default ``{"error_message": "injected
      fault"}``) and, when ``retry_after`` is set, a ``Retry-After`` header (whole seconds are sent
      as an integer, fractions as a decimal). ``status=200`` with a body carrying ``error_code``
      models RunComfy's "error on HTTP 200" answers.
    - ``drop``: read the request, then close the connection without any answer.
    - ``delay``: wait ``delay_seconds``, then answer normally.
    - ``truncate``: answer normally, but send only ``truncate_after`` body bytes after headers that
      announce the full ``Content-Length``, then close (an interrupted download). Meant for
      ``/files/``, ``/blobs/``, ``/images/`` and ``/samples/``. On an API call the call still takes
      effect and only its answer is cut, so a truncated submit does create a job: that is the
      "accepted, but the answer was lost" case a client must not retry blindly.
    - ``dialect``: answer normally, but word the answer in the ``dialect`` given (a preset name of
      ``dialect.py`` such as ``"live"`` or ``"final-status-words"``, or names joined with ``+``):
      one endpoint, or a few polls, in the live service's vocabulary.

    For every kind, ``delay_seconds`` is waited first. A faulted submit (``status`` or ``drop``)
    creates no job and costs no balance. ``times`` is how many matching requests the fault applies
    to (``None``: every one, until cleared). ``rate`` is the share of matching requests it hits,
    drawn at random per request (``1.0``: every one): chaos runs keep a few faults of each kind
    active at a set rate instead of scripting which request fails. A request the draw spares does
    not count against ``times`` and falls through to the next matching fault. Control requests
    (``/_emulator/``) are never faulted.
    """

    path: str
    kind: str = "status"
    method: str | None = None
    status: int = 503
    body: dict[str, Any] | None = None
    retry_after: float | None = None
    delay_seconds: float = 0.0
    truncate_after: int = 0
    times: int | None = 1
    rate: float = 1.0
    dialect: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"Fault.kind must be one of {FAULT_KINDS}, got {self.kind!r}")
        re.compile(self.path)
        if self.method is not None:
            object.__setattr__(self, "method", self.method.upper())
        if not 100 <= self.status <= 599:
            raise ValueError(f"Fault.status must be an HTTP status, got {self.status}")
        if self.delay_seconds < 0 or self.truncate_after < 0:
            raise ValueError("Fault.delay_seconds and Fault.truncate_after must not be negative")
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float) or not 0 < self.rate <= 1:
            raise ValueError(f"Fault.rate must be a share in (0, 1], got {self.rate!r}")
        if self.kind == "dialect":
            if not self.dialect:
                raise ValueError("a 'dialect' fault needs a dialect, e.g. dialect='live'")
            dialect_named(self.dialect)  # an unknown name fails here, not on the request it applies to

    def to_dict(self) -> dict[str, Any]:
        """The fault as JSON-able data (the body of ``POST /_emulator/faults``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build a fault from ``to_dict`` data; unknown keys raise ``ValueError`` (catch typos early)."""
        if not isinstance(data, dict):
            raise ValueError("a fault must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown Fault fields: {', '.join(sorted(unknown))}")
        if "path" not in data:
            raise ValueError("a fault needs a 'path' regex")
        return cls(**data)

    @property
    def response_body(self) -> dict[str, Any]:
        """The JSON body a ``status`` fault answers with."""
        return self.body if self.body is not None else {"error_message": "injected fault"}


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator answered (or dropped), as kept in the request log.

    The bearer token itself is never stored: only whether one was present (``auth_header_present``)
    and whether it was valid (``authorized``). ``request_id`` is the job the request concerns (the
    one in the path, or the one a submit created). ``status`` is ``None`` when no complete answer
    was sent (a ``drop`` or ``truncate`` fault, or a client that went away). ``pid`` is the client's
    process id when the emulator runs with ``record_peer_pid=True`` and the client is local.
    """

    time: float
    method: str
    path: str
    query: dict[str, str]
    status: int | None
    authorized: bool
    auth_header_present: bool
    user_agent: str | None
    body: Any
    request_id: str | None
    peer: tuple[str, int]
    pid: int | None = None
    fault: str | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-able data (``peer`` becomes a two-item list)."""
        data = asdict(self)
        data["peer"] = list(self.peer)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        """Rebuild a record from ``to_dict`` data (for tests reading ``GET /_emulator/requests``)."""
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["peer"] = tuple(values.get("peer") or ("", 0))
        return cls(**values)


class FaultBook:
    """The active faults, in the order they were added; thread-safe (tests add faults from any thread).

    :param seed: seeds the draws of faults with a ``rate`` below 1, for a repeatable request order.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._entries: list[list[Any]] = []  # [fault, compiled regex, remaining or None]

    def add(self, fault: Fault) -> None:
        """Activate ``fault`` after the ones already active (first match wins)."""
        with self._lock:
            self._entries.append([fault, re.compile(fault.path), fault.times])

    def clear(self) -> int:
        """Remove every fault; returns how many were active."""
        with self._lock:
            n = len(self._entries)
            self._entries.clear()
            return n

    def active(self) -> list[tuple[Fault, int | None]]:
        """The active faults with how many more times each applies (``None``: unlimited)."""
        with self._lock:
            return [(f, remaining) for f, _, remaining in self._entries]

    def take(self, method: str, path: str) -> Fault | None:
        """The first fault matching this request, counting one use of it (used-up faults go away)."""
        if not self._entries:
            return None
        with self._lock:
            for entry in self._entries:
                fault: Fault = entry[0]
                regex, remaining = entry[1], entry[2]
                if fault.method is not None and fault.method != method:
                    continue
                if not regex.search(path):
                    continue
                if fault.rate < 1 and self._random.random() >= fault.rate:
                    continue
                if remaining is not None:
                    if remaining <= 0:
                        continue
                    entry[2] = remaining - 1
                self._entries = [e for e in self._entries if e[2] is None or e[2] > 0]
                return fault
        return None


class RequestLog:
    """A bounded, thread-safe request log (the newest ``maxlen`` records)."""

    def __init__(self, maxlen: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque(maxlen=maxlen)

    def append(self, record: RequestRecord) -> None:
        """Add one record (called on the server's loop after each answer)."""
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[RequestRecord]:
        """A copy of the log, oldest first, safe to use while the server keeps running."""
        with self._lock:
            return list(self._records)

    def clear(self) -> int:
        """Empty the log; returns how many records it held."""
        with self._lock:
            n = len(self._records)
            self._records.clear()
            return n
