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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

# The value types and the documented models' rules live in their own modules (below the schema
# interpreter, which this module's entry points use); they stay importable from here.
from airflow_provider_runcomfy.documented import (
    DOCUMENTED_EXTRAS,
    EDIT_MODEL_ID,
    EDIT_SIZES,
    SIZE_FIELD,
    VIDEO_MODEL_ID,
    DocumentedExtras,
    normalize_size,
)
from airflow_provider_runcomfy.exceptions import RunComfyInputError
from airflow_provider_runcomfy.limits import (
    MB,
    Bound,
    ImageRules,
    Limits,
    check_url,
    shorten,
    type_name,
)

if TYPE_CHECKING:
    from airflow_provider_runcomfy.schema import ModelSchema

__all__ = [
    "DOCUMENTED_EXTRAS",
    "EDIT_MODEL_ID",
    "EDIT_SIZES",
    "MB",
    "SIZE_FIELD",
    "VIDEO_MODEL_ID",
    "Bound",
    "DocumentedExtras",
    "ImageRules",
    "Limits",
    "check_model_id",
    "check_url",
    "image_inputs",
    "normalize_size",
    "spec_for",
    "validate_inputs",
]

# A model id is slash-separated segments of URL-safe characters, like ``owner/name/variant``.
_MODEL_ID = re.compile(r"[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)+")


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
            "model_id", f"must be a non-empty string like 'owner/model/variant', got {shorten(model_id)}"
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
            "inputs", f"must be a dict of the model's fields, got {shorten(inputs)} ({type_name(inputs)})"
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
