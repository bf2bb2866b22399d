"""
Copy RunComfy output files from its CDN into the user's own storage.

RunComfy hands back outputs as CDN links whose lifetime is not documented (assume days at most), so
a DAG that wants to keep its results must copy them while the links still work, in the same run. This
module is the engine behind ``RunComfyDownloadOperator``; it knows nothing about Airflow tasks.

What it promises, and why:

* **Nothing partial is ever visible.** Each file is streamed to a hidden temporary name next to its
  final place and moved into place only once it is complete (right length, a readable image). Every
  error path removes the temporary file, so a failed try leaves the destination as it found it and a
  downstream reader never sees half a video.
* **Retries are idempotent.** A file's name is derived from its URL alone (see
  :func:`output_file_name`), so a task retry or a cleared run overwrites its own files instead of
  adding copies, and two different outputs never share a name.
* **Memory stays flat.** Bodies are streamed in chunks straight to the file; a 256 MB video costs a
  chunk of memory, not 256 MB.
* **The API token never leaves RunComfy's API.** The CDN is asked with a client that has no auth at
  all (a CDN, or wherever it redirects, has no business seeing the token).
* **Transient failures are retried with the hook's policy** (:meth:`~.retry.RetryPolicy.run`):
  transport errors, timeouts, a body cut short, 408/429/5xx; ``Retry-After`` is honoured. A 403/404
  means the link has expired: no retry can bring it back, and the error says so.

* **Sizes are bounded.** ``max_bytes`` caps each file (by default only images, at
  :data:`DEFAULT_IMAGE_MAX_BYTES`): a ``Content-Length`` over it is refused before the body is read,
  and an endless body is cut off there, leaving no partial file. Such a refusal is not retried.
* **Only http(s).** A redirect to another scheme (``file://``, ``ftp://``) is refused at once, not
  retried: the same link would redirect the same way.

Query strings are left out of every log line and message: signed CDN URLs carry their signature there.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import httpx

from airflow_provider_runcomfy.exceptions import (
    RunComfyDownloadError,
    RunComfyInputError,
    RunComfyOutputExpiredError,
)
from airflow_provider_runcomfy.retry import (
    RetriesExhausted,
    RetryPolicy,
    TransientError,
    is_transient_status,
    parse_retry_after,
)
from airflow_provider_runcomfy.transport import Timeouts, make_client

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

#: File extensions by Content-Type. A fixed table rather than :mod:`mimetypes`, whose answers depend on
#: the machine's ``/etc/mime.types``: two workers must name the same output the same way.
CONTENT_TYPE_EXTENSIONS: dict[str, str] = {
    "image/png": ".png",
    "image/apng": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
    "image/avif": ".avif",
    "image/heic": ".heic",
    "image/heif": ".heif",
    "image/svg+xml": ".svg",
    "video/mp4": ".mp4",
    "video/x-msvideo": ".avi",
    "video/avi": ".avi",
    "video/msvideo": ".avi",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "video/x-matroska": ".mkv",
    "video/mpeg": ".mpg",
    "video/ogg": ".ogv",
    "audio/mpeg": ".mp3",
    "audio/mp4": ".m4a",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/ogg": ".ogg",
    "audio/flac": ".flac",
    "audio/webm": ".weba",
    "model/gltf-binary": ".glb",
    "model/gltf+json": ".gltf",
    "application/json": ".json",
    "application/zip": ".zip",
    "text/plain": ".txt",
}

#: Extensions whose files Pillow can open and check; other images (SVG, AVIF without a plugin) and
#: videos are only length-checked, since a verifier that cannot read a format would reject good files.
VERIFIABLE_IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})

#: Statuses with which a CDN says the object is gone or its signed link is no longer valid.
EXPIRED_STATUSES = frozenset({403, 404, 410})

#: How many trailing URL path segments make up the readable part of a name: RunComfy-style URLs may
#: all end in ``output.png`` with the request id one or two segments earlier.
_STEM_SEGMENTS = 3
_STEM_MAX_CHARS = 80
_HASH_CHARS = 12
_URL_EXTENSION = re.compile(r"\.([A-Za-z0-9]{1,5})$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


# -- inputs -----------------------------------------------------------------------------------------


def flatten_urls(urls: Any) -> list[str]:
    """
    Turn what a DAG hands over into a flat list of output URLs, in order.

    Accepts one URL string, a list or tuple of them, or a list of lists: a downstream task of a mapped
    model task receives one list per mapped instance (Airflow's ``LazyXComSequence``), and every file
    of every instance should be kept. Any non-string iterable nests; strings, bytes and mappings do
    not (a dict is most likely a whole ``result`` XCom: pass its ``urls`` instead).

    :raises RunComfyInputError: on an empty input, an empty string or anything that is not a string.
    """
    flat: list[str] = []

    def visit(item: Any, where: str) -> None:
        what = f"item {where}" if where else "the value"
        if isinstance(item, str):
            if not item.strip():
                raise RunComfyInputError("urls", f"{what} is an empty string")
            flat.append(item.strip())
        elif isinstance(item, (bytes, bytearray, Mapping)) or not isinstance(item, Iterable):
            hint = " (for a result XCom, pass its 'urls')" if isinstance(item, Mapping) else ""
            raise RunComfyInputError(
                "urls", f"{what} must be a URL string or a list of them, got {type(item).__name__}{hint}"
            )
        else:
            for index, child in enumerate(item):
                visit(child, f"{where}[{index}]")

    if urls is None:
        raise RunComfyInputError("urls", "no output URLs given (got None)")
    visit(urls, "")
    if not flat:
        raise RunComfyInputError("urls", "no output URLs given (the list is empty)")
    return flat


def public_url(url: str) -> str:
    """
    The URL without query string, fragment and credentials: safe for logs, messages and XCom.

    Signed CDN links carry their signature in the query string; anyone holding it could fetch the file.
    """
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# -- names ------------------------------------------------------------------------------------------


#: Query parameters that sign a link or bound its life rather than name the object (S3, GCS, CloudFront,
#: Akamai, Alibaba and Tencent clouds, generic tokens). Conservative on purpose: forgetting one only
#: makes a re-signed link land under a new name, dropping a real one could let two outputs collide.
_SIGNING_PARAMS = frozenset(
    {
        "signature",
        "sig",
        "expires",
        "expiry",
        "key-pair-id",
        "policy",
        "googleaccessid",
        "ossaccesskeyid",
        "token",
        "auth_key",
        "hdnts",
        "__token__",
    }
)
_SIGNING_PREFIXES = ("x-amz-", "x-goog-", "x-oss-", "x-cos-")
#: Azure SAS parameters: only dropped when a ``sig`` shows that the query is a SAS at all.
_AZURE_SAS_PARAMS = frozenset({"sv", "ss", "srt", "sp", "se", "st", "spr", "sr", "si", "sdd"})


def _is_signing_param(key: str, azure_sas: bool) -> bool:
    key = key.lower()
    return (
        key in _SIGNING_PARAMS
        or key.startswith(_SIGNING_PREFIXES)
        or (azure_sas and (key in _AZURE_SAS_PARAMS or key.startswith("sk")))
    )


def _object_identity(url: str, *, full_query: bool = False) -> str:
    """
    What a name's hash covers: host, port, path and the query without its signing parameters.

    The scheme is left out (http and https name the same object); the parameters are sorted, since
    a re-issued link may list them in another order.
    """
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not full_query:
        azure_sas = any(key.lower() == "sig" for key, _ in pairs)
        pairs = [(key, value) for key, value in pairs if not _is_signing_param(key, azure_sas)]
    identity = f"{(parts.hostname or '').lower()}:{parts.port or ''}{parts.path}"
    return f"{identity}?{urlencode(sorted(pairs))}" if pairs else identity


def _readable_stem(path: str) -> str:
    segments = [unquote(segment) for segment in path.split("/") if segment]
    if not segments:
        return "output"
    tail = segments[-_STEM_SEGMENTS:]
    tail[-1] = _URL_EXTENSION.sub("", tail[-1]) or tail[-1]
    stem = _UNSAFE_CHARS.sub("-", "_".join(tail)).strip("._-")
    # Keep the end when too long: the last segments are the most specific ones.
    return stem[-_STEM_MAX_CHARS:].lstrip("._-") or "output"


def _extension(url: str, content_type: str | None) -> str:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in CONTENT_TYPE_EXTENSIONS:
        return CONTENT_TYPE_EXTENSIONS[media_type]
    last_segment = urlsplit(url).path.rsplit("/", 1)[-1]
    match = _URL_EXTENSION.search(unquote(last_segment))
    return f".{match.group(1).lower()}" if match else ".bin"


def output_file_name(url: str, content_type: str | None, *, full_query: bool = False) -> str:
    """
    The file name an output gets in the destination: ``{readable stem}-{hash}{extension}``.

    * The stem is the URL's last path segments (up to three, without the extension), sanitized to
      ``[A-Za-z0-9._-]``: a person can tell which job and output a file came from, even when every
      CDN URL ends in ``output.png`` and only an earlier segment holds the job id.
    * The hash is 12 hex digits of SHA-256 over host, path and query. It makes the name unique per
      object and deterministic, so a retry overwrites its own file and never collides with another
      output. **Signing parameters are left out of the hash** (``X-Amz-*``, ``X-Goog-*``,
      ``Signature``, ``Expires``, ``Key-Pair-Id``, ``token``, an Azure SAS...): a CDN re-signs the
      same object with a new signature and expiry, and copying it again must land on the same name.
      Other parameters stay in, since some hosts name objects by query (``/download?id=42``).
      :func:`copy_outputs` passes ``full_query=True`` for URLs of one batch that differ only in
      signing parameters, so they cannot overwrite each other.
    * The extension comes from the Content-Type (a fixed table), else from the URL, else ``.bin``.

    :param url: the output URL.
    :param content_type: the response's Content-Type, or ``None`` when unknown.
    :param full_query: hash the whole query string, signing parameters included.
    """
    digest = hashlib.sha256(_object_identity(url, full_query=full_query).encode()).hexdigest()
    return f"{_readable_stem(urlsplit(url).path)}-{digest[:_HASH_CHARS]}{_extension(url, content_type)}"


# -- destinations -----------------------------------------------------------------------------------


class _Destination(Protocol):
    """Where files go: a local directory (atomic ``os.replace``) or an object store (fsspec ``mv``)."""

    def prepare(self) -> None: ...
    def open_write(self, name: str) -> IO[bytes]: ...
    def finish_write(self, handle: IO[bytes]) -> None: ...
    def open_read(self, name: str) -> IO[bytes]: ...
    def commit(self, temp_name: str, name: str) -> None: ...
    def remove(self, name: str) -> None: ...
    def uri(self, name: str) -> str: ...


@dataclass
class _LocalDirectory:
    """
    A directory on the worker's disk, used for plain paths and ``file://`` object storage paths.

    Local files get the strongest guarantees through plain :mod:`os` calls, the same on every Airflow
    version: an exclusive create for the temporary file, ``fsync`` before the move (so a crash right
    after it cannot leave an empty file under the final name), and an atomic ``os.replace``.
    """

    root: Path
    as_file_uri: bool

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def open_write(self, name: str) -> IO[bytes]:
        return open(self.root / name, "xb", buffering=0)

    def finish_write(self, handle: IO[bytes]) -> None:
        handle.flush()
        os.fsync(handle.fileno())

    def open_read(self, name: str) -> IO[bytes]:
        return open(self.root / name, "rb")

    def commit(self, temp_name: str, name: str) -> None:
        os.replace(self.root / temp_name, self.root / name)

    def remove(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def uri(self, name: str) -> str:
        path = self.root / name
        return path.as_uri() if self.as_file_uri else str(path)


@dataclass
class _ObjectStore:
    """
    A prefix in an object store (``s3://``, ``gs://``...), reached through Airflow's object storage.

    The filesystem comes from ``ObjectStoragePath.fs`` (authenticated with the path's connection) and is
    driven with plain fsspec calls, whose meaning does not change between the universal-pathlib
    versions that Airflow 2.11 and 3.x ship. Object stores have no atomic rename: ``mv`` is a
    server-side copy then a delete, so the final key only ever appears complete.
    """

    root: ObjectStoragePath

    def _key(self, name: str) -> str:
        # Joined as strings: joining an ObjectStoragePath on Airflow 2.11 warns through universal-pathlib.
        return f"{str(self.root.path).rstrip('/')}/{name}"

    def prepare(self) -> None:
        # Object stores have no real directories; creating one may even need rights the user does not
        # have (creating a bucket). A real problem (no bucket, no access) surfaces at the first write.
        try:
            self.root.fs.makedirs(str(self.root.path), exist_ok=True)
        except Exception as err:
            log.debug(
                "Could not create %s (continuing; object stores need no directories): %s", self.uri(""), err
            )

    def open_write(self, name: str) -> IO[bytes]:
        handle: IO[bytes] = self.root.fs.open(self._key(name), "wb")
        return handle

    def finish_write(self, handle: IO[bytes]) -> None:
        handle.flush()

    def open_read(self, name: str) -> IO[bytes]:
        handle: IO[bytes] = self.root.fs.open(self._key(name), "rb")
        return handle

    def commit(self, temp_name: str, name: str) -> None:
        self.root.fs.mv(self._key(temp_name), self._key(name))

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.root.fs.rm(self._key(name))

    def uri(self, name: str) -> str:
        # A plain ``scheme://bucket/key``: Airflow's own ``str()`` puts the conn id into the URI
        # (``s3://conn@bucket/key``), which no other tool understands.
        return f"{self.root.protocol}://{self._key(name) if name else self.root.path}"


def _conn_id_of(path: Any) -> str | None:
    # Airflow 3's ObjectStoragePath has ``conn_id``; 2.11's keeps it in ``storage_options``.
    conn_id = getattr(path, "conn_id", None)
    if conn_id is None:
        conn_id = getattr(path, "storage_options", {}).get("conn_id")
    return conn_id


def _resolve_destination(destination: Any, conn_id: str | None) -> _Destination:
    """Pick how to write: plain paths and ``file://`` go to the local disk, anything else to fsspec."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    if isinstance(destination, ObjectStoragePath):
        existing = _conn_id_of(destination)
        if conn_id and existing and existing != conn_id:
            raise RunComfyInputError(
                "conn_id", f"{conn_id!r} differs from the destination's own connection {existing!r}"
            )
        if conn_id and not existing:
            destination = ObjectStoragePath(f"{destination.protocol}://{destination.path}", conn_id=conn_id)
        if destination.protocol in ("", "file", "local"):
            return _LocalDirectory(Path(os.path.abspath(str(destination.path))), as_file_uri=True)
        return _ObjectStore(destination)
    if isinstance(destination, os.PathLike):
        destination = os.fspath(destination)
    if not isinstance(destination, str) or not destination.strip():
        raise RunComfyInputError(
            "destination", f"must be a path, a URI or an ObjectStoragePath, got {destination!r}"
        )
    if "://" in destination:
        return _resolve_destination(ObjectStoragePath(destination, conn_id=conn_id), None)
    return _LocalDirectory(Path(os.path.abspath(os.path.expanduser(destination))), as_file_uri=False)


# -- copying ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Copied:
    name: str
    size: int


#: The size cap of an image output when ``max_bytes`` is not given: far above any image a model
#: returns (a 4096x4096 PNG is about 50 MB), and far below what fills a disk.
DEFAULT_IMAGE_MAX_BYTES = 256 * 1024 * 1024


def _size_cap(max_bytes: int | None, content_type: str | None) -> int | None:
    """The cap of one file: ``max_bytes`` when given, else :data:`DEFAULT_IMAGE_MAX_BYTES` for images."""
    if max_bytes is not None:
        return max_bytes
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return DEFAULT_IMAGE_MAX_BYTES if kind.startswith("image/") else None


def _too_large(url: str, cap: int, what: str) -> RunComfyDownloadError:
    return RunComfyDownloadError(
        f"RunComfy output {public_url(url)} {what} over the {cap:,}-byte cap (max_bytes); nothing was "
        "kept. Raise max_bytes if the file is expected to be this large."
    )


def _expired_error(url: str, status: int) -> RunComfyOutputExpiredError:
    return RunComfyOutputExpiredError(
        f"RunComfy output {public_url(url)} has expired (the CDN answered HTTP {status}). RunComfy's "
        "output links are temporary and their lifetime is not documented: copy outputs in the same DAG "
        "run that produced them, right after the model task, or run the model again."
    )


def _content_length(response: httpx.Response) -> int | None:
    try:
        length = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return length if length >= 0 else None


def _verify_image(destination: _Destination, temp_name: str, url: str) -> None:
    """
    Check that an image is one: RunComfy could serve an error page or a cut-off file as ``image/png``.

    Pillow's ``verify()`` reads the file's structure (for PNG every chunk's CRC) without decoding the
    pixels, so memory stays small. ``Image.MAX_IMAGE_PIXELS`` is left as the user set it: a huge
    declared size raises ``DecompressionBombError`` rather than being trusted.
    """
    from PIL import Image

    with destination.open_read(temp_name) as handle:
        try:
            with Image.open(handle) as image:
                image.verify()
        # Pillow reports a bad file through many types (OSError, SyntaxError, struct.error,
        # DecompressionBombError...); any of them means the bytes are not a usable image.
        except Exception as err:
            raise RunComfyDownloadError(
                f"RunComfy output {public_url(url)} is not a valid image: {type(err).__name__}: {err}"
            ) from err


def _copy_once(
    client: httpx.Client,
    url: str,
    destination: _Destination,
    *,
    full_query: bool,
    verify_images: bool,
    chunk_size: int,
    max_bytes: int | None = None,
) -> _Copied:
    """One attempt: GET, stream to a temporary name, check length, size cap and image, move into place."""
    try:
        # Ask for the bytes as stored (no gzip): the copy is then byte-for-byte the CDN's object.
        with client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response:
            status = response.status_code
            if status in EXPIRED_STATUSES:
                raise _expired_error(url, status)
            if is_transient_status(status):
                raise TransientError(f"HTTP {status}", parse_retry_after(response.headers.get("Retry-After")))
            if not response.is_success:
                raise RunComfyDownloadError(
                    f"Could not copy {public_url(url)}: the CDN answered HTTP {status}"
                )

            cap = _size_cap(max_bytes, response.headers.get("Content-Type"))
            announced = _content_length(response)
            if cap is not None and announced is not None and announced > cap:
                raise _too_large(url, cap, f"announces {announced:,} bytes,")
            name = output_file_name(url, response.headers.get("Content-Type"), full_query=full_query)
            temp_name = f".{name}.part-{uuid.uuid4().hex}"
            committed = False
            try:
                with destination.open_write(temp_name) as handle:
                    # ``iter_bytes`` undoes a Content-Encoding a server applies anyway; the length
                    # check below compares the bytes on the wire, which is what Content-Length counts.
                    written = 0
                    for chunk in response.iter_bytes(chunk_size):
                        written += len(chunk)
                        if cap is not None and written > cap:
                            raise _too_large(url, cap, "went")
                        handle.write(chunk)
                    destination.finish_write(handle)
                expected = _content_length(response)
                received = response.num_bytes_downloaded
                if expected is not None and received != expected:
                    raise TransientError(f"short body: {received} of {expected} bytes")
                if verify_images and Path(name).suffix in VERIFIABLE_IMAGE_EXTENSIONS:
                    _verify_image(destination, temp_name, url)
                destination.commit(temp_name, name)
                committed = True
                return _Copied(name=name, size=received)
            finally:
                if not committed:
                    destination.remove(temp_name)
    except httpx.UnsupportedProtocol as err:
        # A redirect to file://, ftp://...: the same link would redirect the same way again.
        raise RunComfyDownloadError(
            f"Could not copy {public_url(url)}: it redirects to a URL that is not http(s) ({err})"
        ) from err
    except httpx.TransportError as err:
        # Refused or dropped connections, timeouts, a body cut off before its Content-Length.
        raise TransientError(f"{type(err).__name__}: {err or 'no detail'}") from err
    except httpx.HTTPError as err:
        # A broken Content-Encoding, too many redirects: the same bytes would come again.
        raise RunComfyDownloadError(f"Could not copy {public_url(url)}: {type(err).__name__}: {err}") from err


def _copy_with_retries(
    client: httpx.Client,
    url: str,
    destination: _Destination,
    *,
    policy: RetryPolicy,
    full_query: bool,
    verify_images: bool,
    chunk_size: int,
    max_bytes: int | None = None,
) -> _Copied:
    """:func:`_copy_once` until it works, retrying what :class:`TransientError` says may work next time."""

    def log_retry(failure: object, retry: int, delay: float) -> None:
        log.warning(
            "Copy of %s failed (%s); retry %d of %d in %.1f s",
            public_url(url),
            failure,
            retry,
            policy.max_retries,
            delay,
        )

    try:
        return policy.run(
            lambda: _copy_once(
                client,
                url,
                destination,
                full_query=full_query,
                verify_images=verify_images,
                chunk_size=chunk_size,
                max_bytes=max_bytes,
            ),
            on_retry=log_retry,
        )
    except RetriesExhausted as exhausted:
        attempts = exhausted.attempts
        raise RunComfyDownloadError(
            f"Could not copy RunComfy output {public_url(url)} after {attempts} attempt"
            f"{'s' if attempts != 1 else ''}: {exhausted.last}"
        ) from exhausted.__cause__


def _urls_needing_full_query(urls: Sequence[str]) -> set[str]:
    """URLs of the batch that differ from another one only in signing parameters: hash all of theirs."""
    groups: dict[str, set[str]] = {}
    for url in urls:
        groups.setdefault(_object_identity(url), set()).add(url)
    return {url for group in groups.values() if len(group) > 1 for url in group}


def copy_outputs(
    urls: Sequence[str],
    destination: str | os.PathLike[str] | ObjectStoragePath,
    *,
    retry: RetryPolicy | None = None,
    timeouts: Timeouts | None = None,
    verify_images: bool = True,
    chunk_size: int = 256 * 1024,
    conn_id: str | None = None,
    max_bytes: int | None = None,
) -> list[str]:
    """
    Copy RunComfy output files into ``destination`` and return where each one landed, in order.

    Files are copied one after the other (simple, and the CDN, not the worker, is the bottleneck).
    Each is named by :func:`output_file_name`, written under a hidden temporary name, checked and only
    then moved into place; running again with the same URLs overwrites the same files.

    :param urls: the output URLs; anything :func:`flatten_urls` accepts (one string, a list, a list of
        lists from a mapped task).
    :param destination: a local directory (a plain path), a URI Airflow's object storage understands
        (``file://``, ``s3://``, ``gs://``...) or an ``ObjectStoragePath``. Created when missing.
    :param retry: the retry policy for transient failures (default: :class:`RetryPolicy`'s defaults).
    :param timeouts: connect and read timeouts; the read timeout bounds each wait for bytes, not the
        whole file, so a long video is fine.
    :param verify_images: open PNG/JPEG/WebP/GIF/BMP/TIFF outputs with Pillow before keeping them.
    :param chunk_size: bytes per read and write. 256 KiB keeps throughput near ``curl``'s: much
        smaller costs calls, and from 1 MiB up each buffer is above glibc's mmap threshold, so it is
        mapped and page-faulted afresh on every read (a third of the speed, see BENCHMARKS.md).
    :param conn_id: the Airflow connection of the object store (not the RunComfy connection).
    :param max_bytes: the largest file kept, in bytes; a larger one is refused (not retried) and
        nothing of it is kept. ``None``: images are capped at :data:`DEFAULT_IMAGE_MAX_BYTES`, other
        files (videos) are not capped.
    :return: for a plain local path the absolute file paths; for a URI or ``ObjectStoragePath`` plain
        URIs without the connection id (``file:///data/x.png``, ``s3://bucket/prefix/x.png``).
    :raises RunComfyOutputExpiredError: the CDN answered 403/404/410: the link has expired.
    :raises RunComfyDownloadError: retries were exhausted, the server refused otherwise, or an image is
        corrupt.
    :raises RunComfyInputError: bad URLs, destination or ``chunk_size``.
    """
    flat = flatten_urls(urls)
    for index, url in enumerate(flat):
        if urlsplit(url).scheme.lower() not in ("http", "https") or not urlsplit(url).hostname:
            raise RunComfyInputError("urls", f"item [{index}] is not an http(s) URL: {public_url(url)!r}")
    if not isinstance(chunk_size, int) or chunk_size <= 0:
        raise RunComfyInputError("chunk_size", f"must be a positive number of bytes, got {chunk_size!r}")
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0
    ):
        raise RunComfyInputError("max_bytes", f"must be a positive byte count or None, got {max_bytes!r}")
    target = _resolve_destination(destination, conn_id)
    target.prepare()
    policy = retry or RetryPolicy()
    ambiguous = _urls_needing_full_query(flat)
    done: dict[str, str] = {}
    stored: list[str] = []
    # No ``auth``: the CDN and whatever it redirects to must never see the RunComfy token.
    with make_client(timeouts or Timeouts(), follow_redirects=True) as client:
        for url in flat:
            if url not in done:
                started = time.monotonic()
                copied = _copy_with_retries(
                    client,
                    url,
                    target,
                    policy=policy,
                    full_query=url in ambiguous,
                    verify_images=verify_images,
                    chunk_size=chunk_size,
                    max_bytes=max_bytes,
                )
                seconds = max(time.monotonic() - started, 1e-9)
                done[url] = target.uri(copied.name)
                log.info(
                    "Copied %s to %s: %d bytes in %.2f s (%.1f MB/s)",
                    public_url(url),
                    done[url],
                    copied.size,
                    seconds,
                    copied.size / seconds / 1e6,
                )
            stored.append(done[url])
    return stored
