"""
Part 5, downloads: copying a 256 MB output to a local directory, beside ``curl -o`` of the same URL.

The emulator streams a 256 MiB blob (``/blobs/{size}?type=video/mp4``, like a video output) from its
own process. Ours is :func:`airflow_provider_runcomfy.downloads.copy_outputs`, the engine of
``RunComfyDownloadOperator`` (stream to a temporary file, fsync, check the length, move into place),
run in a fresh process so that its peak RSS (``ru_maxrss``) minus its RSS before the copy is the
memory the copy needed. A 1 KiB copy first pays the one-time costs of a task process (the lazy
imports of the object-storage layer, the TLS context: about 0.8 s here), which are not throughput.
The peer is ``curl -s -o FILE URL`` run the same way, its peak RSS read from ``wait4``. The same
copy with ``chunk_size=1 MiB`` is measured too (see ``OTHER_CHUNK``). Copies alternate; medians are
reported, and every file is deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import Emulator, airflow_env, median, prepare_process, scratch_dir, write_json

SIZE = 256 * 2**20
#: Another ``chunk_size`` measured beside ``copy_outputs``' default (256 KiB): 1 MiB buffers are above
#: glibc's mmap threshold, so each one is mapped and faulted in afresh (the reason for the default).
OTHER_CHUNK = 1024 * 1024

_OURS = r"""
import json, resource, sys, time
from airflow_provider_runcomfy.downloads import copy_outputs
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * __import__("os").sysconf("SC_PAGE_SIZE")
# A first small copy pays the one-time costs of a task process (lazy imports, the TLS context).
copy_outputs([sys.argv[1].split("/blobs/")[0] + "/blobs/1024"], sys.argv[2] + "/warm-up")
options = {"chunk_size": int(sys.argv[3])} if int(sys.argv[3]) else {}
before = rss()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
started = time.perf_counter()
[path] = copy_outputs([sys.argv[1]], sys.argv[2], **options)
seconds = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "seconds": seconds,
    "rss_growth": usage.ru_maxrss * 1024 - before,
    "minor_faults": usage.ru_minflt - faults,
    "path": path,
}))
"""


def _ours(url: str, dest: str, env: dict[str, str], chunk_size: int = 0) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _OURS, url, dest, str(chunk_size)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _curl(url: str, dest: str) -> dict[str, Any]:
    path = os.path.join(dest, "curl.bin")
    started = time.perf_counter()
    proc = subprocess.Popen(["curl", "-s", "-S", "-f", "--max-time", "300", "-o", path, url])
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"curl exited {proc.returncode}")
    return {
        "seconds": seconds,
        "rss_peak": usage.ru_maxrss * 1024,
        "minor_faults": usage.ru_minflt,
        "bytes": os.path.getsize(path),
    }


def run(repeats: int) -> dict[str, Any]:
    """Alternate ``repeats`` copies of each kind; return the medians."""
    if shutil.which("curl") is None:
        raise RuntimeError("curl is needed for the peer figure")
    ours: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    curl: list[dict[str, Any]] = []
    with Emulator() as emu:
        url = f"{emu.base_url}/blobs/{SIZE}?type=video/mp4"
        env = airflow_env()
        for _ in range(repeats):
            for kind in ("ours", "curl", "other"):
                dest = scratch_dir("download-")
                try:
                    if kind == "curl":
                        curl.append(_curl(url, dest))
                        continue
                    result = _ours(url, dest, env, OTHER_CHUNK if kind == "other" else 0)
                    if os.path.getsize(result["path"]) != SIZE:
                        raise RuntimeError("the copy has the wrong size")
                    (other if kind == "other" else ours).append(result)
                finally:
                    shutil.rmtree(dest, ignore_errors=True)
    other_mb_s = median([SIZE / r["seconds"] / 1e6 for r in other])
    ours_mb_s = median([SIZE / r["seconds"] / 1e6 for r in ours])
    curl_mb_s = median([SIZE / r["seconds"] / 1e6 for r in curl])
    return {
        "bytes": SIZE,
        "repeats": repeats,
        "ours_mb_s": ours_mb_s,
        "curl_mb_s": curl_mb_s,
        "throughput_ratio": ours_mb_s / curl_mb_s,
        "ours_rss_growth_mib": median([r["rss_growth"] / 2**20 for r in ours]),
        "other_chunk": OTHER_CHUNK,
        "other_mb_s": other_mb_s,
        "other_throughput_ratio": other_mb_s / curl_mb_s,
        "other_rss_growth_mib": median([r["rss_growth"] / 2**20 for r in other]),
        "ours_minor_faults": median([r["minor_faults"] for r in ours]),
        "other_minor_faults": median([r["minor_faults"] for r in other]),
        "curl_minor_faults": median([r["minor_faults"] for r in curl]),
        "curl_rss_peak_mib": median([r["rss_peak"] / 2**20 for r in curl]),
        "ours_seconds": [round(r["seconds"], 2) for r in ours],
        "curl_seconds": [round(r["seconds"], 2) for r in curl],
    }


def main(argv: list[str] | None = None) -> None:
    """Run the copies and write the medians as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    prepare_process()
    write_json(args.json_out, run(args.repeats))


if __name__ == "__main__":
    main()
