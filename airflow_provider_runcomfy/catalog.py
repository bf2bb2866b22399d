"""
RunComfy's model catalog as typed data, and the per-process cache of its answers.

RunComfy's Model API describes every hosted model (``GET /v1/models/{model_id}``): its name, its
categories, its price and the input schema of its page. Pre-flight checks and cost estimates read
that description before a paid submit, so one DAG run of a hundred mapped tasks would otherwise ask
the same question a hundred times. :class:`CatalogCache` keeps the answers for a bounded time per
process: long enough to spare the API, short enough that a price or schema change is seen within
minutes.

The answers of the catalog's endpoints are read here too (:func:`read_model`,
:func:`read_model_page`, :func:`read_categories`), and its pages asked for (:func:`list_query`), so
the hook only sends.

This module is light (standard library only): the hook imports it, the operators import it while a
DAG file is parsed, and the emulator serves the bundled models from it. Its readers raise
``ValueError``; the hook turns that into the domain error.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

#: How long a catalog answer is reused, in seconds. RunComfy publishes no change rate; five minutes
#: keeps a large fan-out to one request per model while a price change is still seen the same hour.
CATALOG_TTL_SECONDS = 300.0
#: The most answers kept per process (a DAG file rarely uses more than a few models).
CATALOG_MAX_ENTRIES = 256


class PriceUnit(StrEnum):
    """What RunComfy's ``base_price_usd`` is counted per (``price_unit`` in the catalog)."""

    OUTPUT = "output"
    SECOND = "second"

    @property
    def is_per_output(self) -> bool:
        """The price is per output file (an image, a video)."""
        return self is PriceUnit.OUTPUT

    @property
    def is_per_second(self) -> bool:
        """The price is per second of output (videos, audio)."""
        return self is PriceUnit.SECOND


def parse_price_unit(value: Any) -> PriceUnit | None:
    """Read a ``price_unit``; ``None`` for one the provider does not know (then no estimate is made)."""
    try:
        return PriceUnit(value)
    except ValueError:
        return None


def _price(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


@dataclass(frozen=True)
class ModelInfo:
    """
    One model as RunComfy's catalog describes it.

    Every field but ``model_id`` may be missing from an answer (the catalog is seen in RunComfy's
    own clients, not documented): a missing price means no estimate, a missing schema means the
    inputs cannot be checked against it. Nothing is guessed.

    :param model_id: RunComfy's model id.
    :param display_name: the model's name on its page.
    :param categories: e.g. ``("image-to-image",)``.
    :param base_price_usd: the price of one unit in USD.
    :param price_unit: what one unit is (an output, a second).
    :param pricing_note: RunComfy's note on the price, as given.
    :param input_schema: the model page's input schema (JSON-Schema-like, see
        :mod:`airflow_provider_runcomfy.schema`).
    """

    model_id: str
    display_name: str | None = None
    categories: tuple[str, ...] = ()
    base_price_usd: float | None = None
    price_unit: PriceUnit | None = None
    pricing_note: str | None = None
    input_schema: dict[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def from_api(cls, body: Any, *, model_id: str | None = None) -> ModelInfo:
        """
        Read one catalog entry, keeping only well-formed fields.

        :param body: the JSON object RunComfy sent.
        :param model_id: the id asked for, used when the answer does not repeat it.
        :raises ValueError: when ``body`` is not an object or names no model.
        """
        if not isinstance(body, dict):
            raise ValueError(f"a catalog entry must be a JSON object, got {type(body).__name__}")
        found = body.get("model_id")
        name = found if isinstance(found, str) and found else model_id
        if not name:
            raise ValueError("the catalog entry has no model_id")
        categories = body.get("categories")
        if isinstance(categories, str):
            categories = [categories]
        schema = body.get("input_schema")
        display = body.get("display_name")
        note = body.get("pricing_note")
        return cls(
            model_id=name,
            display_name=display if isinstance(display, str) and display else None,
            categories=tuple(c for c in categories or () if isinstance(c, str)),
            base_price_usd=_price(body.get("base_price_usd")),
            price_unit=parse_price_unit(body.get("price_unit")),
            pricing_note=note if isinstance(note, str) and note else None,
            input_schema=schema if isinstance(schema, dict) else None,
        )

    @property
    def label(self) -> str:
        """The model's name for messages: its display name, else its id."""
        return self.display_name or self.model_id

    @property
    def has_price(self) -> bool:
        """Whether a cost can be estimated from this entry."""
        return self.base_price_usd is not None and self.price_unit is not None

    def describe_price(self) -> str:
        """``$0.03/output``, or ``no price`` when the catalog gave none."""
        if not self.has_price:
            return "no price"
        return f"${self.base_price_usd:g}/{self.price_unit}"


@dataclass(frozen=True)
class ModelPage:
    """
    One page of ``GET /v1/models``.

    :param models: the entries of this page.
    :param total: how many models match in all (for paging with ``offset``).
    """

    models: tuple[ModelInfo, ...]
    total: int


# -- reading the catalog's answers and asking for its pages ------------------------------------------


def read_model(body: dict[str, Any], model_id: str) -> ModelInfo:
    """
    The answer of ``GET /v1/models/{model_id}``.

    :raises ValueError: when the answer names no model.
    """
    return ModelInfo.from_api(body, model_id=model_id.strip("/"))


def read_model_page(body: dict[str, Any]) -> ModelPage:
    """
    One answer of ``GET /v1/models``; an entry that is not a model is left out, not the whole page.

    :raises ValueError: when the answer has no ``models`` list.
    """
    entries = body.get("models")
    if not isinstance(entries, list):
        raise ValueError("the answer has no models list")
    models = []
    for entry in entries:
        try:
            models.append(ModelInfo.from_api(entry))
        except ValueError:  # one odd entry should not hide the others
            continue
    total = body.get("total")
    if isinstance(total, bool) or not isinstance(total, int):
        total = len(models)
    return ModelPage(models=tuple(models), total=total)


def read_categories(body: dict[str, Any]) -> list[str]:
    """
    The answer of ``GET /v1/models/categories``.

    :raises ValueError: when the answer has no ``categories`` list.
    """
    found = body.get("categories")
    if not isinstance(found, list):
        raise ValueError("the answer has no categories list")
    return [item for item in found if isinstance(item, str)]


def list_query(
    search: str | None,
    category: str | None,
    kind: str | None,
    include_schema: bool,
    limit: int,
    offset: int,
) -> dict[str, str]:
    """The query of one page of ``GET /v1/models``: the page, and only the filters given."""
    params = {"limit": str(int(limit)), "offset": str(int(offset))}
    for name, value in (("search", search), ("category", category), ("kind", kind)):
        if value is not None and str(value).strip():
            params[name] = str(value)
    if include_schema:
        params["include_schema"] = "true"
    return params


class CatalogCache:
    """
    A small thread-safe time-to-live cache of catalog answers, shared by every hook in a process.

    Only successful answers are kept: an outage is asked again next time, never remembered. Entries
    expire after ``ttl`` seconds; the oldest go first when ``max_entries`` is reached.

    :param ttl: seconds an answer is reused.
    :param max_entries: the most answers kept.
    """

    def __init__(self, *, ttl: float = CATALOG_TTL_SECONDS, max_entries: int = CATALOG_MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[Any, ...], tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Any | None:
        """The cached answer for ``key``, or ``None`` when absent or expired."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, value = entry
            if time.monotonic() >= expires:
                del self._entries[key]
                return None
            return value

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        """Keep ``value`` for ``ttl`` seconds."""
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (time.monotonic() + self.ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every answer (tests; or after changing a model's schema on purpose)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


#: The process-wide cache every :class:`~airflow_provider_runcomfy.hooks.runcomfy.RunComfyHook` uses.
CATALOG_CACHE = CatalogCache()


# -- the schemas shipped with the provider ------------------------------------------------------------

#: Where the documented models' schema files live inside the package (``package-data``).
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def schema_file_name(model_id: str) -> str:
    """The file of a bundled model: its id with ``/`` spelled ``--`` (ids never contain ``--``)."""
    return model_id.strip("/").replace("/", "--") + ".json"


@cache
def bundled_model(model_id: str) -> ModelInfo | None:
    """
    The catalog entry shipped with the provider for a documented model, or ``None``.

    The two documented Dreamina models ship their model-page input schemas as data files, so their
    inputs are checked even when RunComfy's catalog cannot be reached. They carry no price: RunComfy
    does not document one, and a made-up price could let a budget guard pass a job it should refuse.
    Read once per process (the files are a few KB).
    """
    if not isinstance(model_id, str):
        return None
    path = SCHEMA_DIR / schema_file_name(model_id)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return ModelInfo.from_api(
        {key: data.get(key) for key in ("model_id", "display_name", "categories", "input_schema")}
    )


def bundled_model_ids() -> tuple[str, ...]:
    """The ids of every model whose schema ships with the provider."""
    found = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        found.append(json.loads(path.read_text(encoding="utf-8"))["model_id"])
    return tuple(found)
