"""Jobs: their life cycle over time, and the blocking work of running one (fetch inputs, make outputs).

A job's state is a pure function of the clock and a few timestamps, so answering a status poll
costs no bookkeeping: ``in_queue`` until ``start_at`` (submit + queue_seconds), ``in_progress``
until ``finish_at`` (start + run_seconds) *and* until its outputs exist, then finished
(``succeeded`` or ``failed``), or ``cancelled``. The work itself (``run_job``) is blocking and runs
in the server's thread pool when the job starts, so outputs are ready when the status first says
``completed``.
"""

from __future__ import annotations

import base64
import binascii
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import media
from .rules import SIZE_FIELD, ImageRuleError, ModelSpec, edit_output_count

if TYPE_CHECKING:
    import asyncio

#: Seconds the emulator waits for an input image host.
FETCH_TIMEOUT = 15.0
FETCH_USER_AGENT = "runcomfy-emulator/0.1 (input fetcher)"

# Result-endpoint words; the status endpoint maps both finished words to "completed".
IN_QUEUE = "in_queue"
IN_PROGRESS = "in_progress"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
COMPLETED = "completed"


def iso(ts: float | None) -> str | None:
    """An epoch time as ISO-8601 UTC with milliseconds and a ``Z`` (``None`` stays ``None``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class OutputFile:
    """One output file the emulator serves under ``/files/{request_id}/{name}``."""

    name: str
    content_type: str
    data: bytes


@dataclass
class Job:
    """One submitted request. Times are epoch seconds; knobs are copied from the config at submit."""

    request_id: str
    spec: ModelSpec
    owner: str  # the token that submitted it (kept in memory only, never logged or returned)
    inputs: dict[str, Any]
    params: dict[str, Any]
    created_at: float
    start_at: float
    finish_at: float
    failure_message: str | None
    result_ttl: float | None
    cancelled_at: float | None = None
    work_done_at: float | None = None
    error: str | None = None
    files: dict[str, OutputFile] = field(default_factory=dict)
    output_names: dict[str, Any] | None = None
    task: asyncio.Task[None] | None = None
    expired: bool = False
    #: Set while the job is held by ``hold_until_submits`` (its times are infinite until then).
    released: asyncio.Event | None = None

    def state(self, now: float) -> str:
        """The result-endpoint word at time ``now``."""
        if self.cancelled_at is not None:
            return CANCELLED
        if now < self.start_at:
            return IN_QUEUE
        if self.work_done_at is None or now < self.finish_at:
            return IN_PROGRESS
        return FAILED if self.error is not None else SUCCEEDED

    def progress(self, now: float) -> float:
        """How far the job is through its current in-flight state, 0 to 1 (a dialect's in-flight words)."""
        begin, end = (
            (self.created_at, self.start_at) if now < self.start_at else (self.start_at, self.finish_at)
        )
        if end <= begin:
            return 1.0
        return max(0.0, min(1.0, (now - begin) / (end - begin)))

    def finished_at(self, now: float) -> float | None:
        """When the job reached its final state, or ``None`` while it is queued or running."""
        if self.cancelled_at is not None:
            return self.cancelled_at
        if self.work_done_at is None:
            return None
        done = max(self.finish_at, self.work_done_at)
        return done if now >= done else None

    def is_expired(self, now: float) -> bool:
        """True once the result TTL has passed since the job finished (then it answers 404001)."""
        if self.expired:
            return True
        if self.result_ttl is None:
            return False
        finished = self.finished_at(now)
        return finished is not None and now - finished >= self.result_ttl

    def output(self, base_url: str) -> dict[str, Any] | None:
        """The documented output object with absolute file URLs (only meaningful once succeeded)."""
        if self.output_names is None:
            return None
        prefix = f"{base_url}/files/{self.request_id}/"
        out: dict[str, Any] = {}
        for key, value in self.output_names.items():
            out[key] = [prefix + v for v in value] if isinstance(value, list) else prefix + value
        return out


class JobFailure(Exception):
    """The job ends ``failed`` with this text as its ``error``."""


def fetch_input(url: str, index: int, limit: int, field_name: str | None = None) -> bytes:
    """GET one input URL like the real service: plain request, no auth header, no cookies, a timeout.

    Reads at most ``limit`` bytes (one more than the model allows, so a too-big file is detected
    without downloading all of it). Proxies from the environment are ignored: the emulator only
    talks to local hosts. Raises ``JobFailure`` naming ``image_urls[index]``.
    """
    field_name = field_name or f"image_urls[{index}]"
    if url[:5].lower() == "data:":
        return decode_data_uri(url, field_name)[:limit]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, method="GET", headers={"User-Agent": FETCH_USER_AGENT})
    try:
        with opener.open(request, timeout=FETCH_TIMEOUT) as resp:
            data: bytes = resp.read(limit)
            return data
    except urllib.error.HTTPError as exc:
        raise JobFailure(f"{field_name}: could not fetch {url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise JobFailure(f"{field_name}: could not fetch {url}: {reason}") from exc


def decode_data_uri(url: str, field_name: str) -> bytes:
    """The bytes of a ``data:...;base64,`` input, as the service reads it; ``JobFailure`` if broken."""
    _, _, payload = url.partition(",")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise JobFailure(f"{field_name}: the data URI's base64 payload is broken") from exc
    if not data:
        raise JobFailure(f"{field_name}: the data URI holds no bytes")
    return data


def edit_output_size(params: dict[str, Any], max_side: int) -> tuple[int, int] | None:
    """
    The size of the edit model's outputs: the requested ``width×height`` (``2048x2048(1:1)`` by
    default, as the model's page says), scaled down to at most ``max_side`` pixels on its longer side
    with its ratio kept, so the outputs are the shape asked for while the emulator stays fast.
    """
    label = params.get(SIZE_FIELD)
    if not isinstance(label, str):
        return None
    width, _, rest = label.partition("x")
    height = rest.split("(", 1)[0]
    if not (width.isdigit() and height.isdigit()):
        return None
    w, h = int(width), int(height)
    scale = min(1.0, max_side / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def run_job(
    spec: ModelSpec, params: dict[str, Any], max_side: int
) -> tuple[list[OutputFile], dict[str, Any]]:
    """Do a job's blocking work: fetch and check input images, make the output files.

    Returns the files and the output object with file *names* (the server turns them into URLs).
    Raises ``JobFailure`` with the error text of a failed job.
    """
    if spec.entry is not None:
        return run_catalog_job(spec.entry, params, max_side)
    images: list[bytes] = []
    if spec.image_rules is not None:
        for i, url in enumerate(params["image_urls"]):
            data = fetch_input(url, i, spec.image_rules.read_limit())
            try:
                spec.image_rules.check(data, i)
            except ImageRuleError as exc:
                raise JobFailure(str(exc)) from exc
            images.append(data)
    try:
        if spec.kind == "edit":
            count = edit_output_count(params)
            size = edit_output_size(params, max_side)
            files = [
                OutputFile(
                    f"image_{i}.png",
                    "image/png",
                    media.make_edit_output(images[i], params["prompt"], i, count, max_side, size),
                )
                for i in range(count)
            ]
            return files, {"images": [f.name for f in files]}
        if spec.kind == "video":
            video = media.make_video_output(
                images[0], params["prompt"], params["frames"], max_side=min(640, max_side)
            )
            return [OutputFile("video.avi", media.VIDEO_CONTENT_TYPE, video)], {"video": "video.avi"}
        image = media.make_echo_output(params)
        return [OutputFile("image.png", "image/png", image)], {"image": "image.png"}
    except (OSError, ValueError) as exc:  # an image Pillow identified but cannot decode
        raise JobFailure(f"image_urls: could not decode an input image: {exc}") from exc


def run_catalog_job(
    entry: Any, params: dict[str, Any], max_side: int
) -> tuple[list[OutputFile], dict[str, Any]]:
    """A job of a model known only from the catalog: fetch and check its images, then make outputs.

    Images are checked against their field's ``validations`` (the service checks media when it runs);
    the outputs are the first input image with the prompt drawn on it (one per output the inputs ask
    for), or a video of it for a video model.
    """
    from .catalog import check_image, media_inputs

    images: list[bytes] = []
    for index, (name, url, validations) in enumerate(media_inputs(entry.input_schema, params)):
        data = fetch_input(url, index, 64 * 1024 * 1024, name)
        try:
            check_image(data, name, validations)
        except ImageRuleError as exc:
            raise JobFailure(str(exc)) from exc
        images.append(data)
    prompt = str(params.get("prompt", ""))
    try:
        source = images[0] if images else media.make_echo_output(params)
        if entry.makes_video:
            video = media.make_video_output(source, prompt, max_side=min(640, max_side))
            return [OutputFile("video.avi", media.VIDEO_CONTENT_TYPE, video)], {"video": "video.avi"}
        count = entry.output_count(params)
        files = [
            OutputFile(
                f"image_{i}.png", "image/png", media.make_edit_output(source, prompt, i, count, max_side)
            )
            for i in range(count)
        ]
    except (OSError, ValueError) as exc:
        raise JobFailure(f"could not decode an input image: {exc}") from exc
    if count == 1:
        return files, {"image": files[0].name}
    return files, {"images": [f.name for f in files]}
