"""Dialects: how the emulator words its answers, from RunComfy's documentation to what the live service says.

RunComfy's documentation gives each endpoint a small vocabulary; RunComfy's own public clients (its
CLI, MCP server and ComfyUI partner nodes) accept more, because the live service sends more. A
client tested only against the documented words can fail a paid success, or poll a finished job
until its timeout. A :class:`Dialect` is a set of independent flags, one per variant seen in those
clients, so a test can switch on one variant or all of them:

=======================  ======================================================================
flag                     what the emulator then says
=======================  ======================================================================
``completed_results``    the result endpoint says ``completed`` (not ``succeeded``) for a success
``us_spelling``          ``canceled`` instead of ``cancelled`` (status and result endpoints)
``final_status_words``   the status endpoint says ``succeeded`` / ``failed`` / ``canceled`` rather
                         than ``completed`` for every finished job
``in_flight_words``      the result endpoint says ``pending`` then ``waiting`` while queued,
                         ``starting`` then ``processing`` while running
``unknown_status_word``  the status endpoint says this word (one no contract knows) while the
                         job is queued or running
``null_error_codes``     every successful API answer carries ``"error_code": null``
``cancel_answer``        ``outcome`` (documented: ``outcome`` cancelled / not_cancellable),
                         ``requested`` (``status: cancellation_requested``, no ``outcome``; the job
                         is cancelled if it was queued, a running one runs on) or ``status``
                         (``status: cancelled`` without ``outcome`` for a queued job)
``extra_fields``         ``instance_id`` on status answers once running, ``model_id`` on results
=======================  ======================================================================

Named presets (:data:`PRESETS`) come in two kinds:

* **What RunComfy's Model API sends** (:data:`MODEL_API_PRESETS`): ``documented`` (the default: the
  documented contract, nothing else) and ``model-api``: every variant that *both* of RunComfy's
  clients that read the Model API's words accept, its MCP server (``runcomfy_client.py``: the status
  endpoint is final only at ``completed``, ``cancelled`` or ``failed``) and its ComfyUI partner nodes
  (``runcomfy/execution.py``: the result endpoint's ``completed``/``succeeded``, ``failed``,
  ``cancelled`` and the in-flight words; any other word is an error; a cancel is confirmed by
  ``status`` or ``outcome`` ``cancelled``). A service speaking ``model-api`` breaks neither client,
  so it is the closest to the live service their code shows.
* **Robustness** (:data:`ROBUSTNESS_PRESETS`): ``every-variant`` (alias ``live``, its earlier name:
  every variant *any* client tolerates at once, without the made-up unknown word; RunComfy's own MCP
  server and partner nodes each stop working under it), and one preset per variant
  (``completed-results``, ``canceled``, ``final-status-words``, ``in-flight-words``,
  ``unknown-status``, ``null-error-codes``, ``cancel-requested``, ``cancel-status-only``,
  ``extra-fields``), for checking that a client copes with each.

A spec joins names with ``+`` or ``,`` (``"completed-results+canceled"``) and switches on the flags
of each.

Pure standard library, like the rest of the emulator.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

# The emulator's jobs think in the documented words; a dialect rewords them on the way out.
from .jobs import CANCELLED, COMPLETED, IN_PROGRESS, IN_QUEUE, SUCCEEDED

CANCEL_ANSWERS = ("outcome", "requested", "status")

#: The word ``unknown-status`` makes the status endpoint say (no contract or client knows it).
UNKNOWN_WORD = "warming_up"


@dataclass(frozen=True)
class Dialect:
    """How the emulator words its answers; the default is RunComfy's documented contract."""

    name: str = "documented"
    completed_results: bool = False
    us_spelling: bool = False
    final_status_words: bool = False
    in_flight_words: bool = False
    unknown_status_word: str | None = None
    null_error_codes: bool = False
    cancel_answer: str = "outcome"
    extra_fields: bool = False

    def __post_init__(self) -> None:
        if self.cancel_answer not in CANCEL_ANSWERS:
            raise ValueError(
                f"Dialect.cancel_answer must be one of {CANCEL_ANSWERS}, got {self.cancel_answer!r}"
            )

    # -- words -------------------------------------------------------------------------------------

    def _cancelled(self) -> str:
        return "canceled" if self.us_spelling else CANCELLED

    def status_word(self, state: str) -> str:
        """The status endpoint's word for a job in the documented result ``state``."""
        if state in (IN_QUEUE, IN_PROGRESS):
            return self.unknown_status_word or state
        if state == CANCELLED:
            return self._cancelled()
        if self.final_status_words:
            return state  # succeeded or failed
        return COMPLETED

    def result_word(self, state: str, progress: float) -> str:
        """
        The result endpoint's word for a job in ``state``.

        :param progress: how far the job is through its current in-flight state, from 0 to 1
            (the extra in-flight words say the first half one way, the second half another).
        """
        if state == SUCCEEDED:
            return COMPLETED if self.completed_results else SUCCEEDED
        if state == CANCELLED:
            return self._cancelled()
        if self.in_flight_words and state == IN_QUEUE:
            return "pending" if progress < 0.5 else "waiting"
        if self.in_flight_words and state == IN_PROGRESS:
            return "starting" if progress < 0.5 else "processing"
        return state

    # -- bodies ------------------------------------------------------------------------------------

    def decorate(self, body: dict[str, Any]) -> dict[str, Any]:
        """A successful API answer's body as this dialect sends it (``error_code: null`` added)."""
        if self.null_error_codes:
            return {**body, "error_code": None}
        return body

    def cancel_body(self, request_id: str, state: str, cancelled: bool) -> dict[str, Any]:
        """
        The answer to a cancel.

        :param state: the job's documented state before the cancel.
        :param cancelled: whether the emulator cancelled the job.
        """
        if self.cancel_answer == "requested":
            return {"request_id": request_id, "status": "cancellation_requested"}
        if cancelled and self.cancel_answer == "status":
            return {"request_id": request_id, "status": self._cancelled()}
        if cancelled:
            # Like the example in RunComfy's docs: ``status: completed`` with ``outcome: cancelled``.
            return {"request_id": request_id, "status": COMPLETED, "outcome": "cancelled"}
        word = IN_PROGRESS if state == IN_PROGRESS else COMPLETED
        return {"request_id": request_id, "status": word, "outcome": "not_cancellable"}

    def to_dict(self) -> dict[str, Any]:
        """The flags as JSON-able data."""
        return asdict(self)


DOCUMENTED = Dialect()

#: What RunComfy's Model API sends, as far as its own clients show: every variant that both its MCP
#: server and its partner nodes accept (``canceled``, final words on the status endpoint and a bare
#: ``cancellation_requested`` are left out: each breaks one of them).
MODEL_API = Dialect(
    name="model-api",
    completed_results=True,
    in_flight_words=True,
    null_error_codes=True,
    extra_fields=True,
)

#: Robustness: every variant seen in any of RunComfy's clients at once (the invented unknown word
#: stays out). No client of RunComfy's accepts all of it; a robust client should.
EVERY_VARIANT = Dialect(
    name="every-variant",
    completed_results=True,
    us_spelling=True,
    final_status_words=True,
    in_flight_words=True,
    null_error_codes=True,
    cancel_answer="requested",
    extra_fields=True,
)

#: The earlier name of :data:`EVERY_VARIANT` (the ``live`` preset), kept for code that imports it.
LIVE = EVERY_VARIANT

PRESETS: dict[str, Dialect] = {
    "documented": DOCUMENTED,
    "model-api": MODEL_API,
    "every-variant": EVERY_VARIANT,
    "live": EVERY_VARIANT,  # alias: the earlier name of every-variant
    "completed-results": Dialect(name="completed-results", completed_results=True),
    "canceled": Dialect(name="canceled", us_spelling=True),
    "final-status-words": Dialect(name="final-status-words", final_status_words=True),
    "in-flight-words": Dialect(name="in-flight-words", in_flight_words=True),
    "unknown-status": Dialect(name="unknown-status", unknown_status_word=UNKNOWN_WORD),
    "null-error-codes": Dialect(name="null-error-codes", null_error_codes=True),
    "cancel-requested": Dialect(name="cancel-requested", cancel_answer="requested"),
    "cancel-status-only": Dialect(name="cancel-status-only", cancel_answer="status"),
    "extra-fields": Dialect(name="extra-fields", extra_fields=True),
}

#: The presets that word answers as RunComfy's Model API does (its clients accept them all).
MODEL_API_PRESETS = ("documented", "model-api")
#: The presets that test a client's robustness: each variant alone, and all of them at once.
ROBUSTNESS_PRESETS = tuple(name for name in PRESETS if name not in MODEL_API_PRESETS)

_FLAGS = [f.name for f in fields(Dialect) if f.name != "name"]


@functools.cache
def dialect_named(spec: str) -> Dialect:
    """
    The dialect of a spec: a preset name, or names joined with ``+`` or ``,`` (their flags combined).

    Raises ``ValueError`` naming the presets for an unknown name.
    """
    names = [part.strip() for part in spec.replace(",", "+").split("+") if part.strip()]
    if not names:
        raise ValueError("a dialect spec needs at least one preset name")
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        raise ValueError(f"unknown dialect {', '.join(unknown)}; presets: {', '.join(PRESETS)}")
    if len(names) == 1:
        return PRESETS[names[0]]
    changes: dict[str, Any] = {}
    for name in names:
        preset = PRESETS[name]
        for flag in _FLAGS:
            value = getattr(preset, flag)
            if value != getattr(DOCUMENTED, flag):
                changes[flag] = value
    return replace(DOCUMENTED, name="+".join(names), **changes)


def as_dialect(value: Dialect | str | dict[str, Any] | None) -> Dialect:
    """A :class:`Dialect` from itself, a spec string, a dict of its flags, or ``None`` (documented)."""
    if value is None:
        return DOCUMENTED
    if isinstance(value, Dialect):
        return value
    if isinstance(value, str):
        return dialect_named(value)
    if isinstance(value, dict):  # the flags, as ``Dialect.to_dict`` gives them (control endpoint JSON)
        try:
            return Dialect(**value)
        except TypeError as exc:
            raise ValueError(f"bad dialect flags: {exc}") from None
    raise ValueError(f"a dialect is a Dialect, a preset name or a dict of flags, got {type(value).__name__}")
