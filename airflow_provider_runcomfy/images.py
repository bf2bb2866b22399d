"""
Check the input images against a model's limits before a paid submit, reading as little as possible.

RunComfy fetches every input URL itself when the job runs; an image it refuses may cost a paid run.
The checks here fetch each URL once, read only the image's header (format, width and height) and
its size, and apply :class:`~airflow_provider_runcomfy.validation.ImageRules`.

How little is read:

* The size comes from the headers (``Content-Range`` or ``Content-Length``): a file over the limit
  is refused before any of its body is read. Only a server that sends no length makes us count the
  body, and then only up to one byte past the limit.
* The first request asks for the first 16 KiB (``Range: bytes=0-16383``), which holds the header of
  nearly every PNG, GIF, WebP and JPEG. A server that ignores ranges answers ``200`` and its body is
  streamed and dropped as soon as the header is known.
* A JPEG may carry megabytes of metadata (EXIF, ICC profiles, extended XMP, comments) *before* its
  frame header. Pillow's JPEG reader reads every segment up to the image data, so JPEGs are walked
  here instead: 4 bytes per segment are enough to hop over it, and when the server honours ranges
  each large segment is skipped with a small ``Range`` request instead of being downloaded. That
  costs a round trip per large segment, which is the price of not downloading them.
* Pixel data is never decoded (no decompression bomb can bite), and Pillow only opens headers.

No request carries the API token: the client here has no auth at all, so redirects to other hosts
are safe to follow.

This module imports httpx and Pillow: operators import it inside ``execute()``, never at DAG parse
time.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import httpx
from PIL import Image

from airflow_provider_runcomfy.exceptions import RunComfyInputError
from airflow_provider_runcomfy.retry import (
    RetriesExhausted,
    RetryCounter,
    RetryPolicy,
    TransientError,
    is_transient_status,
    parse_retry_after,
)
from airflow_provider_runcomfy.transport import Timeouts, make_async_client

if TYPE_CHECKING:
    from airflow_provider_runcomfy.limits import ImageRules

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The first request's window: the header of nearly every image fits in it.
FIRST_WINDOW = 16 * 1024
#: The window read after a small JPEG segment: the next few small segments (DQT, SOF...) fit in it.
NEAR_WINDOW = 4 * 1024
#: The window read after hopping over a large JPEG segment: large metadata comes in runs of 64 KiB
#: segments (ICC chains, extended XMP), so the next thing needed is usually just a 4-byte segment head.
HOP_WINDOW = 128
#: A JPEG segment at least this long counts as large (see ``HOP_WINDOW``).
LARGE_SEGMENT = 16 * 1024
#: Bytes that are not a segment marker tolerated between JPEG segments (libjpeg skips them too).
MAX_JPEG_JUNK = 4096
#: How far a header is looked for when the model sets no file size limit (headers are far smaller).
HEADER_LIMIT = 32 * 1024 * 1024
#: Redirects followed per request; image hosts (S3 presigned links, CDNs) redirect once or twice.
MAX_REDIRECTS = 5
#: Requests per image besides range hops, retries included; see :func:`probe_requests`.
BASE_REQUESTS_PER_IMAGE = 64
#: Range hops allowed per byte of the size limit: one per 64 KiB (the largest JPEG segment), so a
#: JPEG within the limit can always be walked, and a "JPEG" of endless segments cannot.
HOP_BYTES = 64 * 1024

# JPEG markers: frame headers (SOF0-15 without DHT, JPG and DAC), standalone markers without a length.
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_SOI = b"\xff\xd8\xff"

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


@dataclass(frozen=True)
class ImageProbe:
    """
    What the header of one input image says.

    :param field: the input's name with its index, e.g. ``image_urls[0]``.
    :param url: the URL as given.
    :param format: Pillow's format name (``"PNG"``, ``"JPEG"``...).
    :param width: the width in pixels.
    :param height: the height in pixels.
    :param size_bytes: the file size in bytes, ``None`` when it could not be known.
    :param bytes_read: body bytes fetched to learn all this (for benchmarks and tests).
    """

    field: str
    url: str
    format: str
    width: int
    height: int
    size_bytes: int | None
    bytes_read: int


def _content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """Read ``bytes first-last/total`` (``total`` ``None`` for ``*``); ``None`` when absent or odd."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), int(match.group(2)), total


def _content_length(response: httpx.Response) -> int | None:
    try:
        length = int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None
    return length if length >= 0 else None


class _RemoteFile:
    """
    The bytes of one remote file, read forward only and as sparsely as the server allows.

    With range support every read is a small ``Range`` request read to its end, so the connection
    stays in the pool for the next one. Without it, one ``GET`` is streamed and the bytes not asked
    for are dropped as they pass. Transient failures (transport errors, 408, 429, 5xx) are retried
    with the :class:`RetryPolicy`, honouring ``Retry-After``; the retries are counted per file.

    :param client: the shared client (no auth).
    :param field: the input's name, for messages.
    :param url: the URL to read.
    :param retry: the retry policy.
    :param max_bytes: the most body bytes fetched for this file, over every request (a hostile host
        that never sends the header costs this much at most, see :func:`probe_budget`).
    :param max_requests: the most requests sent for this file (see :func:`probe_requests`).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        field: str,
        url: str,
        retry: RetryPolicy,
        max_bytes: int = 2 * HEADER_LIMIT,
        max_requests: int = BASE_REQUESTS_PER_IMAGE,
    ):
        self.field = field
        self.max_bytes = max_bytes
        self.max_requests = max_requests
        self._requests = 0
        self.url = url
        self.total: int | None = None
        self.content_type = ""
        self._client = client
        self._retry = retry
        self._target: httpx.URL | str = url
        self._ranged = False
        self._failures = RetryCounter()
        self._read_before = 0  # body bytes of responses already closed
        # The bytes last fetched: ``_buf`` holds file bytes from offset ``_buf_start``.
        self._buf = b""
        self._buf_start = 0
        # The open response: the first one until its body is read, or the stream without ranges.
        self._response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None  # the open stream's body, without ranges
        self._pending = b""  # bytes of the stream already fetched but not yet handed out
        self._stream_pos = 0  # file offset of the next byte the stream hands out
        self._eof = False

    @property
    def bytes_read(self) -> int:
        """Body bytes fetched so far, over every request."""
        current = self._response.num_bytes_downloaded if self._response is not None else 0
        return self._read_before + current

    async def open(self) -> None:
        """
        Send the first request and learn the file's size and type, without reading the body yet.

        The body stays unread so a caller can refuse a file by its size first.
        """
        response = await self._send({"Range": f"bytes=0-{FIRST_WINDOW - 1}"})
        self._target = response.url
        self.content_type = response.headers.get("Content-Type", "")
        if response.status_code == 206:
            span = _content_range(response.headers.get("Content-Range"))
            if span is not None and span[0] == 0 and span[2] is not None:
                self._ranged, self.total, self._response = True, span[2], response
                return
            # A range answer without a total size or from the wrong place: read the file plainly.
            await self._close(response)
            response = await self._send({})
        self.total = _content_length(response)
        self._response = response

    async def read_at(self, offset: int, count: int, window: int = NEAR_WINDOW) -> bytes:
        """
        Bytes ``[offset, offset + count)``; fewer only at the end of the file.

        :param window: how many bytes to fetch when a range request is needed (at least ``count``):
            a hint from the caller about how much it will want next.
        """
        end = offset + count if self.total is None else min(offset + count, self.total)
        if end <= offset:
            return b""
        buf_end = self._buf_start + len(self._buf)
        if self._buf_start <= offset and end <= buf_end:
            return self._buf[offset - self._buf_start : end - self._buf_start]
        if self._ranged:
            if self._response is not None:
                await self._drain_first_window()
                return await self.read_at(offset, count, window)
            return await self._read_range(offset, end, window)
        return await self._read_stream(offset, end)

    async def measure(self, stop_after: int) -> int:
        """Count the file's bytes by reading to its end, stopping once more than ``stop_after`` are seen."""
        while not self._eof and self._stream_pos <= stop_after:
            if not await self._next_chunk():
                break
        return self._stream_pos

    async def aclose(self) -> None:
        """Close the open response, if any."""
        chunks, self._chunks, self._pending = self._chunks, None, b""
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()
        if self._response is not None:
            await self._close(self._response)
            self._response = None

    # -- reading ---------------------------------------------------------------------------------

    async def _drain_first_window(self) -> None:
        # The first answer of a ranged file is at most FIRST_WINDOW bytes: read it all, which also
        # keeps the connection in the pool.
        first = self._response
        assert first is not None
        self._response = None

        async def attempt() -> bytes:
            nonlocal first
            response, first = first, None
            if response is None:  # the first answer broke off: ask for the window again
                return await self._fetch_range(0, FIRST_WINDOW)
            try:
                return await self._read_span(response, FIRST_WINDOW)
            except httpx.TransportError as err:
                raise TransientError(f"{type(err).__name__}: {err}") from err
            finally:
                await self._close(response)

        self._buf, self._buf_start = await self._retried(attempt), 0

    async def _read_range(self, offset: int, end: int, window: int) -> bytes:
        buf_end = self._buf_start + len(self._buf)
        # Keep what is already here of a read that straddles the last window.
        kept = self._buf[offset - self._buf_start :] if self._buf_start <= offset < buf_end else b""
        start = offset + len(kept)
        fetched = await self._fetch_range(start, max(end, start + window))
        self._buf, self._buf_start = kept + fetched, offset
        return self._buf[: end - offset]

    async def _fetch_range(self, start: int, end: int) -> bytes:
        """One ``Range`` request for ``[start, end)``, read to its end, retried when transient."""
        if self.total is not None:
            end = min(end, self.total)
        if end <= start:
            return b""

        async def attempt() -> bytes:
            response = await self._send({"Range": f"bytes={start}-{end - 1}"})
            span = _content_range(response.headers.get("Content-Range"))
            if response.status_code != 206 or span is None or span[0] != start:
                await self._close(response)
                raise RunComfyInputError(
                    self.field,
                    f"could not be fetched: the server answered HTTP {response.status_code} to a range "
                    f"request it announced support for (bytes {start}-{end - 1})",
                )
            try:
                return await self._read_span(response, end - start)
            except httpx.TransportError as err:
                raise TransientError(f"{type(err).__name__}: {err}") from err
            finally:
                await self._close(response)

        return await self._retried(attempt)

    async def _read_span(self, response: httpx.Response, want: int) -> bytes:
        """
        The body of a range answer: at most the ``want`` bytes asked for.

        A server that sends more than it was asked (or never stops) is cut off there; the connection
        is then closed instead of reused.
        """
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            self._check_budget(self._read_before + response.num_bytes_downloaded)
            if len(body) >= want:
                break
        return bytes(body[:want])

    def _check_budget(self, read: int) -> None:
        if read > self.max_bytes:
            raise RunComfyInputError(
                self.field,
                f"could not be checked: its header was not found in the first {self.max_bytes:,} bytes "
                "(reading stopped there)",
            )

    async def _read_stream(self, offset: int, end: int) -> bytes:
        """
        Bytes ``[offset, end)`` from the plain stream.

        The buffer keeps every byte from ``offset`` to where the stream stands, so bytes that arrived
        in many small chunks are all there for the next read from ``offset`` (the buffer is a few
        windows at most: the readers ask for small, forward-moving spans).
        """
        buf_end = self._buf_start + len(self._buf)
        if self._buf_start <= offset <= buf_end and buf_end == self._stream_pos:
            data = bytearray(self._buf[offset - self._buf_start :])
        elif offset >= self._stream_pos:
            data = bytearray()
        else:  # bytes already dropped: never happens with forward readers, and never guessed
            raise RunComfyInputError(self.field, f"could not be read again from byte {offset:,}")
        data_start = offset if data else max(offset, self._stream_pos)
        while self._stream_pos < end:
            chunk_start = self._stream_pos
            chunk = await self._next_chunk()
            if not chunk:
                break
            if chunk_start + len(chunk) <= offset:
                continue  # wholly before the span: dropped as it passes
            if not data:
                data_start = max(offset, chunk_start)
            data += chunk[max(0, offset - chunk_start) :]
        self._buf, self._buf_start = bytes(data), data_start
        return self._buf[offset - data_start : end - data_start] if data_start == offset else b""

    async def _next_chunk(self) -> bytes:
        """The next chunk of the plain stream (``b""`` at its end), restarting it after a failure."""
        if self._eof:
            return b""

        async def attempt() -> bytes:
            try:
                if self._chunks is None:
                    await self._start_stream()
                assert self._chunks is not None
                chunk = self._pending or await anext(self._chunks, b"")
                self._pending = b""
                self._check_budget(self.bytes_read)
            except httpx.TransportError as err:
                await self.aclose()
                raise TransientError(f"{type(err).__name__}: {err or 'no details'}") from err
            return chunk

        chunk = await self._retried(attempt)
        if not chunk:
            self._eof = True
            await self.aclose()
        self._stream_pos += len(chunk)
        return chunk

    async def _start_stream(self) -> None:
        """
        Iterate the plain stream from ``_stream_pos``.

        The first time, that is the first answer's body. After a failure the server (which does no
        ranges) is asked again from the top, and the bytes already seen are dropped as they pass.
        """
        if self._response is None:
            self._response = await self._send({})
        self._chunks = self._response.aiter_raw()
        skip = self._stream_pos
        while skip > 0:
            chunk = await anext(self._chunks, b"")
            if not chunk:
                raise RunComfyInputError(
                    self.field, "could not be fetched: the file got shorter between reads"
                )
            if len(chunk) > skip:
                self._pending = chunk[skip:]
            skip -= len(chunk)

    # -- requests --------------------------------------------------------------------------------

    async def _send(self, headers: dict[str, str]) -> httpx.Response:
        """One GET with its body unread; retried while the failure is transient."""

        async def attempt() -> httpx.Response:
            nonlocal headers
            self._requests += 1
            if self._requests > self.max_requests:
                raise RunComfyInputError(
                    self.field,
                    f"could not be checked: its header was not found within {self.max_requests} "
                    "requests (a file of endless segments, or a server that keeps failing)",
                )
            try:
                # identity: sizes and byte ranges must be those of the file, not of a gzip stream.
                request = self._client.build_request(
                    "GET", self._target, headers={"Accept-Encoding": "identity", **headers}
                )
                response = await self._client.send(request, stream=True)
            except (httpx.UnsupportedProtocol, httpx.TooManyRedirects, httpx.InvalidURL) as err:
                raise RunComfyInputError(self.field, f"could not be fetched: {err}") from None
            except httpx.TransportError as err:
                raise TransientError(f"{type(err).__name__}: {err or 'no details'}") from err
            status = response.status_code
            if status in (200, 206):
                return response
            await self._close(response)
            if status == 416 and "Range" in headers:
                # Not even byte 0 exists: an empty file. Ask plainly, so it is reported as empty.
                headers = {}
                return await attempt()
            if not is_transient_status(status):
                raise RunComfyInputError(
                    self.field,
                    f"answered HTTP {status} ({response.reason_phrase or 'error'}); RunComfy fetches input "
                    "images with a plain GET, so the URL must be publicly readable",
                )
            raise TransientError(f"HTTP {status}", parse_retry_after(response.headers.get("Retry-After")))

        return await self._retried(attempt)

    async def _retried(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """
        ``attempt`` under the retry policy, its failures counted with every other of this file's.

        The count is per file, not per request: a host that keeps failing costs
        :attr:`RetryPolicy.max_retries` retries for the whole check, however many requests it takes.
        """

        def log_retry(failure: object, retry: int, delay: float) -> None:
            log.warning(
                "%s: fetching %s failed (%s); retry %d of %d in %.1f s",
                self.field,
                self.url,
                failure,
                retry,
                self._retry.max_retries,
                delay,
            )

        try:
            return await self._retry.arun(attempt, on_retry=log_retry, counter=self._failures)
        except RetriesExhausted as exhausted:
            raise RunComfyInputError(
                self.field, f"could not be fetched: {exhausted.last} (after {exhausted.attempts} attempts)"
            ) from None

    async def _close(self, response: httpx.Response) -> None:
        self._read_before += response.num_bytes_downloaded
        await response.aclose()


# -- header readers ----------------------------------------------------------------------------------


async def _jpeg_size(source: _RemoteFile) -> tuple[int, int]:
    """
    Walk a JPEG's segments to its frame header (SOF) and return ``(width, height)``.

    Only each segment's 4-byte head is read, so metadata of any size before the SOF costs a few bytes
    (and a range request per large segment) instead of a download.
    """
    field, pos, junk, window = source.field, 2, 0, NEAR_WINDOW
    while True:
        head = await source.read_at(pos, 4, window)
        if len(head) < 2:
            raise RunComfyInputError(field, "is a JPEG that ends before its frame header (cut short?)")
        if head[0] != 0xFF or head[1] == 0x00:
            # Stray bytes between segments: skip them as decoders do, but not forever.
            junk += 1
            if junk > MAX_JPEG_JUNK:
                raise RunComfyInputError(field, f"is not a valid JPEG: no segment marker near byte {pos:,}")
            pos += 1
            continue
        marker = head[1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        if marker in (0xD8, 0xD9, 0xDA):
            raise RunComfyInputError(
                field, "is not a valid JPEG: its image data comes before any frame header"
            )
        if len(head) < 4:
            raise RunComfyInputError(field, "is a JPEG that ends before its frame header (cut short?)")
        length = int.from_bytes(head[2:4], "big")
        if length < 2:
            raise RunComfyInputError(field, f"is not a valid JPEG: bad segment length at byte {pos:,}")
        if marker in _SOF_MARKERS:
            frame = await source.read_at(pos + 4, 5, window)
            if len(frame) < 5:
                raise RunComfyInputError(field, "is a JPEG cut short inside its frame header")
            height, width = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big")
            if width == 0 or height == 0:
                # A height of 0 means "given later, after the first scan" (DNL): too rare to chase.
                raise RunComfyInputError(
                    field, f"is a JPEG whose frame header gives no size ({width}x{height})"
                )
            return width, height
        pos += 2 + length
        window = HOP_WINDOW if length >= LARGE_SEGMENT else NEAR_WINDOW


def _open_header(data: bytes) -> tuple[str, int, int] | None:
    """Let Pillow read a header from ``data`` (no pixel is decoded); ``None`` if it cannot yet."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format or "unknown", image.width, image.height
    except Image.DecompressionBombError:
        raise
    except Exception:  # Pillow raises many kinds on a header cut short; all mean "not yet".
        return None


def _has_image_magic(prefix: bytes) -> bool:
    """Whether any Pillow format with a signature recognizes these first bytes."""
    Image.init()
    for format_id in Image.ID:
        accept = Image.OPEN[format_id][1]
        if accept is not None and accept(prefix[:16]):
            return True
    return False


async def _pillow_header(source: _RemoteFile, limit: int) -> tuple[str, int, int]:
    """
    Read a non-JPEG header with Pillow, fetching twice as much each time it needs more.

    Bodies whose first bytes no Pillow format recognizes are refused after the first window rather
    than read on: an HTML error page does not become an image further down.
    """
    field = source.field
    data = await source.read_at(0, FIRST_WINDOW)
    while True:
        try:
            header = _open_header(data)
        except Image.DecompressionBombError as err:
            raise RunComfyInputError(field, f"declares far too many pixels to open safely: {err}") from None
        if header is not None:
            return header
        what = f"content type {source.content_type or 'not given'}"
        if not data:
            raise RunComfyInputError(field, f"is empty ({what})")
        if not _has_image_magic(data):
            raise RunComfyInputError(field, f"is not an image Pillow can read ({what})")
        if len(data) > limit:
            raise RunComfyInputError(
                field, f"could not read the image header in the first {len(data):,} bytes ({what})"
            )
        more = await source.read_at(len(data), len(data), len(data))
        if not more:
            raise RunComfyInputError(
                field, f"is an image cut short or corrupt: Pillow cannot read it ({what})"
            )
        data += more


# -- probing -----------------------------------------------------------------------------------------


def _check_scheme(field: str, url: str) -> None:
    if not isinstance(url, str) or urlsplit(url.strip()).scheme.lower() not in ("http", "https"):
        raise RunComfyInputError(field, f"only http(s) URLs can be fetched by RunComfy, got {url!r}")


async def _probe(
    client: httpx.AsyncClient, field: str, url: str, rules: ImageRules, retry: RetryPolicy
) -> ImageProbe:
    largest = rules.largest_file
    source = _RemoteFile(
        client, field, url, retry, max_bytes=probe_budget(largest), max_requests=probe_requests(largest)
    )
    try:
        await source.open()
        if source.total is not None:
            rules.check_size(field, source.total)  # before a byte of the body is read
        head = await source.read_at(0, len(_JPEG_SOI), FIRST_WINDOW)
        if head == _JPEG_SOI:
            fmt = "JPEG"
            width, height = await _jpeg_size(source)
        else:
            fmt, width, height = await _pillow_header(
                source, largest if largest is not None else HEADER_LIMIT
            )
        rules.check_header(field, fmt, width, height)
        size = source.total
        if size is None and rules.largest_file is not None:
            # No length was sent: count the body, but never further than one byte past the limit.
            size = await source.measure(rules.largest_file)
            if size > rules.largest_file:
                raise RunComfyInputError(
                    field,
                    f"is larger than the {rules.describe_max_bytes()} that {rules.model} accepts "
                    f"(the server sent no Content-Length; reading stopped after {size:,} bytes)",
                )
            rules.check_size(field, size)
    finally:
        await source.aclose()
    probe = ImageProbe(field, url, fmt, width, height, size, source.bytes_read)
    log.info(
        "%s: %s %dx%d px, %s bytes (read %s bytes to check it)",
        field,
        fmt,
        width,
        height,
        f"{size:,}" if size is not None else "an unknown number of",
        f"{probe.bytes_read:,}",
    )
    return probe


def probe_budget(largest_file: int | None) -> int:
    """
    The most body bytes one image's check may fetch: twice (the size limit + the first window).

    Twice, so a stream restarted after a transient failure may read its start again; the limit is
    the model's file size limit, or :data:`HEADER_LIMIT` when it sets none. Ordinary images cost one
    window (about 16 KiB); a hostile host costs this at most, in :func:`probe_requests` requests.
    """
    limit = largest_file if largest_file is not None else HEADER_LIMIT
    return 2 * (limit + FIRST_WINDOW)


def probe_requests(largest_file: int | None) -> int:
    """
    The most requests one image's check may send: 64, plus one range hop per 64 KiB of the limit.

    An ordinary image takes one or two; a 15 MB JPEG padded with metadata before its frame header
    about 230 (each large segment hopped with a tiny range request); 292 are allowed for a 15 MB
    limit, 576 without one.
    """
    limit = largest_file if largest_file is not None else HEADER_LIMIT
    return BASE_REQUESTS_PER_IMAGE + limit // HOP_BYTES


def probe_deadline(timeouts: Timeouts, retry: RetryPolicy) -> float:
    """
    Seconds one image's check may take in all: every allowed attempt and wait, then no more.

    Per-read timeouts alone let a host that drips one byte per second hold a check for ever.
    """
    return timeouts.total * (retry.max_retries + 1) + retry.max_delay * retry.max_retries


def _combine(failures: Sequence[RunComfyInputError]) -> RunComfyInputError:
    """One error for every failed image: the first names its field, the others follow in the text."""
    first = failures[0]
    if len(failures) == 1:
        return first
    others = "; ".join(str(err) for err in failures[1:])
    return RunComfyInputError(first.field, f"{first.rule}; also {others}")


async def aprobe_images(
    images: Sequence[tuple[str, str]],
    rules: ImageRules,
    *,
    timeouts: Timeouts | None = None,
    retry: RetryPolicy | None = None,
    max_concurrency: int = 8,
) -> list[ImageProbe]:
    """
    Fetch the header of every input image concurrently and check it against ``rules``.

    Every image is checked even when one fails, so a user fixes all of them in one go: the error
    names the first failing field and lists the others.

    :param images: ``(field, url)`` pairs, as :func:`~airflow_provider_runcomfy.validation.image_inputs`
        gives them.
    :param rules: the model's image limits.
    :param timeouts: connect and read timeouts (defaults: :class:`Timeouts`).
    :param retry: the retry policy for transient failures (defaults: :class:`RetryPolicy`).
    :param max_concurrency: how many images are fetched at once.
    :return: one :class:`ImageProbe` per image, in input order.
    :raises RunComfyInputError: naming the field(s) of the images that fail.
    """
    # Refuse what cannot be fetched before opening any connection.
    for field, url in images:
        _check_scheme(field, url)
    if not images:
        return []
    policy = retry if retry is not None else RetryPolicy()
    limit = max(1, max_concurrency)
    semaphore = asyncio.Semaphore(limit)
    timeouts = timeouts if timeouts is not None else Timeouts()
    deadline = probe_deadline(timeouts, policy)
    client = make_async_client(
        timeouts,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
    )

    async def probe_one(field: str, url: str) -> ImageProbe:
        async with semaphore:
            try:
                async with asyncio.timeout(deadline):
                    return await _probe(client, field, url, rules, policy)
            except TimeoutError:
                raise RunComfyInputError(
                    field, f"could not be checked within {deadline:g} s (the image host is too slow)"
                ) from None

    async with client:
        outcomes = await asyncio.gather(*(probe_one(f, u) for f, u in images), return_exceptions=True)
    probes: list[ImageProbe] = []
    failures: list[RunComfyInputError] = []
    for outcome in outcomes:
        if isinstance(outcome, RunComfyInputError):
            failures.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome  # a bug or a cancellation, not a verdict on the image
        else:
            probes.append(outcome)
    if failures:
        raise _combine(failures)
    return probes


def probe_images(
    images: Sequence[tuple[str, str]],
    rules: ImageRules,
    *,
    timeouts: Timeouts | None = None,
    retry: RetryPolicy | None = None,
    max_concurrency: int = 8,
) -> list[ImageProbe]:
    """
    Synchronous :func:`aprobe_images`, for ``execute()`` (a worker thread without a running loop).

    :raises RuntimeError: when called from a running event loop; await :func:`aprobe_images` there.
    """
    return asyncio.run(
        aprobe_images(images, rules, timeouts=timeouts, retry=retry, max_concurrency=max_concurrency)
    )
