"""Small helpers shared by the emulator tests."""

from __future__ import annotations

import io
import struct
import time
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    import httpx

EDIT = "bytedance/dreamina-4-0/edit"
VIDEO = "bytedance/dreamina-3-0/pro/image-to-video"
ECHO = "runcomfy/emulator/echo"


def submit(client: httpx.Client, model: str, inputs: dict[str, Any]) -> str:
    """Submit and return the request id (asserting the submit was accepted)."""
    r = client.post(f"/v1/models/{model}", json=inputs)
    assert r.status_code == 200, r.text
    rid: str = r.json()["request_id"]
    return rid


def wait_result(client: httpx.Client, rid: str, timeout: float = 15.0) -> dict[str, Any]:
    """Poll the status until ``completed``/``cancelled``, then return the result body."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/v1/requests/{rid}/status").json()["status"]
        if status in ("completed", "cancelled"):
            result: dict[str, Any] = client.get(f"/v1/requests/{rid}/result").json()
            return result
        time.sleep(0.03)
    raise AssertionError(f"job {rid} did not finish in {timeout}s")


def avi_frames(data: bytes) -> list[bytes]:
    """The ``00dc`` frame payloads of an AVI file, read independently of the emulator's writer."""
    assert data[:4] == b"RIFF"
    assert data[8:12] == b"AVI "
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    frames = []
    pos = 12
    while pos < len(data):
        fourcc, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if fourcc == b"LIST":
            kind = data[pos + 8 : pos + 12]
            if kind == b"movi":
                inner = pos + 12
                end = pos + 8 + size
                while inner < end:
                    cid, n = data[inner : inner + 4], struct.unpack("<I", data[inner + 4 : inner + 8])[0]
                    if cid == b"00dc":
                        frames.append(data[inner + 8 : inner + 8 + n])
                    inner += 8 + n + (n & 1)
        pos += 8 + size + (size & 1)
    return frames


def avi_duration(data: bytes) -> tuple[int, float]:
    """(frame count, seconds) from an AVI's headers, read the way players read them.

    The main header ``avih`` gives the microseconds per frame and the frame count; the video stream
    header ``strh`` gives the rate (``dwRate / dwScale`` frames per second) and its length in frames.
    Both must agree, or players would show different durations.
    """
    at = data.find(b"avih")
    assert at > 0, "no avih header"
    usec_per_frame, total_frames = struct.unpack_from("<I12xI", data, at + 8)
    at = data.find(b"strh")
    assert at > 0, "no strh header"
    scale, rate, _start, length = struct.unpack_from("<IIII", data, at + 8 + 20)
    assert length == total_frames
    seconds = length * scale / rate
    assert abs(seconds - total_frames * usec_per_frame / 1e6) < 0.05
    return total_frames, seconds


def image_size(data: bytes) -> tuple[str | None, tuple[int, int]]:
    """Open bytes with Pillow (fully decoding them) and return (format, size)."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.format, img.size
