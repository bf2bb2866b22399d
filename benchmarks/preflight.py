"""
Part 4, pre-flight bytes: how much of an input image the checks fetch before a paid submit.

Each image is probed alone with :func:`airflow_provider_runcomfy.images.aprobe_images` against the
edit model's rules, and the body bytes it fetched (httpx's count of bytes received, over every
request the probe made) are reported beside the peer: fetching the file in full, which is what a
check that downloads the image and opens it with Pillow costs. The images are real 4032x3024 PNGs
and JPEGs made by the emulator, padded with metadata to 1 MB and 15 MB; the JPEGs carry their bulk
between the frame header and the pixels, like camera photos. One more row shows the worst case for
a header reader: a 15 MB JPEG whose metadata all comes *before* its frame header.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from benchmarks.common import Emulator, prepare_process, write_json

CASES = [
    ("PNG 1 MB", "png", 1_000_000, ""),
    ("PNG 15 MB", "png", 15_000_000, ""),
    ("JPEG 1 MB", "jpeg", 1_000_000, ""),
    ("JPEG 15 MB", "jpeg", 15_000_000, ""),
    ("JPEG 15 MB, metadata before the frame header", "jpeg", 15_000_000, "head"),
]


def run() -> dict[str, Any]:
    """Probe every case once (after a warm-up fetch that lets the emulator make the image)."""
    import httpx

    from airflow_provider_runcomfy.images import aprobe_images
    from airflow_provider_runcomfy.validation import EDIT_SPEC

    rows = []
    with Emulator() as emu:
        for name, fmt, size, pad in CASES:
            url = f"{emu.base_url}/images/gen?w=4032&h=3024&fmt={fmt}&bytes={size}" + (
                f"&pad={pad}" if pad else ""
            )
            with httpx.Client(timeout=120) as client:
                full = len(client.get(url).raise_for_status().content)  # the peer: the whole file
            (probe,) = asyncio.run(aprobe_images([("image_urls[0]", url)], EDIT_SPEC.image_rules))
            rows.append(
                {
                    "case": name,
                    "file_bytes": probe.size_bytes,
                    "probe_bytes": probe.bytes_read,
                    "full_download_bytes": full,
                    "format": probe.format,
                    "size": f"{probe.width}x{probe.height}",
                    "worst_case": bool(pad),
                }
            )
    return {"rows": rows}


def main(argv: list[str] | None = None) -> None:
    """Probe the images and write the byte counts as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    prepare_process()
    write_json(args.json_out, run())


if __name__ == "__main__":
    main()
