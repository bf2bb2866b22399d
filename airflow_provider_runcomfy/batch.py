"""
The ledger of a batch: what became of every item of a :class:`RunComfyBatchOperator`.

A batch task keeps up to ``max_in_flight`` RunComfy jobs in flight and waits for them in rounds (in
the triggerer or the worker); between rounds the task process may end (a deferral) and start again,
so everything the next round needs is data: one :class:`BatchItem` per input, in input order, kept in
the ``results`` XCom and counted in the ``batch`` XCom. The same records are what users read at the
end. The request id of each paid job is also saved for retries (:class:`RetryBook`, Airflow 3.3+),
because XComs are cleared when a new try starts and a retry must not pay for an item twice.

This module is light on purpose (no httpx, no Pillow): the operator module imports it while DAG files
are parsed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airflow_provider_runcomfy.exceptions import RunComfyError, RunComfyInputError
from airflow_provider_runcomfy.jobs import EventStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

#: XCom keys of a batch task (besides ``return_value``, the per-item URL lists in input order).
RESULTS_XCOM_KEY = "results"
BATCH_XCOM_KEY = "batch"

#: How many items a failure message or an input error lists by name before it says "and N more".
LISTED_ITEMS = 25


class ItemStatus(StrEnum):
    """Where one item of a batch is; the ``status`` of its record in the ``results`` XCom."""

    #: Not submitted yet (at the end of a batch: never submitted, e.g. the batch timed out first).
    PENDING = "pending"
    #: Submitted (paid); its job has not been seen to end.
    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Still unfinished when the batch's ``timeout`` passed (a queued job was cancelled then).
    TIMED_OUT = "timed_out"
    #: Its wait could not go on, or its submit may or may not have created a job: never sent again.
    ERROR = "error"
    #: Refused by the pre-flight with ``skip_invalid=True``: never submitted, never paid.
    SKIPPED = "skipped"

    @property
    def is_settled(self) -> bool:
        """Nothing more will happen to the item in this try."""
        return self not in (ItemStatus.PENDING, ItemStatus.IN_FLIGHT)

    @property
    def is_failure(self) -> bool:
        """Counts against ``allow_failures``: the item was meant to run and has no output."""
        return self not in (ItemStatus.SUCCEEDED, ItemStatus.SKIPPED, ItemStatus.IN_FLIGHT)

    @classmethod
    def from_event(cls, status: Any) -> ItemStatus:
        """The item status of a wait's final event (:class:`~airflow_provider_runcomfy.jobs.EventStatus`)."""
        return {
            EventStatus.SUCCESS.value: cls.SUCCEEDED,
            EventStatus.FAILED.value: cls.FAILED,
            EventStatus.CANCELLED.value: cls.CANCELLED,
            EventStatus.TIMEOUT.value: cls.TIMED_OUT,
        }.get(status, cls.ERROR)


@dataclass
class BatchItem:
    """
    One input of a batch and what became of it: a record of the ``results`` XCom.

    :param index: the item's position in ``inputs``.
    :param status: see :class:`ItemStatus`.
    :param request_id: the RunComfy request id once it was submitted.
    :param urls: the output URLs of a succeeded item.
    :param error: why an item failed, was skipped, or was not submitted.
    :param cost_usd: the cost RunComfy reported for the job, when it did.
    """

    index: int
    status: ItemStatus = ItemStatus.PENDING
    request_id: str | None = None
    urls: list[str] | None = None
    error: str | None = None
    cost_usd: float | None = None

    def to_xcom(self) -> dict[str, Any]:
        """The record as JSON-able data."""
        return {**asdict(self), "status": self.status.value}

    @classmethod
    def from_xcom(cls, data: dict[str, Any]) -> BatchItem:
        """Read a record back (what :meth:`to_xcom` wrote)."""
        return cls(
            index=int(data["index"]),
            status=ItemStatus(data.get("status", ItemStatus.PENDING.value)),
            request_id=data.get("request_id"),
            urls=data.get("urls"),
            error=data.get("error"),
            cost_usd=data.get("cost_usd"),
        )

    def settle(self, event: dict[str, Any]) -> None:
        """Record the final event of the item's wait (the shape every wait of the provider yields)."""
        self.status = ItemStatus.from_event(event.get("status"))
        if self.status is ItemStatus.SUCCEEDED:
            result = event.get("result") or {}
            self.urls = list(result.get("urls") or [])
            self.cost_usd = result.get("cost_usd")
            self.error = None
        else:
            self.error = event.get("message") or self.status.value

    def describe(self) -> str:
        """``item 3 (request abc) failed: the reason``, for messages."""
        request = f" (request {self.request_id})" if self.request_id else ""
        tail = f": {self.error}" if self.error else ""
        return f"item {self.index}{request} {self.status.value}{tail}"


@dataclass
class Ledger:
    """
    Every item of a batch, in input order, and the batch's own facts.

    :param items: one record per input.
    :param started_at: wall clock (epoch seconds) when this try of the batch began its work.
    :param end_time: the batch's wall-clock deadline (from ``timeout``).
    :param estimated_cost_usd: the pre-flight's estimate for the items that run, when known.
    :param halted: why submitting stopped early (an empty balance, an outage), when it did.
    """

    items: list[BatchItem]
    started_at: float
    end_time: float
    estimated_cost_usd: float | None = None
    halted: str | None = None
    rounds: int = 0

    @classmethod
    def new(cls, total: int, *, timeout: float) -> Ledger:
        """A ledger for ``total`` items, none submitted, the clock starting now."""
        now = time.time()
        return cls([BatchItem(i) for i in range(total)], started_at=now, end_time=now + timeout)

    # -- views -------------------------------------------------------------------------------------

    def with_status(self, *statuses: ItemStatus) -> list[BatchItem]:
        """The items in any of ``statuses``, in input order."""
        return [item for item in self.items if item.status in statuses]

    @property
    def in_flight(self) -> list[BatchItem]:
        """The submitted items whose jobs have not been seen to end."""
        return self.with_status(ItemStatus.IN_FLIGHT)

    @property
    def pending(self) -> list[BatchItem]:
        """The items still to submit."""
        return self.with_status(ItemStatus.PENDING)

    @property
    def failures(self) -> list[BatchItem]:
        """The items that count against ``allow_failures`` (see :attr:`ItemStatus.is_failure`)."""
        return [item for item in self.items if item.status.is_failure]

    @property
    def reported_cost_usd(self) -> float:
        """The sum of the costs RunComfy reported for the finished jobs."""
        return round(sum(item.cost_usd or 0.0 for item in self.items), 6)

    def counts(self) -> dict[str, int]:
        """How many items are in each state: ``succeeded, failed, skipped, cancelled`` and the rest."""
        by_status = {status.value: 0 for status in ItemStatus}
        for item in self.items:
            by_status[item.status.value] += 1
        return {
            "total": len(self.items),
            "succeeded": by_status["succeeded"],
            # Everything meant to run that ended without outputs, except a cancellation.
            "failed": by_status["failed"] + by_status["timed_out"] + by_status["error"],
            "skipped": by_status["skipped"],
            "cancelled": by_status["cancelled"],
            "in_flight": by_status["in_flight"],
            "pending": by_status["pending"],
            "timed_out": by_status["timed_out"],
            "error": by_status["error"],
        }

    # -- XCom --------------------------------------------------------------------------------------

    def results(self) -> list[dict[str, Any]]:
        """The ``results`` XCom: one record per item, in input order."""
        return [item.to_xcom() for item in self.items]

    def summary(self, *, finished: bool = False) -> dict[str, Any]:
        """The ``batch`` XCom: the counts, the costs, the wall time, and what the next round needs."""
        now = time.time()
        return {
            **self.counts(),
            "cost_usd": self.reported_cost_usd,
            "estimated_cost_usd": self.estimated_cost_usd,
            "wall_seconds": round(now - self.started_at, 3),
            "started_at": self.started_at,
            "end_time": self.end_time,
            "halted": self.halted,
            "rounds": self.rounds,
            "finished": finished,
        }

    @classmethod
    def from_xcom(cls, results: Sequence[dict[str, Any]], batch: dict[str, Any]) -> Ledger:
        """Rebuild the ledger a deferred task left in its ``results`` and ``batch`` XComs."""
        return cls(
            [BatchItem.from_xcom(record) for record in results],
            started_at=float(batch["started_at"]),
            end_time=float(batch["end_time"]),
            estimated_cost_usd=batch.get("estimated_cost_usd"),
            halted=batch.get("halted"),
            rounds=int(batch.get("rounds", 0)),
        )

    def return_value(self) -> list[list[str] | None]:
        """Per item, in input order: its output URLs, or ``None`` when it has none."""
        return [item.urls if item.status is ItemStatus.SUCCEEDED else None for item in self.items]

    # -- progress ----------------------------------------------------------------------------------

    def progress(self) -> str:
        """One progress line: done/total, in flight, failed, cost so far, elapsed, estimated time left."""
        return progress_line(
            done=sum(1 for item in self.items if item.status.is_settled),
            total=len(self.items),
            in_flight=len(self.in_flight),
            failed=len(self.failures) - len(self.pending),
            cost_usd=self.reported_cost_usd,
            started_at=self.started_at,
        )


def progress_line(
    *, done: int, total: int, in_flight: int, failed: int, cost_usd: float, started_at: float
) -> str:
    """
    ``Batch progress: 120/500 done, 50 in flight, 2 failed, $3.6 reported so far, 2m10s elapsed, about
    7m left``; shared by the task and the trigger so both log the same line.

    The time left is extrapolated from the pace so far (done items per second), so it says nothing
    until the first item is done.
    """
    elapsed = max(0.0, time.time() - started_at)
    left = "time left unknown yet"
    if done and done < total:
        left = f"about {_duration(elapsed / done * (total - done))} left"
    elif done >= total:
        left = "nothing left"
    return (
        f"Batch progress: {done}/{total} done, {in_flight} in flight, {failed} failed, "
        f"${cost_usd:g} reported so far, {_duration(elapsed)} elapsed, {left}"
    )


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, seconds = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# -- errors ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemProblem:
    """Why the pre-flight refused one item: its index, the field and the rule it breaks."""

    index: int
    field: str
    rule: str

    def describe(self) -> str:
        """``inputs[3].prompt: must be at most 800 characters``."""
        return f"inputs[{self.index}].{self.field}: {self.rule}"

    @classmethod
    def of(cls, index: int, err: RunComfyInputError) -> ItemProblem:
        """The problem an input error of one item names."""
        return cls(index, err.field, err.rule)


class RunComfyBatchInputError(RunComfyInputError):
    """
    Items of a batch break the model's rules; found before any of them was paid for.

    Raised once for the whole batch, listing every bad item (index, field, rule), so a user fixes them
    all in one go; ``problems`` holds them as data. ``skip_invalid=True`` skips them instead.
    """

    def __init__(self, problems: Sequence[ItemProblem], total: int):
        listed = "; ".join(problem.describe() for problem in problems[:LISTED_ITEMS])
        more = len(problems) - LISTED_ITEMS
        if more > 0:
            listed += f"; and {more} more"
        bad = len({problem.index for problem in problems})
        super().__init__(
            "inputs",
            f"{bad} of {total} items break the model's rules, so none was submitted (set "
            f"skip_invalid=True to run the others): {listed}",
        )
        self.problems = list(problems)


class RunComfyBatchError(RunComfyError):
    """
    More items of a batch failed than ``allow_failures`` allows (or submitting had to stop).

    Raised after every in-flight job ended, with the ``results`` and ``batch`` XComs pushed, so the
    failed items can be read there; ``failed`` holds their records. A retry (Airflow 3.3+) keeps the
    items that succeeded or are still running and submits only the others again.
    """

    def __init__(self, message: str, failed: Iterable[BatchItem]):
        super().__init__(message)
        self.failed = list(failed)


def describe_failures(items: Sequence[BatchItem]) -> str:
    """The failed items by name (the first :data:`LISTED_ITEMS`), for the task's error."""
    text = "; ".join(item.describe() for item in items[:LISTED_ITEMS])
    more = len(items) - LISTED_ITEMS
    return text + (f"; and {more} more" if more > 0 else "")


# -- retries ---------------------------------------------------------------------------------------


class RetryBook:
    """
    The request ids of a batch's paid jobs, saved in ``task_state_store`` (Airflow 3.3+) for retries.

    XComs are cleared when a new try starts; ``task_state_store`` is not. Each id is saved right
    after its submit returns, before anything else can fail, so a retry finds every job it paid for.
    The store has no listing, so ids are kept in blocks of :attr:`BLOCK` items under one key each:
    saving one id rewrites a small block, and a retry reads ``len(inputs) / BLOCK`` keys.

    A submit that may or may not have created a job (the answer was lost) is saved too, as uncertain:
    a retry must not send it again either.
    """

    KEY_PREFIX = "runcomfy_batch_ids_"
    BLOCK = 64

    def __init__(self, store: Any) -> None:
        self.store = store
        self._blocks: dict[int, dict[str, Any]] = {}

    def _key(self, block: int) -> str:
        return f"{self.KEY_PREFIX}{block}"

    def read(self, total: int) -> dict[int, dict[str, Any]]:
        """What earlier tries saved: ``{index: {"id": request_id} | {"uncertain": message}}``."""
        found: dict[int, dict[str, Any]] = {}
        for block in range((total + self.BLOCK - 1) // self.BLOCK):
            saved = self.store.get(self._key(block))
            if not isinstance(saved, dict):
                continue
            self._blocks[block] = dict(saved)
            for key, entry in saved.items():
                if isinstance(entry, dict) and str(key).isdigit() and int(key) < total:
                    found[int(key)] = entry
        return found

    def save(self, index: int, entry: dict[str, Any]) -> None:
        """Save one item's entry (its block is written whole; the store has no partial update)."""
        block = index // self.BLOCK
        entries = self._blocks.setdefault(block, {})
        entries[str(index)] = entry
        self.store.set(self._key(block), dict(entries))

    def forget(self, index: int) -> None:
        """Drop an item whose saved job failed: a retry submits it anew (it is saved again then)."""
        block = index // self.BLOCK
        entries = self._blocks.get(block)
        if entries is not None:
            entries.pop(str(index), None)
