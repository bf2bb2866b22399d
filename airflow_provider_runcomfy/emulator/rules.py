"""The input rules of the models the emulator knows, as documented on RunComfy's model pages.

Two kinds of rules, checked at two moments, as the real service does:

- *Field rules* (types, required fields, counts, allowed values) are checked when a job is
  submitted. A violation answers HTTP 400 with ``{"error_message": "<field>: <rule>"}``. RunComfy
  documents no ``error_code`` for input errors, so the emulator sends none rather than invent one;
  clients must cope with an error body that only has a message.
- *Image rules* (format, file size, pixel sizes, aspect ratio) can only be checked once the input
  URL has been fetched, which happens when the job starts running. A violation ends the job
  ``failed`` with an error text naming ``image_urls[i]`` and the rule.

Media fields take an ``http(s)`` URL or a ``data:`` URI (``data:image/png;base64,...``), as RunComfy's
own partner nodes send them: the URI's form is checked at the submit, its payload is decoded when the
job runs and then checked like a fetched file (a broken payload fails the job).

Unknown input fields are **rejected** (HTTP 400, ``"<field>: unknown field"``): the real service's
behaviour is not documented, and a strict emulator catches a misspelt field (for example an ASCII
``x`` in ``width×height``) that would otherwise be silently ignored and cost a paid run with
default settings. The generic test model ``runcomfy/emulator/echo`` accepts any JSON object; numbers
in its ``queue_seconds`` and ``run_seconds`` inputs set that one job's timing.

File sizes use binary megabytes (1 MB = 1,048,576 bytes): the documentation does not say which, and
the emulator should not fail a file that the real service may accept; clients that pre-check sizes
should use the stricter decimal reading.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

from airflow_provider_runcomfy.documented import (
    EDIT_MODEL_ID,
    EDIT_SIZES,
    MAX_PROMPT_CHARS,
    VIDEO_MODEL_ID,
)
from airflow_provider_runcomfy.documented import SIZE_FIELD as SIZE_FIELD  # the emulator's name for it too

if TYPE_CHECKING:
    from collections.abc import Callable

#: One megabyte as the emulator reads the documented limits (binary, the lenient reading).
MB = 1024 * 1024

EDIT_MODEL = EDIT_MODEL_ID
VIDEO_MODEL = VIDEO_MODEL_ID
ECHO_MODEL = "runcomfy/emulator/echo"
SIZE_CHOICES = EDIT_SIZES


class InputError(ValueError):
    """An input field breaks a documented rule; ``str()`` is the ``"<field>: <rule>"`` message."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class ImageRuleError(ValueError):
    """A fetched input image breaks a documented rule; ``str()`` names ``image_urls[i]`` and the rule."""


@dataclass(frozen=True)
class ImageRules:
    """The documented limits of a model's input images (checked after fetching, when the job runs)."""

    #: Largest file size in bytes.
    max_bytes: int
    #: True when a file of exactly ``max_bytes`` is allowed ("≤ 15 MB"), False for "< 4.7 MB".
    max_bytes_inclusive: bool
    #: Largest width and height in pixels.
    max_side: int
    #: Each side must be strictly larger than this (``None``: no lower bound).
    min_side_exclusive: int | None
    #: Allowed width/height ratio range.
    min_aspect: float
    max_aspect: float
    #: True for a closed range ``[min, max]``, False for "strictly between".
    aspect_inclusive: bool
    formats: tuple[str, ...] = ("JPEG", "PNG")

    def read_limit(self) -> int:
        """How many bytes to read from an input URL: one more than allowed proves a file is too big."""
        return self.max_bytes + 1

    def check(self, data: bytes, index: int) -> tuple[int, int]:
        """Check one fetched file against the rules; returns its (width, height).

        Raises ``ImageRuleError`` whose text starts with ``image_urls[index]:`` and names the rule.
        """
        field = f"image_urls[{index}]"
        size = len(data)
        too_big = size > self.max_bytes if self.max_bytes_inclusive else size >= self.max_bytes
        if too_big:
            op = "at most" if self.max_bytes_inclusive else "less than"
            raise ImageRuleError(
                f"{field}: file is {size} bytes; it must be {op} {_mb(self.max_bytes)} MB"
                f" ({self.max_bytes} bytes)"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
                fmt, (width, height) = img.format, img.size
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
            raise ImageRuleError(f"{field}: not a JPEG or PNG image ({type(exc).__name__})") from exc
        if fmt not in self.formats:
            raise ImageRuleError(f"{field}: format {fmt} is not allowed; only JPEG or PNG")
        if width > self.max_side or height > self.max_side:
            raise ImageRuleError(
                f"{field}: {width}x{height} px; width and height must be at most {self.max_side}"
            )
        if self.min_side_exclusive is not None and min(width, height) <= self.min_side_exclusive:
            raise ImageRuleError(
                f"{field}: {width}x{height} px; each side must be greater than {self.min_side_exclusive}"
            )
        ratio = width / height
        if self.aspect_inclusive:
            bad = ratio < self.min_aspect or ratio > self.max_aspect
            span = f"within [{self.min_aspect:.4g}, {self.max_aspect:.4g}]"
        else:
            bad = ratio <= self.min_aspect or ratio >= self.max_aspect
            span = f"strictly between {self.min_aspect:.4g} and {self.max_aspect:.4g}"
        if bad:
            raise ImageRuleError(f"{field}: aspect ratio {width}/{height} = {ratio:.4g}; it must be {span}")
        return width, height


def _mb(n: int) -> str:
    return f"{n / MB:g}"


#: Dreamina 4.0 edit: "each ≤ 15 MB; width and height ≤ 4096; width/height ≥ 0.33 and ≤ 3" (the page's
#: values as written: its text says "[1/3, 3]" but its rule says 0.33, so a 331x1000 image passes).
EDIT_IMAGE_RULES = ImageRules(
    max_bytes=15 * MB,
    max_bytes_inclusive=True,
    max_side=4096,
    min_side_exclusive=None,
    min_aspect=0.33,
    max_aspect=3.0,
    aspect_inclusive=True,
)
#: Dreamina 3.0 Pro image to video: "< 4.7 MB; ≤ 4096 and each side > 320; strictly between 0.33 and 3".
VIDEO_IMAGE_RULES = ImageRules(
    max_bytes=int(4.7 * MB),
    max_bytes_inclusive=False,
    max_side=4096,
    min_side_exclusive=320,
    min_aspect=0.33,
    max_aspect=3.0,
    aspect_inclusive=False,
)


@dataclass(frozen=True)
class ModelSpec:
    """What the emulator knows about one model: how to validate, what it outputs, what it costs."""

    model_id: str
    #: ``edit``, ``video`` or ``echo``: selects how outputs are made.
    kind: str
    #: Checks the submitted inputs; returns them with defaults filled in, or raises ``InputError``.
    validate: Callable[[dict[str, Any]], dict[str, Any]]
    #: Rules for the fetched ``image_urls`` (``None``: the model fetches nothing).
    image_rules: ImageRules | None
    #: Price of a successful run in USD, from the validated inputs (made up: not documented).
    cost: Callable[[dict[str, Any]], float]
    #: The catalog entry of a model known only from the catalog (``emulator.catalog.CatalogEntry``).
    entry: Any = None


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _check_unknown(inputs: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in inputs:
        if key not in allowed:
            hint = ""
            looks_like_size = key.replace(" ", "").lower() in ("widthxheight", "width*height", "size")
            if looks_like_size and SIZE_FIELD in allowed:
                hint = f" (the size field is {SIZE_FIELD!r}, with the U+00D7 multiplication sign)"
            raise InputError(key, f"unknown field{hint}; allowed fields: {', '.join(allowed)}")


def _check_prompt(inputs: dict[str, Any]) -> str:
    if "prompt" not in inputs or inputs["prompt"] is None:
        raise InputError("prompt", "is required")
    prompt = inputs["prompt"]
    if not isinstance(prompt, str):
        raise InputError("prompt", f"must be a string, got {_type_name(prompt)}")
    if not prompt.strip():
        raise InputError("prompt", "must not be empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError("prompt", f"must be at most {MAX_PROMPT_CHARS} characters, got {len(prompt)}")
    return prompt


def check_media_value(field: str, value: str) -> None:
    """An ``http(s)`` URL with a host, or a base64 ``data:`` URI with a media type (read when it runs)."""
    if value[:5].lower() == "data:":
        header, comma, _ = value.partition(",")
        params = [p.strip().lower() for p in header[5:].split(";")]
        if not comma or "/" not in params[0] or "base64" not in params[1:]:
            raise InputError(field, "must be a data URI of the form data:<type>/<subtype>;base64,<payload>")
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(field, "must be a publicly reachable http(s) URL or a data: URI")


def _check_image_urls(inputs: dict[str, Any], min_count: int, max_count: int) -> list[str]:
    if "image_urls" not in inputs or inputs["image_urls"] is None:
        raise InputError("image_urls", "is required")
    urls = inputs["image_urls"]
    if not isinstance(urls, list):
        raise InputError("image_urls", f"must be a list of URLs, got {_type_name(urls)}")
    count = len(urls)
    if min_count == max_count and count != min_count:
        raise InputError("image_urls", f"must hold exactly {min_count} URL, got {count}")
    if not min_count <= count <= max_count:
        raise InputError("image_urls", f"must hold {min_count} to {max_count} URLs, got {count}")
    for i, url in enumerate(urls):
        if not isinstance(url, str):
            raise InputError(f"image_urls[{i}]", f"must be a URL string, got {_type_name(url)}")
        check_media_value(f"image_urls[{i}]", url)
    return list(urls)


def _check_int(inputs: dict[str, Any], field: str, default: int) -> int:
    if field not in inputs:
        return default
    value = inputs[field]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(field, f"must be an integer, got {_type_name(value)}")
    return value


def validate_edit(inputs: dict[str, Any]) -> dict[str, Any]:
    """Field rules of ``bytedance/dreamina-4-0/edit``; returns the inputs with defaults."""
    _check_unknown(inputs, ("image_urls", "prompt", SIZE_FIELD, "scale", "force_single"))
    urls = _check_image_urls(inputs, 1, 10)
    prompt = _check_prompt(inputs)
    size = inputs.get(SIZE_FIELD, "2048x2048(1:1)")
    if not isinstance(size, str):
        raise InputError(SIZE_FIELD, f"must be a string, got {_type_name(size)}")
    if size not in SIZE_CHOICES:
        raise InputError(SIZE_FIELD, f"must be one of {', '.join(SIZE_CHOICES)}; got {size!r}")
    scale = inputs.get("scale", 0.5)
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        raise InputError("scale", f"must be a number, got {_type_name(scale)}")
    if not math.isfinite(scale) or not 0.0 <= scale <= 1.0:
        raise InputError("scale", f"must be within [0, 1], got {scale}")
    force_single = inputs.get("force_single", False)
    if not isinstance(force_single, bool):
        raise InputError("force_single", f"must be a boolean, got {_type_name(force_single)}")
    return {
        "image_urls": urls,
        "prompt": prompt,
        SIZE_FIELD: size,
        "scale": float(scale),
        "force_single": force_single,
    }


def validate_video(inputs: dict[str, Any]) -> dict[str, Any]:
    """Field rules of ``bytedance/dreamina-3-0/pro/image-to-video``; returns the inputs with defaults."""
    _check_unknown(inputs, ("image_urls", "prompt", "seed", "frames"))
    urls = _check_image_urls(inputs, 1, 1)
    prompt = _check_prompt(inputs)
    seed = _check_int(inputs, "seed", -1)
    frames = _check_int(inputs, "frames", 121)
    if frames not in (121, 241):
        raise InputError("frames", f"must be 121 or 241, got {frames}")
    return {"image_urls": urls, "prompt": prompt, "seed": seed, "frames": frames}


def validate_echo(inputs: dict[str, Any]) -> dict[str, Any]:
    """The echo test model takes any JSON object."""
    return dict(inputs)


def edit_output_count(params: dict[str, Any]) -> int:
    """How many images the edit model makes: one per input (at most 4), or one with ``force_single``."""
    return 1 if params["force_single"] else min(4, len(params["image_urls"]))


MODELS: dict[str, ModelSpec] = {
    EDIT_MODEL: ModelSpec(
        EDIT_MODEL, "edit", validate_edit, EDIT_IMAGE_RULES, lambda p: round(0.03 * edit_output_count(p), 4)
    ),
    VIDEO_MODEL: ModelSpec(
        VIDEO_MODEL, "video", validate_video, VIDEO_IMAGE_RULES, lambda p: 0.25 if p["frames"] == 121 else 0.5
    ),
    ECHO_MODEL: ModelSpec(ECHO_MODEL, "echo", validate_echo, None, lambda p: 0.0),
}
