"""The emulator's model catalog: ``GET /v1/models``, ``/v1/models/categories``, ``/v1/models/{model_id}``.

RunComfy's clients read these endpoints (the CLI's ``models`` commands, the partner nodes' price and
schema look-ups); the emulator serves the same shapes:

- the two documented Dreamina models, with the input schemas the provider ships
  (``airflow_provider_runcomfy/schemas``, RunComfy's model pages verbatim), so the emulator and the
  provider read one copy;
- two demo models known only from the catalog (``runcomfy/emulator/demo-image`` priced per output,
  ``runcomfy/emulator/demo-video`` priced per second), whose schemas use every rule kind, so tests
  can prove that pre-flight refuses bad inputs of a model the provider has no file for;
- models a test adds with its own schema (``RunComfyEmulator.add_model``).

Schemas are served in either form RunComfy publishes (the ``schema_form`` knob): ``"page"``, as
written on the model pages (the media format on an array's ``items``, some ``validation_value``s as
strings), the default, so the suite meets the form a user meets; or ``"catalog"``, as the partner
nodes' catalog writes them (``"format": "image_uris"`` on the field, ``number`` for ``float``,
numbers as numbers); see :func:`as_catalog_form`.

**Every price here is the emulator's own, not RunComfy's** (RunComfy does not document prices); each
entry's ``pricing_note`` says so.

Submits to catalog-only models are checked against their schema the way the real service would
refuse them: field rules (required, types with RunComfy's ``float``, enums, bounds, lengths, item
counts, media URLs) when the job is submitted (HTTP 400), and the ``validations`` of media fields
(file size, pixel sizes, aspect ratio) on the fetched images when the job runs (the job fails). Fields
the schema does not name are refused, like the emulator's documented models. The check is written
here with the standard library (the emulator must not need ``jsonschema``); it is deliberately
small, and the provider's own interpreter (``airflow_provider_runcomfy.schema``) is the thorough one.
"""

from __future__ import annotations

import copy
import io
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError

from airflow_provider_runcomfy.catalog import bundled_model
from airflow_provider_runcomfy.documented import EDIT_MODEL_ID, VIDEO_MODEL_ID

from .rules import ImageRuleError, InputError, ModelSpec, check_media_value

#: The note every emulator price carries.
EMULATOR_PRICE_NOTE = "The RunComfy emulator's own price, for tests; not RunComfy's price."
#: The demo models known only from the catalog.
DEMO_IMAGE_MODEL = "runcomfy/emulator/demo-image"
DEMO_VIDEO_MODEL = "runcomfy/emulator/demo-video"
#: Input fields that say how many outputs a job makes, and how long a video is, in the demo models.
COUNT_FIELDS = ("num_images", "num_outputs", "number_of_images", "num_videos")
DURATION_FIELDS = ("duration", "duration_seconds", "seconds")
#: Media formats of RunComfy's schemas; ``*_uris`` are lists.
MEDIA_FORMATS = frozenset({"image_uri", "image_uris", "video_uri", "video_uris", "audio_uri", "audio_uris"})
#: The two forms a schema is served in (see the module docstring).
SCHEMA_FORMS = ("page", "catalog")
_RULE = re.compile(r"^(file_size_mb|width_pixels|height_pixels|width/height)\s*(<=|>=|≤|≥|<|>)$")
_TYPE_NAMES = {"string": str, "boolean": bool, "array": list, "object": dict}
#: A byte in the emulator's reading of ``file_size_mb`` (binary, the lenient reading, as in rules.py).
MB = 1024 * 1024


@dataclass
class CatalogEntry:
    """One model in the emulator's catalog, with its price and input schema."""

    model_id: str
    display_name: str
    categories: list[str]
    base_price_usd: float
    price_unit: str
    input_schema: dict[str, Any]
    pricing_note: str = EMULATOR_PRICE_NOTE
    kind: str = "model"

    def to_dict(self, include_schema: bool = True, form: str = "page") -> dict[str, Any]:
        """The catalog answer for this model, its schema in ``form`` (``page`` as written, or ``catalog``)."""
        body: dict[str, Any] = {
            "model_id": self.model_id,
            "display_name": self.display_name,
            "kind": self.kind,
            "categories": list(self.categories),
            "base_price_usd": self.base_price_usd,
            "price_unit": self.price_unit,
            "pricing_note": self.pricing_note,
        }
        if include_schema:
            body["input_schema"] = (
                as_catalog_form(self.input_schema) if form == "catalog" else self.input_schema
            )
        return body

    @property
    def makes_video(self) -> bool:
        """Whether jobs of this model answer with a video (by its categories, as RunComfy's clients tell)."""
        return any(c.endswith("video") for c in self.categories)

    def units(self, params: dict[str, Any]) -> float:
        """How many priced units a job with these (validated) inputs uses."""
        props = self.input_schema.get("properties") or {}
        if self.price_unit == "second":
            for name in DURATION_FIELDS:
                if name in props:
                    value = params.get(name, props[name].get("default"))
                    try:
                        return float(value)
                    except (TypeError, ValueError):
                        return 0.0
            return 0.0
        return float(self.output_count(params))

    def output_count(self, params: dict[str, Any]) -> int:
        """How many outputs a job makes: its count field, else one."""
        props = self.input_schema.get("properties") or {}
        for name in COUNT_FIELDS:
            if name in props:
                value = params.get(name, props[name].get("default", 1))
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value
        return 1

    def cost(self, params: dict[str, Any]) -> float:
        """The emulator's price of a successful job (reported with ``include_cost=true``)."""
        return round(self.base_price_usd * self.units(params), 6)

    def spec(self) -> ModelSpec:
        """The submit-time view the server and the job runner use."""
        return ModelSpec(
            self.model_id,
            "catalog",
            lambda inputs: check_inputs(self.input_schema, inputs),
            None,
            self.cost,
            entry=self,
        )


def demo_image_schema() -> dict[str, Any]:
    """A schema that uses every rule kind of RunComfy's form, for tests."""
    ratio_error = "The aspect ratio must be between 1:4 and 4:1."
    return {
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "maxLength": 200, "description": "What to make."},
            "style": {"type": "string", "enum": ["photo", "anime", "sketch"], "default": "photo"},
            "guidance": {"type": "float", "minimum": 1, "maximum": 10, "default": 3.5},
            "num_images": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
            "seed": {"type": "integer", "minimum": 0, "maximum": 2147483647},
            "enhance": {"type": "boolean", "default": False},
            "image_urls": {
                "type": "array",
                "format": "image_uris",
                "minItems": 1,
                "maxItems": 3,
                "validations": [
                    {
                        "validation_rule": "file_size_mb<=",
                        "validation_value": 8,
                        "validation_error": "Each image must be 8 MB or smaller.",
                    },
                    {
                        "validation_rule": "width_pixels<=",
                        "validation_value": 2048,
                        "validation_error": "Images may be at most 2048 pixels wide.",
                    },
                    {
                        "validation_rule": "height_pixels<=",
                        "validation_value": 2048,
                        "validation_error": "Images may be at most 2048 pixels high.",
                    },
                    {
                        "validation_rule": "width_pixels>",
                        "validation_value": 64,
                        "validation_error": "Images must be more than 64 pixels wide.",
                    },
                    {
                        "validation_rule": "height_pixels>",
                        "validation_value": 64,
                        "validation_error": "Images must be more than 64 pixels high.",
                    },
                    {
                        "validation_rule": "width/height≥",
                        "validation_value": 0.25,
                        "validation_error": ratio_error,
                    },
                    {
                        "validation_rule": "width/height≤",
                        "validation_value": 4,
                        "validation_error": ratio_error,
                    },
                    {
                        "validation_rule": "bit_depth<=",
                        "validation_value": 8,
                        "validation_error": "A rule the provider does not know: logged and skipped.",
                    },
                ],
            },
            "mask_url": {
                "type": "string",
                "format": "image_uri",
                "validations": [
                    {
                        "validation_rule": "file_size_mb<",
                        "validation_value": 2,
                        "validation_error": "The mask must be smaller than 2 MB.",
                    },
                    {
                        "validation_rule": "width/height>",
                        "validation_value": 0.5,
                        "validation_error": "The mask's aspect ratio must be between 1:2 and 2:1, exclusive.",
                    },
                    {
                        "validation_rule": "width/height<",
                        "validation_value": 2,
                        "validation_error": "The mask's aspect ratio must be between 1:2 and 2:1, exclusive.",
                    },
                ],
            },
        },
        "required": ["prompt", "image_urls"],
    }


def demo_video_schema() -> dict[str, Any]:
    """A per-second model: one image, a duration."""
    return {
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "maxLength": 500},
            "image_url": {
                "type": "string",
                "format": "image_uri",
                "validations": [
                    {
                        "validation_rule": "width_pixels<=",
                        "validation_value": 4096,
                        "validation_error": "The image may be at most 4096 pixels wide.",
                    },
                ],
            },
            "duration": {"type": "integer", "minimum": 2, "maximum": 10, "default": 5},
        },
        "required": ["prompt", "image_url"],
    }


def builtin_entries() -> list[CatalogEntry]:
    """The documented models (schemas from the provider's files) and the demo models."""
    entries = []
    for model_id, price, unit in ((EDIT_MODEL_ID, 0.03, "output"), (VIDEO_MODEL_ID, 0.05, "second")):
        info = bundled_model(model_id)
        if info is None or info.input_schema is None:  # pragma: no cover - the files ship with the package
            raise RuntimeError(f"the schema file of {model_id} is missing from the package")
        entries.append(
            CatalogEntry(
                model_id=model_id,
                display_name=info.display_name or model_id,
                categories=list(info.categories),
                base_price_usd=price,
                price_unit=unit,
                input_schema=info.input_schema,
            )
        )
    entries.append(
        CatalogEntry(
            DEMO_IMAGE_MODEL,
            "Emulator demo image model",
            ["image-to-image"],
            0.02,
            "output",
            demo_image_schema(),
        )
    )
    entries.append(
        CatalogEntry(
            DEMO_VIDEO_MODEL,
            "Emulator demo video model",
            ["image-to-video"],
            0.1,
            "second",
            demo_video_schema(),
        )
    )
    return entries


class Catalog:
    """The emulator's catalog: builtin entries plus those added by tests; answers the three endpoints."""

    def __init__(self) -> None:
        self._entries: dict[str, CatalogEntry] = {e.model_id: e for e in builtin_entries()}

    def add(self, entry: CatalogEntry) -> None:
        """Add or replace a model (checks its schema's outline first)."""
        if not isinstance(entry.input_schema, dict) or not isinstance(
            entry.input_schema.get("properties", {}), dict
        ):
            raise ValueError("input_schema must be a JSON object with a 'properties' object")
        if entry.price_unit not in ("output", "second"):
            raise ValueError("price_unit must be 'output' or 'second'")
        self._entries[entry.model_id.strip("/")] = entry

    def remove(self, model_id: str) -> bool:
        """Forget a model; ``False`` when it was not there."""
        return self._entries.pop(model_id.strip("/"), None) is not None

    def get(self, model_id: str) -> CatalogEntry | None:
        """The entry of ``model_id``, or ``None``."""
        return self._entries.get(model_id.strip("/"))

    def catalog_spec(self, model_id: str) -> ModelSpec | None:
        """The submit spec of a model known only from the catalog (documented models have their own)."""
        if model_id in (EDIT_MODEL_ID, VIDEO_MODEL_ID):
            return None
        entry = self.get(model_id)
        return entry.spec() if entry is not None else None

    def categories(self) -> list[str]:
        """Every category, sorted."""
        return sorted({c for e in self._entries.values() for c in e.categories})

    def page(self, query: dict[str, str], form: str = "page") -> dict[str, Any]:
        """``GET /v1/models``: filter by ``search``, ``category`` and ``kind``, then page.

        Raises ``ValueError`` for a bad ``limit`` or ``offset``.
        """
        limit = int(query.get("limit", "50"))
        offset = int(query.get("offset", "0"))
        if not 1 <= limit <= 1000 or offset < 0:
            raise ValueError("limit must be 1 to 1000 and offset >= 0")
        words = query.get("search", "").strip().lower()
        category = query.get("category", "").strip()
        kind = query.get("kind", "").strip()
        include_schema = query.get("include_schema", "").lower() in ("1", "true", "yes")
        found = [
            e
            for e in sorted(self._entries.values(), key=lambda e: e.model_id)
            if (not words or words in e.model_id.lower() or words in e.display_name.lower())
            and (not category or category in e.categories)
            and (not kind or kind == e.kind)
        ]
        return {
            "models": [e.to_dict(include_schema, form) for e in found[offset : offset + limit]],
            "total": len(found),
        }


# -- the submit-time check ----------------------------------------------------------------------------


def _type_ok(kind: Any, value: Any) -> bool:
    if kind in ("number", "float"):
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    expected = _TYPE_NAMES.get(kind)
    return expected is None or isinstance(value, expected)


def _check_url(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise InputError(name, "must be a URL string")
    check_media_value(name, value)


def media_format(prop: Any) -> str | None:
    """A field's media format in either form: on the field (``image_uris``) or on its ``items``."""
    if not isinstance(prop, dict):
        return None
    fmt = prop.get("format")
    if fmt in MEDIA_FORMATS:
        return str(fmt)
    items = prop.get("items")
    inner = items.get("format") if isinstance(items, dict) else None
    return f"{inner}s" if inner in ("image_uri", "video_uri", "audio_uri") else None


def _as_number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    return value


def as_catalog_form(schema: dict[str, Any]) -> dict[str, Any]:
    """The partner nodes' catalog form of a page-form schema: formats on fields, ``number``, numbers."""
    out = copy.deepcopy(schema)
    for prop in (out.get("properties") or {}).values():
        if not isinstance(prop, dict):
            continue
        fmt = media_format(prop)
        if fmt is not None and prop.get("type") == "array":
            prop["format"] = fmt
            if isinstance(prop.get("items"), dict):
                prop["items"].pop("format", None)
        if prop.get("type") == "float":
            prop["type"] = "number"
        for rule in prop.get("validations") or ():
            if isinstance(rule, dict) and "validation_value" in rule:
                rule["validation_value"] = _as_number(rule["validation_value"])
    return out


def check_inputs(schema: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """Check a submit against a model's schema; return the inputs with the schema's defaults filled in.

    Raises ``InputError`` naming the field (``image_urls[2]`` for an item) and the rule.
    """
    props: dict[str, Any] = schema.get("properties") or {}
    for key in inputs:
        if key not in props:
            raise InputError(key, f"unknown field; allowed fields: {', '.join(props)}")
    for name in schema.get("required") or ():
        if inputs.get(name) is None:
            raise InputError(name, "is required")
    params: dict[str, Any] = {}
    for name, prop in props.items():
        if name not in inputs or inputs[name] is None:
            if "default" in prop:
                params[name] = prop["default"]
            continue
        value = inputs[name]
        kind = prop.get("type")
        if not _type_ok(kind, value):
            raise InputError(name, f"must be of type {kind}")
        if "enum" in prop and value not in prop["enum"]:
            raise InputError(name, f"must be one of {prop['enum']}, got {value!r}")
        if "minimum" in prop and value < prop["minimum"]:
            raise InputError(name, f"must be at least {prop['minimum']}, got {value}")
        if "maximum" in prop and value > prop["maximum"]:
            raise InputError(name, f"must be at most {prop['maximum']}, got {value}")
        if isinstance(value, str) and "maxLength" in prop and len(value) > prop["maxLength"]:
            raise InputError(name, f"must be at most {prop['maxLength']} characters, got {len(value)}")
        if isinstance(value, list):
            if "minItems" in prop and len(value) < prop["minItems"]:
                raise InputError(name, f"must hold at least {prop['minItems']} items, got {len(value)}")
            if "maxItems" in prop and len(value) > prop["maxItems"]:
                raise InputError(name, f"must hold at most {prop['maxItems']} items, got {len(value)}")
        fmt = media_format(prop)
        if fmt is not None:
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                _check_url(f"{name}[{i}]" if isinstance(value, list) else name, item)
        params[name] = value
    return params


def media_inputs(schema: dict[str, Any], params: dict[str, Any]) -> list[tuple[str, str, list[Any]]]:
    """The image URLs of a job with their field names and the field's ``validations``."""
    found: list[tuple[str, str, list[Any]]] = []
    for name, prop in (schema.get("properties") or {}).items():
        if media_format(prop) not in ("image_uri", "image_uris") or name not in params:
            continue
        value = params[name]
        validations = prop.get("validations") or []
        if isinstance(value, list):
            found.extend((f"{name}[{i}]", url, validations) for i, url in enumerate(value))
        else:
            found.append((name, value, validations))
    return found


def check_image(data: bytes, field_name: str, validations: list[Any]) -> None:
    """Apply a media field's ``validations`` to a fetched image, as the real service does when it runs.

    Raises ``ImageRuleError`` with the field, the measured value and the schema's ``validation_error``.
    Rules the emulator does not know are skipped, like the provider does.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise ImageRuleError(f"{field_name}: not an image ({type(exc).__name__})") from exc
    measured = {
        "file_size_mb": len(data) / MB,
        "width_pixels": float(width),
        "height_pixels": float(height),
        "width/height": width / height,
    }
    for rule in validations:
        if not isinstance(rule, dict):
            continue
        match = _RULE.match(str(rule.get("validation_rule", "")).strip())
        limit = _as_number(rule.get("validation_value"))  # compared as written: "0.33" is 0.33
        if match is None or isinstance(limit, bool) or not isinstance(limit, int | float):
            continue
        quantity, op = match.groups()
        value = measured[quantity]
        ok = {
            "<": value < limit,
            "<=": value <= limit,
            "≤": value <= limit,
            ">": value > limit,
            ">=": value >= limit,
            "≥": value >= limit,
        }[op]
        if not ok:
            text = rule.get("validation_error") or f"{quantity} must be {op} {limit}"
            raise ImageRuleError(f"{field_name}: {quantity} is {value:g}; {text}")


@dataclass
class AddedModel:
    """What ``RunComfyEmulator.add_model`` and ``POST /_emulator/models`` take."""

    model_id: str
    input_schema: dict[str, Any]
    base_price_usd: float = 0.01
    price_unit: str = "output"
    display_name: str | None = None
    categories: list[str] = field(default_factory=lambda: ["text-to-image"])

    @classmethod
    def from_dict(cls, data: Any) -> AddedModel:
        """Read a JSON body; ``ValueError`` when it is not a model."""
        if not isinstance(data, dict) or not isinstance(data.get("model_id"), str):
            raise ValueError("a model needs at least model_id and input_schema")
        known = {"model_id", "input_schema", "base_price_usd", "price_unit", "display_name", "categories"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model keys: {', '.join(sorted(unknown))}")
        return cls(**data)

    def entry(self) -> CatalogEntry:
        """The catalog entry, marked as priced by the emulator."""
        price = self.base_price_usd
        if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
            raise ValueError("base_price_usd must be a number >= 0")
        return CatalogEntry(
            model_id=self.model_id.strip("/"),
            display_name=self.display_name or self.model_id,
            categories=list(self.categories),
            base_price_usd=float(price),
            price_unit=self.price_unit,
            input_schema=self.input_schema,
        )
