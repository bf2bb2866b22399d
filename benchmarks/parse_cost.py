"""
Part 2, DAG parse cost: what importing the provider's DAG-facing modules adds to ``import airflow.sdk``.

Every DAG file that uses the provider imports its operator (and maybe sensor) module each time it is
parsed, in a fresh process on Airflow 3's DAG processor. Each sample is a fresh interpreter that
imports ``airflow.sdk`` (what any Airflow 3 DAG file does first), then the module(s) under test,
timing the second import and the RSS it adds, and listing which heavy packages got loaded. The peer
is the HTTP provider's operator module (``airflow.providers.http.operators.http``), which a
do-it-yourself ``HttpOperator``/``HttpSensor`` DAG imports. Samples alternate between the two so
that a noisy neighbour hurts both alike; the medians are reported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from benchmarks.common import airflow_env, median, write_json

TARGETS = {
    "runcomfy": [
        "airflow_provider_runcomfy.operators.runcomfy",
        "airflow_provider_runcomfy.sensors.runcomfy",
    ],
    "http": ["airflow.providers.http.operators.http"],
}
#: Packages a DAG file should not pay for: the image library, the emulator, the schema interpreter and
#: jsonschema (used only when a task runs), the HTTP stacks.
WATCHED = [
    "PIL",
    "PIL.Image",
    "airflow_provider_runcomfy.emulator",
    "airflow_provider_runcomfy.schema",
    "jsonschema",
    "httpx",
    "h11",
    "aiohttp",
    "requests",
]

_PROBE = r"""
import json, sys, time
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * __import__("os").sysconf("SC_PAGE_SIZE")
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
r1 = rss()
before = set(sys.modules)
for name in MODULES:
    __import__(name)
t2 = time.perf_counter()
r2 = rss()
print(json.dumps({
    "sdk_ms": (t1 - t0) * 1000,
    "extra_ms": (t2 - t1) * 1000,
    "extra_mib": (r2 - r1) / 2**20,
    "loaded": [m for m in WATCHED if m in sys.modules and m not in before],
    "already": [m for m in WATCHED if m in before],
}))
"""


def sample(modules: list[str], env: dict[str, str]) -> dict[str, Any]:
    """One fresh interpreter: ``import airflow.sdk``, then ``modules``."""
    code = f"MODULES = {modules!r}\nWATCHED = {WATCHED!r}\n{_PROBE}"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(repeats: int) -> dict[str, Any]:
    """Alternate fresh-process samples of both targets and return the medians."""
    env = airflow_env()
    for modules in TARGETS.values():  # warm the OS file cache and the .pyc files first
        sample(modules, env)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in TARGETS}
    for _ in range(repeats):
        for name, modules in TARGETS.items():
            samples[name].append(sample(modules, env))
    result: dict[str, Any] = {"repeats": repeats}
    for name, runs in samples.items():
        result[name] = {
            "modules": TARGETS[name],
            "extra_ms": median([r["extra_ms"] for r in runs]),
            "extra_mib": median([r["extra_mib"] for r in runs]),
            "sdk_ms": median([r["sdk_ms"] for r in runs]),
            "loaded": sorted({m for r in runs for m in r["loaded"]}),
            "already_loaded_by_sdk": sorted({m for r in runs for m in r["already"]}),
            "samples_ms": [round(r["extra_ms"], 1) for r in runs],
        }
    return result


def main(argv: list[str] | None = None) -> None:
    """Run the samples and write the medians as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    write_json(args.json_out, run(args.repeats))


if __name__ == "__main__":
    main()
