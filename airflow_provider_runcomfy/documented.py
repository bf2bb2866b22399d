"""
What is specific to the two documented models, in one place: their ids, the edit model's sizes, the
longest prompt, and the facts of their pages that RunComfy's schema form has no words for (extra
input rules, the video's length in frames and the edit model's set of outputs, which the cost estimate
reads), and how their operators' typed parameters map to the models' inputs (:func:`edit_inputs`,
:func:`video_inputs`).

Everything else about them is data: their input schemas ship verbatim from RunComfy's model pages
(``schemas/*.json``) and are read by the same interpreter as any model's.

Importable without Airflow (the emulator reads the same values: standard library and Pillow only,
any Airflow version), so the provider's exceptions are imported where they are raised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

EDIT_MODEL_ID = "bytedance/dreamina-4-0/edit"
VIDEO_MODEL_ID = "bytedance/dreamina-3-0/pro/image-to-video"

#: The edit model's output size field: its key holds the multiplication sign (U+00D7), not an ``x``.
SIZE_FIELD = "width\u00d7height"

#: The output sizes Dreamina 4.0 edit documents, spelled exactly as the API expects them.
EDIT_SIZES: tuple[str, ...] = (
    "1024x1024(1:1)",
    "2048x2048(1:1)",
    "2304x1728(4:3)",
    "2496x1664(3:2)",
    "2560x1440(16:9)",
    "3024x1296(21:9)",
    "4096x4096(1:1)",
    "4694x3520(4:3)",
    "4992x3328(3:2)",
    "5404x3040(16:9)",
    "6198x2656(21:9)",
)

#: The longest prompt either model accepts, in characters.
MAX_PROMPT_CHARS = 800


# -- the edit model's output size --------------------------------------------------------------------


def normalize_size(size: str) -> str:
    """
    Turn a size into the label the edit model documents: ``"2048x2048"`` -> ``"2048x2048(1:1)"``.

    Accepts the label itself, the bare ``WIDTHxHEIGHT``, an ``×`` instead of ``x``, any case and
    spaces, because the labels are awkward to type and a near miss would otherwise be sent as is.

    :raises RunComfyInputError: naming ``size`` and listing the documented sizes.
    """
    from airflow_provider_runcomfy.exceptions import RunComfyInputError
    from airflow_provider_runcomfy.limits import shorten, type_name

    if not isinstance(size, str):
        raise RunComfyInputError("size", f"must be a string, got {shorten(size)} ({type_name(size)})")
    return _size_label("size", size)


def _size_key(text: str) -> str:
    return re.sub(r"\s+", "", text).lower().replace("\u00d7", "x")


_SIZES_BY_KEY: dict[str, str] = {
    **{_size_key(label.split("(")[0]): label for label in EDIT_SIZES},
    **{_size_key(label): label for label in EDIT_SIZES},
}


def _normalize_size(field: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value  # the schema's type check names the field
    return _size_label(field, value)


def _size_label(field: str, value: str) -> str:
    """The documented label of a size written in any spacing, case or multiplication sign."""
    from airflow_provider_runcomfy.exceptions import RunComfyInputError

    label = _SIZES_BY_KEY.get(_size_key(value))
    if label is None:
        raise RunComfyInputError(
            field, f"{value!r} is not a documented size; use one of: {', '.join(EDIT_SIZES)}"
        )
    return label


# -- the rules of the pages that the schema form cannot state ------------------------------------------


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
    :param frame_seconds: ``(field, {frames: seconds})`` when the page gives the output's length in
        frames, with the seconds it documents for each value (the cost estimate prices seconds).
    :param single_output: ``(field, value)`` that makes a model which may return a set return exactly
        one output (the cost estimate says "at least" without it).
    """

    label: str
    image_formats: frozenset[str] = frozenset({"JPEG", "PNG"})
    non_blank: tuple[str, ...] = ("prompt",)
    normalizers: tuple[tuple[str, Callable[[str, Any], Any]], ...] = field(default=())
    frame_seconds: tuple[str, Mapping[int, int]] | None = None
    single_output: tuple[str, Any] | None = None


#: The extras of the two documented models, by model id; their schemas ship as package data.
DOCUMENTED_EXTRAS: dict[str, DocumentedExtras] = {
    EDIT_MODEL_ID: DocumentedExtras(
        label="Dreamina 4.0 edit",
        normalizers=((SIZE_FIELD, _normalize_size),),
        single_output=("force_single", True),
    ),
    VIDEO_MODEL_ID: DocumentedExtras(
        label="Dreamina 3.0 Pro image to video",
        frame_seconds=("frames", MappingProxyType({121: 5, 241: 10})),
    ),
}


# -- the operators' parameters as the models' inputs -------------------------------------------------


def edit_inputs(
    image_urls: Any,
    prompt: str,
    *,
    size: str | None = None,
    scale: float | None = None,
    force_single: bool | None = None,
) -> dict[str, Any]:
    """The edit model's documented inputs from its operator's fields; options left ``None`` are not sent."""
    inputs: dict[str, Any] = {"image_urls": _url_list(image_urls, "image_urls"), "prompt": prompt}
    if size is not None:
        inputs[SIZE_FIELD] = normalize_size(size)
    if scale is not None:
        inputs["scale"] = scale
    if force_single is not None:
        inputs["force_single"] = force_single
    return inputs


def video_inputs(
    image_url: Any, prompt: str, *, seed: int | None = None, frames: int | None = None
) -> dict[str, Any]:
    """The video model's inputs: ``image_urls=[image_url]`` as it documents; ``None`` options are not sent."""
    from airflow_provider_runcomfy.exceptions import RunComfyInputError

    if not isinstance(image_url, str):
        raise RunComfyInputError("image_url", f"must be one URL string, got {type(image_url).__name__}")
    inputs: dict[str, Any] = {"image_urls": [image_url], "prompt": prompt}
    if seed is not None:
        inputs["seed"] = seed
    if frames is not None:
        inputs["frames"] = frames
    return inputs


def _url_list(value: Any, field: str) -> list[Any]:
    """Accept a list, a tuple or an XCom sequence of URLs; a lone string is a mistake worth naming."""
    from airflow_provider_runcomfy.exceptions import RunComfyInputError

    if isinstance(value, str):
        raise RunComfyInputError(field, "must be a list of URLs, got a single string (wrap it in a list)")
    try:
        return list(value)
    except TypeError:
        raise RunComfyInputError(field, f"must be a list of URLs, got {type(value).__name__}") from None
