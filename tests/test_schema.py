"""
The interpreter of RunComfy's schema form (``airflow_provider_runcomfy.schema``), offline.

The standard part goes through jsonschema; these tests pin RunComfy's extensions (``float``, media
formats, every ``validations`` rule kind, unknown rules skipped) and the messages: each names the
field (with its index), the value, and quotes the schema's own ``validation_error``.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from fractions import Fraction
from typing import Any

import pytest

from airflow_provider_runcomfy.exceptions import RunComfyInputError, RunComfySchemaError
from airflow_provider_runcomfy.operators.runcomfy import load_input_schema
from airflow_provider_runcomfy.schema import (
    MediaKind,
    ModelSchema,
    bundled_spec,
    compile_schema,
    image_rules_from,
)
from airflow_provider_runcomfy.validation import EDIT_SPEC, VIDEO_SPEC, Bound, validate_inputs

URL = "https://images.example.com/a.png"


def rule(name: str, value: Any, error: str | None = None) -> dict[str, Any]:
    found = {"validation_rule": name, "validation_value": value}
    if error is not None:
        found["validation_error"] = error
    return found


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "maxLength": 10, "minLength": 2},
        "strength": {"type": "float", "minimum": 0, "maximum": 1},
        "steps": {"type": "integer", "exclusiveMinimum": 0},
        "mode": {"type": "string", "enum": ["fast", "best"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "opts": {"type": "object", "properties": {"k": {"type": "integer"}}},
        "image_urls": {"type": "array", "format": "image_uris", "minItems": 1, "maxItems": 2},
        "end_image": {"type": "string", "format": "image_uri"},
        "clip": {"type": "string", "format": "video_uri"},
    },
    "required": ["prompt", "image_urls"],
}


def model(schema: dict[str, Any] | None = None) -> ModelSchema:
    return ModelSchema.from_schema("me/test-model", schema or SCHEMA, label="Test model")


def refusal(inputs: dict[str, Any], schema: ModelSchema | None = None) -> RunComfyInputError:
    with pytest.raises(RunComfyInputError) as info:
        (schema or model()).validate(inputs)
    return info.value


def ok(**fields: Any) -> dict[str, Any]:
    return {"prompt": "hello", "image_urls": [URL], **fields}


# -- fields ------------------------------------------------------------------------------------------


def test_valid_inputs_come_back_unchanged_and_none_options_are_left_out() -> None:
    inputs = ok(
        strength=1, steps=3, mode="best", tags=["a"], opts={"k": 1}, end_image=URL, clip=URL, extra=[1]
    )
    assert model().validate(inputs) == inputs
    assert model().validate(ok(strength=None)) == ok()


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        pytest.param({"strength": 0.5}, None, None, id="float-accepts-a-float"),
        pytest.param({"strength": 1}, None, None, id="float-accepts-an-int"),
        pytest.param({"strength": True}, "strength", "must be a number, got True (bool)", id="float-no-bool"),
        pytest.param({"strength": "1"}, "strength", "must be a number, got '1' (str)", id="float-no-str"),
        pytest.param({"strength": 1.5}, "strength", "must be between 0 and 1, got 1.5", id="maximum"),
        pytest.param({"strength": math.nan}, "strength", "must be between 0 and 1, got nan", id="nan"),
        pytest.param({"steps": 2.0}, "steps", "must be an integer, got 2.0 (float)", id="integer-no-float"),
        pytest.param({"steps": 0}, "steps", "must be more than 0, got 0", id="exclusive-minimum"),
        pytest.param({"mode": "slow"}, "mode", "must be one of 'fast', 'best'; got 'slow'", id="enum"),
        pytest.param({"prompt": "x" * 11}, "prompt", "is 11 characters long; at most 10", id="max-length"),
        pytest.param({"prompt": "x"}, "prompt", "is 1 characters long; at least 2", id="min-length"),
        pytest.param(
            {"prompt": None}, "prompt", "is required (a text of at most 10 characters)", id="required"
        ),
        pytest.param({"tags": ["a", "b", "c"]}, "tags", "takes at most 2 items, got 3", id="max-items"),
        pytest.param({"tags": ["a", 7]}, "tags[1]", "must be a string, got 7 (int)", id="item-type"),
        pytest.param({"opts": {"k": "v"}}, "opts.k", "must be an integer", id="nested"),
        pytest.param(
            {"image_urls": []}, "image_urls", "Test model takes 1 to 2 image URLs, got 0", id="min-items"
        ),
        pytest.param(
            {"image_urls": URL}, "image_urls", "must be a list of image URLs", id="media-not-a-list"
        ),
        pytest.param({"image_urls": [URL, "ftp://x/y"]}, "image_urls[1]", "http(s)", id="media-url"),
        pytest.param({"end_image": "not a url"}, "end_image", "without spaces", id="single-media-url"),
        pytest.param({"clip": ""}, "clip", "empty string", id="video-url"),
        pytest.param({"Mode": "fast"}, "Mode", "did you mean 'mode'?", id="near-miss"),
    ],
)
def test_each_standard_rule_and_extension(
    fields: dict[str, Any], field: str | None, words: str | None
) -> None:
    if field is None:
        model().validate(ok(**fields))
        return
    err = refusal(ok(**fields))
    assert err.field == field
    assert words is not None
    assert words in err.rule
    assert str(err).startswith(f"{field}: ")


def test_every_broken_field_is_reported_at_once_in_schema_order() -> None:
    err = refusal({"mode": "slow", "strength": "high", "image_urls": [URL, 7]})
    assert err.field == "prompt"
    assert err.rule.startswith("is required")
    assert "; also strength: must be a number" in err.rule
    assert "mode: must be one of" in err.rule
    assert "image_urls[1]: must be a URL string" in err.rule
    assert err.rule.count("strength:") == 1, "one problem per field: its type, not also its bounds"


def test_a_required_none_is_missing() -> None:
    assert refusal(ok(image_urls=None)).rule.startswith("is required: a list of 1 to 2 image URLs")


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param([], id="not-an-object"),
        pytest.param({"properties": []}, id="properties-not-an-object"),
        pytest.param({"properties": {"a": {"type": 5}}}, id="invalid-json-schema"),
        pytest.param({"properties": {}, "required": "a"}, id="required-not-a-list"),
    ],
)
def test_an_unusable_schema_is_its_own_error(schema: Any) -> None:
    with pytest.raises(RunComfySchemaError, match="input schema of Test model"):
        ModelSchema.from_schema("me/x", schema, label="Test model")


# -- validations -------------------------------------------------------------------------------------


def test_every_rule_kind_becomes_a_bound() -> None:
    rules = image_rules_from(
        "M",
        "image_urls",
        [
            rule("file_size_mb<=", 15, "at most 15 MB"),
            rule("width_pixels<=", 4096),
            rule("height_pixels<=", 2048),
            rule("width_pixels>", 320),
            rule("height_pixels>", 100),
            rule("width/height≥", 1 / 3),
            rule("width/height≤", 3),
        ],
        None,
    )
    assert rules.file_bytes.high == Bound(Fraction(15_000_000), True, "at most 15 MB")
    assert rules.largest_file == 15_000_000
    assert rules.width.high == Bound(Fraction(4096), True)
    assert rules.height.high == Bound(Fraction(2048), True)
    assert rules.width.low == Bound(Fraction(320), False)
    assert rules.height.low == Bound(Fraction(100), False)
    assert rules.ratio.low == Bound(Fraction(1, 3), True), "the float of 1/3 is read as 1/3"
    assert rules.ratio.high == Bound(Fraction(3), True)
    strict = image_rules_from(
        "M",
        "f",
        [
            rule("file_size_mb<", 4.7),
            rule("width/height>", "0.33"),
            rule("width/height<", 16),
            rule("width/height<", 3),
        ],
        None,
    )
    assert strict.file_bytes.high == Bound(Fraction(4_700_000), False)
    assert strict.largest_file == 4_699_999
    assert strict.ratio.low == Bound(Fraction(33, 100), False)
    assert strict.ratio.high == Bound(Fraction(3), False), "the stricter of two upper bounds"
    symbols = image_rules_from("M", "f", [rule("width_pixels>=", 10), rule("height_pixels ≤ ", 20)], None)
    assert symbols.width.low == Bound(Fraction(10), True)
    assert symbols.height.high == Bound(Fraction(20), True)


def test_an_unknown_rule_is_logged_and_skipped_never_guessed(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="airflow_provider_runcomfy.schema"):
        rules = image_rules_from(
            "M",
            "image_urls",
            [rule("bit_depth<=", 8), rule("width_pixels<=", "wide"), rule("duration_seconds<", 10), "odd"],
            None,
        )
    assert rules == image_rules_from("M", "image_urls", [], None), "nothing was made of them"
    assert caplog.text.count("skipped, not guessed") == 4
    assert "bit_depth<=" in caplog.text


@pytest.mark.parametrize(
    ("size", "fmt", "width", "height", "words"),
    [
        pytest.param(5_000_001, "PNG", 100, 100, "is larger than the 5 MB (5,000,000 bytes)", id="size"),
        pytest.param(None, "PNG", 2049, 100, "2049x100 px is wider than the 2048 px", id="width"),
        pytest.param(
            None, "PNG", 100, 1001, "is too tall: M needs the height to be less than 1001 px", id="tall"
        ),
        pytest.param(
            None, "PNG", 64, 100, "is too narrow: M needs the width to be more than 64 px", id="narrow"
        ),
        pytest.param(
            None, "PNG", 100, 50, "is too short: M needs the height to be at least 60 px", id="short"
        ),
        pytest.param(None, "PNG", 1000, 200, "of 5; M needs it at least 1/4 and less than 4", id="ratio"),
    ],
)
def test_image_refusals_quote_the_schema(
    size: int | None, fmt: str, width: int, height: int, words: str
) -> None:
    rules = image_rules_from(
        "M",
        "image_urls",
        [
            rule("file_size_mb<=", 5, "Files up to 5 MB."),
            rule("width_pixels<=", 2048, "Width up to 2048."),
            rule("height_pixels<", 1001, "Height under 1001."),
            rule("width_pixels>", 64, "Width over 64."),
            rule("height_pixels>=", 60, "Height from 60."),
            rule("width/height≥", 0.25, "Ratio 1:4 to 4:1."),
            rule("width/height<", 4, "Ratio 1:4 to 4:1."),
        ],
        None,
    )
    with pytest.raises(RunComfyInputError) as info:
        rules.check("image_urls[2]", fmt, width, height, size)
    assert info.value.field == "image_urls[2]"
    assert words in info.value.rule
    assert '(schema: "' in info.value.rule
    rules.check("image_urls[0]", "GIF", 100, 100, 10)  # no formats named: any image Pillow reads passes


def test_media_fields_and_their_kinds() -> None:
    schema = model()
    assert [(m.name, m.kind, m.many) for m in schema.media] == [
        ("image_urls", MediaKind.IMAGE, True),
        ("end_image", MediaKind.IMAGE, False),
        ("clip", MediaKind.VIDEO, False),
    ]
    assert not MediaKind.VIDEO.is_probed
    groups = schema.image_groups(ok(image_urls=[URL, URL + "?2"], end_image=URL, clip=URL))
    assert [pairs for _, pairs in groups] == [
        [("image_urls[0]", URL), ("image_urls[1]", URL + "?2")],
        [("end_image", URL)],
    ]


# -- the documented models, from their shipped files -------------------------------------------------


def test_the_documented_models_come_from_their_shipped_schemas() -> None:
    assert EDIT_SPEC is bundled_spec("bytedance/dreamina-4-0/edit")
    assert EDIT_SPEC.source == VIDEO_SPEC.source == "bundled"
    edit, video = EDIT_SPEC.image_rules, VIDEO_SPEC.image_rules
    assert edit is not None
    assert video is not None
    assert edit.formats == video.formats == frozenset({"JPEG", "PNG"}), "the page's extra: JPEG or PNG only"
    assert edit.largest_file == 15_000_000
    assert edit.ratio.low is not None
    assert (edit.ratio.low.value, edit.ratio.low.inclusive) == (Fraction(33, 100), True), "as written: 0.33"
    assert video.largest_file == 4_699_999
    assert video.width.low is not None
    assert (video.width.low.value, video.width.low.inclusive) == (320, False)
    with pytest.raises(RunComfyInputError) as info:
        video.check("image_urls[0]", "PNG", 300, 800, None)
    assert 'schema: "The shortest side must be at least 320 pixels."' in info.value.rule


def test_a_documented_model_keeps_its_extras_with_a_schema_from_elsewhere() -> None:
    """The catalog's (or the user's) copy of the edit schema still gets the size label and formats."""
    schema = ModelSchema.from_schema("bytedance/dreamina-4-0/edit", EDIT_SPEC.schema, source="catalog")
    assert schema.label == "Dreamina 4.0 edit"
    sent = validate_inputs(
        "bytedance/dreamina-4-0/edit",
        {"image_urls": [URL], "prompt": "p", "width×height": "2048x2048"},
        schema,
    )
    assert sent["width×height"] == "2048x2048(1:1)"
    with pytest.raises(RunComfyInputError, match="must not be empty"):
        schema.validate({"image_urls": [URL], "prompt": "  "})


# -- input_schema from the user ----------------------------------------------------------------------


def test_input_schema_from_a_dict_a_file_or_a_saved_catalog_answer(tmp_path: Any) -> None:
    assert load_input_schema(SCHEMA) is SCHEMA
    plain = tmp_path / "schema.json"
    plain.write_text(json.dumps(SCHEMA))
    assert load_input_schema(str(plain)) == SCHEMA
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps({"model_id": "me/test-model", "input_schema": SCHEMA}))
    assert load_input_schema(answer) == SCHEMA
    with pytest.raises(RunComfySchemaError, match="cannot read"):
        load_input_schema(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RunComfySchemaError, match="cannot read"):
        load_input_schema(str(tmp_path / "bad.json"))
    with pytest.raises(RunComfySchemaError, match="dict or a JSON file path"):
        load_input_schema([1])


def test_parsing_a_dag_file_loads_neither_the_interpreter_nor_jsonschema() -> None:
    # Airflow 3 itself loads jsonschema; what matters is that the provider adds nothing heavy.
    code = (
        "import sys; import airflow.providers.common.compat.sdk; before = set(sys.modules); "
        "import airflow_provider_runcomfy.operators.runcomfy, airflow_provider_runcomfy.sensors.runcomfy; "
        "added = set(sys.modules) - before; "
        "print(sorted(m for m in added if m.split('.')[0] == 'jsonschema' or m.endswith('.schema')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_compiled_schema_is_reused_while_its_content_is_the_same() -> None:
    first = compile_schema("me/test-model", SCHEMA, label="Test model")
    assert compile_schema("me/test-model", json.loads(json.dumps(SCHEMA)), label="Test model") is first
    changed = {**SCHEMA, "required": ["prompt"]}
    assert compile_schema("me/test-model", changed, label="Test model") is not first
    for _ in range(2):  # a broken schema is refused every time, never remembered as good
        with pytest.raises(RunComfySchemaError):
            compile_schema("me/x", {"properties": {"a": {"type": 5}}})
