"""The table of figures (ours, peer, ratio, target, met?) and the ``BENCHMARKS.md`` around it."""

from __future__ import annotations

import math
from typing import Any

KIB = 1024


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio(ours: float | None, peer: float | None) -> str:
    if not ours or not peer or math.isnan(ours) or math.isnan(peer):
        return "-"
    return f"{ours / peer:.2f}x"


def _rate(run: dict[str, Any]) -> str:
    made, wanted = run["achieved_polls_per_s"], run["wanted_polls_per_s"]
    return f"{made:,.0f} / {wanted:,.0f} ({run['achieved_ratio']:.0%})"


def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def _row(
    section: str, figure: str, ours: str, peer: str, ratio: str, target: str, met: bool | None
) -> dict[str, str]:
    return {
        "section": section,
        "figure": figure,
        "ours": ours,
        "peer": peer,
        "ratio": ratio,
        "target": target,
        "met": _met(met),
    }


def _compare(
    section: str,
    figure: str,
    ours: float | None,
    peer: float | None,
    *,
    digits: int = 2,
    target: str = "-",
    met: bool | None = None,
) -> dict[str, str]:
    """A row of two measured numbers, shown with ``digits`` decimals, and their ratio."""
    return _row(section, figure, _num(ours, digits), _num(peer, digits), _ratio(ours, peer), target, met)


def _triggerer_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    runs = results["triggerer"]
    for case, targets in (("stress", True), ("default", False)):
        ours, peer = runs.get(f"runcomfy-{case}"), runs.get(f"http-{case}")
        if not ours or not peer:
            continue
        n, interval = ours["n"], ours["interval_s"]
        section = f"1. Triggerer, N={n:,}, poll every {interval:g} s" + (
            " (stress)" if case == "stress" else " (default)"
        )
        cpu_ratio = ours["cpu_ms_per_poll"] / peer["cpu_ms_per_poll"]
        out += [
            _row(
                section,
                "events received / triggers",
                f"{ours['events']:,.0f} / {n:,}",
                f"{peer['events']:,.0f} / {n:,}",
                "-",
                "all, success" if targets else "-",
                (ours["events"] == n and ours["outcomes"] == {"success": n}) if targets else None,
            ),
            _compare(
                section,
                "CPU per poll (ms)",
                ours["cpu_ms_per_poll"],
                peer["cpu_ms_per_poll"],
                target="<= 0.5x peer" if targets else "-",
                met=cpu_ratio <= 0.5 if targets else None,
            ),
            _compare(
                section,
                "CPU per poll, steady state (ms)",
                ours["cpu_ms_per_poll_steady"],
                peer["cpu_ms_per_poll_steady"],
            ),
            _compare(
                section,
                "CPU per trigger, whole wait (ms)",
                ours["cpu_ms_per_trigger"],
                peer["cpu_ms_per_trigger"],
            ),
            _row(
                section,
                "polls made per second / wanted",
                _rate(ours),
                _rate(peer),
                _ratio(ours["achieved_ratio"], peer["achieved_ratio"]),
                ">= 95%" if targets else "-",
                ours["achieved_ratio"] >= 0.95 if targets else None,
            ),
            _compare(
                section,
                "RSS per in-flight trigger (KiB)",
                ours["rss_kib_per_trigger"],
                peer["rss_kib_per_trigger"],
                digits=1,
                target="<= 32 KiB" if targets else "-",
                met=ours["rss_kib_per_trigger"] <= 32 if targets else None,
            ),
            _row(
                section,
                "TCP connections opened",
                f"{ours['tcp_connects']:,.0f}",
                f"{peer['tcp_connects']:,.0f}",
                _ratio(ours["tcp_connects"], peer["tcp_connects"]),
                f"<= {n:,} (triggers)" if targets else "-",
                ours["tcp_connects"] <= n if targets else None,
            ),
            _compare(
                section,
                "completion -> event p50 (s)",
                ours["latency_p50_s"],
                peer["latency_p50_s"],
            ),
            _compare(
                section,
                "completion -> event p95 (s)",
                ours["latency_p95_s"],
                peer["latency_p95_s"],
                target=f"<= {1.5 * interval:g} s (1.5 intervals)" if targets else "-",
                met=ours["latency_p95_s"] <= 1.5 * interval if targets else None,
            ),
            _compare(
                section,
                "worst event-loop stall (ms)",
                ours["stall_max_ms"],
                peer["stall_max_ms"],
                digits=0,
                target="<= 100 ms" if targets else "-",
                met=ours["stall_max_ms"] <= 100 if targets else None,
            ),
            _row(
                section,
                "full garbage collections in the run (worst pause, ms)",
                _gc(ours),
                _gc(peer),
                "-",
                "-",
                None,
            ),
            _compare(
                section,
                "worst stall outside garbage collections (ms)",
                ours["stall_max_outside_gc_ms"],
                peer["stall_max_outside_gc_ms"],
                digits=0,
            ),
        ]
    return out


def _gc(run: dict[str, Any]) -> str:
    return f"{run['gc_full_collections']:.0f} ({run['gc_max_ms']:.0f})"


def rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """Every figure beside its peer, with the ratio and the target."""
    out = _triggerer_rows(results) if "triggerer" in results else []

    parse = results.get("parse")
    if parse:
        ours, peer = parse["runcomfy"], parse["http"]
        section = "2. DAG parse, on top of `import airflow.sdk` (fresh processes, median)"
        heavy = [
            m for m in ours["loaded"] if m.split(".")[0] in ("PIL", "airflow_provider_runcomfy", "jsonschema")
        ]
        out += [
            _compare(
                section,
                "import time added (ms)",
                ours["extra_ms"],
                peer["extra_ms"],
                digits=1,
                target="<= 30 ms",
                met=ours["extra_ms"] <= 30,
            ),
            _compare(
                section,
                "RSS added (MiB)",
                ours["extra_mib"],
                peer["extra_mib"],
                target="<= 3 MiB",
                met=ours["extra_mib"] <= 3,
            ),
            _row(
                section,
                "heavy modules imported",
                ", ".join(ours["loaded"]) or "none",
                ", ".join(peer["loaded"]) or "none",
                "-",
                "no Pillow, emulator, schema interpreter or jsonschema",
                not heavy,
            ),
        ]

    slot = results.get("pre_deferral")
    if slot:
        section = "3. Worker slot"
        out += [
            _compare(
                section,
                f"held until it defers, {slot['images']} images + submit (ms, new process)",
                slot["cold_ms"],
                slot["naive_ms"],
                digits=0,
                target="<= 300 ms (median)",
                met=slot["cold_ms"] <= 300,
            ),
            _compare(
                section,
                "same, warm process (ms)",
                slot["warm_ms"],
                slot["naive_ms"],
                digits=0,
            ),
        ]
    real = results.get("real_processes")
    if real and "deferrable" in real and "sync" in real:
        d, s = real["deferrable"], real["sync"]
        out.append(
            _compare(
                "3. Worker slot",
                f"real processes: {real['tasks']} x {real['job_seconds']:g} s jobs, 1 slot, run (s)",
                d["run_seconds"],
                s["run_seconds"],
                digits=1,
            )
        )

    pre = results.get("preflight")
    if pre:
        section = "4. Pre-flight bytes per image"
        for row in pre["rows"]:
            ok = row["probe_bytes"] <= 64 * KIB
            out.append(
                _row(
                    section,
                    f"{row['case']} (bytes)",
                    f"{row['probe_bytes']:,}",
                    f"{row['full_download_bytes']:,}",
                    _ratio(row["probe_bytes"], row["full_download_bytes"]),
                    "<= 64 KiB",
                    ok,
                )
            )

    dl = results.get("downloads")
    if dl:
        section = f"5. Download of {dl['bytes'] / 2**20:.0f} MiB to a local directory (median)"
        out += [
            _compare(
                section,
                "peak RSS growth (MiB; peer: curl's peak RSS)",
                dl["ours_rss_growth_mib"],
                dl["curl_rss_peak_mib"],
                digits=1,
                target="<= 64 MB",
                met=dl["ours_rss_growth_mib"] * 2**20 <= 64e6,
            ),
            _compare(
                section,
                "throughput (MB/s; peer: curl -o)",
                dl["ours_mb_s"],
                dl["curl_mb_s"],
                digits=0,
                target=">= 0.5x curl",
                met=dl["throughput_ratio"] >= 0.5,
            ),
            _row(
                section,
                "minor page faults per copy",
                f"{dl['ours_minor_faults']:,.0f}",
                f"{dl['curl_minor_faults']:,.0f}",
                _ratio(dl["ours_minor_faults"], dl["curl_minor_faults"]),
                "-",
                None,
            ),
            _compare(
                section,
                f"for comparison, chunk_size={dl['other_chunk'] // 1024} KiB (MB/s)",
                dl["other_mb_s"],
                dl["curl_mb_s"],
                digits=0,
            ),
        ]
    return out


COLUMNS = ("figure", "ours", "peer", "ratio", "target", "met")


def render_table(table: list[dict[str, str]]) -> str:
    """A plain-text table for the terminal, one block per section."""
    widths = {c: max([len(c)] + [len(r[c]) for r in table]) for c in COLUMNS}
    lines: list[str] = []
    section = None
    for r in table:
        if r["section"] != section:
            section = r["section"]
            lines += ["", section, "  " + "  ".join(c.ljust(widths[c]) for c in COLUMNS)]
        lines.append("  " + "  ".join(r[c].ljust(widths[c]) for c in COLUMNS))
    return "\n".join(lines[1:])


def _markdown_table(table: list[dict[str, str]]) -> str:
    lines: list[str] = []
    section = None
    for r in table:
        if r["section"] != section:
            section = r["section"]
            peer = _PEERS.get(section.split(".")[0], "peer")
            lines += [
                "",
                f"### {section}",
                "",
                f"| figure | ours | {peer} | ratio | target | met |",
                "|---|---:|---:|---:|---|---|",
            ]
        lines.append(
            f"| {r['figure']} | {r['ours']} | {r['peer']} | {r['ratio']} | {r['target']} | {r['met']} |"
        )
    return "\n".join(lines).lstrip("\n")


_PEERS = {
    "1": "peer: `HttpSensorTrigger`",
    "2": "peer: HTTP provider's operator module",
    "3": "peer: naive pre-flight / sync run",
    "4": "peer: full download",
    "5": "peer: `curl -o`",
}


def render_markdown(meta: dict[str, Any], results: dict[str, Any], table: list[dict[str, str]]) -> str:
    """The whole ``BENCHMARKS.md``: how to rerun, where, the table, and how each figure is measured."""
    m, v = meta["machine"], meta["versions"]
    missed = [r for r in table if r["met"] == "NO"]
    verdict = (
        "Every target holds in this run."
        if not missed
        else "Targets missed in this run: "
        + "; ".join(f"{r['section'].split(',')[0]}: {r['figure']}" for r in missed)
        + "."
    )
    limits = _limits(results, missed)
    real = results.get("real_processes")
    real_note = ""
    if real:
        d, s = real["deferrable"], real["sync"]
        real_note = (
            f" In the real-process fan-out ({real['airflow']}, {real['executor']}, one slot) the deferrable"
            f" run took {_num(d['run_seconds'], 1)} s from start to end and the same DAG waiting in the"
            f" worker {_num(s['run_seconds'], 1)} s (trigger to done:"
            f" {_num(d['trigger_to_done_seconds'], 1)} s against {_num(s['trigger_to_done_seconds'], 1)} s)."
        )
    stress = results.get("triggerer", {}).get("runcomfy-stress", {})
    quick = ", quick smoke run" if meta["quick"] else ""
    return f"""# Benchmarks

Generated by `{meta["command"]}` on {meta["date"]} (checkout {meta["commit"]}{quick}).
Rerun with **`scripts/bench`** (about 6 minutes; `scripts/bench --quick` for a 90-second smoke run);
the code is in [`benchmarks/`](benchmarks/).

**Machine:** {m["cpu"]}, {m["cores"]} cores, {m["memory_gib"]} GiB, Linux {m["kernel"]}, Python {m["python"]}.
Load average (1 min) {results["load_before"]:.2f} before the run and {results["load_after"]:.2f} after: the
machine is shared, so every figure sits beside its peer measured in the same run, and the ratios
are what the targets are checked on.
**Versions:** apache-airflow {v["apache-airflow"]} (task SDK {v["apache-airflow-task-sdk"]}),
apache-airflow-providers-http {v["apache-airflow-providers-http"]}, httpx {v["httpx"]}, h11 {v["h11"]},
aiohttp {v["aiohttp"]}, Pillow {v["Pillow"]}.

{verdict}{real_note}

{_markdown_table(table)}
{meta.get("pools_section", "")}
{limits}
## What the design does for these figures

* The hook's async calls share one set of keep-alive HTTP/1.1 connections per event loop
  (`transport.SharedAsyncTransport`: at most 100 requests in flight, the rest wait their turn, idle
  connections kept 30 s, straight on asyncio streams with h11), instead of a client and a pool per
  trigger: a handful of connections for a thousand triggers, no reconnect per poll even at the
  default 5 s interval, and none of the per-request work of httpx's own pool.
* Each answer is freed by reference counting as soon as it is read (`transport.release_on_close`),
  so polling makes no work for the garbage collector.
* A trigger's first poll comes after a random part of one interval, and polls start an interval apart
  (`RunComfyRequestTrigger`): triggers started together spread their polls evenly instead of
  polling, and stalling the loop, in one burst every interval.
* The operator and sensor modules load neither the hook, Pillow nor the emulator while a DAG file is
  parsed; the image checks read headers only; downloads stream in constant memory.

## How each figure is measured

Every part runs in its own process, one after the other, against the bundled emulator
(`python -m airflow_provider_runcomfy.emulator`) running in a process of its own, so the emulator's
CPU and memory are never counted. Nothing is asserted on time in the test suite: the targets are
checked by reading this table.

1. **Triggerer load** (`benchmarks/triggerer.py`). {stress.get("n", "N")} echo jobs are submitted and
   their outputs made first; then {stress.get("n", "N")} triggers run in one asyncio loop the way Airflow 3's
   triggerer runs them (`TriggerRunner.run_trigger`: one task each, behind a greenback portal,
   `async for` over `run()`, then `cleanup()`), built from a serialize round trip, with Airflow's own
   JSON logging as in the triggerer's subprocess and the connection from an `AIRFLOW_CONN_...`
   variable (no database). Each job is polled for about 10 s. The stress case polls every second; the
   default case uses each trigger's default interval (5 s for both). The peer is the HTTP provider's
   `HttpSensorTrigger` (deferrable `HttpSensor`), which fires on the first answer that is not a 404: it
   polls the job's output file, 404 until the job has succeeded, with the bearer header from its `http`
   connection's extra. *CPU per poll*: `time.process_time()` of the whole run (every thread) divided by
   the status polls (ours also reads each result once; that is charged to its polls); *steady state*:
   the same between the moment every job has been polled and the first completion. *Polls made per
   second*: from the emulator's request log, the mean gap between consecutive polls of the same job
   against the interval. *RSS per in-flight trigger*: peak RSS before the first event minus the RSS
   before the triggers were made, divided by N. *TCP connections opened*: connects counted on the event
   loop (`loop.sock_connect`, which asyncio and aiohttp both use). *Completion -> event*: the job's end
   time at the emulator to the moment the trigger yielded its event (same clock). *Stall*: the lateness
   of a watchdog coroutine sleeping 10 ms. Figures are medians over the runs of each case.
2. **DAG parse cost** (`benchmarks/parse_cost.py`): fresh interpreters import `airflow.sdk`, then the
   provider's operator and sensor modules (peer: `airflow.providers.http.operators.http`), with
   compiled bytecode as in any deployment; the added import time and RSS are medians over alternating
   samples, and the listed modules are the heavy ones the import pulled in (the schema interpreter and
   jsonschema are watched too: they load only when a task runs).
3. **Worker slot** (`benchmarks/worker_slot.py`): a deferrable `RunComfyImageEditOperator` with 10
   images (five 4032x3024 JPEGs of 4 MB, five 2048x2048 PNGs of 6 MB) runs `execute()` until
   `TaskDeferred` (the catalog read, the schema check, the cost estimate, header probes, submit, the
   status check before deferring), in fresh processes that have imported the operator module like a
   task process, so lazy imports are counted;
   the peer downloads every image in full, opens it with Pillow, submits and checks the status. The
   real-process row runs `AirflowStack` and `EmulatorProcess` (`devtools/`) on the fan-out of
   `tests/test_real_processes.py`:
   four mapped 15 s edits with one worker slot, deferrable against waiting in the worker; run = the
   DAG run's start to end in Airflow's database.
4. **Pre-flight bytes** (`benchmarks/preflight.py`): the body bytes the image probe fetched (httpx's
   count, every request included) against the file size; the last row is the worst case for a header
   reader, a JPEG whose 15 MB of metadata come before its frame header.
5. **Downloads** (`benchmarks/downloads.py`): `copy_outputs` (the engine of `RunComfyDownloadOperator`:
   stream to a temporary file, fsync, length check, atomic move) of a 256 MiB output in a fresh process
   after a 1 KiB warm-up copy, against `curl -s -o` of the same URL; RSS growth = peak RSS
   (`ru_maxrss`) minus the RSS before the copy; curl's peak RSS from `wait4`. Copies alternate.
6. **The hook's async HTTP pool** (`scripts/bench --pools`, `benchmarks/pools.py`): the stress case
   of part 1 (N=1,000, poll every 1 s) with ours only, three times over, alternating: (a) as shipped,
   (b) the name `SharedAsyncTransport` in the hook's module replaced by a lease on one
   `httpx.AsyncHTTPTransport` per loop with `httpx.Limits(max_connections=100, keepalive_expiry=30)`,
   (c) by a lease on one `aiohttp.ClientSession` per loop (`TCPConnector(limit=100,
   keepalive_timeout=30)`) adapted to httpx's transport interface. Figures as in part 1; the decision
   rule is printed under the table. A full `scripts/bench` keeps the section of the last
   `scripts/bench --pools` run.
7. **Mapped tasks against one batch task** (`python -m benchmarks.batch`, DAGs in
   `benchmarks/batch_dags/`): one real deployment (`devtools.AirflowStack`: scheduler with
   LocalExecutor, triggerer, DAG processor, API server) against one emulator process runs (a) a mapped
   deferrable `RunComfyModelOperator` and (b) one `RunComfyBatchOperator`, one after the other; CPU of
   every Airflow process and its children from `/proc`, task instances and XCom rows from the
   database, paid POSTs from the emulator's request log. Its table is written by hand from the run's
   output; a full `scripts/bench` keeps it.
"""


def _limits(results: dict[str, Any], missed: list[dict[str, str]]) -> str:
    """Why a missed target is missed, with this run's own figures (empty when nothing is missed)."""
    notes = []
    figures = {r["figure"] for r in missed}
    stress = results.get("triggerer", {}).get("runcomfy-stress")
    peer = results.get("triggerer", {}).get("http-stress")
    if stress and peer and "worst event-loop stall (ms)" in figures:
        if stress["stall_max_outside_gc_ms"] > 100:
            notes.append(
                f"**Event-loop stall.** Outside garbage collections the worst stall was"
                f" {stress['stall_max_outside_gc_ms']:.0f} ms: over the target, with no limit to blame."
            )
        else:
            ours_gc = stress["gc_full_collections"]
            caused = (
                "Ours caused no other"
                if ours_gc <= 1
                else f"Ours had {ours_gc:.0f} in the run (median of the runs)"
            )
            notes.append(
                f"**Event-loop stall.** The worst stall ({stress['stall_max_ms']:.0f} ms) is a full garbage"
                f" collection ({stress['gc_max_ms']:.0f} ms pause): Python stopping to scan every object of"
                f" the process once. On this machine one full collection of the same process took"
                f" {stress['gc_bare_full_ms']:.0f} ms before any trigger existed"
                f" ({stress['gc_tracked_objects_before']:,.0f} objects: Airflow, the provider, the benchmark)"
                f" and {stress['gc_max_ms']:.0f} ms with the {stress['n']:,} triggers in flight. Python runs"
                f" one whenever the long-lived objects have grown by a quarter, which creating a thousand"
                f" triggers' state does once (Airflow's triggerer does not freeze its heap with"
                f" `gc.freeze()`, as its LocalExecutor and DAG processor do). That one collection is the"
                f" limit here. {caused} (each answer is freed by reference counting, see `release_on_close`);"
                f" the peer's run had {peer['gc_full_collections']:.0f}. Outside collections the worst stall"
                f" was {stress['stall_max_outside_gc_ms']:.0f} ms"
                f" (peer: {peer['stall_max_outside_gc_ms']:.0f} ms)."
            )
    dl = results.get("downloads")
    if dl and "throughput (MB/s; peer: curl -o)" in figures:
        notes.append(
            f"**Download throughput.** `copy_outputs` ran at {dl['ours_mb_s']:,.0f} MB/s against curl's"
            f" {dl['curl_mb_s']:,.0f} MB/s ({dl['throughput_ratio']:.2f}x), with"
            f" {dl['ours_minor_faults']:,.0f} minor page faults for one copy against curl's"
            f" {dl['curl_minor_faults']:,.0f}; with `chunk_size={dl['other_chunk'] // 1024} KiB` it ran at"
            f" {dl['other_mb_s']:,.0f} MB/s with {dl['other_minor_faults']:,.0f} faults."
        )
    if not notes:
        return ""
    return "\n## Targets not met, and the limit\n\n" + "\n\n".join(notes) + "\n"
