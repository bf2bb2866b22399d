"""
What a kept batch-benchmark run shows about its retries and its items paid more than once.

Reads a directory kept by ``python -m benchmarks.batch --keep DIR`` (the Airflow home with its task
logs, ``scheduler.log``, ``api-server.log`` and the emulator's ``requests-<run>.jsonl``) and prints:

* the retried task instances, grouped by what the scheduler saw when it failed each try (the task
  instance's state against the state the executor reported, from "TaskInstance Finished" lines);
* for each try's log file: how many task processes wrote to it, and which of them ran ``execute``
  from the start (a "Pre Execute" followed by a cost estimate) rather than resuming;
* for each item paid more than once: every POST (time, request id), every cancel of those ids, and
  the notable lines of every try's task log and trigger log, in time order.

Usage::

    python -m benchmarks.batch_evidence DIR [--run mapped] [--show 5] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import write_json

#: Task and trigger log events worth quoting (matched against the event text).
NOTABLE = re.compile(
    r"Pre Execute|Submitted RunComfy request|from an earlier try|Reconnecting to existing job"
    r"|already completed successfully|Prior job in terminal state|could not be saved"
    r"|RunComfy request \S+ (?:was cancel|could not|is not cancel|cancel)|Could not cancel"
    r"|Pausing task as DEFERRED|Server indicated|SIGTERM|signal|on_kill|Task failed with exception"
    r"|Process exited|Task killed|succeeded with|Trigger fired event|cancelled by user action"
    r"|Failed to report|Estimated cost|Resuming|next_method|not found",
    re.IGNORECASE,
)
FINISHED = re.compile(
    r"^(?P<at>\S+) .*TaskInstance Finished: .*?map_index=(?P<map>-?\d+), .*?state=(?P<state>\w+), "
    r"executor=.*?executor_state=(?P<executor_state>\w+), try_number=(?P<try>\d+)"
)
RETRY = re.compile(
    r"^(?P<at>\S+) .*Marking task as (?P<what>UP_FOR_RETRY|FAILED)\. .*?map_index=(?P<map>-?\d+),"
)


def _lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            item = json.loads(raw)
        except ValueError:
            item = {"event": raw}
        if isinstance(item, dict):
            out.append(item)
    return out


def _text(item: dict[str, Any]) -> str:
    text = str(item.get("event", ""))
    for key in ("error_detail", "detail", "result", "exit_code", "external_id", "status", "state"):
        if key in item:
            value = item[key]
            if key == "error_detail" and isinstance(value, list) and value:
                value = [{k: str(e.get(k))[:200] for k in ("exc_type", "exc_value")} for e in value]
            text += f" {key}={str(value)[:300]}"
    return text


def task_log_notes(path: Path) -> dict[str, Any]:
    """
    The notable lines of one task or trigger log, and a one-line summary of each task process that
    wrote to it (``execute`` when it started the task anew, with a cost estimate; ``resume`` otherwise).
    """
    notes: list[dict[str, Any]] = []
    processes: list[list[str]] = []
    for item in _lines(path):
        text = _text(item)
        at = str(item.get("timestamp", ""))[11:23]
        if "Pre Execute" in text:
            processes.append([])
        elif processes and (short := _short(text)):
            processes[-1].append(f"{at} {short}")
        if NOTABLE.search(text):
            notes.append({"at": at, "try": item.get("try_number"), "line": text})
    summaries = [
        ("execute: " if any(" EXECUTE" in s for s in p) else "resume: ") + " | ".join(p) for p in processes
    ]
    return {"file": path.name, "processes": summaries, "notes": notes}


SHORT = (
    (re.compile(r"Estimated cost"), "EXECUTE"),
    (re.compile(r"Submitted RunComfy request (\S+)"), r"POST \1"),
    (re.compile(r"RunComfy request (\S+) from an earlier try is (\w+)"), r"SAVED \1 IS \2"),
    (re.compile(r"The id of RunComfy request (\S+) could not be saved"), r"SAVE FAILED \1"),
    (re.compile(r"RunComfy request (\S+) was cancelled"), r"CANCELLED \1"),
    (re.compile(r"RunComfy request (\S+) \(model \S+\) succeeded"), r"SUCCEEDED \1"),
    (re.compile(r"Pausing task as DEFERRED"), "DEFERRED"),
    (re.compile(r"Server indicated the task shouldn't be running anymore"), "SERVER SAYS STOP (SIGTERM)"),
    (re.compile(r"Task failed with exception.*?'exc_type': '(\w+)'"), r"FAILED \1"),
    (re.compile(r"Process exited abnormally|Task killed!|Process terminated by signal"), r"\g<0>"),
)


def _short(text: str) -> str | None:
    for pattern, replacement in SHORT:
        if m := pattern.search(text):
            return m.expand(replacement)
    return None


def scheduler_notes(path: Path) -> dict[int, list[dict[str, Any]]]:
    """Per map index: each "TaskInstance Finished" (state against executor state) and each retry."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if m := FINISHED.match(line):
            out[int(m["map"])].append(
                {
                    "at": m["at"][11:26],
                    "finished": {
                        "try": int(m["try"]),
                        "state": m["state"],
                        "executor_state": m["executor_state"],
                    },
                }
            )
        elif m := RETRY.match(line):
            out[int(m["map"])].append({"at": m["at"][11:26], "marked": m["what"]})
    return out


def retry_causes(events: list[dict[str, Any]]) -> list[str]:
    """``state/executor_state`` of each "TaskInstance Finished" right before a retry or failure mark."""
    causes, last = [], None
    for event in events:
        if "finished" in event:
            last = event["finished"]
        elif last is not None:
            causes.append(f"state={last['state']} executor_state={last['executor_state']}")
            last = None
    return causes


def requests_of(kept: Path, run: str) -> list[dict[str, Any]]:
    path = kept / f"requests-{run}.jsonl"
    if not path.exists():
        path = kept / "requests-unfinished.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def analyse(kept: Path, run: str, show: int) -> dict[str, Any]:
    """The summary of the kept run ``run`` (``mapped``: the task logs are per map index)."""
    logs = sorted((kept / "airflow-home" / "logs").glob(f"dag_id=rc_bench_{run}/run_id=*/task_id=*"))
    sched = scheduler_notes(kept / "scheduler.log")
    requests = requests_of(kept, run)
    posts = [
        r
        for r in requests
        if r["method"] == "POST" and r["path"].startswith("/v1/models/") and r["request_id"]
    ]
    cancels = [r for r in requests if r["method"] == "POST" and r["path"].endswith("/cancel")]
    by_item: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for post in posts:
        by_item[(post.get("body") or {}).get("i")].append(post)
    duplicated = {item: sorted(p, key=lambda r: r["time"]) for item, p in by_item.items() if len(p) > 1}

    retried: dict[int, dict[str, Any]] = {}
    cause_count: Counter[str] = Counter()
    stale_fresh = 0
    for task_dir in logs:
        for map_dir in sorted(task_dir.glob("map_index=*")):
            index = int(map_dir.name.split("=", 1)[1])
            files = sorted(map_dir.glob("attempt=*.log*"))
            tries = {int(re.match(r"attempt=(\d+)", f.name)[1]) for f in files}  # type: ignore[index]
            if max(tries, default=1) <= 1 and index not in duplicated:
                continue
            causes = retry_causes(sched.get(index, []))
            cause_count.update(causes)
            notes = [task_log_notes(f) for f in files]
            # A later process in an attempt's log that ran execute() anew: a superseded try's workload.
            stale_fresh += sum(
                1
                for n in notes
                if ".trigger." not in n["file"]
                for s in n["processes"][1:]
                if s.startswith("execute")
            )
            retried[index] = {"tries": max(tries), "retry_causes": causes, "logs": notes}

    def item_story(item: Any) -> dict[str, Any]:
        ids = {p["request_id"] for p in duplicated[item]}
        story = {
            "i": item,
            "posts": [
                {"at": _iso(p["time"]), "request_id": p["request_id"], "status": p["status"]}
                for p in duplicated[item]
            ],
            "cancels": [
                {"at": _iso(c["time"]), "request_id": c["request_id"], "status": c["status"]}
                for c in cancels
                if c["request_id"] in ids
            ],
            "requests_for_these_ids": [
                f"{_iso(r['time'])} {r['request_id'][:8]} {r['method']} {_endpoint(r['path'])}"
                f" -> {r['status']}"
                for r in requests
                if r["request_id"] in ids
            ],
            "scheduler": sched.get(item, []),
        }
        if item in retried:
            story["logs"] = retried[item]["logs"]
        return story

    return {
        "run": run,
        "task_instances_with_a_retry": len([i for i, r in retried.items() if r["tries"] > 1]),
        "retry_causes": dict(cause_count.most_common()),
        "superseded_workloads_that_ran_execute_anew": stale_fresh,
        "paid_posts": len(posts),
        "cancels": len(cancels),
        "cancel_statuses": dict(Counter(str(c["status"]) for c in cancels)),
        "items_paid_more_than_once": len(duplicated),
        "duplicate_items": [
            item_story(item)
            for item in sorted(duplicated, key=lambda i: (0, i) if isinstance(i, int) else (1, str(i)))
        ],
        "examples": {str(i): retried[i] for i in sorted(retried)[:show] if retried[i]["tries"] > 1},
    }


def _endpoint(path: str) -> str:
    return "submit" if path.startswith("/v1/models/") else path.rsplit("/", 1)[-1]


def _iso(t: float) -> str:
    import time

    return time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kept", type=Path, help="the directory of a run kept with --keep")
    parser.add_argument("--run", default="mapped", choices=["mapped", "batch"])
    parser.add_argument("--show", type=int, default=3, help="retried task instances to show in full")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    result = analyse(args.kept, args.run, args.show)
    if args.json_out:
        write_json(args.json_out, result)
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
