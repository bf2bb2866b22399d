"""
RunComfy's real input forms: the model pages' own schema form, ``data:`` URIs, and private files.

The witness of every refusal is the emulator's request log: no submit reaches it. The schemas are
the pages' (``../shared/seeds``), served by the emulator's catalog in the page form (its default)
and in the partner nodes' catalog form; the images are real, made by Pillow, served over HTTP on
127.0.0.1 or written to a temporary folder.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from airflow_provider_runcomfy.emulator.media import pad_image
from airflow_provider_runcomfy.exceptions import RunComfyInputError, RunComfySchemaError, redact_data_uris
from airflow_provider_runcomfy.media_sources import (
    MAX_REQUEST_BYTES,
    InlineFile,
    check_request_size,
    parse_data_uri,
)
from airflow_provider_runcomfy.operators.runcomfy import (
    RunComfyImageEditOperator,
    RunComfyImageToVideoOperator,
    RunComfyModelOperator,
)
from airflow_provider_runcomfy.schema import MediaKind, ModelSchema
from tests.airflow_utils import FakeTI
from tests.conftest import submits

if TYPE_CHECKING:
    from collections.abc import Iterator

EDIT = "bytedance/dreamina-4-0/edit"
VIDEO = "bytedance/dreamina-3-0/pro/image-to-video"
ECHO = "runcomfy/emulator/echo"


def image_bytes(
    width: int, height: int, fmt: str = "PNG", size: int | None = None, color: str = "teal"
) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, fmt)
    data = buf.getvalue()
    return pad_image(data, fmt.lower(), size) if size is not None else data


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def run(operator: Any) -> Any:
    return operator.execute({"ti": FakeTI()})


def edit(**kwargs: Any) -> RunComfyImageEditOperator:
    return RunComfyImageEditOperator(task_id="edit", prompt="ok", poll_interval=0.1, **kwargs)


def video(**kwargs: Any) -> RunComfyImageToVideoOperator:
    return RunComfyImageToVideoOperator(task_id="animate", prompt="ok", poll_interval=0.1, **kwargs)


def sent_images(emu: Any) -> list[str]:
    (post,) = submits(emu)
    body = post.body if isinstance(post.body, dict) else json.loads(post.body)
    return list(body["image_urls"])


@pytest.fixture(params=["page", "catalog"])
def form(emu: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """The emulator's catalog serving the documented models' schemas in one of RunComfy's two forms."""
    emu.schema_form = request.param
    yield request.param
    emu.schema_form = "page"


# -- the page form: every rule the page states is applied ---------------------------------------------


def test_the_shipped_schemas_are_the_pages_schemas() -> None:
    seeds = Path(__file__).resolve().parents[2] / "shared" / "seeds"
    if not seeds.is_dir():
        pytest.skip(f"the model pages are not beside this checkout ({seeds})")
    package = Path(__file__).resolve().parents[1] / "airflow_provider_runcomfy" / "schemas"
    for seed, name in (
        ("000_4442e4f49eb6651b.txt", "bytedance--dreamina-4-0--edit.json"),
        ("004_1e5109533c981eb4.txt", "bytedance--dreamina-3-0--pro--image-to-video.json"),
    ):
        text = (seeds / seed).read_text(encoding="utf-8")
        start = text.index("Esquema de entrada\n\n{") + len("Esquema de entrada\n\n")
        page = json.loads(text[start : text.index("\nEsquema de saída")])
        shipped = json.loads((package / name).read_text(encoding="utf-8"))["input_schema"]
        assert shipped == page, name


@pytest.mark.parametrize("where", ["field", "items"])
def test_a_media_field_is_known_by_its_format_on_the_field_or_on_its_items(where: str) -> None:
    rules = [{"validation_rule": "width/height≥", "validation_value": "0.33", "validation_error": "r"}]
    prop: dict[str, Any] = {"type": "array", "validations": rules}
    if where == "field":
        prop["format"] = "image_uris"
    else:
        prop["items"] = {"type": "string", "format": "image_uri"}
    schema = ModelSchema.from_schema("a/b", {"properties": {"image_urls": prop}})
    (media,) = schema.media
    assert (media.name, media.kind, media.many) == ("image_urls", MediaKind.IMAGE, True)
    assert media.rules.ratio.low is not None
    assert float(media.rules.ratio.low.value) == 0.33, "compared against the value as written"
    assert schema.unapplied == ()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        pytest.param(
            lambda emu: edit(image_urls=[emu.image_url(5000, 1000)]),
            ["Maximum resolution is 4096x4096.", "aspect ratio must be within [1/3, 3]."],
            id="edit-5000x1000-names-width-and-ratio",
        ),
        pytest.param(lambda emu: edit(image_urls=[emu.image_url(800, 600, "gif")]), ["GIF"], id="edit-gif"),
        pytest.param(
            lambda emu: edit(image_urls=[emu.image_url(250, 1000)]),
            ["The input image aspect ratio must be within [1/3, 3]."],
            id="edit-ratio-1-4",
        ),
        pytest.param(
            lambda emu: edit(image_urls=["ftp://example.com/a.png"]), ["http(s) URL"], id="edit-ftp"
        ),
        pytest.param(
            lambda emu: video(image_url=emu.image_url(300, 800)),
            ["The shortest side must be at least 320 pixels."],
            id="video-300px",
        ),
        pytest.param(
            lambda emu: video(image_url=emu.image_url(800, 600, "png", 5_000_000)),
            ["File size must be less than 4.7 MB."],
            id="video-5MB",
        ),
    ],
)
def test_the_pages_rules_refuse_before_any_submit_in_both_forms(
    emu: Any, form: str, make: Any, words: list[str]
) -> None:
    operator = make(emu)
    with pytest.raises(RunComfyInputError) as err:
        run(operator)
    assert str(err.value).startswith("image_urls[0]")
    for text in words:
        assert text in str(err.value)
    assert operator._schema.source == "catalog", "checked against the schema the catalog served"
    assert [m.name for m in operator._schema.media] == ["image_urls"]
    assert not submits(emu), "nothing was paid for"


def test_what_the_pages_accept_is_submitted_in_both_forms(emu: Any, form: str) -> None:
    run(edit(image_urls=[emu.image_url(331, 1000)]))  # 0.331: over the page's 0.33, under 1/3
    run(video(image_url=emu.sample_url("landscape.jpg"), seed=5_000_000_000))  # the page gives no range
    assert len(submits(emu)) == 2


def test_a_rule_that_cannot_be_applied_warns_and_strict_schema_refuses(
    emu: Any, caplog: pytest.LogCaptureFixture
) -> None:
    schema = {
        "properties": {
            "clip": {
                "type": "string",
                "format": "video_uri",
                "validations": [
                    {"validation_rule": "width_pixels<=", "validation_value": 1920, "validation_error": "w"}
                ],
            },
            "steps": {
                "type": "integer",
                "validations": [{"validation_rule": "file_size_mb<", "validation_value": 1}],
            },
            "image": {
                "type": "string",
                "format": "image_uri",
                "validations": [{"validation_rule": "bit_depth<=", "validation_value": 8}],
            },
        }
    }
    inputs = {"steps": 3}
    with caplog.at_level(logging.WARNING), pytest.raises(RunComfySchemaError) as err:
        run(
            RunComfyModelOperator(
                task_id="t", model_id=ECHO, inputs=inputs, input_schema=schema, strict_schema=True
            )
        )
    for text in ("clip: 'width_pixels<=' 1920 (needs the video decoded)", "steps:", "'bit_depth<='"):
        assert text in str(err.value)
    assert not submits(emu)
    run(
        RunComfyModelOperator(
            task_id="t", model_id=ECHO, inputs=inputs, input_schema=schema, poll_interval=0.1
        )
    )
    assert len(submits(emu)) == 1, "without strict_schema: warned, then sent"
    assert "needs the video decoded" in caplog.text
    assert "no media field; they cannot be checked" in caplog.text


# -- data: URIs -----------------------------------------------------------------------------------------


def test_a_valid_data_uri_is_sent_as_it_is(emu: Any) -> None:
    uri = data_uri(image_bytes(800, 600))
    run(edit(image_urls=[emu.sample_url("portrait.png"), uri]))
    assert sent_images(emu) == [emu.sample_url("portrait.png"), uri]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        pytest.param(
            data_uri(image_bytes(5000, 1000)), ["wider than the 4096 px", "aspect ratio"], id="wide"
        ),
        pytest.param(
            data_uri(image_bytes(800, 600, "PNG", 15_000_001)), ["15,000,001 bytes is larger"], id="too-big"
        ),
        pytest.param(data_uri(image_bytes(800, 600, "GIF"), "image/gif"), ["GIF is not accepted"], id="gif"),
        pytest.param(
            data_uri(image_bytes(800, 600, "JPEG")), ["says it is image/png but holds a JPEG"], id="type-lies"
        ),
        pytest.param(
            data_uri(image_bytes(800, 600), "video/mp4"), ["this field takes image files"], id="video"
        ),
        pytest.param("data:image/png;base64,iVBORw0KGgo@@@", ["base64 payload is broken"], id="broken"),
        pytest.param("data:image/png,plain", ["not base64-encoded"], id="not-base64"),
    ],
)
def test_a_bad_data_uri_is_refused_without_showing_its_bytes(emu: Any, value: str, words: list[str]) -> None:
    with pytest.raises(RunComfyInputError) as err:
        run(edit(image_urls=[value]))
    assert err.value.field == "image_urls[0]"
    for text in words:
        assert text in str(err.value)
    payload = value.partition(",")[2]
    assert payload[:24] not in str(err.value), "no base64 in the error text"
    assert not submits(emu)


def test_the_video_models_data_uri_limit_is_its_pages(emu: Any) -> None:
    too_big = data_uri(image_bytes(800, 600, "PNG", 4_700_000))
    with pytest.raises(RunComfyInputError, match=r"File size must be less than 4\.7 MB"):
        run(video(image_url=too_big))


def test_data_uris_in_texts_are_shown_by_type_size_and_digest() -> None:
    data = image_bytes(64, 64)
    shown = redact_data_uris(f"got ['{data_uri(data)}']")
    digest = hashlib.sha256(data).hexdigest()[:8]
    assert shown == f"got ['data:image/png ({len(data):,} bytes, sha256 {digest}\u2026)']"
    assert InlineFile("image/png", data).describe() in shown
    cut = redact_data_uris(repr(data_uri(data))[:60] + "...")
    assert "base64" not in cut, "a payload cut short is shown by its length"
    assert "not shown" in cut
    err = RunComfyInputError("image_urls[0]", f"odd {data_uri(data)}")
    assert base64.b64encode(data).decode()[:20] not in str(err) + err.rule


def test_parse_data_uri_decodes_exactly_the_bytes() -> None:
    data = image_bytes(10, 10)
    assert parse_data_uri("f", data_uri(data), "image") == InlineFile("image/png", data)


# -- local files, file:// -------------------------------------------------------------------------------


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
def test_a_local_file_is_checked_and_sent_inline(emu: Any, tmp_path: Path, as_url: bool) -> None:
    data = image_bytes(900, 600, "JPEG")
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    value = path.as_uri() if as_url else str(path)
    operator = edit(image_urls=[value])
    run(operator)
    (sent,) = sent_images(emu)
    assert sent == data_uri(data, "image/jpeg"), "a data: URI of exactly the file's bytes"
    assert operator.image_urls == [value], "the rendered field stays what the user wrote"


@pytest.mark.parametrize(
    ("size", "words"),
    [((5000, 1000), "Maximum resolution is 4096x4096."), ((800, 600, "PNG", 15_500_000), "15 MB")],
    ids=["too-wide", "too-big"],
)
def test_a_bad_local_file_is_refused_before_any_submit(
    emu: Any, tmp_path: Path, size: tuple[Any, ...], words: str
) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(image_bytes(*size))
    with pytest.raises(RunComfyInputError, match=words) as err:
        run(edit(image_urls=[emu.sample_url("portrait.png"), str(path)]))
    assert err.value.field == "image_urls[1]"
    assert not submits(emu)


def test_missing_and_unreadable_files_name_each_field_and_index(emu: Any, tmp_path: Path) -> None:
    with pytest.raises(RunComfyInputError) as err:
        run(edit(image_urls=[str(tmp_path / "gone.png"), str(tmp_path), "file://elsewhere/a.png"]))
    text = str(err.value)
    assert text.startswith("image_urls[0]: ")
    assert "does not exist" in text
    assert "image_urls[1]: " in text
    assert "is a directory" in text
    assert "image_urls[2]: " in text
    assert "file:// URLs must be local" in text
    assert not submits(emu)


def test_a_local_file_for_the_video_model_is_sent_inline(emu: Any, tmp_path: Path) -> None:
    data = image_bytes(640, 480)
    (tmp_path / "a.png").write_bytes(data)
    run(video(image_url=str(tmp_path / "a.png")))
    assert sent_images(emu) == [data_uri(data)]


# -- the 64 MiB body -----------------------------------------------------------------------------------


def test_a_body_over_64_mib_is_refused_naming_the_fields(emu: Any, tmp_path: Path) -> None:
    schema = {
        "properties": {"image_urls": {"type": "array", "items": {"type": "string", "format": "image_uri"}}}
    }
    paths = []
    for i in range(3):
        path = tmp_path / f"big{i}.png"
        path.write_bytes(image_bytes(100, 100, "PNG", 17_000_000))
        paths.append(str(path))
    with pytest.raises(RunComfyInputError) as err:
        run(
            RunComfyModelOperator(
                task_id="t", model_id=ECHO, inputs={"image_urls": paths}, input_schema=schema
            )
        )
    text = str(err.value)
    assert text.startswith("inputs: the request body would be ")
    assert "image_urls[0] 22,666," in text
    assert "image_urls[2]" in text
    assert "67,108,864 bytes (64 MiB)" in text
    assert not submits(emu)


def test_the_body_bound_counts_the_json_sent() -> None:
    payload = {"prompt": "x" * (MAX_REQUEST_BYTES - len('{"prompt":""}'))}
    assert check_request_size(payload) == MAX_REQUEST_BYTES
    with pytest.raises(RunComfyInputError, match="prompt 67,108,8"):
        check_request_size({"prompt": payload["prompt"] + "x"})


# -- video and audio: file sizes ---------------------------------------------------------------------------


def test_video_and_audio_data_uris_are_checked_for_size_and_type(emu: Any) -> None:
    schema = {
        "properties": {
            "video": {
                "type": "string",
                "format": "video_uri",
                "validations": [{"validation_rule": "file_size_mb<", "validation_value": "0.001"}],
            },
            "audio": {"type": "string", "format": "audio_uri"},
        }
    }
    mp4 = b"\x00\x00\x00\x18ftypmp42" + bytes(2000)
    wav = b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(100)
    inputs = {"video": data_uri(mp4, "video/mp4"), "audio": data_uri(wav, "audio/mpeg")}
    with pytest.raises(RunComfyInputError) as err:
        run(RunComfyModelOperator(task_id="t", model_id=ECHO, inputs=inputs, input_schema=schema))
    text = str(err.value)
    assert "video: 2,012 bytes is too large" in text
    assert "audio: says it is audio/mpeg but holds WAV data" in text
    assert not submits(emu)
    good = {"video": data_uri(mp4[:900], "video/mp4"), "audio": data_uri(wav, "audio/wav")}
    run(
        RunComfyModelOperator(task_id="t", model_id=ECHO, inputs=good, input_schema=schema, poll_interval=0.1)
    )
    assert len(submits(emu)) == 1


# -- the emulator takes data: URIs -------------------------------------------------------------------------


def test_the_emulator_runs_an_edit_from_a_data_uri_and_fails_a_broken_one(emu: Any) -> None:
    import time

    import httpx

    (url,) = run(edit(image_urls=[data_uri(image_bytes(900, 300, color="red"))]))

    with Image.open(io.BytesIO(httpx.get(url).content)) as out:
        # The requested size (the model's default 2048x2048, scaled down to the emulator's 1024 px),
        # drawn from the decoded input: its red.
        assert out.size == (1024, 1024)
        assert out.getpixel((out.width // 2, out.height // 3))[0] > 200, "drawn from the decoded input"
    # The provider refuses a broken payload; sent anyway, the emulator fails the job when it runs.
    headers = {"Authorization": f"Bearer {emu.token}"}
    body = {"prompt": "x", "image_urls": ["data:image/png;base64,@@@@"]}
    answer = httpx.post(f"{emu.base_url}/v1/models/{EDIT}", json=body, headers=headers).json()
    rid = answer["request_id"]
    for _ in range(200):
        result = httpx.get(f"{emu.base_url}/v1/requests/{rid}/result", headers=headers).json()
        if result.get("status") in ("failed", "succeeded", "completed"):
            break
        time.sleep(0.05)
    assert result["status"] == "failed"
    assert "image_urls[0]: the data URI's base64 payload is broken" in str(result)


# -- a deferrable run in real Airflow: the payload is stored nowhere ---------------------------------------


def metadata_database_text() -> str:
    """Every value of every table of the (SQLite) metadata database, blobs decoded as text."""
    import sqlite3

    from airflow.configuration import conf

    url = conf.get("database", "sql_alchemy_conn")
    assert url.startswith("sqlite:///"), url
    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        parts = []
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):  # names from sqlite_master
                for value in row:
                    if isinstance(value, bytes):
                        parts.append(value.decode("utf-8", "replace"))
                        parts.append(value.decode("latin-1"))
                    elif value is not None:
                        parts.append(str(value))
        return "\n".join(parts)
    finally:
        db.close()


def test_a_deferrable_run_with_a_local_file_stores_no_base64_anywhere(emu: Any, tmp_path: Path) -> None:
    import tests.airflow_utils as au

    noise = Image.effect_noise((700, 500), 64).convert("RGB")
    buf = io.BytesIO()
    noise.save(buf, "PNG")
    data = buf.getvalue()
    path = tmp_path / "private.png"
    path.write_bytes(data)
    dags = au.load_dags(Path(__file__).parent / "runcomfy_inputs_dags.py")
    run = au.run_dag(dags["rc_inputs_local_file"], {"images": [str(path)]})
    assert run.state == "success", au.task_states(run)
    assert sent_images(emu) == [data_uri(data)], "the submit carried the file inline"
    encoded = base64.b64encode(data).decode()
    stored = metadata_database_text()
    assert str(path) in stored, "the rendered field is the path the user wrote"
    for start in (0, len(encoded) // 2, len(encoded) - 48):
        assert encoded[start : start + 40] not in stored
    assert "data:image/png;base64" not in stored
    xcom_text = json.dumps(au.all_xcom_values(run), default=str)
    assert "base64" not in xcom_text
    assert au.xcoms(run, "request_id")[("edit", -1)]


# -- s3:// through Airflow's Amazon provider, against moto's S3 server on 127.0.0.1 -----------------------


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A private bucket on moto's S3 server (127.0.0.1), reachable through the connection ``s3_private``."""
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    pytest.importorskip("s3fs", reason="s3fs (apache-airflow-providers-amazon[s3fs]) is not installed")
    pytest.importorskip("airflow.providers.amazon", reason="the Amazon provider is not installed")
    import boto3

    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            monkeypatch.delenv(name, raising=False)
        conn = {
            "conn_type": "aws",
            "login": "moto-key",
            "password": "moto-secret",
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
        monkeypatch.setenv("AIRFLOW_CONN_S3_PRIVATE", json.dumps(conn))
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="moto-key",
            aws_secret_access_key="moto-secret",
        )
        client.create_bucket(Bucket="private-media")
        yield client
    finally:
        server.stop()


def test_s3_files_are_read_with_source_conn_id_and_sent_inline(emu: Any, s3_bucket: Any) -> None:
    data = image_bytes(1024, 768, "JPEG")
    s3_bucket.put_object(Bucket="private-media", Key="shoots/a.jpg", Body=data)
    s3_bucket.put_object(Bucket="private-media", Key="shoots/wide.png", Body=image_bytes(5000, 1000))
    run(edit(image_urls=["s3://private-media/shoots/a.jpg"], source_conn_id="s3_private"))
    assert sent_images(emu) == [data_uri(data, "image/jpeg")], "exactly the object's bytes"
    with pytest.raises(RunComfyInputError) as err:
        run(
            edit(
                image_urls=["s3://private-media/shoots/wide.png", "s3://private-media/shoots/gone.jpg"],
                source_conn_id="s3_private",
            )
        )
    text = str(err.value)
    assert text.startswith("image_urls[0]: ")
    assert "Maximum resolution is 4096x4096." in text
    assert "image_urls[1]: 's3://private-media/shoots/gone.jpg' does not exist" in text
    assert len(submits(emu)) == 1, "the bad files were not paid for"


def test_a_remote_videos_file_size_rule_is_enforced_from_its_length(emu: Any) -> None:
    schema = {
        "properties": {
            "prompt": {"type": "string"},
            "videos": {
                "type": "array",
                "items": {"type": "string", "format": "video_uri"},
                "validations": [
                    {
                        "validation_rule": "file_size_mb<",
                        "validation_value": 16,
                        "validation_error": "Video must be under 16 MB.",
                    }
                ],
            },
        }
    }
    small, big = emu.blob_url(900_000, "video/mp4"), emu.blob_url(16_800_000, "video/mp4")
    with pytest.raises(RunComfyInputError) as err:
        run(
            RunComfyModelOperator(
                task_id="t", model_id=ECHO, inputs={"videos": [small, big]}, input_schema=schema
            )
        )
    assert str(err.value).startswith("videos[1]: 16.8 MB is too large")
    assert "Video must be under 16 MB." in str(err.value)
    assert not submits(emu), "the 16.8 MB video was not paid for"
    fetched = [r for r in emu.requests if r.path.startswith("/blobs/")]
    assert fetched, "its length was asked for"
    assert not [r for r in fetched if r.auth_header_present], "media hosts never see the token"
    run(
        RunComfyModelOperator(
            task_id="t", model_id=ECHO, inputs={"videos": [small]}, input_schema=schema, poll_interval=0.1
        )
    )
    assert len(submits(emu)) == 1


# -- honest estimates for base prices ----------------------------------------------------------------------


def tiered(note: str | None, schema: dict[str, Any] | None = None) -> Any:
    from airflow_provider_runcomfy.catalog import ModelInfo

    body = {"model_id": "a/tiered", "base_price_usd": 0.04, "price_unit": "output", "input_schema": schema}
    if note is not None:
        body["pricing_note"] = note
    return ModelInfo.from_api(body)


def test_a_base_price_gives_an_at_least_estimate_which_the_budget_guards() -> None:
    from airflow_provider_runcomfy.cost import check_budget, estimate_cost
    from airflow_provider_runcomfy.exceptions import RunComfyBudgetExceededError

    resolution = {
        "properties": {"resolution": {"type": "string", "enum": ["1K", "2K", "4K"], "default": "2K"}}
    }
    by_note = estimate_cost(tiered("Base price for 1K; 2K and 4K cost more."), {})
    by_tier = estimate_cost(tiered(None, resolution), {})
    plain = estimate_cost(tiered("The RunComfy emulator's own price, for tests; not RunComfy's price."), {})
    assert by_note.basis.startswith("at least: 1 output")
    assert "Base price for 1K" in by_note.basis
    assert by_tier.basis.startswith("at least: ")
    assert "resolution='2K' is one of 3 tiers" in by_tier.basis
    assert (by_note.lower_bound, by_tier.lower_bound, plain.lower_bound) == (True, True, False)
    assert not plain.basis.startswith("at least")
    assert by_tier.usd == 0.04
    check_budget(by_tier, 0.06, model="a/tiered")  # the least it can cost is under the limit
    with pytest.raises(RunComfyBudgetExceededError, match="at least"):
        check_budget(by_tier, 0.03, model="a/tiered")


def test_a_reported_cost_over_max_cost_usd_is_a_warning_naming_both(
    emu: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    import tests.airflow_utils as au

    dags = au.load_dags(Path(__file__).parent / "runcomfy_inputs_dags.py")
    images = [emu.sample_url("portrait.png"), emu.sample_url("square.png"), emu.sample_url("landscape.jpg")]
    run = au.run_dag(dags["rc_inputs_billed_over_budget"], {"images": images})
    assert run.state == "success", au.task_states(run)
    assert au.xcoms(run, "result")[("edit", -1)]["cost_usd"] == pytest.approx(0.09)
    logs = caplog.text + "".join(capfd.readouterr())
    assert "cost $0.09, over max_cost_usd $0.05" in logs
    assert "$0.03 (1 output at least" in logs, "the warning quotes the estimate"


def test_the_private_files_example_runs_with_local_files(emu: Any, tmp_path: Path) -> None:
    import tests.airflow_utils as au

    paths = []
    for i, fmt in enumerate(("JPEG", "PNG")):
        path = tmp_path / f"look-{i}.{fmt.lower()}"
        path.write_bytes(image_bytes(800, 1000, fmt))
        paths.append(str(path))
    example = Path(__file__).parents[1] / "example_dags" / "runcomfy_private_files.py"
    run = au.run_dag(example, {"images": [paths[0], Path(paths[1]).as_uri()]})
    assert run.state == "success", au.task_states(run)
    sent = sent_images(emu)
    assert [uri.split(";")[0] for uri in sent] == ["data:image/jpeg", "data:image/png"]
    assert len(au.xcoms(run)[("edit_private_images", -1)]) == 2, "one output per input image"


def test_a_catalog_only_model_takes_a_data_uri_end_to_end(emu: Any) -> None:
    inputs = {"prompt": "inline", "image_urls": [data_uri(image_bytes(600, 300, color="navy"))]}
    (url,) = run(RunComfyModelOperator(task_id="t", model_id="runcomfy/emulator/demo-image", inputs=inputs))
    import httpx

    with Image.open(io.BytesIO(httpx.get(url).content)) as out:
        assert out.width == 2 * out.height, "drawn from the decoded input"
    with pytest.raises(RunComfyInputError, match=r"Images may be at most 2048 pixels wide\."):
        run(
            RunComfyModelOperator(
                task_id="t",
                model_id="runcomfy/emulator/demo-image",
                inputs={"prompt": "x", "image_urls": [data_uri(image_bytes(2100, 1000))]},
            )
        )
    assert len(submits(emu)) == 1


def test_a_local_audio_file_is_sent_with_its_type(emu: Any, tmp_path: Path) -> None:
    import wave

    path = tmp_path / "voice.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(1600))
    schema = {"properties": {"audio": {"type": "string", "format": "audio_uri"}}}
    run(RunComfyModelOperator(task_id="t", model_id=ECHO, inputs={"audio": str(path)}, input_schema=schema))
    (post,) = submits(emu)
    body = post.body if isinstance(post.body, dict) else json.loads(post.body)
    assert body["audio"] == data_uri(path.read_bytes(), "audio/wav")


def test_a_file_among_the_inputs_of_a_model_without_schema_is_pointed_out(
    emu: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    inputs = {
        "image": "/data/a.png",
        "refs": ["https://example.com/a.png", "s3://b/k.png"],
        "prompt": "a cat",
    }
    with caplog.at_level(logging.WARNING):
        run(RunComfyModelOperator(task_id="t", model_id=ECHO, inputs=inputs, poll_interval=0.1))
    logs = caplog.text + "".join(capfd.readouterr())
    assert "image looks like a file (/data/a.png)" in logs
    assert "refs[1] looks like a file (s3://b/k.png)" in logs
    assert "refs[0] looks like" not in logs
    assert "prompt looks like" not in logs
    assert len(submits(emu)) == 1, "sent as written: the schema is unknown"


def test_the_emulators_catalog_serves_both_schema_forms(emu: Any) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {emu.token}"}

    def image_urls_field() -> dict[str, Any]:
        answer = httpx.get(f"{emu.base_url}/v1/models/{EDIT}", headers=headers).json()
        listed = httpx.get(f"{emu.base_url}/v1/models?include_schema=true&search=dreamina-4", headers=headers)
        assert listed.json()["models"][0]["input_schema"] == answer["input_schema"]
        return dict(answer["input_schema"]["properties"]["image_urls"])

    page = image_urls_field()
    assert page["items"] == {"type": "string", "format": "image_uri"}
    assert "format" not in page
    assert page["validations"][3]["validation_value"] == "0.33", "as the page writes it"
    emu.schema_form = "catalog"
    try:
        catalog = image_urls_field()
    finally:
        emu.schema_form = "page"
    assert catalog["format"] == "image_uris"
    assert "format" not in catalog["items"]
    assert catalog["validations"][3]["validation_value"] == 0.33
    with pytest.raises(ValueError, match="schema_form"):
        emu.schema_form = "neither"
