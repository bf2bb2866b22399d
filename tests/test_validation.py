"""
The pre-flight field checks: every documented rule of both Dreamina models, and the generic checks.

These run in ``execute()`` before a paid submit, so each refusal must name the field at fault and
each valid input must go to RunComfy exactly as the user wrote it.
"""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import datetime
from fractions import Fraction
from typing import Any

import pytest

from airflow_provider_runcomfy.exceptions import RunComfyInputError
from airflow_provider_runcomfy.validation import (
    EDIT_MODEL_ID,
    EDIT_SIZES,
    EDIT_SPEC,
    MODELS,
    SIZE_FIELD,
    VIDEO_MODEL_ID,
    VIDEO_SPEC,
    ImageRules,
    image_inputs,
    normalize_size,
    spec_for,
    validate_inputs,
)

URL = "https://images.example.com/a.png"


def edit(**fields: Any) -> dict[str, Any]:
    return {"image_urls": [URL], "prompt": "make it blue", **fields}


def video(**fields: Any) -> dict[str, Any]:
    return {"image_urls": [URL], "prompt": "slow zoom", **fields}


def refusal(model_id: str, inputs: Any) -> RunComfyInputError:
    with pytest.raises(RunComfyInputError) as info:
        validate_inputs(model_id, inputs)
    return info.value


# -- constants ---------------------------------------------------------------------------------------


def test_constants_match_the_documentation() -> None:
    assert SIZE_FIELD == "width\u00d7height"
    assert len(EDIT_SIZES) == 11
    assert "2048x2048(1:1)" in EDIT_SIZES
    assert "6198x2656(21:9)" in EDIT_SIZES
    assert set(MODELS) == {EDIT_MODEL_ID, VIDEO_MODEL_ID}
    assert spec_for(EDIT_MODEL_ID) is EDIT_SPEC
    assert spec_for(f"/{VIDEO_MODEL_ID}/") is VIDEO_SPEC
    assert spec_for("someone/else") is None


# -- valid inputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "inputs"),
    [
        pytest.param(EDIT_MODEL_ID, edit(), id="edit-minimal"),
        pytest.param(
            EDIT_MODEL_ID,
            edit(
                image_urls=[f"http://h.test/{i}.jpg" for i in range(10)],
                prompt="x" * 800,
                **{SIZE_FIELD: "4096x4096(1:1)"},
                scale=0,
                force_single=True,
            ),
            id="edit-all-fields-at-limits",
        ),
        pytest.param(EDIT_MODEL_ID, edit(scale=1.0, force_single=False), id="edit-scale-1"),
        pytest.param(EDIT_MODEL_ID, edit(scale=0.5), id="edit-scale-float"),
        pytest.param(VIDEO_MODEL_ID, video(), id="video-minimal"),
        pytest.param(VIDEO_MODEL_ID, video(seed=-1, frames=121), id="video-random-seed"),
        pytest.param(VIDEO_MODEL_ID, video(seed=2**32 - 1, frames=241), id="video-max-seed"),
        pytest.param(VIDEO_MODEL_ID, video(seed=0, extra={"nested": [1, 2.5, None]}), id="video-unknown-key"),
    ],
)
def test_valid_inputs_are_returned_unchanged(model_id: str, inputs: dict[str, Any]) -> None:
    sent = validate_inputs(model_id, inputs)
    assert sent == inputs
    assert sent is not inputs  # a copy: the operator's own dict is never changed


def test_unknown_keys_are_kept_and_sent() -> None:
    sent = validate_inputs(EDIT_MODEL_ID, edit(watermark=False, new_field="v"))
    assert sent["watermark"] is False
    assert sent["new_field"] == "v"


def test_a_bare_size_is_sent_as_its_documented_label() -> None:
    sent = validate_inputs(EDIT_MODEL_ID, edit(**{SIZE_FIELD: "2560x1440"}))
    assert sent[SIZE_FIELD] == "2560x1440(16:9)"


def test_none_optional_fields_are_left_out_so_defaults_apply() -> None:
    sent = validate_inputs(VIDEO_MODEL_ID, video(seed=None, frames=None))
    assert "seed" not in sent
    assert "frames" not in sent
    sent = validate_inputs(EDIT_MODEL_ID, edit(scale=None, force_single=None, **{SIZE_FIELD: None}))
    assert set(sent) == {"image_urls", "prompt"}


# -- refusals, one per documented rule ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "inputs", "field", "words"),
    [
        # image_urls
        pytest.param(EDIT_MODEL_ID, {"prompt": "p"}, "image_urls", "is required", id="edit-no-images"),
        pytest.param(EDIT_MODEL_ID, edit(image_urls=[]), "image_urls", "got 0", id="edit-0-images"),
        pytest.param(
            EDIT_MODEL_ID,
            edit(image_urls=[URL] * 11),
            "image_urls",
            "1 to 10 image URLs, got 11",
            id="edit-11",
        ),
        pytest.param(EDIT_MODEL_ID, edit(image_urls=URL), "image_urls", "must be a list", id="edit-url-str"),
        pytest.param(
            EDIT_MODEL_ID, edit(image_urls=[URL, ""]), "image_urls[1]", "empty", id="edit-empty-url"
        ),
        pytest.param(EDIT_MODEL_ID, edit(image_urls=[URL, 7]), "image_urls[1]", "(int)", id="edit-url-int"),
        pytest.param(
            EDIT_MODEL_ID, edit(image_urls=["ftp://h/a.png"]), "image_urls[0]", "http(s)", id="edit-ftp-url"
        ),
        pytest.param(
            EDIT_MODEL_ID, edit(image_urls=["a.png"]), "image_urls[0]", "http(s)", id="edit-relative"
        ),
        pytest.param(
            EDIT_MODEL_ID, edit(image_urls=["https://h/a b.png"]), "image_urls[0]", "spaces", id="edit-space"
        ),
        pytest.param(VIDEO_MODEL_ID, {"prompt": "p"}, "image_urls", "is required", id="video-no-images"),
        pytest.param(
            VIDEO_MODEL_ID,
            video(image_urls=[URL, URL]),
            "image_urls",
            "exactly 1 image URL, got 2",
            id="video-2",
        ),
        pytest.param(VIDEO_MODEL_ID, video(image_urls=[]), "image_urls", "got 0", id="video-0"),
        # prompt
        pytest.param(EDIT_MODEL_ID, {"image_urls": [URL]}, "prompt", "is required", id="edit-no-prompt"),
        pytest.param(EDIT_MODEL_ID, edit(prompt=""), "prompt", "must not be empty", id="edit-empty-prompt"),
        pytest.param(
            EDIT_MODEL_ID, edit(prompt="   "), "prompt", "must not be empty", id="edit-blank-prompt"
        ),
        pytest.param(EDIT_MODEL_ID, edit(prompt="x" * 801), "prompt", "801 characters", id="edit-801"),
        pytest.param(EDIT_MODEL_ID, edit(prompt=["a"]), "prompt", "must be a string", id="edit-prompt-list"),
        pytest.param(VIDEO_MODEL_ID, video(prompt="é" * 801), "prompt", "at most 800", id="video-801"),
        pytest.param(VIDEO_MODEL_ID, video(prompt=None), "prompt", "is required", id="video-prompt-none"),
        # width×height
        pytest.param(
            EDIT_MODEL_ID,
            edit(**{SIZE_FIELD: "2000x2000"}),
            SIZE_FIELD,
            "not a documented size",
            id="size-bad",
        ),
        pytest.param(
            EDIT_MODEL_ID,
            edit(**{SIZE_FIELD: "2048x2048(4:3)"}),
            SIZE_FIELD,
            "2048x2048(1:1)",
            id="size-ratio",
        ),
        pytest.param(
            EDIT_MODEL_ID, edit(**{SIZE_FIELD: 2048}), SIZE_FIELD, "must be a string", id="size-int"
        ),
        pytest.param(
            EDIT_MODEL_ID, edit(widthxheight="2048x2048"), "widthxheight", "U+00D7", id="size-ascii-x-key"
        ),
        pytest.param(EDIT_MODEL_ID, edit(Prompt="p2"), "Prompt", "did you mean 'prompt'", id="near-miss-key"),
        # scale
        pytest.param(EDIT_MODEL_ID, edit(scale=-0.1), "scale", "between 0 and 1, got -0.1", id="scale-low"),
        pytest.param(EDIT_MODEL_ID, edit(scale=1.1), "scale", "between 0 and 1, got 1.1", id="scale-high"),
        pytest.param(EDIT_MODEL_ID, edit(scale=True), "scale", "must be a number", id="scale-bool"),
        pytest.param(EDIT_MODEL_ID, edit(scale="0.5"), "scale", "must be a number", id="scale-str"),
        pytest.param(EDIT_MODEL_ID, edit(scale=math.nan), "scale", "between 0 and 1", id="scale-nan"),
        # force_single
        pytest.param(EDIT_MODEL_ID, edit(force_single="yes"), "force_single", "a bool", id="force-str"),
        pytest.param(EDIT_MODEL_ID, edit(force_single=1), "force_single", "a bool", id="force-int"),
        # frames
        pytest.param(VIDEO_MODEL_ID, video(frames=120), "frames", "121", id="frames-120"),
        pytest.param(VIDEO_MODEL_ID, video(frames="121"), "frames", "must be an integer", id="frames-str"),
        pytest.param(VIDEO_MODEL_ID, video(frames=121.0), "frames", "must be an integer", id="frames-float"),
        pytest.param(VIDEO_MODEL_ID, video(frames=True), "frames", "must be an integer", id="frames-bool"),
        # seed
        pytest.param(VIDEO_MODEL_ID, video(seed="x"), "seed", "must be an integer", id="seed-str"),
        pytest.param(VIDEO_MODEL_ID, video(seed=1.5), "seed", "must be an integer", id="seed-float"),
        pytest.param(VIDEO_MODEL_ID, video(seed=False), "seed", "must be an integer", id="seed-bool"),
    ],
)
def test_each_rule_refuses_and_names_the_field(model_id: str, inputs: Any, field: str, words: str) -> None:
    err = refusal(model_id, inputs)
    assert err.field == field
    assert words in err.rule
    assert str(err).startswith(f"{field}: ")


def test_an_input_error_fails_the_task_without_retries() -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    assert isinstance(refusal(EDIT_MODEL_ID, edit(scale=2)), AirflowFailException)


def test_the_size_error_lists_every_documented_size() -> None:
    err = refusal(EDIT_MODEL_ID, edit(**{SIZE_FIELD: "huge"}))
    assert all(label in err.rule for label in EDIT_SIZES)


# -- generic checks (every model) --------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_id",
    ["", "   ", "edit", "/", "a//b", "a/b c", "a/../b", "./a", "a/b?x=1", "a/b#f", None, 42],
)
def test_malformed_model_ids_are_refused(model_id: Any) -> None:
    err = refusal(model_id, {})
    assert err.field == "model_id"


def test_unknown_models_pass_after_the_generic_checks() -> None:
    inputs = {"prompt": "", "anything": [1, {"b": None}], "image_urls": "not checked"}
    assert validate_inputs("someone/new-model/v2", inputs) == inputs
    assert image_inputs("someone/new-model/v2", inputs) == []


@pytest.mark.parametrize(
    ("inputs", "field", "words"),
    [
        pytest.param([("prompt", "p")], "inputs", "must be a dict", id="list"),
        pytest.param("prompt=p", "inputs", "must be a dict", id="str"),
        pytest.param({1: "p"}, "inputs", "field names must be non-empty strings", id="int-key"),
        pytest.param({"": "p"}, "inputs", "field names must be non-empty strings", id="empty-key"),
        pytest.param({"when": datetime(2026, 1, 1)}, "when", "JSON-serializable", id="datetime"),
        pytest.param({"blob": b"\x89PNG"}, "blob", "JSON-serializable", id="bytes"),
        pytest.param({"deep": {"x": [object()]}}, "deep", "JSON-serializable", id="nested-object"),
        pytest.param({"ratio": math.inf}, "ratio", "JSON-serializable", id="infinity"),
        pytest.param({"ratio": Fraction(1, 3)}, "ratio", "JSON-serializable", id="fraction"),
    ],
)
def test_generic_checks_name_the_field(inputs: Any, field: str, words: str) -> None:
    err = refusal("someone/new-model", inputs)
    assert err.field == field
    assert words in err.rule


def test_known_models_also_get_the_json_check_on_unknown_keys() -> None:
    err = refusal(EDIT_MODEL_ID, edit(extra={1, 2}))
    assert err.field == "extra"


# -- normalize_size ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "label"),
    [
        ("2048x2048(1:1)", "2048x2048(1:1)"),
        ("2048x2048", "2048x2048(1:1)"),
        ("2048\u00d72048", "2048x2048(1:1)"),
        (" 2560 X 1440 ", "2560x1440(16:9)"),
        ("6198x2656 (21:9)", "6198x2656(21:9)"),
        ("1024X1024", "1024x1024(1:1)"),
    ],
)
def test_normalize_size_accepts_labels_and_bare_sizes(given: str, label: str) -> None:
    assert normalize_size(given) == label


@pytest.mark.parametrize("given", ["", "2048", "2048x2049", "4096x4096(16:9)", "big", 2048, None])
def test_normalize_size_refuses_the_rest(given: Any) -> None:
    with pytest.raises(RunComfyInputError) as info:
        normalize_size(given)
    assert info.value.field == "size"
    if isinstance(given, str):
        assert "2048x2048(1:1)" in info.value.rule  # the allowed values are listed


def test_every_documented_label_normalizes_to_itself() -> None:
    assert [normalize_size(label) for label in EDIT_SIZES] == list(EDIT_SIZES)


# -- image_inputs ------------------------------------------------------------------------------------


def test_image_inputs_name_each_url_with_its_index() -> None:
    urls = ["https://a.test/1.png", "https://a.test/2.jpg"]
    assert image_inputs(EDIT_MODEL_ID, edit(image_urls=urls)) == [
        ("image_urls[0]", urls[0]),
        ("image_urls[1]", urls[1]),
    ]
    assert image_inputs(VIDEO_MODEL_ID, video()) == [("image_urls[0]", URL)]


# -- image rules (pure; the probes apply them to real headers in test_images.py) ---------------------

EDIT_RULES = EDIT_SPEC.image_rules
VIDEO_RULES = VIDEO_SPEC.image_rules


@pytest.mark.parametrize(
    ("rules", "fmt", "width", "height", "size"),
    [
        pytest.param(EDIT_RULES, "PNG", 4096, 4096, 15_000_000, id="edit-max-side-and-bytes"),
        pytest.param(EDIT_RULES, "JPEG", 1000, 3000, None, id="edit-ratio-exactly-1/3"),
        pytest.param(EDIT_RULES, "JPEG", 3000, 1000, 1, id="edit-ratio-exactly-3"),
        pytest.param(EDIT_RULES, "PNG", 1, 1, 1, id="edit-no-min-side"),
        pytest.param(VIDEO_RULES, "PNG", 321, 321, 4_699_999, id="video-min-side-and-bytes"),
        pytest.param(VIDEO_RULES, "JPEG", 4096, 1366, None, id="video-ratio-just-under-3"),
        pytest.param(VIDEO_RULES, "JPEG", 331, 1000, None, id="video-ratio-just-over-0.33"),
    ],
)
def test_images_at_the_limits_pass(
    rules: ImageRules, fmt: str, width: int, height: int, size: int | None
) -> None:
    rules.check("image_urls[0]", fmt, width, height, size)


@pytest.mark.parametrize(
    ("rules", "fmt", "width", "height", "size", "words"),
    [
        pytest.param(
            EDIT_RULES, "GIF", 800, 600, 10, "GIF is not accepted by Dreamina 4.0 edit (JPEG or PNG only)"
        ),
        pytest.param(
            VIDEO_RULES, "WEBP", 800, 600, 10, "WEBP is not accepted by Dreamina 3.0 Pro image to video"
        ),
        pytest.param(EDIT_RULES, "PNG", 5000, 1200, None, "5000x1200 px is wider than the 4096 px"),
        pytest.param(EDIT_RULES, "PNG", 1200, 4097, None, "1200x4097 px is taller than the 4096 px"),
        pytest.param(EDIT_RULES, "PNG", 800, 600, 16_200_000, "16.2 MB is larger than the 15 MB"),
        pytest.param(EDIT_RULES, "PNG", 800, 600, 15_000_001, "15,000,001 bytes is larger than the 15 MB"),
        pytest.param(EDIT_RULES, "PNG", 989, 3000, None, "within [0.33, 3]"),
        pytest.param(EDIT_RULES, "PNG", 3001, 1000, None, "of 3.001;"),
        pytest.param(VIDEO_RULES, "PNG", 800, 600, 4_700_000, "under 4.7 MB (4,700,000 bytes)"),
        pytest.param(VIDEO_RULES, "PNG", 320, 800, None, "320x800 px is too narrow"),
        pytest.param(VIDEO_RULES, "PNG", 800, 320, None, "more than 320 px"),
        pytest.param(VIDEO_RULES, "PNG", 3000, 1000, None, "strictly between 0.33 and 3"),
        pytest.param(VIDEO_RULES, "PNG", 330, 1000, None, "exactly 0.33"),
        pytest.param(VIDEO_RULES, "PNG", 4097, 1000, None, "wider than the 4096 px"),
    ],
)
def test_image_rules_name_the_field_and_the_limit(
    rules: ImageRules, fmt: str, width: int, height: int, size: int | None, words: str
) -> None:
    with pytest.raises(RunComfyInputError) as info:
        rules.check("image_urls[2]", fmt, width, height, size)
    assert info.value.field == "image_urls[2]"
    assert words in info.value.rule
    assert rules.model in info.value.rule


def test_size_limits_use_the_stricter_decimal_megabyte() -> None:
    assert EDIT_RULES.largest_file == 15_000_000
    assert VIDEO_RULES.largest_file == 4_699_999


def test_validation_imports_neither_pillow_nor_httpx() -> None:
    # DAG files import this module at parse time: it must stay light. Airflow itself may load httpx
    # (3.x does), so compare with what the provider's exceptions (and thus Airflow) already load.
    code = (
        "import sys; import airflow_provider_runcomfy.exceptions; before = set(sys.modules); "
        "import airflow_provider_runcomfy.validation; "
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    added = out.stdout.strip().splitlines()[-1]
    assert "PIL" not in added
    assert "httpx" not in added
    assert "airflow_provider_runcomfy" in added  # the probe itself worked
