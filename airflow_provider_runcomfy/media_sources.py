"""
Where an input file comes from, and how it reaches RunComfy: a URL it fetches, or the file itself, inline.

RunComfy's model pages document public URLs only, but RunComfy's own ComfyUI partner nodes send every
media input inline as a ``data:`` URI (``data:image/png;base64,...``, ``data:video/mp4;...``,
``data:audio/wav;...``) in the same fields, and refuse a request body over 64 MiB. So a media value
here may be:

* an ``http(s)`` URL: sent as it is; RunComfy fetches it (the image probes check it first);
* a ``data:`` URI: sent as it is, after its payload is decoded and checked here like a fetched file;
* an absolute local path or a ``file://`` URL, or an object-storage URL Airflow's
  ``ObjectStoragePath`` understands (``s3://``, ``gs://``, ``az://``...; the operator's
  ``source_conn_id`` names the connection): read here (at most one byte past the field's size
  limit, or the 64 MiB body limit), checked, and sent as a ``data:`` URI, so private files need no
  public copy.

What is never done with an inline file's bytes: put them in XCom, trigger kwargs, rendered template
fields (the operator keeps the path the user wrote), log lines or exception texts (see
:func:`~airflow_provider_runcomfy.exceptions.redact_data_uris`). Only the submit's body holds them.

Checks of an inline file, with the same texts as the probes of a fetched one: for an image, its
format (Pillow), file size, width, height and ratio, every broken rule named; for a video or audio
file, its file size (no media decoding). A ``data:`` URI whose declared type disagrees with its
bytes (``image/png`` holding a JPEG, ``video/mp4`` holding a WAV) is refused: RunComfy would be told
one thing and given another.

This module imports Pillow only when an image is checked, and ``ObjectStoragePath`` only when an
object-storage file is read.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from airflow_provider_runcomfy.data_uris import InlineFile, parse_data_uri
from airflow_provider_runcomfy.exceptions import RunComfyInputError

__all__ = [
    "MAX_REQUEST_BYTES",
    "STORAGE_SCHEMES",
    "InlineFile",
    "SourceKind",
    "check_inline_media",
    "check_request_size",
    "files_among",
    "inline_private_files",
    "parse_data_uri",
    "probe_file_sizes",
    "read_private_file",
    "source_kind",
]

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow_provider_runcomfy.limits import ImageRules
    from airflow_provider_runcomfy.retry import RetryPolicy
    from airflow_provider_runcomfy.schema import MediaField, ModelSchema
    from airflow_provider_runcomfy.transport import Timeouts

#: The largest request body RunComfy's own client sends (``MAX_REQUEST_BYTES`` of the partner nodes).
MAX_REQUEST_BYTES = 64 * 1024 * 1024

#: URL schemes read through Airflow's ``ObjectStoragePath`` (object stores only: an ``ftp://`` URL
#: stays a refused input, as RunComfy cannot fetch it and nobody meant it as a private bucket).
STORAGE_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "wasb", "wasbs"})


class SourceKind(StrEnum):
    """Where a media value points, which decides who reads it."""

    URL = "url"
    DATA = "data"
    LOCAL = "local"
    STORAGE = "storage"
    OTHER = "other"

    @property
    def is_read_here(self) -> bool:
        """Whether the provider reads the file and sends it inline (RunComfy cannot reach it)."""
        return self in (SourceKind.LOCAL, SourceKind.STORAGE)


def source_kind(value: str) -> SourceKind:
    """What a media value is: a URL, a ``data:`` URI, a local file, an object-storage file, or other."""
    if value[:5].lower() == "data:":
        return SourceKind.DATA
    if os.path.isabs(value):
        return SourceKind.LOCAL
    scheme = urlsplit(value).scheme.lower()
    if scheme in ("http", "https"):
        return SourceKind.URL
    if scheme == "file":
        return SourceKind.LOCAL
    if scheme in STORAGE_SCHEMES:
        return SourceKind.STORAGE
    return SourceKind.OTHER


# -- what the bytes are --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Container:
    """A video or audio container told by its first bytes (no decoding)."""

    label: str
    mimes: frozenset[str]
    #: The media type sent for a file of this container, by field kind.
    sent_as: Mapping[str, str]

    def matches(self, head: bytes) -> bool:
        if self.label == "MP4/QuickTime":
            return head[4:8] == b"ftyp"
        if self.label == "WebM/Matroska":
            return head[:4] == b"\x1aE\xdf\xa3"
        if self.label == "AVI":
            return head[:4] == b"RIFF" and head[8:12] == b"AVI "
        if self.label == "WAV":
            return head[:4] == b"RIFF" and head[8:12] == b"WAVE"
        if self.label == "MP3":
            return head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)
        if self.label == "Ogg":
            return head[:4] == b"OggS"
        if self.label == "FLAC":
            return head[:4] == b"fLaC"
        return False


_CONTAINERS = (
    _Container(
        "MP4/QuickTime",
        frozenset({"video/mp4", "video/quicktime", "video/3gpp", "audio/mp4", "audio/m4a", "audio/x-m4a"}),
        {"video": "video/mp4", "audio": "audio/mp4"},
    ),
    _Container(
        "WebM/Matroska",
        frozenset({"video/webm", "audio/webm", "video/x-matroska", "audio/x-matroska"}),
        {"video": "video/webm", "audio": "audio/webm"},
    ),
    _Container(
        "AVI", frozenset({"video/x-msvideo", "video/avi", "video/msvideo"}), {"video": "video/x-msvideo"}
    ),
    _Container(
        "WAV", frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"}), {"audio": "audio/wav"}
    ),
    _Container("MP3", frozenset({"audio/mpeg", "audio/mp3"}), {"audio": "audio/mpeg"}),
    _Container(
        "Ogg",
        frozenset({"audio/ogg", "video/ogg", "audio/opus"}),
        {"audio": "audio/ogg", "video": "video/ogg"},
    ),
    _Container("FLAC", frozenset({"audio/flac", "audio/x-flac"}), {"audio": "audio/flac"}),
)
_IMAGE_MIME_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}


def _container(data: bytes) -> _Container | None:
    head = data[:16]
    return next((c for c in _CONTAINERS if c.matches(head)), None)


def _image_header(field: str, data: bytes, what: str) -> tuple[str, int, int]:
    """Pillow's format name and size of an image in memory (only its header is read, no pixel)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format or "unknown", image.width, image.height
    except Image.DecompressionBombError as err:
        raise RunComfyInputError(field, f"declares far too many pixels to open safely: {err}") from None
    except Exception:  # Pillow raises many kinds for what is no image it can read
        raise RunComfyInputError(field, f"{what} is not an image Pillow can read") from None


def _image_mime(fmt: str) -> str | None:
    from PIL import Image

    return Image.MIME.get(fmt)


def check_inline(field: str, inline: InlineFile, kind: str, rules: ImageRules) -> None:
    """
    Check an inline file like a fetched one, naming every rule it breaks.

    :param kind: ``image`` (format, file size, width, height, ratio) or ``video`` / ``audio`` (file
        size, and that the bytes are what the media type says when the container is a known one).
    :raises RunComfyInputError: naming ``field`` and every rule broken.
    """
    size = len(inline.data)
    problems: list[str] = []
    if kind == "image":
        fmt, width, height = _image_header(field, inline.data, f"{inline.describe()}")
        declared = _IMAGE_MIME_ALIASES.get(inline.mime, inline.mime)
        actual = _image_mime(fmt)
        if actual is not None and declared != actual:
            problems.append(f"says it is {inline.mime} but holds a {fmt} image ({actual})")
        problems += (
            rules.format_problems(fmt) + rules.size_problems(size) + rules.dimension_problems(width, height)
        )
    else:
        found = _container(inline.data)
        known = any(inline.mime in c.mimes for c in _CONTAINERS)
        if found is not None and inline.mime not in found.mimes:
            problems.append(f"says it is {inline.mime} but holds {found.label} data")
        elif found is None and known:
            problems.append(f"says it is {inline.mime} but its bytes are not of that type")
        problems += rules.size_problems(size)
    if problems:
        raise RunComfyInputError(field, "; also ".join(problems))


def _sniff_mime(field: str, data: bytes, kind: str, name: str) -> str:
    """The media type of a file read here, from its bytes (the name's extension only as a last resort)."""
    if kind == "image":
        fmt, _, _ = _image_header(field, data, f"{name!r}")
        mime = _image_mime(fmt)
        if mime is None:
            raise RunComfyInputError(field, f"{name!r} is a {fmt} image, which has no media type to send")
        return mime
    found = _container(data)
    if found is not None and kind in found.sent_as:
        return found.sent_as[kind]
    import mimetypes

    guessed, _ = mimetypes.guess_type(name)
    if guessed and guessed.startswith(f"{kind}/"):
        return guessed
    raise RunComfyInputError(field, f"{name!r} is not a {kind} file the provider can tell the type of")


# -- reading private files ------------------------------------------------------------------------------


def _read_local(field: str, value: str, limit: int, rules: ImageRules) -> tuple[bytes, str]:
    if value.lower().startswith("file:"):
        parts = urlsplit(value)
        if parts.netloc not in ("", "localhost"):
            raise RunComfyInputError(field, f"{value!r} names another host; file:// URLs must be local")
        path = url2pathname(parts.path)
    else:
        path = value
    try:
        size = os.stat(path).st_size
        # Refused by its size before a byte is read: a 2 GB video is not loaded to be told so.
        too_big = rules.size_problems(size) if rules.file_bytes.high is not None else []
        if too_big:
            raise RunComfyInputError(field, f"{path!r}: " + "; also ".join(too_big))
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise RunComfyInputError(field, f"{path!r} does not exist") from None
    except IsADirectoryError:
        raise RunComfyInputError(field, f"{path!r} is a directory, not a file") from None
    except OSError as err:
        raise RunComfyInputError(field, f"{path!r} cannot be read: {err.strerror or err}") from None
    return data, path


def _read_storage(field: str, value: str, limit: int, conn_id: str | None) -> tuple[bytes, str]:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    try:
        path = ObjectStoragePath(value, conn_id=conn_id)
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise RunComfyInputError(field, f"{value!r} does not exist (connection {conn_id!r})") from None
    except Exception as err:  # fsspec back ends raise their own kinds (no credentials in their texts)
        raise RunComfyInputError(
            field, f"{value!r} cannot be read (connection {conn_id!r}): {type(err).__name__}: {err}"
        ) from None
    return data, value


def read_private_file(
    field: str, value: str, kind: str, rules: ImageRules, *, conn_id: str | None = None
) -> InlineFile:
    """
    Read a local or object-storage file of a media field, bounded, and return it as an inline file.

    At most one byte past the field's size limit (or past the 64 MiB body limit) is read; a larger
    file is refused with the field's own size rule.

    :raises RunComfyInputError: naming ``field`` when the file is missing, unreadable, too large or
        not a file of the field's kind.
    """
    limit = rules.largest_file if rules.largest_file is not None else MAX_REQUEST_BYTES
    limit = min(limit, MAX_REQUEST_BYTES)
    if source_kind(value) is SourceKind.STORAGE:
        data, name = _read_storage(field, value, limit, conn_id)
    else:
        data, name = _read_local(field, value, limit, rules)
    if len(data) > limit:
        shown = rules.size_problems(len(data)) or [
            f"is larger than the {MAX_REQUEST_BYTES:,} bytes a request may carry"
        ]
        raise RunComfyInputError(
            field, f"{name!r}: {'; also '.join(shown)} (reading stopped after {len(data):,} bytes)"
        )
    if not data:
        raise RunComfyInputError(field, f"{name!r} is empty")
    return InlineFile(_sniff_mime(field, data, kind, name), data)


# -- over a whole job's inputs ------------------------------------------------------------------------------


def _items(media: MediaField, value: Any) -> list[tuple[str, Any]]:
    if media.many:
        return (
            [(f"{media.name}[{i}]", item) for i, item in enumerate(value)]
            if isinstance(value, list | tuple)
            else []
        )
    return [(media.name, value)]


def _raise_combined(errors: Sequence[RunComfyInputError]) -> None:
    if not errors:
        return
    first = errors[0]
    if len(errors) == 1:
        raise first
    others = "; ".join(str(err) for err in errors[1:])
    raise RunComfyInputError(first.field, f"{first.rule}; also {others}")


def inline_private_files(
    schema: ModelSchema, inputs: Mapping[str, Any], *, conn_id: str | None = None
) -> dict[str, Any]:
    """
    A copy of ``inputs`` whose local and object-storage files (in media fields) are ``data:`` URIs.

    ``inputs`` itself (the operator's rendered fields) is not changed: lists are copied. Every file
    is tried, so one error names all the files that cannot be used.

    :raises RunComfyInputError: naming each field (with its index) whose file cannot be read or used.
    """
    result = dict(inputs)
    errors: list[RunComfyInputError] = []
    for media in schema.media:
        value = inputs.get(media.name)
        if value is None:
            continue
        replaced = False
        items: list[Any] = []
        for field, item in _items(media, value):
            if isinstance(item, str) and source_kind(item).is_read_here:
                try:
                    inline = read_private_file(field, item, media.kind.value, media.rules, conn_id=conn_id)
                    # Checked here too, so one error names every file that cannot be used.
                    check_inline(field, inline, media.kind.value, media.rules)
                    item, replaced = inline.uri, True
                except RunComfyInputError as err:
                    errors.append(err)
            items.append(item)
        if replaced:
            result[media.name] = items if media.many else items[0]
    _raise_combined(errors)
    return result


def files_among(inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """
    ``(field, value)`` of the top-level values (and list items) that name a local or storage file.

    For a model whose schema is unknown: its media fields cannot be told, so such values are only
    pointed out (a prompt may start with ``/`` too).
    """
    found = []
    for name, value in inputs.items():
        items = (
            [(f"{name}[{i}]", v) for i, v in enumerate(value)] if isinstance(value, list) else [(name, value)]
        )
        found += [
            (field, item) for field, item in items if isinstance(item, str) and source_kind(item).is_read_here
        ]
    return found


def check_inline_media(schema: ModelSchema, payload: Mapping[str, Any]) -> list[tuple[str, InlineFile]]:
    """
    Check every ``data:`` URI among the media fields of ``payload``, like a fetched file.

    :return: ``(field, inline file)`` of each, for logs (shown with :meth:`InlineFile.describe`).
    :raises RunComfyInputError: naming every field whose file breaks a rule.
    """
    found: list[tuple[str, InlineFile]] = []
    errors: list[RunComfyInputError] = []
    for media in schema.media:
        if media.name not in payload:
            continue
        for field, item in _items(media, payload[media.name]):
            if not (isinstance(item, str) and source_kind(item) is SourceKind.DATA):
                continue
            try:
                inline = parse_data_uri(field, item, media.kind.value)
                check_inline(field, inline, media.kind.value, media.rules)
            except RunComfyInputError as err:
                errors.append(err)
            else:
                found.append((field, inline))
    _raise_combined(errors)
    return found


def check_request_size(payload: Mapping[str, Any], limit: int = MAX_REQUEST_BYTES) -> int:
    """
    Refuse a submit whose JSON body would be over ``limit`` (64 MiB), naming the largest inputs.

    :return: the body's size in bytes.
    :raises RunComfyInputError: on field ``inputs``, listing the largest fields and their sizes.
    """

    def size_of(value: Any) -> int:
        return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))

    total = size_of(dict(payload))
    if total <= limit:
        return total
    sizes: list[tuple[int, str]] = []
    for name, value in payload.items():
        if isinstance(value, list | tuple):
            sizes += [(size_of(item), f"{name}[{i}]") for i, item in enumerate(value)]
        else:
            sizes.append((size_of(value), name))
    largest = ", ".join(f"{name} {size:,} bytes" for size, name in sorted(sizes, reverse=True)[:5])
    raise RunComfyInputError(
        "inputs",
        f"the request body would be {total:,} bytes, over the {limit:,} bytes (64 MiB) a RunComfy "
        f"request may carry; largest: {largest}. Send large files as URLs RunComfy can fetch instead",
    )


# -- remote video and audio: their file size -----------------------------------------------------------------


def sized_remote_files(schema: ModelSchema, payload: Mapping[str, Any]) -> list[tuple[ImageRules, str, str]]:
    """``(rules, field, url)`` of each remote video or audio file whose field has a ``file_size_mb`` rule."""
    found = []
    for media in schema.media:
        limits = media.rules.file_bytes
        if media.kind.is_probed or media.name not in payload or (limits.low is None and limits.high is None):
            continue
        for field, item in _items(media, payload[media.name]):
            if isinstance(item, str) and source_kind(item) is SourceKind.URL:
                found.append((media.rules, field, item))
    return found


async def _asize_check(client: Any, rules: ImageRules, field: str, url: str, retry: RetryPolicy) -> None:
    from airflow_provider_runcomfy.images import _RemoteFile

    source = _RemoteFile(client, field, url, retry)
    try:
        await source.open()  # the size comes from Content-Range / Content-Length: no body is read
        size = source.total
        if size is None and rules.largest_file is not None:
            size = await source.measure(rules.largest_file)  # no length sent: count, one byte past at most
        if size is not None:
            rules.check_size(field, size)
    finally:
        await source.aclose()


def probe_file_sizes(
    schema: ModelSchema,
    payload: Mapping[str, Any],
    *,
    timeouts: Timeouts | None = None,
    retry: RetryPolicy | None = None,
) -> None:
    """
    Enforce the ``file_size_mb`` rules of remote video and audio inputs (no media is decoded).

    One ranged ``GET`` per file, its body left unread when the server gives a length, so a 2 GB
    video costs a few bytes. The client has no auth: the token never goes to a media host.

    :raises RunComfyInputError: naming every field whose file is outside its size rule.
    """
    files = sized_remote_files(schema, payload)
    if not files:
        return
    import asyncio

    from airflow_provider_runcomfy.images import MAX_REDIRECTS
    from airflow_provider_runcomfy.retry import RetryPolicy
    from airflow_provider_runcomfy.transport import Timeouts, make_async_client

    policy = retry if retry is not None else RetryPolicy()

    async def check_all() -> list[Any]:
        client = make_async_client(
            timeouts if timeouts is not None else Timeouts(),
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
        )
        async with client:
            return await asyncio.gather(
                *(_asize_check(client, rules, field, url, policy) for rules, field, url in files),
                return_exceptions=True,
            )

    errors = []
    for outcome in asyncio.run(check_all()):
        if isinstance(outcome, RunComfyInputError):
            errors.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
    _raise_combined(errors)
