"""
What a soak run proved: counted from the emulator's request log and jobs (what was paid and how each job
ended) and the metadata database (how each task instance ended), never from the provider's own logs.

Definitions (the same in ``RELIABILITY.md``):

- *paid POST*: a submit that created a job (the emulator logged a request id for it);
- *duplicate*: a task instance with more than one paid POST;
- *lost job*: a job that succeeded at the emulator while its task instance did not succeed;
- *matches*: a task instance is ``success`` and its job succeeded, or (``held``) it was marked failed
  and its job was cancelled, or it failed without ever getting a job (nothing paid, nothing lost);
- *unfinished*: a task instance not in a final state when the run hit its time limit (not judged);
- *resumed*: the first status poll, after the triggerer kill, of each job whose trigger the killed
  triggerer held, and which process made it (the client PID in the request log).
"""

from __future__ import annotations

import contextlib
import json
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

ERROR_LINE = re.compile(
    r"\[(error|critical)\s*\]|\b(ERROR|CRITICAL)\b|\"level\": ?\"(error|critical)\"|^Traceback"
)
LEVEL_MARK = re.compile(r"\[(error|critical)\s*\]\s*|\b(ERROR|CRITICAL)\b\s*-?\s*")


#: Task instance states after which Airflow will not run the task again by itself.
FINAL_STATES = frozenset({"success", "failed", "upstream_failed", "skipped", "removed"})


def _seconds(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"


def error_kind(line: str) -> str:
    """The message of an error line without times, ids and numbers, so alike errors count together."""
    text = line
    if line.lstrip().startswith("{"):
        with contextlib.suppress(ValueError, AttributeError):
            text = str(json.loads(line).get("event"))
    else:
        mark = LEVEL_MARK.search(line)
        text = line[mark.end() :] if mark else line
        text = re.split(r"\s\[[\w.]+\]\s|\sloc=", text)[0]
    exc = re.search(r"exc_type['\"]: ?['\"](\w+)", line)
    if exc:
        text = f"{text.strip()}: {exc.group(1)}"
    return re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d+(\.\d+)?", "#", text).strip()[:140]


def log_errors(path: Path, limit: int = 4) -> tuple[int, list[str]]:
    """How many error lines a log has, and its most frequent kinds of error."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return 0, []
    errors = [line for line in lines if ERROR_LINE.search(line)]
    kinds = Counter(error_kind(line) for line in errors)
    return len(errors), [f"{n}x {text}" for text, n in kinds.most_common(limit)]


def figures(raw: dict[str, Any]) -> dict[str, Any]:
    """Count everything the issue asks for from one run's raw data."""
    tis: dict[tuple[str, int], tuple[str | None, int]] = raw["tis"]
    records = raw["records"]
    jobs = {job["request_id"]: job for job in raw["jobs"]}
    obs = raw["observed"]

    paid: dict[tuple[str, int], list[Any]] = {}
    attempts: Counter[tuple[str, int]] = Counter()
    for r in records:
        if r.method == "POST" and r.path.startswith("/v1/models/"):
            body = r.body if isinstance(r.body, dict) else {}
            key = (str(body.get("soak")), int(body.get("map_index", -99)))
            attempts[key] += 1
            if r.request_id:
                paid.setdefault(key, []).append(r)

    per_ti = {key: len(paid.get(key, [])) for key in tis}
    duplicates = {key: n for key, n in per_ti.items() if n > 1}
    lost, mismatched, failed = [], [], []
    states = Counter(state for state, _ in tis.values())
    unfinished = []
    for key, (state, tries) in sorted(tis.items()):
        ti_jobs = [jobs[r.request_id]["status"] for r in paid.get(key, []) if r.request_id in jobs]
        if state not in FINAL_STATES:  # a run stopped by its time limit: not judged, counted apart
            unfinished.append(key)
            continue
        if key[0] == "held":
            ok = state == "failed" and ti_jobs == ["cancelled"]
        elif not ti_jobs:  # nothing was paid: a task that failed without a job matches it
            ok = state == "failed"
        else:
            ok = state == "success" and ti_jobs[-1:] == ["succeeded"]
            if "succeeded" in ti_jobs and state != "success":
                lost.append((key, state, ti_jobs))
        if state != "success":
            failed.append({"ti": list(key), "state": state, "tries": tries, "jobs": ti_jobs})
        if not ok:
            mismatched.append({"ti": list(key), "state": state, "tries": tries, "jobs": ti_jobs})

    out: dict[str, Any] = {
        "task_instances": len(tis),
        "states": dict(states),
        "jobs_submitted": sum(per_ti.values()),
        "submit_attempts": sum(attempts.values()),
        "paid_per_ti_max": max(per_ti.values(), default=0),
        "tis_paid_more_than_once": len(duplicates),
        "duplicates": [list(k) for k in duplicates],
        "tis_never_submitted": sorted([list(k) for k, n in per_ti.items() if n == 0]),
        "tis_unfinished": len(unfinished),
        "lost_jobs": len(lost),
        "lost": [[list(k), s, j] for k, s, j in lost],
        "mismatched": mismatched,
        "not_success": failed,
        "run_state": obs.run_state,
        "run_seconds": round(obs.finished_at - obs.triggered_at, 1),
        "max_deferred": obs.max_deferred,
        "api_calls": len(records),
        "faults_served": dict(Counter(r.fault for r in records if r.fault)),
        "events": [{"name": e.name, "at_s": round(e.at - obs.triggered_at, 1)} for e in obs.events],
    }
    out |= _triggerer_kill(obs, paid, records)
    out |= _mark_failed(obs, records, jobs)
    out |= _worker_kill(obs, tis, per_ti)
    restart = obs.event("scheduler_restart")
    out["scheduler_restart_seconds"] = round(restart.details["took_seconds"], 1) if restart else None
    out["log_errors"] = {name: log_errors(path) for name, path in sorted(raw["logs"].items())}
    task_logs = sorted(Path(raw["home"], "logs").rglob("*.log"))
    task_errors = [log_errors(p) for p in task_logs]
    out["task_log_errors"] = (len(task_logs), sum(n for n, _ in task_errors))
    shapes: Counter[str] = Counter()
    for _, top in task_errors:
        shapes.update(line.split("x ", 1)[1] for line in top)
    out["task_log_error_kinds"] = [f"{n}x {text}" for text, n in shapes.most_common(5)]
    return out


def _triggerer_kill(obs: Any, paid: dict[tuple[str, int], list[Any]], records: list[Any]) -> dict[str, Any]:
    kill = obs.event("triggerer_kill")
    if kill is None:
        return {"triggerer_kill": None}
    victim = kill.details["name"]
    survivor = "triggerer-2" if victim == "triggerer-1" else "triggerer-1"
    survivor_pids = obs.pids.get(survivor, set())
    victim_pids = obs.pids.get(victim, set())
    moved = [paid[tuple(ti)][-1].request_id for ti in kill.details["tis"] if paid.get(tuple(ti))]
    first: dict[str, Any] = {}
    for r in records:
        if (
            r.time > kill.at
            and r.request_id in moved
            and r.path.endswith("/status")
            and r.request_id not in first
        ):
            first[r.request_id] = r
    by_survivor = [r.time - kill.at for r in first.values() if r.pid in survivor_pids]
    by_restarted = [r.time - kill.at for r in first.values() if r.pid in victim_pids]
    return {
        "triggerer_kill": {
            "victim": victim,
            "triggers_at_kill": kill.details["triggers"],
            "moved": len(moved),
            "resumed_by_survivor": len(by_survivor),
            "resumed_by_restarted": len(by_restarted),
            "resumed_elsewhere_or_never": len(moved) - len(by_survivor) - len(by_restarted),
            "survivor_latency_s": _seconds(by_survivor),
            "survivor_latencies": sorted(round(x, 1) for x in by_survivor),
        }
    }


def _mark_failed(obs: Any, records: list[Any], jobs: dict[str, Any]) -> dict[str, Any]:
    mark = obs.event("mark_failed")
    if mark is None:
        return {"mark_failed": None}
    rid = mark.details["request_id"]
    cancels = [r for r in records if r.request_id == rid and r.path.endswith("/cancel")]
    triggerers = obs.pids.get("triggerer-1", set()) | obs.pids.get("triggerer-2", set())
    return {
        "mark_failed": {
            "request_id": rid,
            "cancel_calls": [
                {
                    "after_s": round(r.time - mark.at, 1),
                    "status": r.status,
                    "from_triggerer": r.pid in triggerers,
                }
                for r in cancels
            ],
            "job_final_status": jobs.get(rid, {}).get("status"),
        }
    }


def _worker_kill(
    obs: Any, tis: dict[tuple[str, int], tuple[str | None, int]], per_ti: dict[Any, int]
) -> dict[str, Any]:
    kill = obs.event("worker_task_kill")
    if kill is None:
        return {"worker_task_kill": None}
    key = tuple(kill.details["ti"])
    state, tries = tis.get(key, (None, 0))
    return {
        "worker_task_kill": {
            "ti": list(key),
            "killed_try": kill.details["try"],
            "final_state": state,
            "final_try": tries,
            "paid_posts": per_ti.get(key, 0),
        }
    }


def markdown(title: str, command: str, f: dict[str, Any], machine: dict[str, str]) -> str:
    """One run's section of ``RELIABILITY.md``."""
    tk, mf, wk = f["triggerer_kill"], f["mark_failed"], f["worker_task_kill"]
    rows = [
        ("Run", f"{f['run_state']} in {f['run_seconds']} s"),
        (
            "Task instances",
            f"{f['task_instances']} ({', '.join(f'{k} {v}' for k, v in sorted(f['states'].items(), key=str))})",  # noqa: E501
        ),
        (
            "Jobs submitted (paid POSTs)",
            f"{f['jobs_submitted']} (submit attempts incl. 429s: {f['submit_attempts']})",
        ),
        ("Paid POSTs per task instance: max", str(f["paid_per_ti_max"])),
        ("Task instances paid more than once (**duplicates**)", str(f["tis_paid_more_than_once"])),
        ("**Lost jobs** (succeeded, task not success)", str(f["lost_jobs"])),
        ("Task instances whose final state does not match their job", str(len(f["mismatched"]))),
        ("Task instances not finished when the run ended (not judged)", str(f["tis_unfinished"])),
        ("Most tasks deferred at once", str(f["max_deferred"])),
        ("API calls / faults served", f"{f['api_calls']} / {f['faults_served']}"),
    ]
    if tk:
        rows += [
            ("Triggerer kill: victim, triggers held", f"{tk['victim']}, {tk['triggers_at_kill']}"),
            (
                "Triggers moved / resumed on the survivor / by the restarted one / neither",
                f"{tk['moved']} / {tk['resumed_by_survivor']} / {tk['resumed_by_restarted']} / "
                f"{tk['resumed_elsewhere_or_never']}",
            ),
            ("Kill -> first poll from the survivor, s (min / median / max)", tk["survivor_latency_s"]),
        ]
    else:
        rows.append(("Triggerer kill", "did not happen"))
    if mf:
        calls = ", ".join(
            f"HTTP {c['status']} after {c['after_s']} s{' from the triggerer' if c['from_triggerer'] else ''}"
            for c in mf["cancel_calls"]
        )
        rows.append(
            (
                "Marked failed while queued: cancel calls; job's end",
                f"{calls or 'none'}; {mf['job_final_status']}",
            )
        )
    else:
        rows.append(("Mark failed", "did not happen"))
    if wk:
        rows.append(
            (
                "Worker task kill -9: task, final state, paid POSTs",
                f"{wk['ti'][0]}[{wk['ti'][1]}] try {wk['killed_try']} -> {wk['final_state']} "
                f"after try {wk['final_try']}, {wk['paid_posts']} paid POST(s)",
            )
        )
    else:
        rows.append(("Worker task kill", "did not happen"))
    rows.append(
        (
            "Scheduler restart (SIGTERM to running again), s",
            str(f["scheduler_restart_seconds"] or "did not happen"),
        )
    )
    rows.append(("Injections (s after trigger)", ", ".join(f"{e['name']} {e['at_s']}" for e in f["events"])))
    lines = [f"### {title}", "", f"`{command}`", ""]
    lines += [f"Machine: {machine['machine']}; {machine['versions']}", ""]
    lines += ["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "Errors in each process's log (lines at level error, with the most frequent kinds):", ""]
    lines += ["| process | error lines | most frequent |", "|---|---|---|"]
    for name, (count, top) in f["log_errors"].items():
        lines.append(f"| {name} | {count} | {'<br>'.join(_cell(t) for t in top) or '-'} |")
    files, count = f["task_log_errors"]
    lines.append(
        f"| task logs ({files} files) | {count} | "
        + ("<br>".join(_cell(t) for t in f["task_log_error_kinds"]) or "-")
        + " |"
    )
    if f["mismatched"]:
        lines += ["", "Task instances whose end does not match their job:", ""]
        lines += [
            f"- {m['ti']}: {m['state']} after try {m['tries']}, jobs {m['jobs']}"
            for m in f["mismatched"][:20]
        ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def update_section(path: Path, key: str, body: str) -> None:
    """Put ``body`` between ``<!-- soak:key -->`` markers in ``path`` (replacing an earlier run's)."""
    start, end = f"<!-- soak:{key} -->", f"<!-- /soak:{key} -->"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{start}\n{body}{end}\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text, encoding="utf-8")
