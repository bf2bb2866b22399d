"""
What a job will cost before it is submitted, what it did cost after, and the budget guard between.

RunComfy's catalog gives each model a ``base_price_usd`` per ``price_unit``: per ``output`` (an
image, a video) or per ``second`` of output. Before a submit the estimate is that price times the
units the inputs ask for:

* ``output``: the number the inputs give in a count field (``num_images``, ``num_outputs``...; else
  the schema's default for it), otherwise **one output**. A model that may return several outputs
  without being asked (Dreamina 4.0 edit returns a set unless ``force_single`` is true) can cost more
  than that: the basis says so.
* ``second``: the duration input (``duration``, ``duration_seconds``, ``seconds``; else the schema's
  default); for Dreamina 3.0 Pro image to video, ``frames`` 121 is 5 s and 241 is 10 s, as its page
  documents. A duration that is not a number (``"auto"``) cannot be estimated.

**Base prices.** RunComfy's catalog may give a *base* price: its ``pricing_note`` says so ("base
price for 1K; 2K and 4K cost more"), or the model has a tiered input (``resolution``, ``quality``...)
that one price cannot cover. Such an estimate is a lower bound, and its basis starts with "at
least": ``max_cost_usd`` then guards the lower bound (a job whose *least* cost is over the limit is
refused), not the final bill. After the run, a reported cost above ``max_cost_usd`` is logged as a
warning naming both (the operators do it).

Nothing is guessed: a model without a price (the catalog unreachable, no price in its entry, a price
unit the provider does not know) or inputs that do not say how long has no estimate (``usd`` is
``None``), and the budget guard refuses such a job when ``max_cost_usd`` is set. After the job,
RunComfy may report its real ``cost`` on the result (``include_cost=true``, seen in RunComfy's own
clients; optional): :func:`reported_cost` reads it.

Amounts are computed in :class:`~decimal.Decimal` (no ``0.1 * 3 = 0.30000000000000004``) and
handed out as floats rounded to a millionth of a dollar. This module is light (standard library
only): the operators and the shared wait logic import it.
"""

from __future__ import annotations

import math
import re
from collections import abc
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from airflow_provider_runcomfy.documented import DOCUMENTED_EXTRAS
from airflow_provider_runcomfy.exceptions import RunComfyBudgetExceededError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_runcomfy.catalog import ModelInfo, PriceUnit

#: The XCom key of the estimate a model operator pushes before its submit.
COST_ESTIMATE_XCOM_KEY = "cost_estimate"
#: Input fields that say how many outputs a job makes, in the order they are looked for.
COUNT_FIELDS = ("num_images", "num_outputs", "number_of_images", "num_videos", "batch_size")
#: Input fields that give the length of the output in seconds.
DURATION_FIELDS = ("duration", "duration_seconds", "seconds")
#: Models whose length is given in frames, with the seconds their pages document for each value.
FRAME_SECONDS: dict[str, tuple[str, Mapping[int, int]]] = {
    model_id: extras.frame_seconds
    for model_id, extras in DOCUMENTED_EXTRAS.items()
    if extras.frame_seconds is not None
}
#: Models that may return several outputs unless an input says otherwise: ``(field, value)`` that
#: makes it exactly one.
SINGLE_OUTPUT_SWITCH: dict[str, tuple[str, Any]] = {
    model_id: extras.single_output
    for model_id, extras in DOCUMENTED_EXTRAS.items()
    if extras.single_output is not None
}

#: Input fields whose values are price tiers (a base price covers the cheapest one only).
TIER_FIELDS = ("resolution", "output_resolution", "image_resolution", "quality", "tier")
#: Words of a ``pricing_note`` that make its price a base price.
_BASE_PRICE_WORDS = re.compile(
    r"\b(base|starting|tiers?|tiered|varies|vary|depends?|depending|multiplier|surcharge)\b|\bfrom \$|"
    r"\bcosts? more\b|\bup to\b",
    re.IGNORECASE,
)

_MICRO = Decimal("0.000001")


@dataclass(frozen=True)
class CostEstimate:
    """
    A job's cost before it runs.

    :param usd: the estimate in US dollars; ``None`` when it cannot be made.
    :param price_unit: what the model is priced per, when known.
    :param basis: how the estimate was made (or why it could not be), in words, e.g.
        ``"2 outputs (num_images=2) x $0.02/output"``; it starts with "at least" for a lower bound.
    :param lower_bound: the catalog's price is a base price, so the job may cost more.
    """

    usd: float | None
    price_unit: PriceUnit | None
    basis: str
    lower_bound: bool = False

    @property
    def is_known(self) -> bool:
        """Whether there is an amount."""
        return self.usd is not None

    def to_xcom(self) -> dict[str, Any]:
        """The ``cost_estimate`` XCom: ``{"usd", "price_unit", "basis"}``."""
        return {
            "usd": self.usd,
            "price_unit": self.price_unit.value if self.price_unit else None,
            "basis": self.basis,
        }

    def describe(self) -> str:
        """``$0.04 (2 outputs x $0.02/output)`` or ``unknown (...)``, for logs and messages."""
        amount = f"${self.usd:g}" if self.usd is not None else "unknown"
        return f"{amount} ({self.basis})"


def _property(schema: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    # Any shape may come from a catalog: a schema or ``properties`` that is no object has no field.
    props = schema.get("properties") if isinstance(schema, abc.Mapping) else None
    prop = props.get(name) if isinstance(props, abc.Mapping) else None
    return prop if isinstance(prop, abc.Mapping) else None


def _default(schema: Mapping[str, Any] | None, name: str) -> Any:
    prop = _property(schema, name)
    return prop.get("default") if prop is not None else None


def _seconds(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            found = Decimal(value.strip().removesuffix("s"))
        except InvalidOperation:
            return None
        return found if found.is_finite() and found > 0 else None
    return None


def _outputs(model_id: str, inputs: Mapping[str, Any], schema: Mapping[str, Any] | None) -> tuple[int, str]:
    for name in COUNT_FIELDS:
        given = name in inputs
        value = inputs[name] if given else _default(schema, name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            source = f"{name}={value}" if given else f"{name} default {value}"
            return value, f"{value} output{'s' if value != 1 else ''} ({source})"
    switch = SINGLE_OUTPUT_SWITCH.get(model_id)
    if switch is not None and inputs.get(switch[0]) != switch[1]:
        return 1, f"1 output at least (the model may return a set unless {switch[0]}={switch[1]})"
    if switch is not None:
        return 1, f"1 output ({switch[0]}={switch[1]})"
    return 1, "1 output (the inputs do not say how many)"


def _duration(
    model_id: str, inputs: Mapping[str, Any], schema: Mapping[str, Any] | None
) -> tuple[Decimal | None, str]:
    frames = FRAME_SECONDS.get(model_id)
    if frames is not None:
        name, table = frames
        value = inputs.get(name, _default(schema, name))
        if value is None:
            value = min(table)  # the page's default
        known = table.get(value) if isinstance(value, int) and not isinstance(value, bool) else None
        if known is None:
            return None, f"{name}={value!r} has no documented length"
        return Decimal(known), f"{known} s ({name}={value})"
    for name in DURATION_FIELDS:
        given = name in inputs
        value = inputs[name] if given else _default(schema, name)
        if value is None:
            continue
        seconds = _seconds(value)
        if seconds is None:
            return None, f"{name}={value!r} is not a number of seconds"
        return seconds, f"{seconds.normalize():f} s ({name}={value!r}{'' if given else ', its default'})"
    return None, "the inputs give no duration"


def estimate_cost(
    info: ModelInfo | None,
    inputs: Mapping[str, Any],
    *,
    input_schema: Mapping[str, Any] | None = None,
    why_no_price: str = "the catalog gave no price",
) -> CostEstimate:
    """
    Estimate a job's cost from its model's catalog entry and its (validated) inputs.

    :param info: the model's catalog entry; ``None`` when the catalog could not be read.
    :param inputs: the inputs that will be sent.
    :param input_schema: the schema whose defaults apply to fields left out.
    :param why_no_price: the basis to give when ``info`` has no usable price.
    """
    if info is None or info.base_price_usd is None or info.price_unit is None:
        return CostEstimate(None, info.price_unit if info else None, f"no estimate: {why_no_price}")
    price = Decimal(str(info.base_price_usd))
    unit = info.price_unit
    schema = input_schema if input_schema is not None else info.input_schema
    if unit.is_per_output:
        count, basis = _outputs(info.model_id, inputs, schema)
        units: Decimal | None = Decimal(count)
    else:
        units, basis = _duration(info.model_id, inputs, schema)
    if units is None:
        return CostEstimate(None, unit, f"no estimate: {basis}")
    usd = float((price * units).quantize(_MICRO))
    base = _base_price_reason(info, inputs, schema)
    if base is not None:
        return CostEstimate(
            usd, unit, f"at least: {basis} x {info.describe_price()}; {base}", lower_bound=True
        )
    return CostEstimate(usd, unit, f"{basis} x {info.describe_price()}")


def _base_price_reason(
    info: ModelInfo, inputs: Mapping[str, Any], schema: Mapping[str, Any] | None
) -> str | None:
    """Why the catalog's price is only a base (the job may cost more), or ``None`` when it is the price."""
    note = info.pricing_note
    if note and _BASE_PRICE_WORDS.search(note):
        return f"the catalog's price is a base price ({note})"
    for name in TIER_FIELDS:
        prop = _property(schema, name)
        if prop is None:
            continue
        choices = prop.get("enum")
        if isinstance(choices, list) and len(choices) > 1:
            value = inputs.get(name, prop.get("default"))
            return f"{name}={value!r} is one of {len(choices)} tiers and the catalog gives one price"
    return None


def check_budget(
    estimate: CostEstimate, max_cost_usd: float | None, *, model: str, jobs: int | None = None
) -> None:
    """
    Refuse a job whose estimate is over ``max_cost_usd``, or unknown while a limit is set.

    What it guards is the estimate: for a base price (``lower_bound``) that is the least the job can
    cost, so a job under the limit may still be billed more (reported after the run).

    :param jobs: for a batch, how many jobs ``estimate`` covers (the sum of theirs): the limit is the
        whole batch's, and the message says so. ``None`` for a single job.
    :raises RunComfyBudgetExceededError: naming the limit and the estimate, before any submit.
    """
    if max_cost_usd is None:
        return
    limit = float(max_cost_usd)
    subject = f"this {model} job" if jobs is None else f"the whole batch's {jobs} {model} job(s)"
    if estimate.usd is None:
        raise RunComfyBudgetExceededError(
            f"Not submitted: max_cost_usd is ${limit:g} but the cost of {subject} cannot be "
            f"estimated ({estimate.basis}). Remove max_cost_usd to run {'it' if jobs is None else 'them'} "
            "anyway.",
            limit_usd=limit,
            estimate_usd=None,
        )
    if estimate.usd > limit:
        raise RunComfyBudgetExceededError(
            f"Not submitted: the estimated cost of {subject}, {estimate.describe()}, is over "
            f"max_cost_usd ${limit:g}.",
            limit_usd=limit,
            estimate_usd=estimate.usd,
        )


def reported_cost(result: Mapping[str, Any]) -> float | None:
    """The ``cost`` RunComfy reported on a result (``include_cost=true``), when it is a usable amount."""
    cost = result.get("cost")
    if isinstance(cost, bool) or not isinstance(cost, int | float):
        return None
    return float(cost) if math.isfinite(cost) and cost >= 0 else None
