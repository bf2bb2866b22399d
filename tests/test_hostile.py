"""
A hostile world: odd or malicious API answers, image hosts and catalog schemas (issue 19).

Every peer here is real: a small hostile HTTP server of this suite's own (:mod:`tests.hostile`) on
127.0.0.1, or the emulator. The promises under test: a retry never pays twice, the token never
shows, memory stays bounded and nothing hangs. Bounds are asserted loosely (RSS growth in tens of
MiB, deadlines in seconds): the machine is shared and noisy.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from PIL import Image

from airflow_provider_runcomfy.cost import estimate_cost
from airflow_provider_runcomfy.downloads import copy_outputs
from airflow_provider_runcomfy.exceptions import (
    RunComfyBadRequestError,
    RunComfyDownloadError,
    RunComfyInputError,
    RunComfyInvalidResponseError,
    RunComfySchemaError,
    RunComfySubmitUncertainError,
    RunComfyUnavailableError,
)
from airflow_provider_runcomfy.hooks.runcomfy import MAX_ANSWER_BYTES, RunComfyHook
from airflow_provider_runcomfy.images import probe_images, probe_requests
from airflow_provider_runcomfy.jobs import MAX_OUTPUT_JSON, summarize_result
from airflow_provider_runcomfy.schema import ModelSchema
from airflow_provider_runcomfy.transport import RetryPolicy, Timeouts
from airflow_provider_runcomfy.triggers.runcomfy import RunComfyRequestTrigger
from airflow_provider_runcomfy.validation import EDIT_SPEC, ImageRules
from tests import airflow_utils as au
from tests.conftest import TEST_TOKEN, conn_json
from tests.hostile import (
    Answer,
    HostileServer,
    echo_authorization,
    hostile_server,
    json_answer,
    nested_json,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

MODEL = "someone/hostile-model"
SUBMIT = r"^/v1/models/someone/hostile-model$"
MIB = 1024 * 1024


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    """A hostile API on 127.0.0.1, wired to ``runcomfy_default`` (no hook retries, short timeouts)."""
    for server in hostile_server():
        monkeypatch.setenv(
            "AIRFLOW_CONN_RUNCOMFY_DEFAULT",
            conn_json(server.base_url, max_retries=0, connect_timeout=2, read_timeout=3),
        )
        from airflow_provider_runcomfy.catalog import CATALOG_CACHE

        CATALOG_CACHE.clear()
        yield server


def peak_rss() -> int:
    """The process's peak resident memory so far, in bytes (``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def run_hostile_dag(mode: str, failures: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("RUNCOMFY_TEST_FAILURES", str(failures))
    return au.run_dag(au.test_dags("http://127.0.0.1:9")[f"rc_hostile_{mode}"])


# -- item 1: a submit without a readable request_id is paid for once -----------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        Answer(body=b"<html><body>Welcome to our proxy</body></html>", content_type="text/html"),
        json_answer({"id": "job-1", "status": "in_queue"}),
        Answer(body=nested_json(200_000)),
    ],
    ids=["html-page", "another-json-shape", "nested-200k-deep"],
)
def test_a_taken_submit_without_a_readable_id_is_sent_once_despite_task_retries(
    hostile: HostileServer, answer: Answer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The task allows 2 retries; each would POST again (pay again) if the error were retryable.
    hostile.route(SUBMIT, answer, method="POST")
    run = run_hostile_dag("sync", tmp_path / "failures.txt", monkeypatch)

    assert run.state == "failed", au.task_states(run)
    assert len(hostile.requests("POST")) == 1, "the job may exist: never sent again"
    failure = (tmp_path / "failures.txt").read_text()
    assert "RunComfySubmitUncertainError" in failure
    assert "without a readable request_id" in failure


@pytest.mark.parametrize("mode", ["plain", "endless"])
def test_a_submit_answer_over_the_cap_is_uncertain_and_bounded(hostile: HostileServer, mode: str) -> None:
    hostile.route(
        SUBMIT, Answer(mode="huge" if mode == "plain" else "endless", size=MAX_ANSWER_BYTES + MIB, fill=b"x")
    )
    before = peak_rss()
    with RunComfyHook() as hook, pytest.raises(RunComfySubmitUncertainError, match="larger than"):
        hook.submit(MODEL, {"prompt": "x"})
    assert len(hostile.requests("POST")) == 1
    assert peak_rss() - before < 64 * MIB


def test_a_submit_whose_answer_drips_is_cut_at_the_deadline_and_not_resent(hostile: HostileServer) -> None:
    # Each byte comes well within read_timeout (3 s), so only an overall deadline stops it.
    hostile.route(SUBMIT, Answer(body=b'{"request_id": "r-1"}', mode="drip", interval=0.5))
    started = time.monotonic()
    with RunComfyHook() as hook, pytest.raises(RunComfySubmitUncertainError, match="ReadTimeout"):
        hook.submit(MODEL, {"prompt": "x"})
    assert time.monotonic() - started < 15  # connect 2 s + read 3 s, with room for a noisy machine
    assert len(hostile.requests("POST")) == 1


# -- item 3: the token never shows ------------------------------------------------------------------------


def test_an_echoed_token_never_reaches_the_failure_text_nor_xcom(
    hostile: HostileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile.route(SUBMIT, json_answer({"request_id": "r-1", "status": "in_queue"}), method="POST")
    hostile.route(r"/status$", json_answer({"status": "completed"}))
    failed = Answer(
        body=lambda seen: json.dumps(
            {"status": "failed", "error": json.loads(echo_authorization(seen))}
        ).encode()
    )
    hostile.route(r"/result$", failed)
    run = run_hostile_dag("deferrable", tmp_path / "failures.txt", monkeypatch)

    assert run.state == "failed", au.task_states(run)
    # (A failed job may be run again by a retry: that is the retries' purpose, and not at issue here.)
    failure = (tmp_path / "failures.txt").read_text()
    assert "RunComfyJobFailedError" in failure
    assert "rejected header: Authorization: Bearer ***" in failure  # the server's text, scrubbed
    assert TEST_TOKEN not in failure
    assert TEST_TOKEN not in json.dumps(au.all_xcom_values(run), default=str)


def test_echoed_tokens_are_scrubbed_from_every_error_event_and_warning(
    hostile: HostileServer, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile.route(SUBMIT, Answer(body=echo_authorization), method="POST")  # a 200 without request_id
    hostile.route(r"/cancel$", Answer(body=echo_authorization))  # says neither cancelled nor not
    # An unknown status word that quotes the token, then a failed result that does too.
    hostile.route(
        r"/r-1/status$",
        Answer(body=lambda seen: json.dumps({"status": echo_authorization(seen).decode()}).encode()),
    )
    hostile.route(r"/r-2/status$", json_answer({"status": "completed"}))
    hostile.route(
        r"/r-2/result$",
        Answer(
            body=lambda seen: json.dumps(
                {"status": "failed", "error": echo_authorization(seen).decode()}
            ).encode()
        ),
    )
    caplog.set_level("INFO")
    texts: list[str] = []
    with RunComfyHook() as hook:
        with pytest.raises(RunComfySubmitUncertainError) as uncertain:
            hook.submit(MODEL, {})
        texts.append(str(uncertain.value))
        with pytest.raises(RunComfyInvalidResponseError) as odd_cancel:
            hook.cancel("r-1")
        texts.append(str(odd_cancel.value))
    (timeout_event,) = asyncio.run(
        _events(RunComfyRequestTrigger("r-1", poll_interval=0.05, end_time=time.time() + 1))
    )
    (failed_event,) = asyncio.run(_events(RunComfyRequestTrigger("r-2", poll_interval=0.05)))
    # Logs: through ``logging`` on Airflow 2.11, printed by structlog on Airflow 3.
    logs = caplog.text + capsys.readouterr().out
    texts += [json.dumps(timeout_event), json.dumps(failed_event), logs]

    assert failed_event["status"] == "failed"
    assert "Bearer ***" in failed_event["message"]
    assert all("Bearer ***" in text for text in texts[:2])
    assert "unknown status word" in logs
    for text in texts:
        assert TEST_TOKEN not in text


async def _events(trigger: RunComfyRequestTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


def test_a_password_in_the_connection_host_is_never_shown_nor_sent(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = hostile.base_url.replace("http://", "http://alice:hunter2-secret@")
    monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", conn_json(host, max_retries=0))
    hostile.route(r"/status$", json_answer({"error_code": 404001, "error_message": "no such request"}, 404))
    ok, message = RunComfyHook().test_connection()

    assert ok, message
    assert hostile.base_url in message  # the message names the API...
    assert "hunter2" not in message  # ...but never the password in its host
    assert "alice" not in message
    (seen,) = hostile.seen
    assert seen.headers["Authorization"] == f"Bearer {TEST_TOKEN}"  # the token, not basic auth


# -- item 4/5: bounded answers, a deadline per call, a trigger that keeps its end_time --------------------


@pytest.mark.parametrize("mode", ["endless", "huge"])
def test_a_status_answer_over_the_cap_is_a_clear_error_with_bounded_memory(
    hostile: HostileServer, mode: str
) -> None:
    hostile.route(r"/status$", Answer(mode=mode, size=200 * MIB, fill=b"[1,"))
    before = peak_rss()
    with (
        RunComfyHook() as hook,
        pytest.raises(RunComfyInvalidResponseError, match="larger than 8,388,608 bytes"),
    ):
        hook.get_status("r-1")
    assert peak_rss() - before < 64 * MIB
    assert len(hostile.requests("GET")) == 1, "an answer too large is no transient failure"


def test_a_status_answer_nested_a_million_deep_is_an_invalid_answer(hostile: HostileServer) -> None:
    hostile.route(r"/status$", Answer(body=nested_json(1_000_000)))
    with RunComfyHook() as hook, pytest.raises(RunComfyInvalidResponseError, match="not a JSON object"):
        hook.get_status("r-1")


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_dripped_answer_is_cut_at_the_calls_deadline(hostile: HostileServer, flavour: str) -> None:
    hostile.route(r"/status$", Answer(body=b'{"status": "in_queue"}' + b" " * 200, mode="drip", interval=0.3))
    started = time.monotonic()
    hook = RunComfyHook()
    call = (
        (lambda: hook.get_status("r-1"))
        if flavour == "sync"
        else (lambda: asyncio.run(_status_then_close(hook)))
    )
    with pytest.raises(RunComfyUnavailableError, match="ReadTimeout"):
        call()
    assert time.monotonic() - started < 15  # the drip alone would take over 70 s


async def _status_then_close(hook: RunComfyHook) -> None:
    try:
        await hook.aget_status("r-1")
    finally:
        await hook.aclose()


def test_the_trigger_keeps_its_end_time_even_inside_a_slow_poll(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each poll may take 60 s by the connection's timeouts; the trigger's deadline is 2 s away.
    monkeypatch.setenv(
        "AIRFLOW_CONN_RUNCOMFY_DEFAULT",
        conn_json(hostile.base_url, max_retries=0, read_timeout=58, connect_timeout=2),
    )
    hostile.route(r"/status$", Answer(body=b'{"status": "in_queue"}' + b" " * 500, mode="drip", interval=0.5))
    hostile.route(r"/cancel$", json_answer({"outcome": "cancelled"}))
    started = time.monotonic()
    (event,) = asyncio.run(
        _events(RunComfyRequestTrigger("r-1", poll_interval=0.1, end_time=time.time() + 2))
    )

    assert event["status"] == "timeout"
    assert time.monotonic() - started < 45  # 2 s, then the last look's own bound (30 s) at most
    assert hostile.requests("POST", r"/cancel$"), "a maybe-queued job is cancelled at the deadline"


def test_a_huge_output_object_leaves_a_small_result_with_every_url() -> None:
    urls = [f"https://cdn.example/out/{i}.png" for i in range(3)]
    output = {"images": urls, "debug": "x" * (7 * MIB)}
    summary = summarize_result({"request_id": "r-1", "status": "succeeded", "output": output}, model_id=MODEL)

    assert summary["urls"] == urls
    assert summary["output"] == {"images": urls, "truncated": True}
    assert len(json.dumps(summary)) < MAX_OUTPUT_JSON
    small = summarize_result({"status": "succeeded", "output": {"image": urls[0], "seed": 7}}, model_id=MODEL)
    assert small["output"] == {"image": urls[0], "seed": 7}, "an ordinary output is kept whole"


def test_a_trigger_event_of_a_job_with_a_huge_output_is_small_and_keeps_every_url(
    hostile: HostileServer,
) -> None:
    urls = [f"https://cdn.example/out/{i}.mp4" for i in range(4)]
    result = {
        "status": "succeeded",
        "request_id": "r-1",
        "output": {"videos": urls, "frames": list(range(900_000))},
    }
    hostile.route(r"/status$", json_answer({"status": "completed"}))
    hostile.route(r"/result$", json_answer(result))
    (event,) = asyncio.run(_events(RunComfyRequestTrigger("r-1", poll_interval=0.05)))

    assert event["status"] == "success"
    assert event["result"]["urls"] == urls
    assert len(json.dumps(event)) < 2 * MAX_OUTPUT_JSON  # not the 6 MiB answer


def test_a_token_echoed_with_json_escapes_is_scrubbed_too(hostile: HostileServer) -> None:
    escaped = "\\u" + f"{ord(TEST_TOKEN[0]):04x}" + TEST_TOKEN[1:]
    hostile.route(r"/r-1/status$", Answer(body=('{"status": "' + escaped + '"}').encode()))
    deep = "[" * 990 + '"' + escaped + '"' + "]" * 990
    hostile.route(r"/r-2/status$", Answer(body=deep.encode()))
    with RunComfyHook() as hook:
        assert hook.get_status("r-1") == {"status": "***"}
        with pytest.raises(RunComfyInvalidResponseError) as err:
            hook.get_status("r-2")
    assert TEST_TOKEN[1:] not in str(err.value)


# -- item 6: path segments ---------------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", ["..", ".", "x/../../models", "a?b", "r%2F1"])
def test_request_ids_that_are_not_one_safe_segment_are_refused_before_any_request(
    hostile: HostileServer, request_id: str
) -> None:
    with RunComfyHook() as hook, pytest.raises(RunComfyBadRequestError, match="request_id"):
        hook.get_status(request_id)
    assert hostile.seen == []


@pytest.mark.parametrize("model_id", ["../requests/x/cancel", "owner/../x", "justone", "o/m?x=1", "o//m"])
def test_model_ids_that_are_not_owner_name_are_refused_before_any_request(
    hostile: HostileServer, model_id: str
) -> None:
    with RunComfyHook() as hook, pytest.raises(RunComfyBadRequestError, match="model_id"):
        hook.submit(model_id, {})
    assert hostile.seen == []


# -- items 2 and 7: catalog schemas ------------------------------------------------------------------------


def test_a_remote_or_file_ref_is_refused_and_never_fetched(hostile: HostileServer, tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"type": "string", "description": "LOCAL FILE CONTENT"}')
    for ref in (f"{hostile.base_url}/schema.json", secret.as_uri()):
        schema = {"type": "object", "properties": {"prompt": {"$ref": ref}}}
        with pytest.raises(RunComfySchemaError, match="outside the schema") as err:
            ModelSchema.from_schema(MODEL, schema).validate({"prompt": 5})
        assert "LOCAL FILE CONTENT" not in str(err.value)
    assert hostile.seen == [], "nothing was fetched"


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"properties": {"p": {"type": "string", "pattern": "^(a+)+$"}}}, "exponential time"),
        ({"properties": {"p": {"type": "string", "pattern": "^(a|aa)+$"}}}, "exponential time"),
        (
            {"properties": {"p": {"type": "string", "pattern": "(("}}},
            "not valid JSON Schema|not a valid regular",
        ),
        ({"properties": {"p": {"type": "strnig"}}}, "not valid JSON Schema"),
        ({"properties": {"p": {"type": "string", "maxLength": -1}}}, "not valid JSON Schema"),
        ({"properties": {"p": {"type": "string"}}, "required": "p"}, "'required' must be a list"),
        (
            {
                "properties": {"p": {"$ref": "#/definitions/a"}},
                "definitions": {"a": {"$ref": "#/definitions/a"}},
            },
            "loop",
        ),
        ({"properties": {"p": {"$ref": "#/definitions/missing"}}}, "does not resolve"),
        ({"properties": {"p": json.loads('{"items":' * 200 + "{}" + "}" * 200)}}, "nests deeper"),
    ],
    ids=[
        "nested-plus",
        "repeated-alternation",
        "bad-regex",
        "bad-type",
        "negative-maxLength",
        "required-string",
        "ref-loop",
        "ref-missing",
        "deep",
    ],
)
def test_unusable_schemas_are_refused_quickly(schema: dict[str, Any], problem: str) -> None:
    started = time.monotonic()
    with pytest.raises(RunComfySchemaError, match=problem):
        ModelSchema.from_schema(MODEL, schema).validate({"p": "a" * 40 + "!"})
    assert time.monotonic() - started < 10  # ^(a+)+$ on this input alone would take hours


def test_ordinary_patterns_still_work() -> None:
    schema = ModelSchema.from_schema(
        MODEL, {"properties": {"p": {"type": "string", "pattern": "^[a-z]+(-[a-z]+)*$"}}}
    )
    assert schema.validate({"p": "golden-hour-light"}) == {"p": "golden-hour-light"}
    with pytest.raises(RunComfyInputError, match="p"):
        schema.validate({"p": "Golden Hour"})


def test_a_million_value_enum_makes_a_short_message() -> None:
    schema = ModelSchema.from_schema(MODEL, {"properties": {"p": {"enum": list(range(1_000_000))}}})
    with pytest.raises(RunComfyInputError, match="more") as err:
        schema.validate({"p": -1})
    assert len(str(err.value)) < 3000


def test_a_schema_whose_properties_are_a_list_does_not_crash_the_cost_estimate() -> None:
    from airflow_provider_runcomfy.catalog import ModelInfo

    info = ModelInfo.from_api(
        {
            "model_id": MODEL,
            "base_price_usd": 0.02,
            "price_unit": "output",
            "input_schema": {"properties": ["x"]},
        }
    )
    estimate = estimate_cost(info, {"prompt": "x"})
    assert estimate.usd is not None


def test_an_unusable_catalog_schema_stops_the_task_before_any_submit(
    hostile: HostileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = {
        "model_id": MODEL,
        "display_name": "Hostile",
        "input_schema": {"properties": {"prompt": {"type": "strnig"}}},
    }
    hostile.route(r"^/v1/models/someone/hostile-model$", json_answer(entry), method="GET")
    run = run_hostile_dag("sync", tmp_path / "failures.txt", monkeypatch)

    assert run.state == "failed", au.task_states(run)
    assert hostile.requests("POST") == [], "nothing was sent, so nothing was paid"
    assert "RunComfySchemaError" in (tmp_path / "failures.txt").read_text()


# -- item 5: image pre-flight -----------------------------------------------------------------------------

EDIT = EDIT_SPEC.image_rules
FAST = RetryPolicy(max_retries=1, backoff=0.01, max_delay=0.05)


def test_a_valid_png_sent_in_one_byte_pieces_without_ranges_is_accepted(hostile: HostileServer) -> None:
    data = png_bytes(1200, 900)
    hostile.route(r"^/img\.png$", Answer(body=data, content_type="image/png", mode="pieces", piece=1))
    (probe,) = probe_images([("image_urls[0]", f"{hostile.base_url}/img.png")], EDIT, retry=FAST)
    assert (probe.format, probe.width, probe.height) == ("PNG", 1200, 900)


def test_an_endless_answer_without_length_is_read_only_to_the_bound(hostile: HostileServer) -> None:
    hostile.route(
        r"^/img$", Answer(status=206, content_type="image/png", mode="endless", fill=b"\x00" * 1024)
    )
    before = peak_rss()
    started = time.monotonic()
    with pytest.raises(RunComfyInputError, match="image_urls\\[0\\]"):
        probe_images([("image_urls[0]", f"{hostile.base_url}/img")], EDIT, retry=FAST)
    assert peak_rss() - before < 96 * MIB
    assert time.monotonic() - started < 25


def test_a_jpeg_of_endless_segments_without_ranges_is_read_only_to_twice_the_limit(
    hostile: HostileServer,
) -> None:
    segment = b"\xff\xe1\xff\xff" + b"\x00" * (0xFFFF - 2)
    hostile.route(
        r"^/img\.jpg$", Answer(body=b"\xff\xd8", content_type="image/jpeg", mode="endless", fill=segment)
    )
    rules = ImageRules(model="test", file_bytes=EDIT.file_bytes)  # 15 MB
    with pytest.raises(RunComfyInputError, match="not found in the first") as err:
        probe_images([("image_urls[0]", f"{hostile.base_url}/img.jpg")], rules, retry=FAST)
    assert "30,032,768" in str(err.value)  # 2 x (15 MB + 16 KiB), not 400 MiB


def test_a_range_server_of_endless_jpeg_segments_gets_a_bounded_number_of_requests(
    hostile: HostileServer,
) -> None:
    # Announced: 1 TiB of 64 KiB segments after the SOI, none of them a frame header; no size rule.
    segment = b"\xff\xe1\xff\xff" + b"\x00" * (0xFFFF - 2)
    stream = b"\xff\xd8" + segment * 20

    def file_bytes(start: int, end: int) -> bytes:
        if start >= 2:  # the file repeats its segment for ever: map into the first copies
            start = 2 + (start - 2) % len(segment)
            end = start + (end - start)
        out = bytearray()
        while len(out) < end - start:
            out += stream[start + len(out) : end]
            if start + len(out) >= len(stream):
                break
        return bytes(out)

    hostile.route(
        r"^/img\.jpg$", Answer(mode="ranged", size=1 << 40, file_bytes=file_bytes, content_type="image/jpeg")
    )
    with pytest.raises(RunComfyInputError, match="requests"):
        probe_images([("image_urls[0]", f"{hostile.base_url}/img.jpg")], ImageRules(model="test"), retry=FAST)
    assert len(hostile.seen) <= probe_requests(None) + 1  # 576, not thousands


# -- item 7: downloads ---------------------------------------------------------------------------------------


def test_a_download_redirected_to_a_file_url_fails_at_once(hostile: HostileServer, tmp_path: Path) -> None:
    hostile.route(r"^/out\.png$", Answer(status=302, headers=[("Location", "file:///etc/passwd")]))
    with pytest.raises(RunComfyDownloadError, match="not http"):
        copy_outputs(
            f"{hostile.base_url}/out.png", tmp_path / "keep", retry=RetryPolicy(max_retries=3, backoff=0.01)
        )
    assert len(hostile.requests("GET")) == 1, "no retry: the link redirects the same way every time"


def test_an_endless_video_stops_at_max_bytes_and_leaves_no_file(
    hostile: HostileServer, tmp_path: Path
) -> None:
    hostile.route(r"^/out\.mp4$", Answer(content_type="video/mp4", mode="endless", fill=b"\x00" * 4096))
    keep = tmp_path / "keep"
    started = time.monotonic()
    with pytest.raises(RunComfyDownloadError, match="max_bytes"):
        copy_outputs(
            f"{hostile.base_url}/out.mp4", keep, max_bytes=5 * MIB, timeouts=Timeouts(connect=2, read=5)
        )
    assert time.monotonic() - started < 25
    assert list(keep.iterdir()) == [], "no partial file, hidden or not"


def test_an_image_announcing_more_than_the_default_cap_is_refused_before_its_body(
    hostile: HostileServer, tmp_path: Path
) -> None:
    hostile.route(r"^/out\.png$", Answer(content_type="image/png", mode="huge", size=300 * MIB, fill=b"\x00"))
    with pytest.raises(RunComfyDownloadError, match="announces 314,572,800 bytes"):
        copy_outputs(f"{hostile.base_url}/out.png", tmp_path / "keep")
    assert list((tmp_path / "keep").iterdir()) == []


# -- item 8: the emulator ------------------------------------------------------------------------------------


def test_emulator_controls_need_the_control_token_when_one_is_set() -> None:
    import urllib.error

    from airflow_provider_runcomfy.emulator import RunComfyEmulator
    from airflow_provider_runcomfy.emulator.control import EmulatorControl

    with RunComfyEmulator(token=TEST_TOKEN, control_token="ctl-secret") as emu:
        with pytest.raises(urllib.error.HTTPError) as refused:
            EmulatorControl(emu.base_url).clear_faults()
        assert refused.value.code == 401
        assert httpx.get(f"{emu.base_url}/_emulator/requests").status_code == 401
        assert EmulatorControl(emu.base_url, control_token="ctl-secret").health()["status"] == "ok"


def test_the_emulator_cli_refuses_a_host_other_machines_reach_without_allow_remote(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from airflow_provider_runcomfy.emulator.__main__ import main

    assert main(["--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err
