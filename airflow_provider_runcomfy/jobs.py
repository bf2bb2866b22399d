"""
The life of a RunComfy request, as the API reports it, and what each word means to the provider.

RunComfy reports a job on two endpoints. Its documentation gives each a small vocabulary (the status
endpoint says ``completed`` for every finished job; only the result endpoint says ``succeeded`` or
``failed``), but RunComfy's own public clients (its CLI, MCP server and ComfyUI nodes) accept a wider
one from the live service: ``completed`` as a success on the result endpoint, ``canceled`` in US
spelling, ``pending``/``waiting``/``starting``/``processing`` while a job is in flight, and ``failed``,
``succeeded`` or ``canceled`` on the status endpoint. :data:`WORDS` is the one table of every word
and its meaning on each endpoint; the trigger, the in-worker wait, the sensor and the durable retry
all read it, so they can never disagree.

Two rules keep a paid API safe, and both come from reading the table conservatively:

* a word the table does not know means "still in flight": it is logged once per request and the
  wait goes on within its deadline. Calling it an error would fail a task whose job may succeed, and
  an Airflow retry would then pay for it again; calling it a success would be a guess;
* only the result endpoint says how a job ended. Any final word on the status endpoint makes the
  waiter ask the result; if the result is not final yet (the two endpoints are not updated at the
  same instant) the waiter asks again. A ``failed`` or ``cancelled`` status whose result stays
  silent ends the wait on the second poll in a row, with what is known.

This module is light on purpose (no httpx, no Pillow): operators import it while a DAG file is parsed.
"""

from __future__ import annotations

import contextlib
import json
import time
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from airflow_provider_runcomfy.exceptions import describe_error_body

if TYPE_CHECKING:
    from collections.abc import Mapping


class Phase(StrEnum):
    """What a word means to the provider: where the job is in its life."""

    #: Queued or running (and every word the table does not know): keep polling.
    IN_FLIGHT = "in_flight"
    #: The status endpoint's ``completed``: over, but only the result endpoint says how it ended.
    ENDED = "ended"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: RunComfy no longer knows the request (expired or deleted); never a word, only a 404001.
    EXPIRED = "expired"

    @property
    def is_active(self) -> bool:
        """Not over yet: keep polling (a retry reconnects to it instead of paying again)."""
        return self is Phase.IN_FLIGHT

    @property
    def is_terminal(self) -> bool:
        """Over, one way or another; on the status endpoint this means: ask the result endpoint."""
        return not self.is_active

    @property
    def is_success(self) -> bool:
        """The outputs exist."""
        return self is Phase.SUCCEEDED

    @property
    def is_unsuccessful(self) -> bool:
        """Over without outputs: a retry may submit anew (nothing it could return was paid for)."""
        return self in (Phase.FAILED, Phase.CANCELLED, Phase.EXPIRED)


class Endpoint(StrEnum):
    """The two endpoints that report a job, which give some words different meanings."""

    STATUS = "status"
    RESULT = "result"


class StatusWord(StrEnum):
    """Every ``status`` word RunComfy's documentation or its own clients use for a Model API request."""

    IN_QUEUE = "in_queue"
    PENDING = "pending"
    WAITING = "waiting"
    STARTING = "starting"
    IN_PROGRESS = "in_progress"
    PROCESSING = "processing"
    COMPLETED = "completed"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CANCELED = "canceled"

    def phase(self, endpoint: Endpoint) -> Phase:
        """What this word means on ``endpoint`` (see :data:`WORDS`)."""
        return WORDS[self][endpoint]

    @property
    def is_queued(self) -> bool:
        """Waiting for a machine: the only state RunComfy can cancel (a running job is not_cancellable)."""
        return self in (StatusWord.IN_QUEUE, StatusWord.PENDING, StatusWord.WAITING)


def _both(status: Phase, result: Phase | None = None) -> Mapping[Endpoint, Phase]:
    return MappingProxyType({Endpoint.STATUS: status, Endpoint.RESULT: status if result is None else result})


#: The one table: every word, and what it means on the status and on the result endpoint.
#: ``completed`` is the only word whose meaning depends on the endpoint: on the status endpoint it
#: covers failures too (the documented contract), on the result endpoint it is a success (RunComfy's
#: CLI and ComfyUI nodes read it so). Words are matched without regard to case or surrounding space.
WORDS: Final[Mapping[StatusWord, Mapping[Endpoint, Phase]]] = MappingProxyType(
    {
        StatusWord.IN_QUEUE: _both(Phase.IN_FLIGHT),
        StatusWord.PENDING: _both(Phase.IN_FLIGHT),
        StatusWord.WAITING: _both(Phase.IN_FLIGHT),
        StatusWord.STARTING: _both(Phase.IN_FLIGHT),
        StatusWord.IN_PROGRESS: _both(Phase.IN_FLIGHT),
        StatusWord.PROCESSING: _both(Phase.IN_FLIGHT),
        StatusWord.COMPLETED: _both(Phase.ENDED, result=Phase.SUCCEEDED),
        StatusWord.SUCCEEDED: _both(Phase.SUCCEEDED),
        StatusWord.FAILED: _both(Phase.FAILED),
        StatusWord.CANCELLED: _both(Phase.CANCELLED),
        StatusWord.CANCELED: _both(Phase.CANCELLED),
    }
)


def read_word(value: Any) -> StatusWord | None:
    """A ``status`` value as a known word (any case, surrounding space ignored), or ``None``."""
    if not isinstance(value, str):
        return None
    try:
        return StatusWord(value.strip().lower())
    except ValueError:
        return None


def phase_of(value: Any, endpoint: Endpoint) -> Phase:
    """What a ``status`` value means on ``endpoint``; an unknown (or missing) word is in flight."""
    word = read_word(value)
    return Phase.IN_FLIGHT if word is None else word.phase(endpoint)


def settled_phase(status_word: Any, result_word: Any = None) -> Phase:
    """
    The phase of a job from one status answer and, when that was final, one result answer.

    The reading of a single look with no memory (the durable retry's decision): the job is in flight
    unless the result endpoint says how it ended, so a retry reconnects to anything that could still
    succeed, and submits anew only for an explicit failure or cancellation.
    """
    if phase_of(status_word, Endpoint.STATUS).is_active:
        return Phase.IN_FLIGHT
    return phase_of(result_word, Endpoint.RESULT)


def parse_phase(value: Any) -> Phase | None:
    """A :class:`Phase` from its value (what ``get_job_status`` hands the retry logic), else ``None``."""
    try:
        return Phase(value)
    except ValueError:
        return None


class CancelOutcome(StrEnum):
    """
    What a cancel achieved, read from RunComfy's answer.

    The documented answer decides on ``outcome`` (``cancelled`` or ``not_cancellable``; the docs'
    own example pairs ``outcome: cancelled`` with ``status: completed``). RunComfy's clients also
    accept answers without ``outcome``: ``status: cancelled`` (done) or ``status:
    cancellation_requested`` (asked, not confirmed yet: the job may still run, and the next status
    poll tells how it ends).
    """

    CANCELLED = "cancelled"
    REQUESTED = "cancellation_requested"
    NOT_CANCELLABLE = "not_cancellable"

    @classmethod
    def from_answer(cls, body: Mapping[str, Any]) -> CancelOutcome | None:
        """Read a cancel answer; ``None`` when it says none of the known things."""
        outcome, status = _lower(body.get("outcome")), _lower(body.get("status"))
        if outcome in ("cancelled", "canceled"):
            return cls.CANCELLED
        if outcome == "not_cancellable":
            return cls.NOT_CANCELLABLE
        if status in ("cancelled", "canceled"):  # no outcome, or only "requested" but already done
            return cls.CANCELLED
        if cls.REQUESTED.value in (outcome, status):
            return cls.REQUESTED
        return None

    @property
    def is_confirmed(self) -> bool:
        """RunComfy says the job is cancelled."""
        return self is CancelOutcome.CANCELLED

    def __bool__(self) -> bool:
        """
        True only for a confirmed cancel.

        ``RunComfyHook.cancel`` was first written to return ``bool``; code written to that contract
        (``if hook.cancel(rid): ...``) must not read a refused or merely requested cancel as done, as
        it would if this enum kept ``str``'s truthiness (every member a non-empty string).
        """
        return self.is_confirmed

    @property
    def is_accepted(self) -> bool:
        """RunComfy took the cancel (done or on its way): the job will most likely not be charged."""
        return self in (CancelOutcome.CANCELLED, CancelOutcome.REQUESTED)

    @property
    def description(self) -> str:
        """How the cancel went, for logs and messages."""
        if self is CancelOutcome.CANCELLED:
            return "was cancelled"
        if self is CancelOutcome.REQUESTED:
            return "has a cancel requested (RunComfy has not confirmed it yet)"
        return "could not be cancelled (already running or finished)"


def _lower(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) else None


#: The order of :func:`output_urls`: single outputs first, images before videos.
OUTPUT_KEYS = ("image", "images", "video", "videos")

#: Bounds of what a finished job leaves in a trigger event (stored in Airflow's database) and in the
#: ``result`` XCom: a broken or hostile answer must not become a 100 MiB row. Ordinary outputs (a
#: few URLs) are far below them.
MAX_OUTPUT_URLS = 1000
MAX_URL_CHARS = 8 * 1024
#: RunComfy's whole ``output`` object is kept when its JSON is at most this long; past it, only its
#: URLs are kept (and the summary says so).
MAX_OUTPUT_JSON = 64 * 1024
#: Messages of events (a failed job's error text, RunComfy's words) are cut to this many characters.
MAX_MESSAGE_CHARS = 4000


def output_urls(output: Any) -> list[str]:
    """
    Flatten RunComfy's output object into a list of URLs in a stable order.

    The object is the same for every model: ``{"image", "images", "video", "videos"}``, any subset.
    The order is image, images..., video, videos..., so ``return_value`` is the same list on every
    run and a downstream ``.expand()`` maps the same index to the same file.
    """
    if not isinstance(output, dict):
        return []
    urls: list[str] = []
    for key in OUTPUT_KEYS:
        value = output.get(key)
        if isinstance(value, str) and value:
            urls.append(value)
        elif isinstance(value, list):
            urls.extend(item for item in value if isinstance(item, str) and item)
    # Bounded (see MAX_OUTPUT_URLS): an absurd URL is no output anyone can fetch.
    return [url for url in urls if len(url) <= MAX_URL_CHARS][:MAX_OUTPUT_URLS]


def _short(value: Any, limit: int = 200) -> Any:
    """A small scalar field of an answer as it is; anything long or nested is dropped (``None``)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str) and len(value) <= limit:
        return value
    return None


def bounded_output(output: Any) -> dict[str, Any]:
    """
    RunComfy's output object as kept in events and XCom: whole when small, else its URLs only.

    A JSON form over :data:`MAX_OUTPUT_JSON` (or one that is not JSON-able) is replaced by the
    standard keys' URLs and ``"truncated": true``, so downstream code still finds every file.
    """
    if not isinstance(output, dict):
        return {}
    try:
        size = len(json.dumps(output, default=str))
    except (TypeError, ValueError, RecursionError):
        size = MAX_OUTPUT_JSON + 1
    if size <= MAX_OUTPUT_JSON:
        return output
    kept: dict[str, Any] = {"truncated": True}
    budget = MAX_OUTPUT_URLS
    for key in OUTPUT_KEYS:
        value = output.get(key)
        if isinstance(value, str) and value and len(value) <= MAX_URL_CHARS and budget:
            kept[key], budget = value, budget - 1
        elif isinstance(value, list):
            urls = [item for item in value if isinstance(item, str) and item and len(item) <= MAX_URL_CHARS]
            kept[key] = urls[:budget]
            budget -= len(kept[key])
    return kept


def short_message(text: str) -> str:
    """An event or error message cut to :data:`MAX_MESSAGE_CHARS` characters."""
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return f"{text[:MAX_MESSAGE_CHARS]}... ({len(text):,} characters in all)"


def summarize_result(result: dict[str, Any], *, model_id: str | None) -> dict[str, Any]:
    """
    Build the ``result`` XCom of a succeeded job: small, JSON-able, no bytes.

    ``status`` is always ``succeeded``, whichever success word RunComfy used, so downstream code
    has one word to test.

    ``cost_usd`` is added when RunComfy reported the job's cost on the result.

    :param result: the body of the result endpoint.
    :param model_id: the model, or ``None`` when only the request id is known (the sensor).
    """
    output = result.get("output") or {}
    summary = {
        "request_id": _short(result.get("request_id")),
        "model_id": model_id,
        "status": Phase.SUCCEEDED.value,
        "urls": output_urls(output),
        "output": bounded_output(output),
        "created_at": _short(result.get("created_at")),
        "finished_at": _short(result.get("finished_at")),
    }
    from airflow_provider_runcomfy.cost import reported_cost  # only once a job is over, not at parse time

    cost = reported_cost(result)
    if cost is not None:  # only when RunComfy reports it (``include_cost=true``; optional)
        summary["cost_usd"] = cost
    return summary


class EventStatus(StrEnum):
    """The ``status`` of the one event a :class:`RunComfyRequestTrigger` yields (and of the sync wait)."""

    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    ERROR = "error"


def make_event(status: EventStatus, request_id: str, **fields: Any) -> dict[str, Any]:
    """
    Build a wait outcome: ``{"status", "request_id", "result"?, "message"?, "cancel"?}``, JSON-able, small.

    Read back, typed, by :meth:`airflow_provider_runcomfy.waiting.WaitOutcome.from_event`.
    """
    if isinstance(fields.get("message"), str):
        fields["message"] = short_message(fields["message"])
    return {"status": status.value, "request_id": request_id, **fields}


#: Polls in a row on which the status says failed/cancelled while the result is not final, after
#: which the wait ends with what the status says (the first may be the endpoints' update race).
SILENT_RESULT_POLLS = 2


#: Seconds between two progress lines of a wait in which nothing changed (each change is logged at once).
DEFAULT_PROGRESS_INTERVAL = 300.0


def describe_duration(seconds: float) -> str:
    """``3m 05s``, ``1h 02m 03s``: a duration as a person reads it in a log (whole seconds)."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


class WaitProgress:
    """
    How long a wait has gone on and how its polls went, for the person watching a long job's log.

    A wait logs each change of the job (a new word, a new queue position) at once, and between
    changes nothing, which for a job queued half an hour left nobody able to tell whether polling
    was alive. A progress attached to a :class:`RequestWatch` adds to each change line, and to one
    line every ``interval`` seconds while nothing changes, the time waited since the submit, the
    time left before the timeout and the polls made and failed.

    The count and the start travel with the watch's :meth:`RequestWatch.memory` into the trigger, so
    the triggerer's lines go on from what the task saw before deferring (a triggerer restart goes
    back to the counts of the deferral: the kwargs are all it has).

    :param started_at: when the wait began (epoch seconds; the submit, or the reconnect of a retry).
    :param end_time: the wall-clock deadline (epoch seconds), ``None`` for none.
    :param interval: seconds between two lines while nothing changes.
    """

    def __init__(
        self,
        *,
        started_at: float,
        end_time: float | None,
        interval: float = DEFAULT_PROGRESS_INTERVAL,
        polls: int = 0,
        failed_polls: int = 0,
    ) -> None:
        self.started_at = started_at
        self.end_time = end_time
        self.interval = interval
        self.polls = polls
        self.failed_polls = failed_polls
        self._last_line = time.time()

    @classmethod
    def resume(
        cls, memory: Mapping[str, Any] | None, *, end_time: float | None, interval: float
    ) -> WaitProgress:
        """The progress a watch's memory carries, else one that starts now (an older version's trigger)."""
        saved = (memory or {}).get("progress")
        if isinstance(saved, dict):
            with contextlib.suppress(TypeError, ValueError, KeyError):  # another version's: start afresh
                return cls(
                    started_at=float(saved["started_at"]),
                    end_time=end_time,
                    interval=interval,
                    polls=int(saved.get("polls", 0)),
                    failed_polls=int(saved.get("failed_polls", 0)),
                )
        return cls(started_at=time.time(), end_time=end_time, interval=interval)

    def memory(self) -> dict[str, Any]:
        """The start and the counts, JSON-able, for the trigger's kwargs."""
        return {"started_at": self.started_at, "polls": self.polls, "failed_polls": self.failed_polls}

    def summary(self) -> str:
        """``waited 12m 05s, 47m 55s left before the timeout; 145 polls, 2 failed``."""
        now = time.time()
        left = (
            "no timeout"
            if self.end_time is None
            else f"{describe_duration(self.end_time - now)} left before the timeout"
        )
        polls = "1 poll" if self.polls == 1 else f"{self.polls} polls"
        waited = describe_duration(now - self.started_at)
        return f"waited {waited}, {left}; {polls}, {self.failed_polls} failed"

    @property
    def is_due(self) -> bool:
        """A whole interval has passed since the last line."""
        return time.time() - self._last_line >= self.interval

    def logged(self) -> None:
        """A line was just logged: the next one is due an interval from now."""
        self._last_line = time.time()


class RequestWatch:
    """
    What one waiter has seen of one request, and what each answer means.

    The trigger (async), the operators' in-worker wait (sync) and the sensor poll with different
    hooks but must log and decide exactly alike; all feed their answers to a watch. It logs each
    change once (a new word, a new queue position) instead of every poll, because a thousand jobs
    polled every few seconds would otherwise drown the task log; an unknown word is logged once per
    request and endpoint.

    A deferrable task looks once before it defers and the trigger goes on from there: the task hands
    :meth:`memory` to the trigger, which rebuilds the same watch from it, so what the task already
    logged is not logged again and a silent result counts across the deferral.

    :param request_id: the RunComfy request id.
    :param log: the logger of the trigger or the task.
    :param memory: what an earlier watch of the same request saw (:meth:`memory`), to go on from.
    :param progress: counts polls and adds the time waited and left to the lines (:class:`WaitProgress`).
    """

    def __init__(
        self,
        request_id: str,
        log: Any,
        memory: dict[str, Any] | None = None,
        progress: WaitProgress | None = None,
    ) -> None:
        self.request_id = request_id
        self.log = log
        self.progress = progress
        self._last: tuple[Any, Any] | None = None
        self._word: StatusWord | None = None
        self._status_phase = Phase.IN_FLIGHT
        self._unknown: set[tuple[Endpoint, str]] = set()
        self._silent_results = 0
        if memory:
            self._recall(memory)

    def memory(self) -> dict[str, Any]:
        """What this watch saw, as JSON-able data for :class:`RequestWatch` ``(memory=...)`` (no secret)."""
        memory: dict[str, Any] = {
            "last": None if self._last is None else list(self._last),
            "word": None if self._word is None else self._word.value,
            "status_phase": self._status_phase.value,
            "unknown": sorted([endpoint.value, text] for endpoint, text in self._unknown),
            "silent_results": self._silent_results,
        }
        if self.progress is not None:
            memory["progress"] = self.progress.memory()
        return memory

    def _recall(self, memory: dict[str, Any]) -> None:
        """Take over an earlier watch's memory; anything unreadable (another version's) is ignored."""
        with contextlib.suppress(TypeError, ValueError, KeyError, IndexError):
            last = memory.get("last")
            recalled = (
                None if last is None else (last[0], last[1]),
                read_word(memory.get("word")),
                Phase(memory.get("status_phase", Phase.IN_FLIGHT.value)),
                {(Endpoint(e), str(t)) for e, t in memory.get("unknown", ())},
                int(memory.get("silent_results", 0)),
            )
            # All or nothing: a half-read memory would pair one watch's streak with another's word.
            self._last, self._word, self._status_phase, self._unknown, self._silent_results = recalled

    def observe(self, body: dict[str, Any]) -> Phase:
        """
        Read a status answer, log it if it changed, and return its phase.

        A final phase means: ask the result endpoint and hand its answer to :meth:`outcome`.
        """
        if self.progress is not None:
            self.progress.polls += 1
        raw = body.get("status")
        word = self._read(raw, Endpoint.STATUS)
        self._word = word
        self._status_phase = Phase.IN_FLIGHT if word is None else word.phase(Endpoint.STATUS)
        if self._status_phase not in (Phase.FAILED, Phase.CANCELLED):
            self._silent_results = 0
        seen = (_short(raw), _short(body.get("queue_position")))  # kept in the watch's memory: small
        if seen != self._last:
            self._last = seen
            if word is not None:
                self._log_state("is")
        return self._status_phase

    @property
    def state(self) -> str:
        """The job as last seen, in words: ``queued at position 3``, ``running (in_progress)``..."""
        if self._last is None:
            return "not seen yet (no status answer so far)"
        word = self._word
        if word is None:
            return f"in a state RunComfy calls {self._last[0]!r} (taken as in flight)"
        if word.is_queued:
            return f"queued at position {self._last[1]}"
        if self._status_phase.is_active:
            return f"running ({word.value})"
        return word.value

    def _log_state(self, verb: str) -> None:
        """One line with the state, and the progress when one is kept (then the next is an interval away)."""
        if self.progress is None:
            self.log.info("RunComfy request %s %s %s", self.request_id, verb, self.state)
            return
        summary = self.progress.summary()
        self.log.info("RunComfy request %s %s %s; %s", self.request_id, verb, self.state, summary)
        self.progress.logged()

    def poll_failed(self) -> None:
        """A poll failed after the hook's retries: counted in the progress (the waiter logs the error)."""
        if self.progress is not None:
            self.progress.polls += 1
            self.progress.failed_polls += 1

    def report_progress(self) -> None:
        """Log a progress line when one is due: the job has not changed for a whole interval."""
        if self.progress is not None and self.progress.is_due:
            self._log_state("is still")

    @property
    def may_be_queued(self) -> bool:
        """Whether a cancel could still help: the last status was a queued word, or unknown."""
        return self._word is None or self._word.is_queued

    def outcome(self, result: dict[str, Any]) -> dict[str, Any] | None:
        """
        Turn a result answer into the final event, or ``None`` while the job is not known to be over.

        The result endpoint decides: ``succeeded`` or ``completed`` is a success (a job that ended
        with outputs is never reported as a failure, whatever the status endpoint said), ``failed``
        and ``cancelled``/``canceled`` end the wait. A result that is not final yet keeps the wait
        going, except after a failed/cancelled status for :data:`SILENT_RESULT_POLLS` polls in a row.
        """
        word = self._read(result.get("status"), Endpoint.RESULT)
        phase = Phase.IN_FLIGHT if word is None else word.phase(Endpoint.RESULT)
        if phase is Phase.SUCCEEDED:
            return make_event(
                EventStatus.SUCCESS, self.request_id, result=summarize_result(result, model_id=None)
            )
        if phase is Phase.FAILED:
            error = result.get("error")
            message = (
                describe_error_body(error)
                if error
                else "RunComfy reported the job failed without an error text"
            )
            return make_event(EventStatus.FAILED, self.request_id, message=message)
        if phase is Phase.CANCELLED:
            return self.cancelled()
        if self._status_phase in (Phase.FAILED, Phase.CANCELLED):
            return self._silent_result(result.get("status"))
        return None

    def _silent_result(self, result_word: Any) -> dict[str, Any] | None:
        """The status says failed/cancelled, the result is not final: ask again, then believe the status."""
        self._silent_results += 1
        said = f"the status endpoint says {self._status_phase.value}, the result endpoint {result_word!r}"
        if self._silent_results < SILENT_RESULT_POLLS:
            self.log.info("RunComfy request %s: %s; asking again", self.request_id, said)
            return None
        if self._status_phase is Phase.CANCELLED:
            return self.cancelled()
        return make_event(EventStatus.FAILED, self.request_id, message=f"{said}, without an error text")

    def _read(self, value: Any, endpoint: Endpoint) -> StatusWord | None:
        """A known word, or ``None`` after logging an unknown one (once per request and endpoint)."""
        word = read_word(value)
        if word is None:
            key = (endpoint, repr(value)[:200])
            if key not in self._unknown:
                self._unknown.add(key)
                self.log.warning(
                    "RunComfy request %s: unknown status word %s on the %s endpoint; taken as still "
                    "in flight, polling on within the timeout",
                    self.request_id,
                    key[1],
                    endpoint.value,
                )
        return word

    def cancelled(self) -> dict[str, Any]:
        """The event of a job that was cancelled."""
        return make_event(EventStatus.CANCELLED, self.request_id, message="the job was cancelled")

    def timed_out(self, cancel: CancelOutcome | None) -> dict[str, Any]:
        """The event of a job that did not finish in time; says what became of the cancel, if one was sent."""
        if cancel is CancelOutcome.CANCELLED:
            tail = "it was still queued and has been cancelled"
        elif cancel is CancelOutcome.REQUESTED:
            tail = "it was still queued; its cancel was requested, RunComfy has not confirmed it yet"
        elif cancel is CancelOutcome.NOT_CANCELLABLE:
            tail = "it was not cancelled: RunComfy answered not_cancellable (already running)"
        else:
            tail = "it was not cancelled"
        said = {} if cancel is None else {"cancel": cancel.value}  # read back by WaitOutcome.from_event
        return make_event(
            EventStatus.TIMEOUT, self.request_id, message=f"not finished within the timeout; {tail}", **said
        )

    def error(self, message: str) -> dict[str, Any]:
        """The event of a wait that could not go on (auth, not found, too many failed polls)."""
        return make_event(EventStatus.ERROR, self.request_id, message=message)
