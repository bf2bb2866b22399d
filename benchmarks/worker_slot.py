"""
Part 3, worker-slot time: how long a deferrable edit holds its worker slot, and what deferring saves.

``pre-deferral``: a deferrable ``RunComfyImageEditOperator`` with 10 input images (five 4032x3024
JPEGs of 4 MB, five 2048x2048 PNGs of 6 MB, served by the emulator) runs ``execute()`` until it
raises ``TaskDeferred``: the catalog read (schema and price), the schema check of the fields (which
imports jsonschema and the interpreter in a new process), the cost estimate, the header probes of the
10 images, the paid submit, the status check before deferring. Each sample is a fresh process that
has imported the operator module (as a task process has, after parsing its DAG file), so the lazy
imports of the hook, httpx, Pillow, jsonschema and the interpreter are counted ("cold"); a few more
runs in the same process give the "warm" figure (the catalog answer is cached per process then). The
peer, in the same processes: the naive pre-flight a DAG author would write, downloading each image in
full and opening it with Pillow, then the same submit and status check.

``real processes``: the fan-out of ``tests/test_real_processes.py`` (four mapped edits of 15 s jobs,
one worker slot, a real scheduler, triggerer, DAG processor and API server), deferrable against the
same DAG waiting in the worker; its ``AirflowStack`` and ``EmulatorProcess`` are reused as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Emulator,
    airflow_env,
    median,
    prepare_process,
    runcomfy_conn,
    scratch_dir,
    write_json,
)

#: The 10 input images: (width, height, format, bytes), five phone-camera JPEGs and five PNGs.
IMAGES = [(4032, 3024, "jpeg", 4_000_000)] * 5 + [(2048, 2048, "png", 6_000_000)] * 5

_SAMPLE = r"""
import json, sys, time
from airflow_provider_runcomfy.operators.runcomfy import RunComfyImageEditOperator  # parse time
from airflow.providers.common.compat.sdk import TaskDeferred

URLS, WARM = json.loads(sys.argv[1]), int(sys.argv[2])

class TI:
    stats_tags = {}
    def xcom_push(self, key, value):
        pass

def ours():
    op = RunComfyImageEditOperator(
        task_id="edit", image_urls=URLS, prompt="golden hour", deferrable=True, poll_interval=5
    )
    started = time.perf_counter()
    try:
        op.execute({"ti": TI()})
    except TaskDeferred:
        return (time.perf_counter() - started) * 1000
    raise RuntimeError("the operator did not defer")

def naive():
    import io
    import httpx
    from PIL import Image
    from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook
    started = time.perf_counter()
    hook = RunComfyHook()
    fetched = 0
    with httpx.Client(timeout=60) as client:
        for url in URLS:
            body = client.get(url).raise_for_status().content
            fetched += len(body)
            with Image.open(io.BytesIO(body)) as image:
                image.size
    rid = hook.submit("bytedance/dreamina-4-0/edit", {"image_urls": URLS, "prompt": "golden hour"})
    hook.get_status(rid)
    return (time.perf_counter() - started) * 1000, fetched

cold = ours()
warm = [ours() for _ in range(WARM)]
naive_ms, naive_bytes = naive()
print(json.dumps({"cold_ms": cold, "warm_ms": warm, "naive_ms": naive_ms, "naive_bytes": naive_bytes}))
"""


def pre_deferral(samples: int, warm: int) -> dict[str, Any]:
    """Fresh-process samples of the deferrable edit's time until it defers, beside the naive pre-flight."""
    with Emulator(queue_seconds=3600, run_seconds=1) as emu:  # jobs stay queued: the trigger would wait
        urls = [
            f"{emu.base_url}/images/gen?w={w}&h={h}&fmt={fmt}&bytes={size}&i={i}"
            for i, (w, h, fmt, size) in enumerate(IMAGES)
        ]
        import httpx

        with httpx.Client(timeout=120) as client:  # let the emulator make (and cache) the images first
            sizes = [len(client.get(url).raise_for_status().content) for url in urls]
        env = airflow_env()
        env["AIRFLOW_CONN_RUNCOMFY_DEFAULT"] = runcomfy_conn(emu.base_url)
        runs = []
        for index in range(samples + 1):  # the first one only warms the bytecode cache and the OS
            out = subprocess.run(
                [sys.executable, "-c", _SAMPLE, json.dumps(urls), str(warm)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=300,
            )
            if index:
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "images": len(urls),
        "image_bytes_total": sum(sizes),
        "samples": samples,
        "cold_ms": median([r["cold_ms"] for r in runs]),
        "warm_ms": median([ms for r in runs for ms in r["warm_ms"]]),
        "naive_ms": median([r["naive_ms"] for r in runs]),
        "naive_bytes": runs[0]["naive_bytes"],
        "cold_samples_ms": [round(r["cold_ms"]) for r in runs],
    }


def real_processes() -> dict[str, Any]:
    """
    The real-process fan-out (4 x 15 s jobs, one worker slot): deferrable run against sync run.

    Drives ``AirflowStack`` and ``EmulatorProcess`` (``devtools/``) through the fan-out of
    ``tests/test_real_processes.py`` the way its test does, without its assertions (the suite checks
    those).
    """
    from devtools import airflow_stack, fanout
    from devtools.processes import EmulatorProcess

    workdir = Path(scratch_dir("real-processes-"))
    emulator = EmulatorProcess(workdir, token=fanout.TOKEN, run_seconds=fanout.JOB_SECONDS)
    emulator.start()
    try:
        stack = airflow_stack.AirflowStack(
            workdir,
            fanout.DAGS_DIR,
            {
                "AIRFLOW_CONN_RUNCOMFY_DEFAULT": emulator.conn_json(),
                "RUNCOMFY_REAL_EMULATOR_URL": emulator.base_url,
                "PYTHONPYCACHEPREFIX": os.environ.get("PYTHONPYCACHEPREFIX", ""),
            },
        )
        try:
            stack.start()
            stack.wait_parsed([fanout.DEFERRABLE_DAG, fanout.SYNC_DAG])
            runs = {}
            for name, dag_id in (("deferrable", fanout.DEFERRABLE_DAG), ("sync", fanout.SYNC_DAG)):
                started = time.time()
                run_id = stack.trigger(dag_id)
                info = stack.wait_run(
                    dag_id, run_id, triggered_at=started, timeout=2 * airflow_stack.RUN_TIMEOUT
                )
                runs[name] = {
                    "state": info.state,
                    "run_seconds": info.db_seconds,
                    "trigger_to_done_seconds": info.wall_seconds,
                }
        finally:
            stack.stop()
    finally:
        emulator.stop()
    return {
        "tasks": fanout.N_TASKS,
        "job_seconds": fanout.JOB_SECONDS,
        "airflow": airflow_stack.AIRFLOW_VERSION,
        "executor": "LocalExecutor" if airflow_stack.AIRFLOW_3 else "SequentialExecutor",
        "worker_slots": 1,
        **runs,
    }


def main(argv: list[str] | None = None) -> None:
    """Run the pre-deferral samples and/or the real-process fan-out."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=5, help="fresh processes")
    parser.add_argument("--warm", type=int, default=3, help="more runs in each process")
    parser.add_argument("--part", choices=("pre", "real", "both"), default="both")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    prepare_process()
    result: dict[str, Any] = {}
    if args.part in ("pre", "both"):
        result["pre_deferral"] = pre_deferral(args.samples, args.warm)
    if args.part in ("real", "both"):
        result["real_processes"] = real_processes()
    write_json(args.json_out, result)


if __name__ == "__main__":
    main()
