"""
The one interpreter of RunComfy's input-schema form: every model's inputs checked before a paid submit.

RunComfy describes each model's inputs in the form of its model page's "input schema" (and the
catalog's ``input_schema``): JSON Schema for the usual part (``type``, ``enum``, ``minimum`` /
``maximum``, ``maxLength``, ``minItems`` / ``maxItems``, ``required``, ``default``) plus its own
extensions. The standard part is checked by :mod:`jsonschema` (a well-kept library Airflow already
depends on); only RunComfy's extensions are written here:

* ``"type": "float"`` is a JSON-Schema ``number``;
* media formats ``image_uri`` / ``image_uris`` / ``video_uri`` / ``video_uris`` / ``audio_uri`` /
  ``audio_uris``: a public http(s) URL or a ``data:`` URI, or a list of them. Both forms RunComfy
  publishes are read: the model pages put the format on an array's ``items`` (``{"type": "array",
  "items": {"format": "image_uri"}}``), the partner nodes' catalog on the field (``"image_uris"``);
* ``validations``: a list of ``{validation_rule, validation_value, validation_error}`` on a media
  field. A rule is a measured quantity and a comparison: ``file_size_mb``, ``width_pixels``,
  ``height_pixels`` or ``width/height``, then ``<``, ``<=``/``≤``, ``>`` or ``>=``/``≥``
  (``file_size_mb<=``, ``width/height≥``...). Image rules become an
  :class:`~airflow_provider_runcomfy.validation.ImageRules` that the header-only Pillow probes of
  :mod:`airflow_provider_runcomfy.images` apply, and each refusal quotes the schema's own
  ``validation_error``. A ``validation_value`` is compared as written (``"0.33"`` and ``0.33`` are
  33/100, not 1/3). ``file_size_mb`` rules of video and audio fields are enforced from the file's
  announced length (or a ``data:`` URI's decoded size); their pixel rules cannot be checked without
  decoding the media. A rule that cannot be applied (of another shape, on a non-media field, a pixel
  rule on a video) is **never guessed and never dropped silently**: it is logged as a warning and
  listed in :attr:`ModelSchema.unapplied`, which ``strict_schema=True`` refuses.

Decisions (where the schema form is silent):

* ``integer`` means a JSON integer, not ``121.0`` and not ``true``; ``number`` is never a bool and
  must be finite (NaN passes JSON-Schema bounds but is not JSON).
* A ``None`` optional field is left out, so the model's default applies; a ``None`` required field is
  missing.
* Unknown keys are kept and sent (RunComfy may add fields); a key that is a near miss of a schema
  field (``Prompt``, ``widthxheight``) is refused: it would most likely be ignored and a paid job run
  with the default.
* Every broken rule is reported at once: the error names the first field (schema order) and lists
  the others, so a DAG author fixes them in one go.

This module imports :mod:`jsonschema` only when inputs are checked, and operators import this module
only inside ``execute()``: parsing a DAG file loads neither.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from functools import cache, cached_property, lru_cache
from typing import Any

from airflow_provider_runcomfy.catalog import bundled_model
from airflow_provider_runcomfy.documented import DOCUMENTED_EXTRAS, DocumentedExtras
from airflow_provider_runcomfy.exceptions import RunComfyInputError, RunComfySchemaError
from airflow_provider_runcomfy.limits import MB, Bound, ImageRules, Limits, check_url, shorten, type_name

log = logging.getLogger(__name__)


class MediaKind(StrEnum):
    """What a media field's URL points at."""

    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"

    @property
    def is_probed(self) -> bool:
        """Whether its files are checked before the submit (Pillow reads image headers only)."""
        return self is MediaKind.IMAGE


#: RunComfy's media formats: what each points at, and whether it is a list.
MEDIA_FORMATS: dict[str, tuple[MediaKind, bool]] = {
    f"{kind.value}_{suffix}": (kind, suffix == "uris") for kind in MediaKind for suffix in ("uri", "uris")
}

#: A ``validation_rule``: a measured quantity, then a comparison.
_RULE = re.compile(r"^\s*(file_size_mb|width_pixels|height_pixels|width/height)\s*(<=|>=|≤|≥|<|>)\s*$")
_QUANTITY_FIELD = {
    "file_size_mb": "file_bytes",
    "width_pixels": "width",
    "height_pixels": "height",
    "width/height": "ratio",
}

_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false (a bool)",
    "array": "a list",
    "object": "an object (a dict)",
    "null": "null",
}
#: Which problem of one field is reported when it has several (its type before its bounds).
_PRIORITY = {"required": 0, "type": 1, "media": 2, "blank": 2, "finite": 2}


def _near_miss_key(key: str) -> str:
    # ``Prompt``, ``image-urls``, ``widthxheight`` and ``width x height`` all collapse onto the key
    # they were probably meant to be.
    return re.sub(r"[^a-z0-9]", "", key.lower().replace("\u00d7", "x"))


def _number(value: Any) -> Fraction | None:
    """A ``validation_value``: a number, or a numeric string such as ``"1/3"``; ``None`` otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        # A ratio written as a float (1/3 -> 0.3333333333333333) is read back as the fraction it is
        # the float of, so an image of exactly 1:3 meets "≥ 1/3". Only an exact round trip counts.
        simple = Fraction(value).limit_denominator(1000)
        return simple if float(simple) == value else Fraction(value)
    if isinstance(value, str):
        try:
            return Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            return None
    return None


def _show_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def _media_format(prop: Mapping[str, Any]) -> tuple[MediaKind, bool] | None:
    """
    The media kind of a field and whether it is a list, in either form RunComfy publishes.

    The partner nodes' catalog puts ``image_uris`` on the field; the model pages put ``image_uri``
    on an array's ``items``. Missing the second form silently dropped every image check once.
    """
    fmt = prop.get("format")
    found = MEDIA_FORMATS.get(fmt) if isinstance(fmt, str) else None
    if found is not None:
        return found
    items = prop.get("items")
    if isinstance(items, Mapping):
        inner = items.get("format")
        found = MEDIA_FORMATS.get(inner) if isinstance(inner, str) else None
        if found is not None:
            return found[0], True
    return None


def _show_rule(rule: Any) -> str:
    if isinstance(rule, Mapping):
        return f"{rule.get('validation_rule')!r} {rule.get('validation_value')!r}"
    return repr(rule)


def image_rules_from(
    label: str,
    field: str,
    validations: Any,
    formats: frozenset[str] | None,
    *,
    kind: MediaKind = MediaKind.IMAGE,
    unapplied: list[str] | None = None,
) -> ImageRules:
    """
    Read a media field's ``validations`` into the limits the checks apply.

    ``file_size_mb`` is read in decimal megabytes (10**6 bytes, the stricter reading; see
    :mod:`airflow_provider_runcomfy.validation`). When two rules bound the same side, the stricter
    one is kept. Rules of another shape, and pixel rules of a video or audio field (which would need
    the media decoded), are logged and appended to ``unapplied``: never guessed, never silent.
    """
    limits: dict[str, Limits] = {name: Limits() for name in _QUANTITY_FIELD.values()}
    for rule in validations if isinstance(validations, list) else ():
        name = rule.get("validation_rule") if isinstance(rule, dict) else None
        match = _RULE.match(name) if isinstance(name, str) else None
        value = _number(rule.get("validation_value")) if isinstance(rule, dict) else None
        if match is None or value is None:
            log.warning(
                "%s: %s: validation rule %r is not one the provider knows; skipped, not guessed",
                label,
                field,
                rule,
            )
            if unapplied is not None:
                unapplied.append(f"{field}: {_show_rule(rule)} (a rule the provider does not know)")
            continue
        quantity, op = match.groups()
        if quantity != "file_size_mb" and not kind.is_probed:
            log.warning(
                "%s: %s: validation rule %r needs the %s decoded; it is not checked before the submit",
                label,
                field,
                rule,
                kind.value,
            )
            if unapplied is not None:
                unapplied.append(f"{field}: {_show_rule(rule)} (needs the {kind.value} decoded)")
            continue
        note = rule.get("validation_error")
        note = note if isinstance(note, str) and note.strip() else None
        inclusive = op in ("<=", ">=", "≤", "≥")
        upper = op in ("<", "<=", "≤")
        if quantity == "file_size_mb":
            exact = value * MB
            # Whole bytes: round towards the accepted side only when the limit falls between bytes.
            value = Fraction(math.floor(exact) if upper == inclusive else math.ceil(exact))
        bound = Bound(value, inclusive, note)
        key = _QUANTITY_FIELD[quantity]
        current = limits[key]
        if upper and bound.is_stricter_high(current.high):
            limits[key] = Limits(current.low, bound)
        elif not upper and bound.is_stricter_low(current.low):
            limits[key] = Limits(bound, current.high)
    return ImageRules(model=label, formats=formats, **limits)


@dataclass(frozen=True)
class MediaField:
    """
    One media input of a schema.

    :param name: the field's name.
    :param kind: what its URLs point at.
    :param many: a list of URLs (``*_uris``) rather than one.
    :param rules: the limits of its files (every rule on images, the file size on video and audio).
    """

    name: str
    kind: MediaKind
    many: bool
    rules: ImageRules

    def urls(self, value: Any) -> list[tuple[str, str]]:
        """The ``(field[index], url)`` pairs of a (checked) value."""
        if self.many:
            items = value if isinstance(value, list | tuple) else []
            return [(f"{self.name}[{i}]", url) for i, url in enumerate(items) if isinstance(url, str)]
        return [(self.name, value)] if isinstance(value, str) else []

    def noun(self, count: int) -> str:
        """``image URL`` / ``image URLs``, for messages."""
        return f"{self.kind.value} URL" + ("" if count == 1 else "s")


@dataclass
class _Problem:
    order: int
    priority: int
    error: RunComfyInputError


@dataclass(frozen=True)
class ModelSchema:
    """
    One model's input schema, ready to check inputs.

    Build it with :meth:`from_schema`; :meth:`validate` checks a job's inputs and returns what to
    send; :meth:`image_groups` gives the image URLs to probe with their limits.

    :param model_id: RunComfy's model id.
    :param label: the model's name in messages.
    :param schema: the schema as RunComfy (or the user) gave it.
    :param properties: its fields, in order.
    :param required: the required fields.
    :param media: its media fields.
    :param extras: a documented model's page rules the schema cannot state (``None`` for others).
    :param source: where the schema came from, for logs (``catalog``, ``bundled``, ``input_schema``).
    :param unapplied: the rules the schema states that cannot be checked here, in words (each was
        logged as a warning; ``strict_schema=True`` refuses a schema with any).
    """

    model_id: str
    label: str
    schema: Mapping[str, Any]
    properties: Mapping[str, Mapping[str, Any]]
    required: tuple[str, ...]
    media: tuple[MediaField, ...]
    extras: DocumentedExtras | None = None
    source: str = "catalog"
    unapplied: tuple[str, ...] = ()

    @classmethod
    def from_schema(
        cls,
        model_id: str,
        schema: Any,
        *,
        label: str | None = None,
        extras: DocumentedExtras | None = None,
        source: str = "catalog",
    ) -> ModelSchema:
        """
        Read a schema of RunComfy's form.

        A documented model gets its :class:`DocumentedExtras` whatever the schema's source, so its
        size labels and formats are handled alike from the catalog, the shipped file or the user.

        :raises RunComfySchemaError: when the schema is not an object with ``properties``, or its
            standard part is not valid JSON Schema.
        """
        model_id = model_id.strip("/")
        if extras is None:
            extras = DOCUMENTED_EXTRAS.get(model_id)
        name = (extras.label if extras else None) or label or model_id
        if not isinstance(schema, Mapping) or not isinstance(schema.get("properties", {}), Mapping):
            raise RunComfySchemaError(
                f"The input schema of {name} must be a JSON object with a 'properties' object, "
                f"got {shorten(schema)}"
            )
        refuse_unsafe_schema(schema, name)
        properties = {k: v for k, v in (schema.get("properties") or {}).items() if isinstance(v, Mapping)}
        required = schema.get("required") or []
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise RunComfySchemaError(f"The input schema of {name}: 'required' must be a list of field names")
        media = []
        unapplied: list[str] = []
        formats = extras.image_formats if extras else None
        for field, prop in properties.items():
            found = _media_format(prop)
            if found is None:
                if prop.get("validations"):
                    log.warning(
                        "%s: %s has validations but is no media field; they cannot be checked", name, field
                    )
                    unapplied.append(f"{field}: validations on a field that is no media field")
                continue
            kind, many = found
            rules = image_rules_from(
                name,
                field,
                prop.get("validations"),
                formats if kind.is_probed else None,
                kind=kind,
                unapplied=unapplied,
            )
            media.append(MediaField(field, kind, many, rules))
        built = cls(
            model_id=model_id,
            label=name,
            schema=schema,
            properties=properties,
            required=tuple(required),
            media=tuple(media),
            extras=extras,
            source=source,
            unapplied=tuple(unapplied),
        )
        built._check_standard_part()
        return built

    # -- what the probes need -----------------------------------------------------------------------

    @property
    def image_rules(self) -> ImageRules | None:
        """The limits of the first image field (the documented models have one)."""
        return next((m.rules for m in self.media if m.kind.is_probed), None)

    def image_groups(self, inputs: Mapping[str, Any]) -> list[tuple[ImageRules, list[tuple[str, str]]]]:
        """
        The image URLs to probe, grouped by the field whose limits apply to them.

        ``data:`` URIs are not among them: nothing is fetched, they are checked where they are
        (:func:`airflow_provider_runcomfy.media_sources.check_inline_media`).
        """
        groups = []
        for media in self.media:
            if media.kind.is_probed and media.name in inputs:
                pairs = [(f, url) for f, url in media.urls(inputs[media.name]) if url[:5].lower() != "data:"]
                if pairs:
                    groups.append((media.rules, pairs))
        return groups

    # -- checking inputs ----------------------------------------------------------------------------

    def validate(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """
        Check every rule of the schema and return the inputs to send.

        Valid inputs come back unchanged, except that an optional field set to ``None`` is left out
        and a documented model's normalizers apply (a bare size becomes its documented label).

        :raises RunComfyInputError: naming the first field (in schema order) that breaks a rule, the
            rule, the value, and the others after it.
        """
        self._refuse_near_misses(inputs)
        result = {key: value for key, value in inputs.items() if value is not None}
        if self.extras is not None:
            for name, normalize in self.extras.normalizers:
                if name in result:
                    result[name] = normalize(name, result[name])
        problems = [self._missing(name) for name in self.required if name not in result]
        problems += self._standard_problems(result)
        problems += self._extension_problems(result)
        if problems:
            raise _combine(problems)
        return result

    def _refuse_near_misses(self, inputs: Mapping[str, Any]) -> None:
        known = {_near_miss_key(name): name for name in self.properties}
        for key in inputs:
            meant = known.get(_near_miss_key(key))
            if meant is not None and meant != key:
                odd = "".join(sorted({ch for ch in meant if not ch.isascii()}))
                hint = f" (with the {odd} sign, U+{ord(odd[0]):04X})" if odd else ""
                raise RunComfyInputError(
                    key,
                    f"is not a field of {self.label}; did you mean {meant!r}{hint}? RunComfy would "
                    "likely ignore it and run with the default",
                )

    def _order(self, field: str) -> int:
        top = field.split("[", 1)[0].split(".", 1)[0]
        names = list(self.properties)
        return names.index(top) if top in names else len(names)

    def _problem(self, field: str, kind: str, rule: str) -> _Problem:
        rule = _capped(rule)  # rules quote schema values, which may be huge (a 10^6-value enum)
        return _Problem(self._order(field), _PRIORITY.get(kind, 3), RunComfyInputError(field, rule))

    def _missing(self, name: str) -> _Problem:
        prop = self.properties.get(name, {})
        media = self._media(name)
        if media is not None and media.many:
            hint = f": a list of {self._count_words(name, prop, media)}"
        elif media is not None:
            hint = f": one {media.noun(1)}"
        elif prop.get("type") == "string" and "maxLength" in prop:
            hint = f" (a text of at most {prop['maxLength']} characters)"
        else:
            hint = ""
        return self._problem(name, "required", f"is required{hint}")

    def _media(self, name: str) -> MediaField | None:
        return next((m for m in self.media if m.name == name), None)

    @cached_property
    def _validator(self) -> Any:
        """The :mod:`jsonschema` validator of the standard part (imported here: see the module docstring)."""
        import jsonschema

        def is_integer(_checker: Any, value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        checker = jsonschema.Draft7Validator.TYPE_CHECKER.redefine("integer", is_integer)
        kind = jsonschema.validators.extend(jsonschema.Draft7Validator, type_checker=checker)
        # An empty registry that retrieves nothing: a ``$ref`` resolves inside the schema or not at all
        # (jsonschema's default would fetch remote and file:// references).
        return kind(_standard_part(self.schema), registry=_no_retrieval_registry())

    def _check_standard_part(self) -> None:
        import jsonschema

        try:
            jsonschema.Draft7Validator.check_schema(_standard_part(self.schema))
        except jsonschema.SchemaError as err:
            raise RunComfySchemaError(
                f"The input schema of {self.label} is not valid JSON Schema: {_capped(err.message)}"
            ) from None

    def _standard_problems(self, inputs: dict[str, Any]) -> list[_Problem]:
        import referencing.exceptions

        problems = []
        try:
            for err in self._validator.iter_errors(inputs):
                if err.validator == "required":
                    continue  # reported by name above, with a hint
                field = _field_name(err.absolute_path) or "inputs"
                problems.append(self._translate(field, err))
        except RecursionError:
            raise RunComfySchemaError(
                f"The input schema of {self.label} cannot be used: its references ($ref) loop back on "
                "themselves without end"
            ) from None
        except referencing.exceptions.Unresolvable as err:
            raise RunComfySchemaError(
                f"The input schema of {self.label} cannot be used: a reference ($ref) does not resolve "
                f"inside the schema ({_capped(str(err))}); nothing is fetched from elsewhere"
            ) from None
        return problems

    def _translate(self, field: str, err: Any) -> _Problem:
        kw, value, prop = err.validator, err.instance, err.schema
        if kw == "type":
            expected = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
            words = " or ".join(_TYPE_WORDS.get(t, str(t)) for t in expected)
            media = self._media(field)
            if media is not None and media.many and "array" in expected:
                words = f"a list of {media.noun(2)}"
            return self._problem(field, "type", f"must be {words}, got {shorten(value)} ({type_name(value)})")
        if kw == "enum":
            shown = err.validator_value[:MAX_ENUM_SHOWN]
            choices = ", ".join(repr(c) if isinstance(c, str) else str(c) for c in shown)
            if len(err.validator_value) > MAX_ENUM_SHOWN:
                choices += f" (and {len(err.validator_value) - MAX_ENUM_SHOWN:,} more)"
            return self._problem(field, kw, f"must be one of {choices}; got {shorten(value)}")
        if kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            return self._problem(field, kw, f"must be {_range_words(prop)}, got {value!r}")
        if kw == "maxLength":
            return self._problem(
                field, kw, f"is {len(value)} characters long; at most {err.validator_value} are accepted"
            )
        if kw == "minLength":
            return self._problem(
                field, kw, f"is {len(value)} characters long; at least {err.validator_value} are needed"
            )
        if kw in ("minItems", "maxItems"):
            media = self._media(field)
            count = self._count_words(field, prop, media)
            return self._problem(field, kw, f"{self.label} takes {count}, got {len(value)}")
        return self._problem(field, kw, err.message)

    def _count_words(self, field: str, prop: Mapping[str, Any], media: MediaField | None) -> str:
        low, high = prop.get("minItems"), prop.get("maxItems")

        def noun(n: int) -> str:
            return media.noun(n) if media is not None else ("item" if n == 1 else "items")

        if low is not None and low == high:
            return f"exactly {low} {noun(low)}"
        if low is not None and high is not None:
            return f"{low} to {high} {noun(high)}"
        if high is not None:
            return f"at most {high} {noun(high)}"
        if low is not None:
            return f"at least {low} {noun(low)}"
        return noun(2)

    def _extension_problems(self, inputs: dict[str, Any]) -> list[_Problem]:
        problems: list[_Problem] = []
        for name, prop in self.properties.items():
            if name not in inputs:
                continue
            value = inputs[name]
            kind = prop.get("type")
            if (
                kind in ("number", "float", "integer")
                and isinstance(value, float)
                and not math.isfinite(value)
            ):
                problems.append(self._problem(name, "finite", f"must be {_range_words(prop)}, got {value!r}"))
            media = self._media(name)
            if media is not None:
                problems += self._media_problems(media, value)
        if self.extras is not None:
            for name in self.extras.non_blank:
                value = inputs.get(name)
                if isinstance(value, str) and not value.strip():
                    problems.append(self._problem(name, "blank", "must not be empty"))
        return problems

    def _media_problems(self, media: MediaField, value: Any) -> list[_Problem]:
        if media.many:
            if not isinstance(value, list | tuple):
                return []  # the type check names it
            items = [(f"{media.name}[{i}]", item) for i, item in enumerate(value)]
        else:
            items = [(media.name, value)]
        problems = []
        for field, item in items:
            if media.many or isinstance(item, str):  # a single non-string is the type check's
                try:
                    if isinstance(item, str) and item[:5].lower() == "data:":
                        # An inline file (RunComfy's own clients send them): decoded here, its
                        # content checked against the field's rules by media_sources.
                        from airflow_provider_runcomfy.data_uris import parse_data_uri

                        parse_data_uri(field, item, media.kind.value)
                    else:
                        check_url(field, item)
                except RunComfyInputError as err:
                    problems.append(self._problem(field, "media", err.rule))
        return problems


# -- safety: a schema from a catalog is data from the network --------------------------------------

#: The deepest nesting of objects and lists a schema may have (RunComfy's schemas have 4 or 5 levels).
MAX_SCHEMA_DEPTH = 64
#: The longest message built from schema values; longer ones are cut.
MAX_RULE_CHARS = 2000
#: How many values of an ``enum`` a refusal lists.
MAX_ENUM_SHOWN = 20


def _capped(text: str) -> str:
    if len(text) <= MAX_RULE_CHARS:
        return text
    return f"{text[:MAX_RULE_CHARS]}... ({len(text):,} characters in all)"


@cache
def _no_retrieval_registry() -> Any:
    """A :mod:`referencing` registry that knows no resource and retrieves none."""
    import referencing

    return referencing.Registry()


def refuse_unsafe_schema(schema: Mapping[str, Any], name: str) -> None:
    """
    Refuse a schema the interpreter cannot use safely, before it is compiled or used.

    Walked without recursion, so no shape of schema can raise :class:`RecursionError` here:

    * nesting deeper than :data:`MAX_SCHEMA_DEPTH` levels;
    * a ``$ref`` that does not point inside the schema (``#...``): nothing is ever fetched, neither
      from another host nor from a ``file://`` path;
    * a ``pattern`` (or ``patternProperties`` key) that is not a regular expression, or that nests
      unbounded repetition (``(a+)+``, ``(a*)*``) or repeats an alternation (``(a|aa)+``): forms on
      which Python's backtracking engine can take exponential time. Such a pattern is refused, not
      matched (there is no time bound on Python's ``re``).

    :raises RunComfySchemaError: naming the problem and where it is.
    """
    stack: list[tuple[Any, str, int]] = [(schema, "", 0)]
    while stack:
        node, where, depth = stack.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise RunComfySchemaError(
                f"The input schema of {name} cannot be used: it nests deeper than {MAX_SCHEMA_DEPTH} "
                f"levels (at {where[:200] or 'the top'})"
            )
        if isinstance(node, Mapping):
            ref = node.get("$ref")
            if ref is not None and not (isinstance(ref, str) and ref.startswith("#")):
                raise RunComfySchemaError(
                    f"The input schema of {name} cannot be used: {where or 'its top'} refers to "
                    f"{shorten(ref)} outside the schema; only references inside it ('#/...') are "
                    "followed, nothing is fetched"
                )
            patterns = [node["pattern"]] if "pattern" in node else []
            if isinstance(node.get("patternProperties"), Mapping):
                patterns += list(node["patternProperties"])
            for pattern in patterns:
                problem = _pattern_problem(pattern)
                if problem:
                    raise RunComfySchemaError(
                        f"The input schema of {name} cannot be used: the pattern {shorten(pattern)} "
                        f"at {where or 'the top'} {problem}"
                    )
            for key, value in node.items():
                stack.append((value, f"{where}.{key}" if where else str(key), depth + 1))
        elif isinstance(node, list):
            stack.extend((value, f"{where}[{index}]", depth + 1) for index, value in enumerate(node))


def _pattern_problem(pattern: Any) -> str | None:
    """
    Why a ``pattern`` cannot be used (not a regex, or a catastrophic form), or ``None``.

    Unbounded repetition nested in unbounded repetition is refused unless the outer repeated part
    holds a literal character the inner one cannot match (``^[a-z]+(-[a-z]+)*$``, ``(\\d+,)*``): that
    separator pins each split, so matching stays linear. ``(a+)+``, ``(a*)*`` and ``(a+a)+`` are
    refused, and so is a repeated alternation (``(a|aa)+``).
    """
    from re import _constants as sre  # type: ignore[attr-defined]
    from re import _parser as sre_parse  # type: ignore[attr-defined]

    if not isinstance(pattern, str):
        return "is not a string"
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError) as err:
        return f"is not a valid regular expression ({err})"
    repeats = (sre.MAX_REPEAT, sre.MIN_REPEAT)
    # (items, the required literal characters of the enclosing repeated part, or None outside one)
    stack: list[tuple[Any, frozenset[str] | None]] = [(parsed, None)]
    while stack:
        items, separators = stack.pop()
        for op, arg in items:
            if op in repeats:
                _low, high, body = arg
                if high <= 1000:  # bounded (MAXREPEAT, "no upper bound", is far above)
                    stack.append((body, separators))
                    continue
                if separators is not None and not _separated(body, separators):
                    return "nests unbounded repetition (like (a+)+), which can take exponential time"
                stack.append((body, _required_literals(body)))
            elif op is sre.BRANCH:
                if separators is not None and len(arg[1]) > 1:
                    return "repeats an alternation (like (a|aa)+), which can take exponential time"
                stack.extend((branch, separators) for branch in arg[1])
            elif op in (sre.SUBPATTERN, sre.ASSERT, sre.ASSERT_NOT):
                stack.append((arg[-1], separators))
            elif op in (sre.ATOMIC_GROUP, sre.POSSESSIVE_REPEAT):
                stack.append((arg if op is sre.ATOMIC_GROUP else arg[-1], None))  # never backtracks
            elif op is sre.GROUPREF_EXISTS:
                stack.extend((part, separators) for part in arg[1:] if part is not None)
    return None


def _required_literals(items: Any) -> frozenset[str]:
    """The literal characters a repeated part must contain (its top-level ``LITERAL`` items)."""
    from re import _constants as sre  # type: ignore[attr-defined]

    found: set[str] = set()
    stack = [items]
    while stack:
        for op, arg in stack.pop():
            if op is sre.LITERAL:
                found.add(chr(arg))
            elif op is sre.SUBPATTERN:  # a group is required as a whole: its literals are too
                stack.append(arg[-1])
    return frozenset(found)


def _separated(body: Any, separators: frozenset[str]) -> bool:
    """Whether ``body`` is single-character matchers only, none of which matches one of ``separators``."""
    return any(all(_matches_none(op, arg, ch) for op, arg in body) for ch in separators)


def _matches_none(op: Any, arg: Any, ch: str) -> bool:
    """Whether the one-character matcher ``(op, arg)`` certainly cannot match ``ch`` (unsure: ``False``)."""
    from re import _constants as sre  # type: ignore[attr-defined]

    if op is sre.LITERAL:
        return chr(arg) != ch
    if op is sre.NOT_LITERAL:
        return chr(arg) == ch
    if op is not sre.IN:
        return False  # ANY, groups, anything else: assume it may match
    negated = bool(arg) and arg[0][0] is sre.NEGATE
    categories: dict[Any, Callable[[str], bool]] = {
        sre.CATEGORY_DIGIT: str.isdigit,
        sre.CATEGORY_NOT_DIGIT: lambda c: not c.isdigit(),
        sre.CATEGORY_SPACE: str.isspace,
        sre.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
        sre.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
        sre.CATEGORY_NOT_WORD: lambda c: not (c.isalnum() or c == "_"),
    }
    hit = False
    for kind, value in arg[1:] if negated else arg:
        if kind is sre.LITERAL:
            hit = hit or chr(value) == ch
        elif kind is sre.RANGE:
            hit = hit or value[0] <= ord(ch) <= value[1]
        elif kind is sre.CATEGORY and value in categories:
            hit = hit or categories[value](ch)
        else:
            return False
    return hit if negated else not hit


def _standard_part(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema as standard JSON Schema: RunComfy's ``float`` becomes ``number``, recursively."""

    def convert(node: Any) -> Any:
        if isinstance(node, Mapping):
            out = {k: convert(v) for k, v in node.items() if k != "validations"}
            kind = out.get("type")
            if kind == "float":
                out["type"] = "number"
            elif isinstance(kind, list):
                out["type"] = ["number" if k == "float" else k for k in kind]
            return out
        if isinstance(node, list):
            return [convert(item) for item in node]
        return node

    converted: dict[str, Any] = convert(schema)
    converted.pop("$schema", None)  # checked as Draft 7 whatever it claims: RunComfy names none
    converted.setdefault("type", "object")
    return converted


def _range_words(prop: Mapping[str, Any]) -> str:
    low, high = prop.get("minimum"), prop.get("maximum")
    low_x, high_x = prop.get("exclusiveMinimum"), prop.get("exclusiveMaximum")
    if low is not None and high is not None:
        return f"between {_show_number(low)} and {_show_number(high)}"
    parts = []
    if low is not None:
        parts.append(f"at least {_show_number(low)}")
    if low_x is not None:
        parts.append(f"more than {_show_number(low_x)}")
    if high is not None:
        parts.append(f"at most {_show_number(high)}")
    if high_x is not None:
        parts.append(f"less than {_show_number(high_x)}")
    return " and ".join(parts) or "a finite number"


def _field_name(path: Any) -> str:
    name = ""
    for part in path:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name


def _combine(problems: list[_Problem]) -> RunComfyInputError:
    """One error for all fields at fault, each with its worst problem: the first named, the rest listed."""
    best: dict[str, _Problem] = {}
    for problem in problems:
        field = problem.error.field
        if field not in best or problem.priority < best[field].priority:
            best[field] = problem
    ordered = sorted(best.values(), key=lambda p: (p.order, p.error.field, p.priority))
    first = ordered[0].error
    if len(ordered) == 1:
        return first
    others = "; ".join(str(p.error) for p in ordered[1:])
    return RunComfyInputError(first.field, f"{first.rule}; also {others}")


@cache
def bundled_spec(model_id: str) -> ModelSchema | None:
    """The shipped schema of a documented model, read once per process; ``None`` for other models."""
    info = bundled_model(model_id)
    if info is None or info.input_schema is None:
        return None
    return ModelSchema.from_schema(
        info.model_id, info.input_schema, label=info.display_name, source="bundled"
    )


def compile_schema(
    model_id: str, schema: Any, *, label: str | None = None, source: str = "catalog"
) -> ModelSchema:
    """
    :meth:`ModelSchema.from_schema`, reused while the same schema comes back.

    A worker runs many tasks of one model; the catalog answer is cached per process, and so is the
    checked, compiled schema (keyed by its content, so a changed schema is compiled anew).
    """
    try:
        key = json.dumps(schema, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return ModelSchema.from_schema(model_id, schema, label=label, source=source)
    return _compiled(model_id, key, label, source)


@lru_cache(maxsize=64)
def _compiled(model_id: str, schema_json: str, label: str | None, source: str) -> ModelSchema:
    return ModelSchema.from_schema(model_id, json.loads(schema_json), label=label, source=source)
