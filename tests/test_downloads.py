"""
Tests of the output copy engine (``airflow_provider_runcomfy.downloads``).

Pure tests pin the input and naming rules; the rest copy real files from the RunComfy emulator over
HTTP on 127.0.0.1 (real PNG/JPEG images, real job outputs, injected truncations and error statuses)
into real directories and object stores, and check what is left there afterwards.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import tracemalloc
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.providers.common.compat.sdk import ObjectStoragePath
from PIL import Image

from airflow_provider_runcomfy.downloads import (
    copy_outputs,
    flatten_urls,
    output_file_name,
    public_url,
)
from airflow_provider_runcomfy.emulator import ECHO_MODEL, VIDEO_MODEL, Fault, blob_bytes
from airflow_provider_runcomfy.exceptions import (
    RunComfyDownloadError,
    RunComfyInputError,
    RunComfyOutputExpiredError,
)
from airflow_provider_runcomfy.transport import RetryPolicy, Timeouts
from tests.conftest import TEST_TOKEN

#: Retries without real sleeping (the policy's jitter stays, its scale is milliseconds).
FAST = RetryPolicy(max_retries=3, backoff=0.01, max_delay=0.5)
NO_RETRY = RetryPolicy(max_retries=0)
CDN = "https://cdn.runcomfy.net/model-api/outputs"


def served(url: str) -> bytes:
    """The bytes the emulator serves for ``url``, fetched independently of the code under test."""
    return httpx.get(url, timeout=10).content


def gets(emu: Any, path_prefix: str) -> list[Any]:
    return [r for r in emu.requests if r.method == "GET" and r.path.startswith(path_prefix)]


def listing(directory: Path) -> list[str]:
    """Every entry, hidden ones included: temporary ``.part`` files must never be left behind."""
    return sorted(os.listdir(directory)) if directory.exists() else []


def assert_no_auth(emu: Any) -> None:
    records = emu.requests
    assert records, "the emulator saw no request at all"
    assert not [r.path for r in records if r.auth_header_present]


def run_job(emu: Any, model_id: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Run a job on the emulator with plain HTTP (the API side is the hook's business, not tested here)."""
    headers = {"Authorization": f"Bearer {TEST_TOKEN}"}
    with httpx.Client(base_url=emu.base_url, headers=headers, timeout=10) as client:
        submitted = client.post(f"/v1/models/{model_id}", json=inputs)
        submitted.raise_for_status()
        request_id = submitted.json()["request_id"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            result = client.get(f"/v1/requests/{request_id}/result").json()
            if result["status"] == "succeeded":
                return result
            assert result["status"] in ("in_queue", "in_progress"), result
            time.sleep(0.1)
    raise AssertionError(f"job {request_id} did not finish")


# -- flatten_urls -------------------------------------------------------------------------------------


class LazySequence(Sequence[Any]):
    """Stands in for Airflow's ``LazyXComSequence``: a Sequence that is neither a list nor a tuple."""

    def __init__(self, items: list[Any]):
        self._items = items

    def __getitem__(self, index: Any) -> Any:
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)


def test_flatten_urls_accepts_a_string_lists_and_mapped_outputs_in_order() -> None:
    assert flatten_urls("https://a/1.png") == ["https://a/1.png"]
    assert flatten_urls(["https://a/1.png", "https://a/2.png"]) == ["https://a/1.png", "https://a/2.png"]
    assert flatten_urls(("https://a/1.png",)) == ["https://a/1.png"]
    mapped = LazySequence([["https://a/1.png", "https://a/2.png"], ["https://b/3.mp4"], []])
    assert flatten_urls(mapped) == ["https://a/1.png", "https://a/2.png", "https://b/3.mp4"]
    assert flatten_urls(iter([["https://a/1.png"], "https://b/2.png"])) == [
        "https://a/1.png",
        "https://b/2.png",
    ]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "None"),
        ([], "empty"),
        ([[], []], "empty"),
        ("", "empty string"),
        (["https://a/1.png", "  "], "[1] is an empty string"),
        (42, "got int"),
        (["https://a/1.png", [7]], "[1][0] must be a URL string"),
        (b"https://a/1.png", "got bytes"),
        ({"urls": ["https://a/1.png"]}, "pass its 'urls'"),
    ],
)
def test_flatten_urls_rejects_what_is_not_urls(value: Any, fragment: str) -> None:
    with pytest.raises(RunComfyInputError) as info:
        flatten_urls(value)
    assert info.value.field == "urls"
    assert fragment in str(info.value)


# -- names --------------------------------------------------------------------------------------------


def test_names_are_deterministic_and_keep_the_job_id() -> None:
    job_a, job_b = "9d7c1e52-aaaa-4bbb-8ccc-000000000001", "9d7c1e52-aaaa-4bbb-8ccc-000000000002"
    url_a, url_b = f"{CDN}/{job_a}/output.png", f"{CDN}/{job_b}/output.png"
    name_a = output_file_name(url_a, "image/png")
    assert name_a == output_file_name(url_a, "image/png")
    assert name_a != output_file_name(url_b, "image/png")
    assert name_a.startswith(f"outputs_{job_a}_output-")
    assert name_a.endswith(".png")
    # The hash covers the object, not the scheme.
    assert name_a == output_file_name(url_a.replace("https://", "http://"), "image/png")


def test_names_ignore_signatures_but_not_query_that_names_the_object() -> None:
    base = f"{CDN}/job-1/output.png"
    signed_1 = f"{base}?X-Amz-Signature=aaa&X-Amz-Expires=3600&X-Amz-Date=20261101T000000Z"
    signed_2 = f"{base}?X-Amz-Date=20261102T000000Z&X-Amz-Signature=bbb&X-Amz-Expires=600"
    cloudfront = f"{base}?Expires=1700000000&Signature=xyz&Key-Pair-Id=K1"
    azure = f"{base}?sv=2024-01-01&se=2026-12-01&sp=r&sig=abc"
    plain = output_file_name(base, "image/png")
    for url in (signed_1, signed_2, cloudfront, azure):
        assert output_file_name(url, "image/png") == plain, url
    # A host that names objects by query must not collapse them into one file.
    assert output_file_name("https://h/download?id=1", None) != output_file_name(
        "https://h/download?id=2", None
    )
    # Unless asked to keep the whole query (copy_outputs does, for look-alike URLs of one batch).
    assert output_file_name(signed_1, "image/png", full_query=True) != plain


@pytest.mark.parametrize(
    ("url", "content_type", "extension"),
    [
        ("https://h/a/output", "image/png", ".png"),
        ("https://h/a/output.png", "image/jpeg; charset=binary", ".jpg"),
        ("https://h/a/output", "IMAGE/WEBP", ".webp"),
        ("https://h/a/output", "video/mp4", ".mp4"),
        ("https://h/a/video.avi", "video/x-msvideo", ".avi"),
        ("https://h/a/output", "video/webm", ".webm"),
        ("https://h/a/clip.MOV", "application/octet-stream", ".mov"),
        ("https://h/a/output.webp?X-Amz-Signature=1", None, ".webp"),
        ("https://h/a/output", "application/octet-stream", ".bin"),
        ("https://h/a/output.tar-gz-long", None, ".bin"),
    ],
)
def test_extension_comes_from_content_type_then_url_then_bin(
    url: str, content_type: str | None, extension: str
) -> None:
    assert output_file_name(url, content_type).endswith(extension)
    assert Path(output_file_name(url, content_type)).suffix == extension


def test_names_are_safe_and_short_whatever_the_url() -> None:
    nasty = "https://h/" + "/".join(["..", "a b%2Fc", "ü" * 300, "x;rm -rf.png"])
    name = output_file_name(nasty, "image/png")
    assert "/" not in name
    assert " " not in name
    assert not name.startswith(".")
    assert len(name) <= 110
    assert output_file_name("https://h/", None).startswith("output-")


def test_public_url_drops_query_fragment_and_credentials() -> None:
    url = "https://user:pw@cdn.example/o/1.png?X-Amz-Signature=secret#frag"
    assert public_url(url) == "https://cdn.example/o/1.png"


# -- copying: the happy paths -------------------------------------------------------------------------


def test_copies_an_image_and_a_blob_byte_for_byte_in_order(emu: Any, tmp_path: Path) -> None:
    png, blob = emu.sample_url("portrait.png"), emu.blob_url(3_000_000)
    stored = copy_outputs([png, blob], tmp_path, retry=FAST)

    assert [Path(uri).suffix for uri in stored] == [".png", ".bin"]
    assert all(Path(uri).is_absolute() and Path(uri).parent == tmp_path for uri in stored)
    assert Path(stored[0]).read_bytes() == served(png)
    assert Path(stored[1]).read_bytes() == blob_bytes(0, 3_000_000)
    assert listing(tmp_path) == sorted(Path(uri).name for uri in stored)
    with Image.open(stored[0]) as image:
        assert image.format == "PNG"


def test_copies_real_job_outputs_named_after_their_job(emu: Any, tmp_path: Path) -> None:
    first = run_job(emu, ECHO_MODEL, {"prompt": "one"})
    second = run_job(emu, ECHO_MODEL, {"prompt": "two"})
    video = run_job(emu, VIDEO_MODEL, {"image_urls": [emu.sample_url("portrait.png")], "prompt": "p"})
    urls = [first["output"]["image"], second["output"]["image"], video["output"]["video"]]
    assert urls[0].endswith("/image.png")
    assert urls[1].endswith("/image.png")

    stored = copy_outputs(urls, tmp_path, retry=FAST)

    names = [Path(uri).name for uri in stored]
    assert first["request_id"] in names[0]
    assert second["request_id"] in names[1]
    assert names[2].endswith(".avi")
    assert video["request_id"] in names[2]
    for url, uri in zip(urls, stored, strict=True):
        assert Path(uri).read_bytes() == served(url)
    assert listing(tmp_path) == sorted(names)
    assert_no_auth_on_files(emu)


def assert_no_auth_on_files(emu: Any) -> None:
    """The job's API calls carry the token; the output downloads must not."""
    files = gets(emu, "/files/")
    assert files
    assert not [r.path for r in files if r.auth_header_present]
    assert any(r.auth_header_present for r in emu.requests if r.path.startswith("/v1/"))


def test_a_mapped_list_of_lists_comes_back_flat_and_duplicates_are_fetched_once(
    emu: Any, tmp_path: Path
) -> None:
    a, b = emu.image_url(64, 48, fmt="png"), emu.image_url(32, 32, fmt="jpeg")
    stored = copy_outputs(LazySequence([[a, b], [a]]), tmp_path, retry=FAST)

    assert len(stored) == 3
    assert stored[0] == stored[2] != stored[1]
    assert [Path(uri).suffix for uri in stored] == [".png", ".jpg", ".png"]
    assert len(gets(emu, "/images/")) == 2
    assert len(listing(tmp_path)) == 2


def test_file_uri_and_object_storage_path_destinations(emu: Any, tmp_path: Path) -> None:
    url = emu.blob_url(200_000, "video/mp4")
    as_string = copy_outputs(url, f"file://{tmp_path}/as-string/", retry=FAST)
    as_path = copy_outputs(url, ObjectStoragePath(f"file://{tmp_path}/as-osp"), retry=FAST)
    relative_parent = Path(os.path.relpath(tmp_path / "plain" / "deep", Path.cwd()))
    as_plain = copy_outputs(url, relative_parent, retry=FAST)

    name = output_file_name(url, "video/mp4")
    assert as_string == [f"file://{tmp_path}/as-string/{name}"]
    assert as_path == [f"file://{tmp_path}/as-osp/{name}"]
    assert as_plain == [str(tmp_path / "plain" / "deep" / name)]
    for directory in ("as-string", "as-osp", "plain/deep"):
        assert listing(tmp_path / directory) == [name]
        assert (tmp_path / directory / name).read_bytes() == blob_bytes(0, 200_000)


@pytest.fixture
def memory_store() -> Iterator[str]:
    """A non-local object store (fsspec's memory filesystem) registered the way a provider registers S3."""
    from fsspec.implementations.memory import MemoryFileSystem

    try:
        from airflow.sdk.io import attach  # Airflow 3
    except ImportError:
        from airflow.io.store import attach  # type: ignore[no-redef]  # Airflow 2.11

    attach(protocol="memory", fs=MemoryFileSystem())
    prefix = f"memory://bucket/{uuid.uuid4().hex}"
    yield prefix
    MemoryFileSystem().rm(prefix.removeprefix("memory:/"), recursive=True)


def test_object_store_destination_moves_complete_files_only(
    emu: Any, memory_store: str, tmp_path: Path
) -> None:
    png = emu.image_url(40, 30, fmt="png")
    stored = copy_outputs([png], f"{memory_store}/out", retry=FAST)

    name = output_file_name(png, "image/png")
    assert len(stored) == 1
    assert stored[0].startswith("memory://")
    assert stored[0].endswith(f"/out/{name}")
    path = ObjectStoragePath(f"{memory_store}/out")
    assert sorted(p.name for p in path.iterdir()) == [name]
    assert ObjectStoragePath(stored[0]).read_bytes() == served(png)

    # A retry lands on the same key, replacing it (fsspec ``mv`` over an existing object).
    assert copy_outputs([png], f"{memory_store}/out", retry=FAST) == stored
    assert sorted(p.name for p in path.iterdir()) == [name]

    # A corrupt image is refused and its temporary object removed from the store as well.
    with pytest.raises(RunComfyDownloadError):
        copy_outputs(emu.blob_url(5_000, "image/png"), f"{memory_store}/out", retry=FAST)
    assert sorted(p.name for p in path.iterdir()) == [name]


def test_a_conflicting_conn_id_is_refused() -> None:
    destination = ObjectStoragePath("s3://my_aws@bucket/prefix")
    with pytest.raises(RunComfyInputError, match="conn_id"):
        copy_outputs("https://cdn.example/a.png", destination, conn_id="other_aws")


def test_a_retry_run_overwrites_its_own_files(emu: Any, tmp_path: Path) -> None:
    urls = [emu.image_url(20, 20, fmt="png"), emu.blob_url(50_000)]
    first = copy_outputs(urls, tmp_path, retry=FAST)
    (tmp_path / Path(first[1]).name).write_bytes(b"stale")
    second = copy_outputs(urls, tmp_path, retry=FAST)

    assert first == second
    assert listing(tmp_path) == sorted(Path(uri).name for uri in first)
    assert Path(second[1]).read_bytes() == blob_bytes(0, 50_000)


def test_no_request_carries_an_authorization_header(emu: Any, tmp_path: Path) -> None:
    emu.add_fault(Fault(path=r"^/blobs/", kind="status", status=503, times=1))
    copy_outputs([emu.sample_url("portrait.png"), emu.blob_url(10_000)], tmp_path, retry=FAST)
    assert len(emu.requests) == 3
    assert_no_auth(emu)


# -- copying: failures --------------------------------------------------------------------------------


def test_a_truncated_download_without_retries_leaves_nothing_then_completes(emu: Any, tmp_path: Path) -> None:
    url = emu.blob_url(3_000_000)
    emu.add_fault(Fault(path=r"^/blobs/", kind="truncate", truncate_after=1_000_000, times=1))
    with pytest.raises(RunComfyDownloadError) as info:
        copy_outputs(url, tmp_path, retry=NO_RETRY)
    message = str(info.value)
    assert "after 1 attempt" in message
    assert public_url(url) in message
    assert "?" not in message
    assert listing(tmp_path) == []

    stored = copy_outputs(url, tmp_path, retry=NO_RETRY)
    assert Path(stored[0]).read_bytes() == blob_bytes(0, 3_000_000)
    assert listing(tmp_path) == [Path(stored[0]).name]


def test_a_truncated_download_heals_within_one_call(emu: Any, tmp_path: Path) -> None:
    url = emu.blob_url(2_000_000)
    emu.add_fault(Fault(path=r"^/blobs/", kind="truncate", truncate_after=500_000, times=2))
    stored = copy_outputs(url, tmp_path, retry=FAST)

    assert len(gets(emu, "/blobs/")) == 3
    assert Path(stored[0]).read_bytes() == blob_bytes(0, 2_000_000)
    assert listing(tmp_path) == [Path(stored[0]).name]


@pytest.mark.parametrize("status", [404, 403])
def test_an_expired_link_says_so_and_leaves_nothing(emu: Any, tmp_path: Path, status: int) -> None:
    url = emu.blob_url(10_000) + "&X-Amz-Signature=topsecret"
    emu.add_fault(Fault(path=r"^/blobs/", kind="status", status=status, times=None))
    with pytest.raises(RunComfyOutputExpiredError) as info:
        copy_outputs(url, tmp_path, retry=FAST)
    message = str(info.value)
    assert "expired" in message
    assert public_url(url) in message
    assert "topsecret" not in message
    assert len(gets(emu, "/blobs/")) == 1, "an expired link is not retried"
    assert listing(tmp_path) == []


def test_a_job_output_past_its_lifetime_is_reported_expired(emu: Any, tmp_path: Path) -> None:
    emu.result_ttl_seconds = 0.3
    result = run_job(emu, ECHO_MODEL, {"prompt": "soon gone"})
    time.sleep(0.4)
    with pytest.raises(RunComfyOutputExpiredError, match="expired"):
        copy_outputs(result["output"]["image"], tmp_path, retry=FAST)
    assert listing(tmp_path) == []


def test_503_twice_then_success_honours_retry_after(emu: Any, tmp_path: Path) -> None:
    url = emu.blob_url(100_000)
    emu.add_fault(Fault(path=r"^/blobs/", kind="status", status=503, retry_after=0.15, times=2))
    started = time.monotonic()
    stored = copy_outputs(url, tmp_path, retry=FAST)

    assert time.monotonic() - started >= 0.3
    assert [r.status for r in gets(emu, "/blobs/")] == [503, 503, 200]
    assert Path(stored[0]).read_bytes() == blob_bytes(0, 100_000)


def test_retries_run_out_with_the_url_attempts_and_cause(emu: Any, tmp_path: Path) -> None:
    url = emu.blob_url(1_000)
    emu.add_fault(Fault(path=r"^/blobs/", kind="status", status=502, times=None))
    with pytest.raises(RunComfyDownloadError) as info:
        copy_outputs(url, tmp_path, retry=RetryPolicy(max_retries=2, backoff=0.01, max_delay=0.05))
    assert "after 3 attempts" in str(info.value)
    assert "HTTP 502" in str(info.value)
    assert public_url(url) in str(info.value)
    assert len(gets(emu, "/blobs/")) == 3
    assert listing(tmp_path) == []


def test_a_dropped_connection_and_a_slow_server_are_retried(
    emu: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = emu.blob_url(10_000)
    emu.add_fault(Fault(path=r"^/blobs/", kind="drop", times=1))
    emu.add_fault(Fault(path=r"^/blobs/", kind="delay", delay_seconds=1.0, times=1))
    with caplog.at_level(logging.INFO, logger="airflow_provider_runcomfy.downloads"):
        stored = copy_outputs(url, tmp_path, retry=FAST, timeouts=Timeouts(connect=2, read=0.3))

    assert Path(stored[0]).read_bytes() == blob_bytes(0, 10_000)
    ours = [r for r in caplog.records if r.name == "airflow_provider_runcomfy.downloads"]
    retries = [r.getMessage() for r in ours if r.levelno == logging.WARNING]
    assert len(retries) == 2
    assert "RemoteProtocolError" in retries[0]
    assert "retry 1 of 3" in retries[0]
    assert "ReadTimeout" in retries[1]
    assert "retry 2 of 3" in retries[1]
    # One INFO line per file: public URL, destination, size and speed; never the query string.
    done = [r.getMessage() for r in ours if r.levelno == logging.INFO]
    assert len(done) == 1
    assert public_url(url) in done[0]
    assert stored[0] in done[0]
    assert "10000 bytes" in done[0]
    assert "MB/s" in done[0]
    assert "type=" not in done[0]


def test_a_corrupt_image_is_refused_and_leaves_nothing(emu: Any, tmp_path: Path) -> None:
    url = emu.blob_url(20_000, "image/png")
    with pytest.raises(RunComfyDownloadError, match="not a valid image"):
        copy_outputs(url, tmp_path, retry=FAST)
    assert listing(tmp_path) == []
    assert len(gets(emu, "/blobs/")) == 1, "the same corrupt bytes would come again: no retry"

    # Verification can be turned off (e.g. for a format Pillow reads differently).
    stored = copy_outputs(url, tmp_path, retry=FAST, verify_images=False)
    assert stored[0].endswith(".png")
    assert Path(stored[0]).stat().st_size == 20_000


def test_an_image_cut_short_by_a_close_delimited_body_is_refused(emu: Any, tmp_path: Path) -> None:
    # Without Content-Length, a body cut by a closed connection looks complete to HTTP: only the image
    # check can tell.
    url = emu.image_url(300, 200, fmt="png", nolength=True)
    whole = len(served(url))
    emu.add_fault(Fault(path=r"^/images/", kind="truncate", truncate_after=whole // 2, times=None))
    with pytest.raises(RunComfyDownloadError, match="not a valid image"):
        copy_outputs(url, tmp_path, retry=FAST)
    assert listing(tmp_path) == []


def test_bad_inputs_are_refused_before_any_request(emu: Any, tmp_path: Path) -> None:
    with pytest.raises(RunComfyInputError, match="http"):
        copy_outputs("file:///etc/passwd", tmp_path)
    with pytest.raises(RunComfyInputError, match="chunk_size"):
        copy_outputs(emu.blob_url(10), tmp_path, chunk_size=0)
    with pytest.raises(RunComfyInputError, match="destination"):
        copy_outputs(emu.blob_url(10), None)  # type: ignore[arg-type]
    assert emu.requests == []


def test_memory_stays_flat_while_streaming(emu: Any, tmp_path: Path) -> None:
    size = 48 * 1024 * 1024
    tracemalloc.start()
    try:
        stored = copy_outputs(emu.blob_url(size), tmp_path, retry=FAST)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert Path(stored[0]).stat().st_size == size
    assert peak < 8 * 1024 * 1024, (
        f"peak Python allocation {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB file"
    )
    digest = hashlib.sha256(Path(stored[0]).read_bytes()).hexdigest()
    assert digest == hashlib.sha256(blob_bytes(0, size)).hexdigest()
