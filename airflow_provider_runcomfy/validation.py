"""
Pre-flight checks of a job's inputs against the documented rules of RunComfy's models.

A RunComfy submit is paid, and a job with a bad input may be charged before it fails. Every rule
RunComfy documents that can be checked without the network is checked here, before the submit: the
fields (types, required fields, counts, allowed values) by :func:`validate_inputs`, and the image
limits by :class:`ImageRules`, which :mod:`airflow_provider_runcomfy.images` applies to the headers
of the input images it fetches.

This module is imported while DAG files are parsed, so it uses only the standard library and the
provider's light modules (no httpx, no Pillow).

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
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_runcomfy.contract import (
    EDIT_MODEL_ID,
    EDIT_SIZES,
    MAX_PROMPT_CHARS,
    SIZE_FIELD,
    VIDEO_MODEL_ID,
)
from airflow_provider_runcomfy.exceptions import RunComfyInputError

#: One megabyte, in the stricter (decimal) reading of RunComfy's limits; see the module docstring.
MB = 10**6


#: The seeds accepted for the video model: -1 (random) and the unsigned 32-bit range ByteDance's
#: models use. RunComfy documents no range; refusing a seed costs nothing, a failed job may.
SEED_RANGE = (-1, 2**32 - 1)

# A model id is slash-separated segments of URL-safe characters, like ``owner/name/variant``.
_MODEL_ID = re.compile(r"[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)+")


def _type_name(value: Any) -> str:
    return type(value).__name__


def _shorten(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- image limits -----------------------------------------------------------------------------------


def _ratio(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    if value.numerator == 1:
        return f"1/{value.denominator}"
    return f"{float(value):g}"


def _show_ratio(value: Fraction, low: Fraction, high: Fraction) -> str:
    # Three digits read well, but 3.001 must not show as "3" next to a limit of 3.
    for digits in (3, 6):
        text = f"{float(value):.{digits}g}"
        if float(text) not in (float(low), float(high)):
            return text
    return f"exactly {_ratio(value)}"


@dataclass(frozen=True)
class ImageRules:
    """
    The documented limits of one model's input images, checked on each image's header before a submit.

    Ratios are :class:`~fractions.Fraction` so that a boundary such as 1/3 is compared exactly (a
    1000x3000 image is exactly 1/3, which a float comparison could get wrong).

    :param model: the model's name in messages, e.g. ``"Dreamina 4.0 edit"``.
    :param formats: the Pillow format names accepted (``"JPEG"``, ``"PNG"``).
    :param max_bytes: the documented file size limit in bytes.
    :param max_bytes_inclusive: whether a file of exactly ``max_bytes`` is accepted ("≤" vs "<").
    :param max_side: the largest width and height in pixels (inclusive, "≤ 4096").
    :param min_side_exclusive: each side must be larger than this many pixels ("> 320"); 0 for none.
    :param min_ratio: the smallest width/height ratio.
    :param max_ratio: the largest width/height ratio.
    :param ratio_inclusive: whether the ratio bounds themselves are accepted ("within" vs "strictly
        between").
    """

    model: str
    max_bytes: int
    min_ratio: Fraction
    max_ratio: Fraction
    ratio_inclusive: bool = True
    max_bytes_inclusive: bool = True
    formats: frozenset[str] = frozenset({"JPEG", "PNG"})
    max_side: int = 4096
    min_side_exclusive: int = 0

    @property
    def largest_file(self) -> int:
        """The largest accepted file size in bytes: a reader may stop one byte after it."""
        return self.max_bytes if self.max_bytes_inclusive else self.max_bytes - 1

    def describe_max_bytes(self) -> str:
        """The size limit in words, with the exact byte count because "MB" is ambiguous."""
        return f"{self.max_bytes / MB:g} MB ({self.max_bytes:,} bytes)"

    def check(self, field: str, fmt: str | None, width: int, height: int, size_bytes: int | None) -> None:
        """
        Raise :class:`RunComfyInputError` naming ``field`` for the first rule the image breaks.

        :param field: the input's name with its index, e.g. ``image_urls[0]``.
        :param fmt: Pillow's format name (``"PNG"``, ``"JPEG"``, ``"GIF"``...).
        :param width: the width in pixels.
        :param height: the height in pixels.
        :param size_bytes: the file size, or ``None`` when it is unknown.
        """
        self.check_format(field, fmt)
        if size_bytes is not None:
            self.check_size(field, size_bytes)
        self.check_dimensions(field, width, height)

    def check_format(self, field: str, fmt: str | None) -> None:
        """Refuse a format the model does not take (GIF, WEBP...)."""
        if fmt not in self.formats:
            allowed = " or ".join(sorted(self.formats))
            raise RunComfyInputError(
                field, f"{fmt or 'this format'} is not accepted by {self.model} ({allowed} only)"
            )

    def check_size(self, field: str, size_bytes: int) -> None:
        """Refuse a file over the size limit; usable as soon as ``Content-Length`` is known."""
        if size_bytes <= self.largest_file:
            return
        shown = _describe_size(size_bytes, self.max_bytes)
        if self.max_bytes_inclusive:
            rule = f"{shown} is larger than the {self.describe_max_bytes()} that {self.model} accepts"
        else:
            rule = f"{shown} is too large: {self.model} accepts files under {self.describe_max_bytes()}"
        raise RunComfyInputError(field, rule)

    def check_dimensions(self, field: str, width: int, height: int) -> None:
        """Refuse sides over ``max_side`` or not over ``min_side_exclusive``, then a bad aspect ratio."""
        px = f"{width}x{height} px"
        if width > self.max_side:
            raise RunComfyInputError(
                field, f"{px} is wider than the {self.max_side} px that {self.model} accepts"
            )
        if height > self.max_side:
            raise RunComfyInputError(
                field, f"{px} is taller than the {self.max_side} px that {self.model} accepts"
            )
        if width <= 0 or height <= 0:
            raise RunComfyInputError(field, f"{px} has no pixels")
        if min(width, height) <= self.min_side_exclusive:
            side = "narrow" if width <= height else "short"
            raise RunComfyInputError(
                field,
                f"{px} is too {side}: {self.model} needs each side to be more than "
                f"{self.min_side_exclusive} px",
            )
        ratio = Fraction(width, height)
        low, high = self.min_ratio, self.max_ratio
        inside = low <= ratio <= high if self.ratio_inclusive else low < ratio < high
        if not inside:
            bounds = (
                f"within [{_ratio(low)}, {_ratio(high)}]"
                if self.ratio_inclusive
                else f"strictly between {_ratio(low)} and {_ratio(high)}"
            )
            raise RunComfyInputError(
                field,
                f"{px} has an aspect ratio (width/height) of {_show_ratio(ratio, low, high)}; "
                f"{self.model} needs it {bounds}",
            )


def _describe_size(size_bytes: int, limit: int) -> str:
    # One decimal reads well ("16.2 MB") but can hide why a file just over the limit is refused
    # ("15.0 MB is larger than 15 MB"); show the exact count then.
    shown = f"{size_bytes / MB:.1f}"
    if float(shown) * MB <= limit:
        return f"{size_bytes:,} bytes"
    return f"{shown} MB"


# -- field checks -----------------------------------------------------------------------------------

#: A field check: takes the field's name and value, returns the value to send or raises.
Check = Callable[[str, Any], Any]


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
            field, f"must be an http(s) URL that RunComfy can fetch, got {_shorten(value)}"
        )
    return value


def check_prompt(field: str, value: Any) -> str:
    """A non-blank string of at most :data:`MAX_PROMPT_CHARS` characters."""
    if not isinstance(value, str):
        raise RunComfyInputError(field, f"must be a string, got {_shorten(value)} ({_type_name(value)})")
    if not value.strip():
        raise RunComfyInputError(field, "must not be empty")
    if len(value) > MAX_PROMPT_CHARS:
        raise RunComfyInputError(
            field, f"is {len(value)} characters long; at most {MAX_PROMPT_CHARS} are accepted"
        )
    return value


def check_bool(field: str, value: Any) -> bool:
    """A real ``bool``: the string ``"false"`` is truthy, so it is refused rather than guessed."""
    if not isinstance(value, bool):
        raise RunComfyInputError(
            field, f"must be true or false (a bool), got {_shorten(value)} ({_type_name(value)})"
        )
    return value


def number_between(low: float, high: float) -> Check:
    """A check for an int or float (not a bool) within ``[low, high]``."""

    def check(field: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RunComfyInputError(field, f"must be a number, got {_shorten(value)} ({_type_name(value)})")
        if not math.isfinite(value) or not low <= value <= high:
            raise RunComfyInputError(field, f"must be between {low:g} and {high:g}, got {value!r}")
        return value

    return check


def int_between(low: int, high: int) -> Check:
    """A check for an int (not a bool) within ``[low, high]``."""

    def check(field: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RunComfyInputError(
                field, f"must be an integer, got {_shorten(value)} ({_type_name(value)})"
            )
        if not low <= value <= high:
            raise RunComfyInputError(field, f"must be between {low} and {high}, got {value}")
        return value

    return check


def one_of_ints(allowed: Mapping[int, str]) -> Check:
    """A check for an int (not a bool) among ``allowed`` (value -> meaning, for the message)."""
    choices = " or ".join(f"{value} ({meaning})" for value, meaning in allowed.items())

    def check(field: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RunComfyInputError(
                field, f"must be an integer, {choices}; got {_shorten(value)} ({_type_name(value)})"
            )
        if value not in allowed:
            raise RunComfyInputError(field, f"must be {choices}, got {value}")
        return value

    return check


def check_size_label(field: str, value: Any) -> str:
    """One of :data:`EDIT_SIZES`; a bare ``2048x2048`` is turned into its documented label."""
    if not isinstance(value, str):
        raise RunComfyInputError(field, f"must be a string, got {_shorten(value)} ({_type_name(value)})")
    return _normalize_size(field, value)


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


def _normalize_size(field: str, value: str) -> str:
    label = _SIZES_BY_KEY.get(_size_key(value))
    if label is None:
        raise RunComfyInputError(
            field, f"{value!r} is not a documented size; use one of: {', '.join(EDIT_SIZES)}"
        )
    return label


# -- model specs ------------------------------------------------------------------------------------


def _near_miss_key(key: str) -> str:
    # ``Prompt``, ``image-urls``, ``widthxheight`` and ``width x height`` all collapse onto the
    # documented key they were probably meant to be.
    return re.sub(r"[^a-z0-9]", "", key.lower().replace("\u00d7", "x"))


@dataclass(frozen=True)
class ModelSpec:
    """
    The documented input fields of one RunComfy model.

    :param model_id: RunComfy's model id.
    :param label: the model's name in messages.
    :param image_rules: the limits of its input images.
    :param min_images: the fewest ``image_urls``.
    :param max_images: the most ``image_urls``.
    :param options: the optional documented fields, each with its check.
    """

    model_id: str
    label: str
    image_rules: ImageRules
    min_images: int
    max_images: int
    options: tuple[tuple[str, Check], ...] = field(default=())

    #: The field holding the input image URLs (the same name for both models).
    image_field = "image_urls"
    #: The field holding the prompt.
    prompt_field = "prompt"

    @property
    def documented_fields(self) -> tuple[str, ...]:
        """Every field the model's page documents."""
        return (self.image_field, self.prompt_field, *(name for name, _ in self.options))

    def validate(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """
        Check every documented field rule and return the inputs to send.

        Valid inputs come back unchanged, with two exceptions that only make them say what the user
        meant: a bare size (``"2048x2048"``) becomes its documented label, and an optional field set
        to ``None`` is left out so the model's default applies. Unknown keys are kept.

        :raises RunComfyInputError: naming the first field that breaks a rule.
        """
        self._refuse_near_misses(inputs)
        result = dict(inputs)
        result[self.image_field] = self._check_images(inputs.get(self.image_field))
        if inputs.get(self.prompt_field) is None:
            raise RunComfyInputError(
                self.prompt_field, f"is required (a text of at most {MAX_PROMPT_CHARS} characters)"
            )
        result[self.prompt_field] = check_prompt(self.prompt_field, inputs[self.prompt_field])
        for name, check in self.options:
            if name not in inputs:
                continue
            if inputs[name] is None:
                del result[name]
            else:
                result[name] = check(name, inputs[name])
        return result

    def image_urls(self, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The ``(field[index], url)`` pairs of the input images, for the image checks."""
        urls = inputs.get(self.image_field)
        if not isinstance(urls, list | tuple):
            return []
        return [(f"{self.image_field}[{i}]", url) for i, url in enumerate(urls) if isinstance(url, str)]

    def _refuse_near_misses(self, inputs: Mapping[str, Any]) -> None:
        documented = {_near_miss_key(name): name for name in self.documented_fields}
        for key in inputs:
            meant = documented.get(_near_miss_key(key))
            if meant is not None and meant != key:
                hint = " (with the × sign, U+00D7)" if meant == SIZE_FIELD else ""
                raise RunComfyInputError(
                    key,
                    f"is not a field of {self.label}; did you mean {meant!r}{hint}? RunComfy would "
                    "likely ignore it and run with the default",
                )

    def _check_images(self, value: Any) -> list[str]:
        name = self.image_field
        count = (
            f"exactly {self.min_images} image URL"
            if self.min_images == self.max_images
            else f"{self.min_images} to {self.max_images} image URLs"
        )
        if value is None:
            raise RunComfyInputError(name, f"is required: a list of {count}")
        if not isinstance(value, list | tuple):
            raise RunComfyInputError(
                name, f"must be a list of {count}, got {_shorten(value)} ({_type_name(value)})"
            )
        if not self.min_images <= len(value) <= self.max_images:
            raise RunComfyInputError(name, f"{self.label} takes {count}, got {len(value)}")
        return [check_url(f"{name}[{i}]", url) for i, url in enumerate(value)]


EDIT_SPEC = ModelSpec(
    model_id=EDIT_MODEL_ID,
    label="Dreamina 4.0 edit",
    image_rules=ImageRules(
        model="Dreamina 4.0 edit",
        max_bytes=15 * MB,
        max_bytes_inclusive=True,
        min_ratio=Fraction(1, 3),
        max_ratio=Fraction(3),
        ratio_inclusive=True,
    ),
    min_images=1,
    max_images=10,
    options=(
        (SIZE_FIELD, check_size_label),
        ("scale", number_between(0, 1)),
        ("force_single", check_bool),
    ),
)

VIDEO_SPEC = ModelSpec(
    model_id=VIDEO_MODEL_ID,
    label="Dreamina 3.0 Pro image to video",
    image_rules=ImageRules(
        model="Dreamina 3.0 Pro image to video",
        max_bytes=4_700_000,
        max_bytes_inclusive=False,
        min_side_exclusive=320,
        min_ratio=Fraction(33, 100),
        max_ratio=Fraction(3),
        ratio_inclusive=False,
    ),
    min_images=1,
    max_images=1,
    options=(
        ("seed", int_between(*SEED_RANGE)),
        ("frames", one_of_ints({121: "about 5 s", 241: "about 10 s"})),
    ),
)

#: The models whose documented rules are checked, by model id.
MODELS: dict[str, ModelSpec] = {spec.model_id: spec for spec in (EDIT_SPEC, VIDEO_SPEC)}


def spec_for(model_id: str) -> ModelSpec | None:
    """The spec of a known model (surrounding slashes ignored, as the hook does), else ``None``."""
    if not isinstance(model_id, str):
        return None
    return MODELS.get(model_id.strip("/"))


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


def validate_inputs(model_id: str, inputs: Any) -> dict[str, Any]:
    """
    Check a job's inputs before it is submitted, and return the inputs to send.

    Every model: ``model_id`` must look like a model id, ``inputs`` must be a mapping with string
    keys and JSON values. Known models (:data:`MODELS`) are then checked against their documented
    field rules; other models go through as they are, since their rules are not known here.

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
    spec = spec_for(model_id)
    result = spec.validate(inputs) if spec is not None else dict(inputs)
    _check_json(result)
    return result


def image_inputs(model_id: str, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ``(field[index], url)`` pairs to probe before a submit; empty for an unknown model."""
    spec = spec_for(model_id)
    if spec is None or not isinstance(inputs, Mapping):
        return []
    return spec.image_urls(inputs)
