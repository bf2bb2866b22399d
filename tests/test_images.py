"""
The image pre-flight checks, against real images served over HTTP by the local RunComfy emulator.

Every image here is a real file made by Pillow; every request goes over a socket on 127.0.0.1 and is
seen in the emulator's request log, so the tests can count what was fetched and who was sent what.
"""

from __future__ import annotations

import asyncio
import http.server
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import pytest

from airflow_provider_runcomfy.emulator import Fault
from airflow_provider_runcomfy.exceptions import RunComfyInputError
from airflow_provider_runcomfy.images import ImageProbe, aprobe_images, probe_images
from airflow_provider_runcomfy.transport import USER_AGENT, RetryPolicy, Timeouts
from airflow_provider_runcomfy.validation import EDIT_SPEC, VIDEO_SPEC

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from airflow_provider_runcomfy.validation import ImageRules

EDIT = EDIT_SPEC.image_rules
VIDEO = VIDEO_SPEC.image_rules
#: Fast retries: the tests prove the policy is followed, not that it sleeps.
FAST = RetryPolicy(max_retries=2, backoff=0.01, max_delay=0.05)
KIB = 1024


def probe(url: str, rules: ImageRules = EDIT, field: str = "image_urls[0]", **kw: Any) -> ImageProbe:
    kw.setdefault("retry", FAST)
    [result] = probe_images([(field, url)], rules, **kw)
    return result


def refusal(
    url: str, rules: ImageRules = EDIT, field: str = "image_urls[0]", **kw: Any
) -> RunComfyInputError:
    kw.setdefault("retry", FAST)
    with pytest.raises(RunComfyInputError) as info:
        probe_images([(field, url)], rules, **kw)
    return info.value


def image_gets(emu: Any) -> list[Any]:
    return [r for r in emu.requests if r.method == "GET" and r.path.startswith(("/images/", "/samples/"))]


def file_size(url: str) -> int:
    return len(httpx.get(url).content)


def closed_port() -> int:
    # Bind a free port and close it again: nothing listens there afterwards.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- what the probes report --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "pil_format", "width", "height"),
    [
        ("png", "PNG", 800, 600),
        ("jpeg", "JPEG", 800, 600),
        ("png", "PNG", 1000, 3000),
        ("jpeg", "JPEG", 4096, 1366),
        ("png", "PNG", 1, 1),
    ],
)
def test_probe_reports_format_size_and_bytes(
    emu: Any, fmt: str, pil_format: str, width: int, height: int
) -> None:
    url = emu.image_url(width, height, fmt)
    result = probe(url)
    assert (result.format, result.width, result.height) == (pil_format, width, height)
    assert result.size_bytes == file_size(url)
    assert (result.field, result.url) == ("image_urls[0]", url)
    assert 0 < result.bytes_read <= result.size_bytes


@pytest.mark.parametrize(
    ("name", "fmt", "size"),
    [
        ("portrait.png", "PNG", (768, 1024)),
        ("landscape.jpg", "JPEG", (1280, 720)),
        ("square.png", "PNG", (1024, 1024)),
    ],
)
def test_the_demo_samples_pass_both_models(emu: Any, name: str, fmt: str, size: tuple[int, int]) -> None:
    for rules in (EDIT, VIDEO):
        result = probe(emu.sample_url(name), rules)
        assert (result.format, (result.width, result.height)) == (fmt, size)


@pytest.mark.parametrize(
    ("fmt", "head_pad"),
    [("png", False), ("jpeg", False), ("jpeg", True)],
    ids=["png", "jpeg", "jpeg-padded-before-frame"],
)
@pytest.mark.parametrize("size", [1_000_000, 15_000_000])
def test_big_files_are_checked_from_at_most_64_kib(emu: Any, fmt: str, size: int, head_pad: bool) -> None:
    # With head_pad the emulator puts the padding *before* the frame header (a reader's worst case):
    # the segment walk hops over it with small range requests instead of reading it.
    result = probe(emu.image_url(1600, 1200, fmt, size_bytes=size, pad_before_frame=head_pad))
    assert result.size_bytes == size
    assert (result.width, result.height) == (1600, 1200)
    assert result.bytes_read <= 64 * KIB


def test_a_file_without_content_length_is_counted(emu: Any) -> None:
    result = probe(emu.image_url(800, 600, "jpeg", size_bytes=2_000_000, nolength=True))
    assert result.size_bytes == 2_000_000
    assert (result.format, result.width, result.height) == ("JPEG", 800, 600)
    assert len(image_gets(emu)) == 1


def test_a_file_without_content_length_stops_just_past_the_limit(emu: Any) -> None:
    err = refusal(emu.image_url(800, 600, "png", size_bytes=6_000_000, nolength=True), VIDEO)
    assert "4.7 MB" in err.rule
    assert "no Content-Length" in err.rule
    # Counting stopped soon after 4.7 MB, not at the end of the 6 MB file.
    stopped_at = int(err.rule.rsplit("after ", 1)[1].split(" ")[0].replace(",", ""))
    assert 4_700_000 <= stopped_at < 6_000_000


def test_a_file_at_the_limit_without_content_length_passes(emu: Any) -> None:
    result = probe(emu.image_url(800, 600, "png", size_bytes=15_000_000, nolength=True))
    assert result.size_bytes == 15_000_000


# -- the rules, on real headers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "kwargs", "words"),
    [
        pytest.param(
            EDIT, {"width": 5000, "height": 1200}, "5000x1200 px is wider than the 4096 px", id="wide"
        ),
        pytest.param(EDIT, {"width": 1200, "height": 4100}, "taller than the 4096 px", id="tall"),
        pytest.param(VIDEO, {"width": 300, "height": 800}, "more than 320 px", id="video-narrow"),
        pytest.param(VIDEO, {"width": 800, "height": 320}, "more than 320 px", id="video-short-320"),
        pytest.param(EDIT, {"width": 3100, "height": 1000}, "within [1/3, 3]", id="edit-ratio"),
        pytest.param(EDIT, {"width": 500, "height": 1600}, "within [1/3, 3]", id="edit-ratio-tall"),
        pytest.param(
            VIDEO, {"width": 1200, "height": 400}, "strictly between 0.33 and 3", id="video-ratio-3"
        ),
        pytest.param(
            EDIT, {"fmt": "gif"}, "GIF is not accepted by Dreamina 4.0 edit (JPEG or PNG only)", id="gif"
        ),
        pytest.param(VIDEO, {"fmt": "webp"}, "WEBP is not accepted", id="webp"),
        pytest.param(VIDEO, {"size_bytes": 4_700_000}, "under 4.7 MB", id="video-bytes"),
        pytest.param(EDIT, {"size_bytes": 16_200_000}, "16.2 MB is larger than the 15 MB", id="edit-bytes"),
        pytest.param(EDIT, {"size_bytes": 15_000_001, "fmt": "jpeg"}, "15,000,001 bytes", id="edit-bytes+1"),
    ],
)
def test_each_image_rule_fails_with_the_field_named(
    emu: Any, rules: ImageRules, kwargs: dict[str, Any], words: str
) -> None:
    params = {"width": 800, "height": 600, "fmt": "png", **kwargs}
    err = refusal(emu.image_url(**params), rules, field="image_urls[3]")
    assert err.field == "image_urls[3]"
    assert words in err.rule
    assert str(err).startswith("image_urls[3]: ")


def test_a_too_big_file_is_refused_from_its_headers(emu: Any) -> None:
    url = emu.image_url(800, 600, "png", size_bytes=20_000_000)
    err = refusal(url)
    assert "20.0 MB is larger than the 15 MB" in err.rule
    assert len(image_gets(emu)) == 1  # one request, refused on its Content-Range


def test_the_limits_themselves_pass(emu: Any) -> None:
    assert probe(emu.image_url(1000, 3000, "png", size_bytes=15_000_000)).size_bytes == 15_000_000
    result = probe(emu.image_url(321, 900, "jpeg", size_bytes=4_699_999), VIDEO)
    assert (result.width, result.size_bytes) == (321, 4_699_999)


# -- what cannot be fetched or read ------------------------------------------------------------------


def test_a_missing_url_answers_404(emu: Any) -> None:
    err = refusal(f"{emu.base_url}/images/nothing-here.png")
    assert "answered HTTP 404" in err.rule
    assert len(image_gets(emu)) == 1  # a 404 is final: not retried


def test_a_refused_connection_is_retried_then_reported(emu: Any) -> None:
    started = time.monotonic()
    err = refusal(f"http://127.0.0.1:{closed_port()}/a.png", field="image_urls[1]")
    assert err.field == "image_urls[1]"
    assert "could not be fetched" in err.rule
    assert "ConnectError" in err.rule
    assert f"after {FAST.max_retries + 1} attempts" in err.rule
    assert time.monotonic() - started < 5


def test_an_html_page_is_not_an_image(emu: Any) -> None:
    err = refusal(emu.not_image_url())
    assert "is not an image Pillow can read (content type text/html" in err.rule


def test_a_large_non_image_is_refused_after_the_first_window(emu: Any) -> None:
    err = refusal(emu.blob_url(10_000_000, "image/png"))
    assert "is not an image Pillow can read (content type image/png)" in err.rule
    blob_gets = [r for r in emu.requests if r.path.startswith("/blobs/")]
    assert len(blob_gets) == 1


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/a.png", "file:///etc/passwd", "data:image/png;base64,AAAA", "a.png"]
)
def test_non_http_urls_fail_without_any_request(emu: Any, url: str) -> None:
    images = [("image_urls[0]", emu.image_url()), ("image_urls[1]", url)]
    with pytest.raises(RunComfyInputError) as info:
        probe_images(images, EDIT, retry=FAST)
    assert info.value.field == "image_urls[1]"
    assert "only http(s) URLs can be fetched by RunComfy" in info.value.rule
    assert emu.requests == []


# -- retries -----------------------------------------------------------------------------------------


def test_a_transient_503_is_retried(emu: Any) -> None:
    emu.add_fault(Fault(path=r"^/images/", kind="status", status=503, times=1))
    result = probe(emu.image_url(800, 600, "png"))
    assert (result.width, result.height) == (800, 600)
    assert [r.status for r in image_gets(emu)] == [503, 206]


def test_retry_after_is_honoured(emu: Any) -> None:
    emu.add_fault(Fault(path=r"^/images/", kind="status", status=429, retry_after=0.4, times=1))
    started = time.monotonic()
    probe(emu.image_url(), retry=RetryPolicy(max_retries=2, backoff=0.01, max_delay=5))
    assert time.monotonic() - started >= 0.4
    assert [r.status for r in image_gets(emu)] == [429, 206]


def test_a_lasting_outage_gives_up_after_the_policy(emu: Any) -> None:
    emu.add_fault(Fault(path=r"^/images/", kind="status", status=503, times=None))
    err = refusal(emu.image_url())
    assert "could not be fetched: HTTP 503 (after 3 attempts)" in err.rule
    assert len(image_gets(emu)) == FAST.max_retries + 1


def test_a_body_cut_short_is_fetched_again(emu: Any) -> None:
    emu.add_fault(Fault(path=r"^/images/", kind="truncate", truncate_after=100, times=1))
    result = probe(emu.image_url(800, 600, "jpeg", size_bytes=1_000_000))
    assert (result.format, result.size_bytes) == ("JPEG", 1_000_000)


def test_a_dropped_connection_is_retried(emu: Any) -> None:
    emu.add_fault(Fault(path=r"^/images/", kind="drop", times=1))
    assert probe(emu.image_url()).format == "PNG"


def test_a_read_timeout_is_retried(emu: Any) -> None:
    emu.add_fault(Fault(path=r"^/images/", kind="delay", delay_seconds=1.0, times=1))
    result = probe(emu.image_url(), timeouts=Timeouts(connect=2, read=0.2))
    assert result.format == "PNG"
    assert len(image_gets(emu)) >= 1


# -- many images -------------------------------------------------------------------------------------


def test_images_are_probed_concurrently(emu: Any) -> None:
    widths = [850 + i for i in range(5)]  # sizes no other test uses, to find this test's requests
    images = [(f"image_urls[{i}]", emu.image_url(w, 600, "png")) for i, w in enumerate(widths)]
    probe_images(images, EDIT)  # warm the emulator's image cache: time only the delays below
    emu.add_fault(Fault(path=r"^/images/", kind="delay", delay_seconds=1.0, times=None))
    started = time.monotonic()
    results = probe_images(images, EDIT)
    elapsed = time.monotonic() - started
    assert [r.width for r in results] == widths  # in input order
    delayed = [r for r in image_gets(emu) if r.fault == "delay" and int(r.query["w"]) in widths]
    assert len(delayed) == 5
    assert elapsed < 4, f"5 images each delayed 1 s took {elapsed:.1f} s: not concurrent"


def test_every_failure_is_reported_in_one_error(emu: Any) -> None:
    images = [
        ("image_urls[0]", emu.image_url(800, 600, "png")),
        ("image_urls[1]", emu.image_url(800, 600, "gif")),
        ("image_urls[2]", f"{emu.base_url}/images/gone.png"),
    ]
    with pytest.raises(RunComfyInputError) as info:
        probe_images(images, EDIT, retry=FAST)
    assert info.value.field == "image_urls[1]"  # the first failure, in input order
    message = str(info.value)
    assert "image_urls[1]: GIF is not accepted" in message
    assert "image_urls[2]: answered HTTP 404" in message
    assert "image_urls[0]" not in message


def test_no_image_request_carries_a_token(emu: Any) -> None:
    probe_images(
        [
            ("image_urls[0]", emu.sample_url("portrait.png")),
            ("image_urls[1]", emu.image_url(900, 900, "jpeg")),
        ],
        EDIT,
    )
    gets = image_gets(emu)
    assert len(gets) == 2
    assert not any(r.auth_header_present for r in emu.requests)
    assert {r.user_agent for r in gets} == {USER_AGENT}


def test_no_images_means_no_requests(emu: Any) -> None:
    assert probe_images([], EDIT) == []
    assert emu.requests == []


def test_the_async_api_runs_in_an_existing_loop(emu: Any) -> None:
    async def main() -> list[ImageProbe]:
        return await aprobe_images([("image_urls[0]", emu.image_url(640, 480, "jpeg"))], VIDEO, retry=FAST)

    [result] = asyncio.run(main())
    assert (result.format, result.width, result.height) == ("JPEG", 640, 480)


def test_one_info_line_per_image(emu: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="airflow_provider_runcomfy.images"):
        probe_images(
            [("image_urls[0]", emu.image_url(800, 600, "png")), ("image_urls[1]", emu.image_url())], EDIT
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "airflow_provider_runcomfy.images"]
    assert len(lines) == 2
    assert lines[0].startswith("image_urls[0]: PNG 800x600 px")


# -- a server without range support ------------------------------------------------------------------


class _PlainHandler(http.server.BaseHTTPRequestHandler):
    """Serves fixed files with a Content-Length but ignores ``Range``, like many simple hosts."""

    files: ClassVar[dict[str, bytes]] = {}
    cut_first_after: ClassVar[int | None] = None
    gets: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).gets.append(self.headers.get("Range"))
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        cut = type(self).cut_first_after
        if cut is not None:
            type(self).cut_first_after = None
            self.wfile.write(data[:cut])
            self.close_connection = True
            return
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass


@pytest.fixture
def plain_server() -> Iterator[str]:
    from airflow_provider_runcomfy.emulator import media

    _PlainHandler.files = {
        "/padded.jpg": media.generate_image(800, 600, "jpeg", 1_000_000, before_frame=True),
        "/padded.png": media.generate_image(800, 600, "png", 1_000_000),
    }
    _PlainHandler.cut_first_after = None
    _PlainHandler.gets = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PlainHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_without_range_support_the_header_is_read_from_the_stream(plain_server: str) -> None:
    result = probe(f"{plain_server}/padded.png")
    assert (result.format, result.size_bytes) == ("PNG", 1_000_000)
    assert result.bytes_read <= 64 * KIB  # the stream is dropped once the header is known
    assert _PlainHandler.gets == ["bytes=0-16383"]


def test_without_range_support_a_jpeg_is_walked_to_its_frame_header(plain_server: str) -> None:
    # The padding before the frame header must be read through, but the image is not refused.
    result = probe(f"{plain_server}/padded.jpg")
    assert (result.format, result.width, result.height, result.size_bytes) == ("JPEG", 800, 600, 1_000_000)
    assert result.bytes_read > 900_000


def test_a_stream_cut_short_is_fetched_again_and_resumed(plain_server: str) -> None:
    _PlainHandler.cut_first_after = 100_000
    result = probe(f"{plain_server}/padded.jpg")
    assert (result.width, result.height, result.size_bytes) == (800, 600, 1_000_000)
    assert len(_PlainHandler.gets) == 2


def test_retries_are_counted_per_file_across_its_requests() -> None:
    # One failure on the first request, then every later range request fails: with two retries
    # allowed per file, the third failure ends the check, wherever it came from (a count per request
    # would send one request more).
    from airflow_provider_runcomfy.images import FIRST_WINDOW, _RemoteFile

    sent: list[str] = []

    class Window(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"\x00" * FIRST_WINDOW

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("Range", ""))
        if len(sent) == 2:
            headers = {"Content-Range": f"bytes 0-{FIRST_WINDOW - 1}/100000"}
            return httpx.Response(206, headers=headers, stream=Window())
        return httpx.Response(503)

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            source = _RemoteFile(client, "image_urls[0]", "https://images.test/a.png", FAST)
            try:
                await source.open()
                assert await source.read_at(0, 4) == b"\x00" * 4
                await source.read_at(50_000, 4)
            finally:
                await source.aclose()

    with pytest.raises(RunComfyInputError, match=r"HTTP 503 \(after 3 attempts\)"):
        asyncio.run(main())
    assert len(sent) == 4
    assert sent[-1].startswith("bytes=50000-")
