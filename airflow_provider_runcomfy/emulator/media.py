"""Images and videos the emulator makes with Pillow: demo inputs, test images, job outputs.

Everything here is synchronous, CPU-bound and side-effect free (bytes in, bytes out), so the server
runs it in a thread pool and caches what is worth caching. Only the standard library and Pillow are
used: the emulator must run wherever the provider runs, without ffmpeg or numpy.
"""

from __future__ import annotations

import functools
import io
import json
import math
import random
import struct
import textwrap
import zlib
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFont, ImageOps

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

#: Content types of the formats the dynamic image endpoint can make.
IMAGE_CONTENT_TYPES: dict[str, str] = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
}
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "gif": "GIF", "webp": "WEBP"}

#: The video container the video model answers with (Motion-JPEG in AVI: writable with Pillow alone).
VIDEO_CONTENT_TYPE = "video/x-msvideo"

#: Largest side of a generated test image; bigger requests are refused to keep the emulator responsive.
MAX_GENERATED_SIDE = 16384
#: Largest pixel count of a generated test image (Pillow itself warns above ~89 Mpx).
MAX_GENERATED_PIXELS = 80_000_000


def normalize_format(fmt: str) -> str:
    """Map a user-given format name (``jpg``, ``JPEG``, ``png``...) to a key of ``IMAGE_CONTENT_TYPES``.

    Raises ``ValueError`` for anything else, so the HTTP layer can answer 400 instead of 500.
    """
    key = fmt.strip().lower()
    if key == "jpg":
        key = "jpeg"
    if key not in IMAGE_CONTENT_TYPES:
        raise ValueError(f"unsupported format {fmt!r}; use one of {', '.join(IMAGE_CONTENT_TYPES)}")
    return key


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled default font at ``size`` (cached: loading it costs a few milliseconds)."""
    return ImageFont.load_default(size=size)


def _gradient(
    size: tuple[int, int], top: tuple[int, int, int], bottom: tuple[int, int, int], horizontal: bool = False
) -> Image.Image:
    """A two-colour gradient built from Pillow's 256-px ramp: fast even for very large sizes."""
    ramp = Image.linear_gradient("L")
    if horizontal:
        ramp = ramp.rotate(90, expand=True)
    mask = ramp.resize(size, Image.Resampling.BILINEAR)
    return Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), mask)


def _radial(size: tuple[int, int], inner: tuple[int, int, int], outer: tuple[int, int, int]) -> Image.Image:
    """A radial gradient (centre colour ``inner``), again from Pillow's small built-in ramp."""
    mask = Image.radial_gradient("L").resize(size, Image.Resampling.BILINEAR)
    return Image.composite(Image.new("RGB", size, outer), Image.new("RGB", size, inner), mask)


# --------------------------------------------------------------------------------------------------
# Demo samples
# --------------------------------------------------------------------------------------------------


def _sample_portrait() -> Image.Image:
    w, h = 768, 1024
    img = _gradient((w, h), (255, 170, 90), (92, 52, 140))
    draw = ImageDraw.Draw(img)
    draw.ellipse((w * 0.3, h * 0.18, w * 0.7, h * 0.48), fill=(255, 226, 150))
    draw.polygon(
        [(0, h * 0.72), (w * 0.35, h * 0.5), (w * 0.62, h * 0.7), (w, h * 0.55), (w, h), (0, h)],
        fill=(52, 34, 84),
    )
    draw.polygon([(0, h * 0.86), (w * 0.5, h * 0.74), (w, h * 0.88), (w, h), (0, h)], fill=(30, 20, 50))
    return img


def _sample_landscape() -> Image.Image:
    w, h = 1280, 720
    img = _gradient((w, h), (70, 140, 230), (200, 230, 255))
    draw = ImageDraw.Draw(img)
    draw.ellipse((w * 0.72, h * 0.1, w * 0.84, h * 0.31), fill=(255, 240, 170))
    draw.ellipse((-w * 0.2, h * 0.55, w * 0.7, h * 1.6), fill=(80, 160, 80))
    draw.ellipse((w * 0.35, h * 0.62, w * 1.3, h * 1.7), fill=(50, 125, 60))
    for i in range(6):
        x = w * (0.08 + 0.11 * i)
        draw.rectangle((x, h * 0.58, x + 8, h * 0.66), fill=(90, 60, 30))
        draw.ellipse((x - 22, h * 0.5, x + 30, h * 0.6), fill=(30, 100, 40))
    return img


def _sample_square() -> Image.Image:
    w = h = 1024
    img = _radial((w, h), (250, 250, 210), (20, 90, 120))
    draw = ImageDraw.Draw(img)
    colours = [(240, 90, 80), (250, 180, 60), (90, 200, 140), (80, 140, 240), (180, 100, 220)]
    for i, colour in enumerate(colours):
        r = 380 - i * 70
        draw.ellipse((w / 2 - r, h / 2 - r, w / 2 + r, h / 2 + r), outline=colour, width=18)
    draw.regular_polygon((w / 2, h / 2, 70), 6, fill=(255, 255, 255))
    return img


#: Demo input images: name -> (maker, Pillow format). All are valid inputs for both Dreamina models.
_SAMPLES: dict[str, tuple[Any, str]] = {
    "portrait.png": (_sample_portrait, "PNG"),
    "landscape.jpg": (_sample_landscape, "JPEG"),
    "square.png": (_sample_square, "PNG"),
}


def sample_names() -> list[str]:
    """The names served under ``/samples/``."""
    return list(_SAMPLES)


@functools.cache
def sample_bytes(name: str) -> tuple[bytes, str]:
    """Encode the demo image ``name`` once and cache it; returns (bytes, content type).

    Raises ``KeyError`` for an unknown name.
    """
    maker, fmt = _SAMPLES[name]
    buf = io.BytesIO()
    img = maker()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=90)
        return buf.getvalue(), "image/jpeg"
    img.save(buf, "PNG", compress_level=6)
    return buf.getvalue(), "image/png"


# --------------------------------------------------------------------------------------------------
# Dynamic test images, padded to a size
# --------------------------------------------------------------------------------------------------


def generate_image(
    width: int, height: int, fmt: str, size_bytes: int | None = None, *, before_frame: bool = False
) -> bytes:
    """A real image of ``width`` x ``height`` in ``fmt``, padded to at least ``size_bytes``.

    Padding is what lets tests produce a 15 MB JPEG or PNG in milliseconds without noise pixels: it
    adds harmless metadata that every decoder skips (see ``pad_image``). Raises ``ValueError`` for
    sizes that are out of bounds or a format that is not supported.
    """
    key = normalize_format(fmt)
    if not (1 <= width <= MAX_GENERATED_SIDE and 1 <= height <= MAX_GENERATED_SIDE):
        raise ValueError(f"w and h must be between 1 and {MAX_GENERATED_SIDE}")
    if width * height > MAX_GENERATED_PIXELS:
        raise ValueError(f"w*h must be at most {MAX_GENERATED_PIXELS}")
    img = _gradient((width, height), (40, 120, 200), (240, 160, 80), horizontal=width >= height)
    draw = ImageDraw.Draw(img)
    side = min(width, height)
    if side >= 24:
        draw.rectangle((0, 0, width - 1, height - 1), outline=(255, 255, 255), width=max(1, side // 100))
        font = _font(max(10, min(96, side // 10)))
        draw.text(
            (width / 2, height / 2), f"{width}x{height} {key}", fill=(255, 255, 255), font=font, anchor="mm"
        )
    buf = io.BytesIO()
    if key == "png":
        img.save(buf, "PNG", compress_level=1)
    elif key == "jpeg":
        img.save(buf, "JPEG", quality=85)
    elif key == "gif":
        img.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(buf, "GIF")
    else:
        img.save(buf, "WEBP", quality=80)
    data = buf.getvalue()
    if size_bytes is not None and size_bytes > len(data):
        data = pad_image(data, key, size_bytes, before_frame=before_frame)
    return data


def pad_image(data: bytes, fmt: str, size_bytes: int, *, before_frame: bool = False) -> bytes:
    """Grow an encoded image to ``size_bytes`` (exactly where the format allows, else a little more).

    - PNG: one private ancillary chunk ``zzPd`` (with a valid CRC) just before ``IEND``; decoders skip
      unknown ancillary chunks. Exact for any padding of 12 bytes or more.
    - JPEG: ``COM`` (comment) segments, at most 65,533 bytes each, placed after the frame header and
      just before the scan (``SOS``), where a real photo's bulk lies; ``before_frame=True`` puts them
      right after ``SOI`` instead, the worst case for a client reading only the header. Exact for any
      padding of 4 bytes or more; 1-3 bytes go after ``EOI``, which decoders ignore.
    - GIF: one comment extension before the trailer (exact or one byte over).
    - WebP: one unknown RIFF chunk ``ZZPD`` at the end (RIFF sizes are even: may be one byte over).
    """
    missing = size_bytes - len(data)
    if missing <= 0:
        return data
    if fmt == "png":
        at = data.rfind(b"IEND") - 4
        payload = bytes(max(0, missing - 12))
        chunk = struct.pack(">I", len(payload)) + b"zzPd" + payload
        chunk += struct.pack(">I", zlib.crc32(b"zzPd" + payload) & 0xFFFFFFFF)
        return data[:at] + chunk + data[at:]
    if fmt == "jpeg":
        if missing < 4:
            return data + bytes(missing)
        count = math.ceil(missing / 65537)
        total_payload = missing - 4 * count
        parts = []
        for i in range(count):
            n = total_payload // count + (1 if i < total_payload % count else 0)
            parts.append(b"\xff\xfe" + struct.pack(">H", n + 2) + bytes(n))
        at = 2 if before_frame else _jpeg_scan_offset(data)
        return data[:at] + b"".join(parts) + data[at:]
    if fmt == "gif":
        # 21 FE, sub-blocks of (len byte + up to 255 bytes), 00 terminator.
        comment_len = max(0, (missing - 3) * 255 // 256)
        while comment_len + math.ceil(comment_len / 255) + 3 < missing:
            comment_len += 1
        blocks = []
        left = comment_len
        while left > 0:
            n = min(255, left)
            blocks.append(bytes([n]) + b"#" * n)
            left -= n
        ext = b"\x21\xfe" + b"".join(blocks) + b"\x00"
        return data[:-1] + ext + data[-1:]
    # webp
    payload_len = max(0, missing - 8)
    payload_len += payload_len % 2
    chunk = b"ZZPD" + struct.pack("<I", payload_len) + bytes(payload_len)
    body = data[8:] + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _jpeg_scan_offset(data: bytes) -> int:
    """Offset of the first ``SOS`` marker of a baseline JPEG (walking the segment lengths)."""
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        if data[at + 1] == 0xDA:
            return at
        at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
    return 2


# --------------------------------------------------------------------------------------------------
# Job outputs
# --------------------------------------------------------------------------------------------------


def open_image(data: bytes, max_side: int) -> Image.Image:
    """Decode an input image to RGB no bigger than ``max_side`` (JPEG decodes at reduced scale: fast)."""
    img: Image.Image = Image.open(io.BytesIO(data))
    if img.format == "JPEG":
        img.draft("RGB", (max_side, max_side))
    img = img.convert("RGB")
    img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return img


def _draw_caption(img: Image.Image, text: str, max_lines: int | None = None) -> int:
    """Draw ``text`` wrapped on a dark band at the bottom of ``img`` (in place); returns the band height."""
    w, h = img.size
    size = max(10, min(28, w // 30))
    font = _font(size)
    chars = max(8, int(w / (size * 0.56)))
    lines = textwrap.wrap(text, width=chars) or [""]
    limit = max_lines if max_lines is not None else max(1, int(h * 0.3 / (size + 4)))
    if len(lines) > limit:
        lines = lines[:limit]
        lines[-1] = lines[-1][: max(0, chars - 1)] + "…"
    band = (size + 4) * len(lines) + size
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, h - band, w, h), fill=(16, 16, 24))
    draw.multiline_text(
        (size // 2, h - band + size // 2), "\n".join(lines), fill=(255, 255, 255), font=font, spacing=4
    )
    return band


def make_edit_output(
    data: bytes,
    prompt: str,
    index: int,
    count: int,
    max_side: int = 1024,
    size: tuple[int, int] | None = None,
) -> bytes:
    """The edit model's output for one input image: the image (≤ ``max_side``), a frame, the prompt.

    With ``size`` (the requested output size, already scaled down to ``max_side``) the image is cropped
    to its ratio and resized to it, as the real model returns the size it was asked for; without it
    the output keeps the input's shape. Drawing the prompt lets a human (and a test) see that the
    right inputs reached the right output. Encoded as PNG with fast compression, since outputs are
    made for every job.
    """
    if size is None:
        img = open_image(data, max_side)
    else:
        img = ImageOps.fit(open_image(data, max(size)), size, Image.Resampling.BILINEAR)
    w, h = img.size
    draw = ImageDraw.Draw(img)
    frame = max(3, min(w, h) // 60)
    draw.rectangle((0, 0, w - 1, h - 1), outline=(250, 200, 40), width=frame)
    label = f"RunComfy emulator · edit {index + 1}/{count}"
    draw.text(
        (frame * 2, frame * 2),
        label,
        fill=(255, 255, 255),
        font=_font(max(10, min(24, w // 36))),
        stroke_width=2,
        stroke_fill=(0, 0, 0),
    )
    _draw_caption(img, prompt)
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def make_echo_output(inputs: Any) -> bytes:
    """The echo test model's output: a PNG showing the submitted inputs as pretty JSON."""
    text = json.dumps(inputs, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    img = _gradient((640, 480), (30, 34, 48), (60, 40, 80))
    draw = ImageDraw.Draw(img)
    font = _font(14)
    lines: list[str] = []
    for line in text.splitlines():
        lines.extend(textwrap.wrap(line, width=80, subsequent_indent="    ") or [""])
    if len(lines) > 26:
        lines = [*lines[:25], "…"]
    draw.text((16, 12), "RunComfy emulator · echo", fill=(250, 200, 40), font=_font(18))
    draw.multiline_text((16, 40), "\n".join(lines), fill=(235, 235, 235), font=font, spacing=3)
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


#: Frame rate of the model's ``frames`` count: Dreamina's 121 frames are about 5 s, 241 about 10 s.
MODEL_FPS = 24
#: Frame rate the emulator encodes at: a quarter of the model's keeps a 10 s file under 1 MB and its
#: encoding under half a second, while the duration players show still matches what ``frames`` asked.
VIDEO_FPS = 6


def video_frame_count(model_frames: int, fps: int = VIDEO_FPS) -> int:
    """How many frames to encode at ``fps`` so the video lasts as long as ``model_frames`` at 24 fps.

    121 -> 30 frames at 6 fps (5.0 s), 241 -> 60 frames (10.0 s): the duration is what a user's
    pipeline sees and may check, so it follows the request; the frame count itself does not matter.
    """
    if model_frames < 1 or fps < 1:
        raise ValueError("model_frames and fps must be at least 1")
    return max(1, round((model_frames - 1) * fps / MODEL_FPS))


def make_video_output(
    data: bytes, prompt: str, model_frames: int = 121, fps: int = VIDEO_FPS, max_side: int = 640
) -> bytes:
    """The video model's output: a Motion-JPEG AVI of a slow zoom and pan over the input image.

    A real, playable file (VLC, ffmpeg, browsers that play AVI) made with Pillow alone: it lasts
    ``model_frames / 24`` seconds like the real model's video (121 -> 5 s, 241 -> 10 s), encoded at
    the lower ``fps`` (see ``VIDEO_FPS``), the longest side at most ``max_side`` px.
    """
    frames = video_frame_count(model_frames, fps)
    src = open_image(data, int(max_side * 1.3))
    sw, sh = src.size
    scale = min(1.0, max_side / max(sw, sh))
    ow, oh = max(2, int(sw * scale) // 2 * 2), max(2, int(sh * scale) // 2 * 2)
    caption = Image.new("RGB", (ow, oh))
    band_height = min(oh, _draw_caption(caption, prompt, max_lines=2))
    jpegs: list[bytes] = []
    for i in range(frames):
        t = i / max(1, frames - 1)
        zoom = 1.0 + 0.25 * t
        cw, ch = sw / zoom, sh / zoom
        cx = sw / 2 + (sw - cw) / 2 * 0.6 * math.sin(t * math.pi - math.pi / 2)
        cy = sh / 2
        box = (cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2)
        frame = src.resize((ow, oh), Image.Resampling.BILINEAR, box=box)
        if band_height:
            frame.paste(caption.crop((0, oh - band_height, ow, oh)), (0, oh - band_height))
        buf = io.BytesIO()
        frame.save(buf, "JPEG", quality=80)
        jpegs.append(buf.getvalue())
    return write_mjpeg_avi(jpegs, ow, oh, fps)


def write_mjpeg_avi(jpegs: Sequence[bytes], width: int, height: int, fps: int) -> bytes:
    """Wrap JPEG frames into an AVI (RIFF ``AVI ``) file with one Motion-JPEG video stream.

    Layout: ``hdrl`` (``avih`` main header, ``strl`` with ``strh`` stream header and ``strf``
    BITMAPINFOHEADER), ``movi`` with one ``00dc`` chunk per frame, and the ``idx1`` index (offsets
    relative to the ``movi`` fourcc) so players can seek.
    """

    def chunk(fourcc: bytes, payload: bytes) -> bytes:
        pad = b"\0" if len(payload) % 2 else b""
        return fourcc + struct.pack("<I", len(payload)) + payload + pad

    def lst(kind: bytes, payload: bytes) -> bytes:
        return b"LIST" + struct.pack("<I", len(payload) + 4) + kind + payload

    n = len(jpegs)
    biggest = max((len(j) for j in jpegs), default=0)
    usec = round(1_000_000 / fps)
    avih = struct.pack(
        "<IIIIIIIIII4I",
        usec,  # dwMicroSecPerFrame
        biggest * fps,  # dwMaxBytesPerSec
        0,  # dwPaddingGranularity
        0x10,  # dwFlags: AVIF_HASINDEX
        n,  # dwTotalFrames
        0,  # dwInitialFrames
        1,  # dwStreams
        biggest,  # dwSuggestedBufferSize
        width,
        height,
        0,
        0,
        0,
        0,
    )
    strh = struct.pack(
        "<4s4sIHHIIIIIIIIhhhh",
        b"vids",
        b"MJPG",
        0,  # dwFlags
        0,  # wPriority
        0,  # wLanguage
        0,  # dwInitialFrames
        1,  # dwScale
        fps,  # dwRate (rate / scale = fps)
        0,  # dwStart
        n,  # dwLength (frames)
        biggest,  # dwSuggestedBufferSize
        0xFFFFFFFF,  # dwQuality: default
        0,  # dwSampleSize: variable
        0,
        0,
        width,
        height,  # rcFrame
    )
    strf = struct.pack("<IiiHH4sIiiII", 40, width, height, 1, 24, b"MJPG", width * height * 3, 0, 0, 0, 0)
    hdrl = lst(b"hdrl", chunk(b"avih", avih) + lst(b"strl", chunk(b"strh", strh) + chunk(b"strf", strf)))
    movi_parts: list[bytes] = []
    index: list[bytes] = []
    offset = 4  # relative to the 'movi' fourcc
    for jpeg in jpegs:
        c = chunk(b"00dc", jpeg)
        index.append(struct.pack("<4sIII", b"00dc", 0x10, offset, len(jpeg)))  # AVIIF_KEYFRAME
        movi_parts.append(c)
        offset += len(c)
    movi = lst(b"movi", b"".join(movi_parts))
    idx1 = chunk(b"idx1", b"".join(index))
    body = b"AVI " + hdrl + movi + idx1
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --------------------------------------------------------------------------------------------------
# Blobs
# --------------------------------------------------------------------------------------------------

_PATTERN_SIZE = 64 * 1024
_CHUNK_SIZE = 1024 * 1024


@functools.lru_cache(maxsize=1)
def _blob_block() -> bytes:
    """1 MiB made of a fixed 64 KiB pseudo-random pattern (seeded: the same in every process)."""
    pattern = random.Random(20240601).randbytes(_PATTERN_SIZE)
    return pattern * (_CHUNK_SIZE // _PATTERN_SIZE)


def blob_bytes(start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of the endless blob stream (for tests checking downloaded content)."""
    return b"".join(iter_blob(start, end))


def iter_blob(start: int, end: int) -> Iterator[bytes]:
    """Yield bytes ``[start, end)`` of the blob stream in chunks of at most 1 MiB, without copying it all."""
    block = memoryview(_blob_block())
    pos = start
    while pos < end:
        offset = pos % _PATTERN_SIZE
        n = min(_CHUNK_SIZE - offset, end - pos)
        yield bytes(block[offset : offset + n])
        pos += n
