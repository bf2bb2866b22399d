"""
The value types of input limits, and the leaf checks every other module builds on.

A model's schema states limits (file size, width, height, aspect ratio, formats) that the schema
interpreter (:mod:`airflow_provider_runcomfy.schema`) reads into an :class:`ImageRules`, and that the
image probes (:mod:`airflow_provider_runcomfy.images`) and the inline-file checks
(:mod:`airflow_provider_runcomfy.media_sources`) apply. They live here, below all of those, so that
none of them imports another to reach a value type: this module imports nothing of the provider but
its exceptions.

**MB means 10**6 bytes**, the stricter reading of RunComfy's limits (see
:mod:`airflow_provider_runcomfy.validation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_runcomfy.exceptions import RunComfyInputError, redact_data_uris

if TYPE_CHECKING:
    from collections.abc import Callable

#: One megabyte, in the stricter (decimal) reading of RunComfy's limits.
MB = 10**6


def type_name(value: Any) -> str:
    return type(value).__name__


def shorten(value: Any, limit: int = 80) -> str:
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
        raise RunComfyInputError(field, f"must be a URL string, got {shorten(value)} ({type_name(value)})")
    if not value.strip():
        raise RunComfyInputError(field, "must be a URL, got an empty string")
    if value != value.strip() or any(ch.isspace() for ch in value):
        raise RunComfyInputError(field, f"must be a URL without spaces, got {shorten(value)}")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise RunComfyInputError(
            field,
            "must be an http(s) URL that RunComfy can fetch, a data: URI, or a local or object-storage "
            f"file (an absolute path, file://, s3://, gs://...), got {shorten(value)}",
        )
    return value
