"""
Pre-flight checks of a job's inputs, before a paid submit: the entry point and the building blocks.

A RunComfy submit is paid, and a job with a bad input may be charged before it fails. Every rule a
model's schema states that can be checked without the network is checked before the submit:
:func:`validate_inputs` checks what every model needs (a model id, a JSON object of inputs) and
hands the fields to the model's schema (:mod:`airflow_provider_runcomfy.schema`, the one interpreter
of RunComfy's schema form), and :class:`ImageRules`, built from a media field's ``validations``, is
applied by :mod:`airflow_provider_runcomfy.images` to the headers of the input images it fetches.
The two documented models' schemas ship with the provider; the few rules of their pages that the
schema form cannot state are :class:`DocumentedExtras`.

This module is imported while DAG files are parsed, so it uses only the standard library and the
provider's light modules (no httpx, no Pillow, no jsonschema, not the interpreter).

Decisions where RunComfy's documentation is silent:

* **MB means 10**6 bytes.** The docs say "≤ 15 MB" and "< 4.7 MB" without saying whether a MB is
  10**6 or 2**20 bytes. The decimal reading is the stricter one, so a file it accepts is accepted
  under either reading and nothing RunComfy could refuse is paid for. A file between the two
  readings is refused here; the message gives the exact byte limit.
* **Unknown keys are kept and sent.** RunComfy may add fields to a model, and refusing them would
  block users for no reason. Only a key that is a near miss of a documented one (``Prompt``,
  ``widthxheight`` with an ASCII ``x``) is refused: RunComfy would most likely ignore it silently and
  run a paid job with the default instead of what the user asked for.
* **A ``None`` optional field is left out,** so the model uses its documented default; what RunComfy
  does with a JSON ``null`` is not documented.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_runcomfy.contract import (
    EDIT_MODEL_ID,
    EDIT_SIZES,
    SIZE_FIELD,
    VIDEO_MODEL_ID,
)
from airflow_provider_runcomfy.exceptions import RunComfyInputError, redact_data_uris

if TYPE_CHECKING:
    from airflow_provider_runcomfy.schema import ModelSchema

#: One megabyte, in the stricter (decimal) reading of RunComfy's limits; see the module docstring.
MB = 10**6

# A model id is slash-separated segments of URL-safe characters, like ``owner/name/variant``.
_MODEL_ID = re.compile(r"[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)+")


def _type_name(value: Any) -> str:
    return type(value).__name__


def _shorten(value: Any, limit: int = 80) -> str:
    # Redacted before it is cut: an inline file is shown by type, size and digest, never its bytes.
    text = redact_data_uris(repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- image limits -----------------------------------------------------------------------------------


def _ratio(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    if value.numerator == 1:
        return f"1/{value.denominator}"
    return f"{float(value):g}"


def _show_ratio(value: Fraction, limits: Limits) -> str:
    # Three digits read well, but 3.001 must not show as "3" next to a limit of 3.
    edges = {float(b.value) for b in (limits.low, limits.high) if b is not None}
    for digits in (3, 6):
        text = f"{float(value):.{digits}g}"
        if float(text) not in edges:
            return text
    return f"exactly {_ratio(value)}"


@dataclass(frozen=True)
class Bound:
    """
    One end of a limit, as one ``validations`` rule of a schema states it.

    Values are :class:`~fractions.Fraction` so that a boundary such as 1/3 is compared exactly (a
    1000x3000 image is exactly 1/3, which a float comparison could get wrong).

    :param value: the limit.
    :param inclusive: whether the limit itself is accepted (``<=`` vs ``<``).
    :param note: the schema's own ``validation_error`` text, quoted in messages.
    """

    value: Fraction
    inclusive: bool
    note: str | None = None

    def admits_as_low(self, x: Fraction | int) -> bool:
        """Whether ``x`` is on the accepted side of this lower bound."""
        return x >= self.value if self.inclusive else x > self.value

    def admits_as_high(self, x: Fraction | int) -> bool:
        """Whether ``x`` is on the accepted side of this upper bound."""
        return x <= self.value if self.inclusive else x < self.value

    def is_stricter_low(self, other: Bound | None) -> bool:
        """Whether this lower bound refuses more than ``other``."""
        return other is None or (self.value, not self.inclusive) > (other.value, not other.inclusive)

    def is_stricter_high(self, other: Bound | None) -> bool:
        """Whether this upper bound refuses more than ``other``."""
        return other is None or (self.value, self.inclusive) < (other.value, other.inclusive)


@dataclass(frozen=True)
class Limits:
    """The accepted range of one measured quantity (file size, width, height, aspect ratio)."""

    low: Bound | None = None
    high: Bound | None = None

    def describe(self, show: Callable[[Fraction], str]) -> str:
        """The range in words: ``within [1/3, 3]``, ``strictly between 0.33 and 3``, ``at most 4096``."""
        low, high = self.low, self.high
        if low is not None and high is not None:
            if low.inclusive and high.inclusive:
                return f"within [{show(low.value)}, {show(high.value)}]"
            if not low.inclusive and not high.inclusive:
                return f"strictly between {show(low.value)} and {show(high.value)}"
        parts = []
        if low is not None:
            parts.append(f"{'at least' if low.inclusive else 'more than'} {show(low.value)}")
        if high is not None:
            parts.append(f"{'at most' if high.inclusive else 'less than'} {show(high.value)}")
        return " and ".join(parts) or "anything"

    def breaks(self, x: Fraction | int) -> Bound | None:
        """The bound ``x`` breaks, or ``None`` when it is within the range."""
        if self.low is not None and not self.low.admits_as_low(x):
            return self.low
        if self.high is not None and not self.high.admits_as_high(x):
            return self.high
        return None


def _with_note(text: str, bound: Bound | None) -> str:
    """A message with the schema's own ``validation_error`` text after it, when it has one."""
    if bound is None or not bound.note:
        return text
    return f'{text} (schema: "{bound.note}")'


@dataclass(frozen=True)
class ImageRules:
    """
    The limits of one input image field, checked on each image's header before a submit.

    Built by :mod:`airflow_provider_runcomfy.schema` from the field's ``validations`` in the model's
    schema (``file_size_mb<=``, ``width_pixels>``, ``width/height≥``...), plus the formats a
    documented model's page names (the schema form has no rule for formats).

    :param model: the model's name in messages, e.g. ``"Dreamina 4.0 edit"``.
    :param formats: the Pillow format names accepted (``"JPEG"``, ``"PNG"``); ``None`` for any image.
    :param file_bytes: the file size in bytes (MB read as 10**6 bytes, see the module docstring).
    :param width: the width in pixels.
    :param height: the height in pixels.
    :param ratio: width/height.
    """

    model: str
    formats: frozenset[str] | None = None
    file_bytes: Limits = Limits()
    width: Limits = Limits()
    height: Limits = Limits()
    ratio: Limits = Limits()

    @property
    def largest_file(self) -> int | None:
        """The largest accepted file size in bytes (a reader may stop one byte later); ``None``: no limit."""
        high = self.file_bytes.high
        if high is None:
            return None
        limit = int(high.value)
        return limit if high.inclusive else limit - 1

    def describe_max_bytes(self) -> str:
        """The size limit in words, with the exact byte count because "MB" is ambiguous."""
        high = self.file_bytes.high
        if high is None:
            return "no size limit"
        return _describe_bytes(int(high.value))

    def check(self, field: str, fmt: str | None, width: int, height: int, size_bytes: int | None) -> None:
        """
        Raise :class:`RunComfyInputError` naming ``field`` and every rule the image breaks.

        :param field: the input's name with its index, e.g. ``image_urls[0]``.
        :param fmt: Pillow's format name (``"PNG"``, ``"JPEG"``, ``"GIF"``...).
        :param width: the width in pixels.
        :param height: the height in pixels.
        :param size_bytes: the file size, or ``None`` when it is unknown.
        """
        problems = self.format_problems(fmt)
        if size_bytes is not None:
            problems += self.size_problems(size_bytes)
        problems += self.dimension_problems(width, height)
        _raise_all(field, problems)

    def check_header(self, field: str, fmt: str | None, width: int, height: int) -> None:
        """Refuse a bad format and bad dimensions at once, naming every rule broken (not only the first)."""
        _raise_all(field, self.format_problems(fmt) + self.dimension_problems(width, height))

    def check_format(self, field: str, fmt: str | None) -> None:
        """Refuse a format the model does not take (GIF, WEBP...)."""
        _raise_all(field, self.format_problems(fmt))

    def format_problems(self, fmt: str | None) -> list[str]:
        """The format rule broken, if any, in words."""
        if self.formats is not None and fmt not in self.formats:
            allowed = " or ".join(sorted(self.formats))
            return [f"{fmt or 'this format'} is not accepted by {self.model} ({allowed} only)"]
        return []

    def check_size(self, field: str, size_bytes: int) -> None:
        """Refuse a file outside the size limits; usable as soon as ``Content-Length`` is known."""
        _raise_all(field, self.size_problems(size_bytes))

    def size_problems(self, size_bytes: int) -> list[str]:
        """The size rule broken, if any, in words."""
        bound = self.file_bytes.breaks(size_bytes)
        if bound is None:
            return []
        limit = int(bound.value)
        shown = _describe_size(size_bytes, limit)
        if bound is self.file_bytes.high:
            if bound.inclusive:
                rule = f"{shown} is larger than the {_describe_bytes(limit)} that {self.model} accepts"
            else:
                rule = f"{shown} is too large: {self.model} accepts files under {_describe_bytes(limit)}"
        else:
            least = "of at least" if bound.inclusive else "over"
            rule = f"{shown} is too small: {self.model} accepts files {least} {_describe_bytes(limit)}"
        return [_with_note(rule, bound)]

    def check_dimensions(self, field: str, width: int, height: int) -> None:
        """Refuse sides outside their limits, an empty image and a bad ratio, naming every rule broken."""
        _raise_all(field, self.dimension_problems(width, height))

    def dimension_problems(self, width: int, height: int) -> list[str]:
        """
        Every dimension rule the image breaks, in words (a 5000x1000 image: its width and its ratio).

        An empty image is only that: its sides and ratio mean nothing.
        """
        px = f"{width}x{height} px"
        if width <= 0 or height <= 0:
            return [f"{px} has no pixels"]
        problems = []
        for side, value, too, name in (
            ("width", width, "wider", "wide"),
            ("height", height, "taller", "tall"),
        ):
            high = getattr(self, side).high
            if high is not None and not high.admits_as_high(value):
                limit = _ratio(high.value)
                rule = (
                    f"{px} is {too} than the {limit} px that {self.model} accepts"
                    if high.inclusive
                    else f"{px} is too {name}: {self.model} needs the {side} to be less than {limit} px"
                )
                problems.append(_with_note(rule, high))
        for side, value, name in (("width", width, "narrow"), ("height", height, "short")):
            low = getattr(self, side).low
            if low is not None and not low.admits_as_low(value):
                least = "at least" if low.inclusive else "more than"
                rule = (
                    f"{px} is too {name}: {self.model} needs the {side} to be {least} {_ratio(low.value)} px"
                )
                problems.append(_with_note(rule, low))
        ratio = Fraction(width, height)
        bound = self.ratio.breaks(ratio)
        if bound is not None:
            problems.append(
                _with_note(
                    f"{px} has an aspect ratio (width/height) of {_show_ratio(ratio, self.ratio)}; "
                    f"{self.model} needs it {self.ratio.describe(_ratio)}",
                    bound,
                )
            )
        return problems


def _raise_all(field: str, problems: list[str]) -> None:
    """One error naming ``field`` and every rule it breaks, so a DAG author fixes them in one go."""
    if problems:
        raise RunComfyInputError(field, "; also ".join(problems))


def _describe_bytes(limit: int) -> str:
    return f"{limit / MB:g} MB ({limit:,} bytes)"


def _describe_size(size_bytes: int, limit: int) -> str:
    # One decimal reads well ("16.2 MB") but can hide why a file just over the limit is refused
    # ("15.0 MB is larger than 15 MB"); show the exact count then.
    shown = f"{size_bytes / MB:.1f}"
    if float(shown) * MB <= limit:
        return f"{size_bytes:,} bytes"
    return f"{shown} MB"


# -- field checks -----------------------------------------------------------------------------------


def check_url(field: str, value: Any) -> str:
    """A non-empty ``http(s)://host/...`` string; only the syntax (the image check fetches it)."""
    if not isinstance(value, str):
        raise RunComfyInputError(field, f"must be a URL string, got {_shorten(value)} ({_type_name(value)})")
    if not value.strip():
        raise RunComfyInputError(field, "must be a URL, got an empty string")
    if value != value.strip() or any(ch.isspace() for ch in value):
        raise RunComfyInputError(field, f"must be a URL without spaces, got {_shorten(value)}")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise RunComfyInputError(
            field,
            "must be an http(s) URL that RunComfy can fetch, a data: URI, or a local or object-storage "
            f"file (an absolute path, file://, s3://, gs://...), got {_shorten(value)}",
        )
    return value


def normalize_size(size: str) -> str:
    """
    Turn a size into the label the edit model documents: ``"2048x2048"`` -> ``"2048x2048(1:1)"``.

    Accepts the label itself, the bare ``WIDTHxHEIGHT``, an ``×`` instead of ``x``, any case and
    spaces, because the labels are awkward to type and a near miss would otherwise be sent as is.

    :raises RunComfyInputError: naming ``size`` and listing the documented sizes.
    """
    if not isinstance(size, str):
        raise RunComfyInputError("size", f"must be a string, got {_shorten(size)} ({_type_name(size)})")
    return _normalize_size("size", size)


def _size_key(text: str) -> str:
    return re.sub(r"\s+", "", text).lower().replace("\u00d7", "x")


_SIZES_BY_KEY: dict[str, str] = {
    **{_size_key(label.split("(")[0]): label for label in EDIT_SIZES},
    **{_size_key(label): label for label in EDIT_SIZES},
}


def _normalize_size(field: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value  # the schema's type check names the field
    label = _SIZES_BY_KEY.get(_size_key(value))
    if label is None:
        raise RunComfyInputError(
            field, f"{value!r} is not a documented size; use one of: {', '.join(EDIT_SIZES)}"
        )
    return label


# -- what the documented models' pages say that their schemas cannot --------------------------------


@dataclass(frozen=True)
class DocumentedExtras:
    """
    The few rules of a documented model's page that RunComfy's schema form has no words for.

    They are applied by the same interpreter as the schema (:mod:`airflow_provider_runcomfy.schema`),
    as small explicit additions rather than a second validator:

    :param label: the model's name in messages.
    :param image_formats: "JPEG or PNG only": the schema form has no rule for formats.
    :param non_blank: required text fields that must hold more than spaces (a blank prompt would run
        a paid job on nothing).
    :param normalizers: ``(field, function)``: fix what the user clearly meant before checking, e.g. a
        bare ``2048x2048`` becomes the documented label ``2048x2048(1:1)``.
    """

    label: str
    image_formats: frozenset[str] = frozenset({"JPEG", "PNG"})
    non_blank: tuple[str, ...] = ("prompt",)
    normalizers: tuple[tuple[str, Callable[[str, Any], Any]], ...] = field(default=())


#: The extras of the two documented models, by model id; their schemas ship as package data.
DOCUMENTED_EXTRAS: dict[str, DocumentedExtras] = {
    EDIT_MODEL_ID: DocumentedExtras(label="Dreamina 4.0 edit", normalizers=((SIZE_FIELD, _normalize_size),)),
    VIDEO_MODEL_ID: DocumentedExtras(label="Dreamina 3.0 Pro image to video"),
}


def spec_for(model_id: Any) -> ModelSchema | None:
    """
    The shipped schema of a documented model (surrounding slashes ignored, as the hook does), else ``None``.

    The interpreter is imported here, not at module level: DAG files import this module.
    """
    if not isinstance(model_id, str):
        return None
    from airflow_provider_runcomfy.schema import bundled_spec

    return bundled_spec(model_id.strip("/"))


def __getattr__(name: str) -> Any:
    # ``EDIT_SPEC``, ``VIDEO_SPEC`` and ``MODELS`` are read from the schema files on first use, so a
    # DAG file that imports this module does not load the interpreter.
    if name == "EDIT_SPEC":
        return spec_for(EDIT_MODEL_ID)
    if name == "VIDEO_SPEC":
        return spec_for(VIDEO_MODEL_ID)
    if name == "MODELS":
        return {model_id: spec_for(model_id) for model_id in DOCUMENTED_EXTRAS}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- entry points -----------------------------------------------------------------------------------


def check_model_id(model_id: Any) -> str:
    """
    A model id: URL-safe segments joined by slashes, like ``bytedance/dreamina-4-0/edit``.

    ``.`` and ``..`` segments are refused: the id becomes part of the submit path, and must not be
    able to point the paid submit at another endpoint.
    """
    if not isinstance(model_id, str) or not model_id:
        raise RunComfyInputError(
            "model_id", f"must be a non-empty string like 'owner/model/variant', got {_shorten(model_id)}"
        )
    segments = model_id.split("/")
    if not _MODEL_ID.fullmatch(model_id) or any(seg in (".", "..") for seg in segments):
        raise RunComfyInputError(
            "model_id",
            f"{model_id!r} is not a model id; expected slash-separated names like "
            "'bytedance/dreamina-4-0/edit' (letters, digits, '.', '_', '-', '~')",
        )
    return model_id


def _check_json(inputs: Mapping[str, Any]) -> None:
    for key, value in inputs.items():
        try:
            # allow_nan=False: NaN and Infinity are not JSON, and the API would refuse the body.
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as err:
            raise RunComfyInputError(key, f"must be JSON-serializable: {err}") from None


def validate_inputs(model_id: str, inputs: Any, schema: ModelSchema | None = None) -> dict[str, Any]:
    """
    Check a job's inputs before it is submitted, and return the inputs to send.

    Every model: ``model_id`` must look like a model id, ``inputs`` must be a mapping with string
    keys and JSON values. Then the model's schema is applied: ``schema`` when given (the catalog's,
    or the user's), else the shipped schema of a documented model; a model without either goes
    through as it is, since its rules are not known here.

    :raises RunComfyInputError: naming the field that breaks a rule.
    """
    check_model_id(model_id)
    if not isinstance(inputs, Mapping):
        raise RunComfyInputError(
            "inputs", f"must be a dict of the model's fields, got {_shorten(inputs)} ({_type_name(inputs)})"
        )
    for key in inputs:
        if not isinstance(key, str) or not key:
            raise RunComfyInputError("inputs", f"field names must be non-empty strings, got {key!r}")
    if schema is None:
        schema = spec_for(model_id)
    result = schema.validate(inputs) if schema else dict(inputs)
    _check_json(result)
    return result


def image_inputs(model_id: str, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ``(field[index], url)`` pairs of a documented model's input images; empty for other models."""
    spec = spec_for(model_id)
    if spec is None or not isinstance(inputs, Mapping):
        return []
    return [pair for _, pairs in spec.image_groups(inputs) for pair in pairs]
