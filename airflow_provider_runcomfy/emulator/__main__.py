"""Command line: run the emulator as a process until SIGTERM or SIGINT.

    python -m airflow_provider_runcomfy.emulator --port 8189 --queue-seconds 2 --run-seconds 5
    python -m airflow_provider_runcomfy.emulator --dialect live   # the live service's wider vocabulary

The first stdout line is shell-evaluable and tells scripts where to point Airflow; the next lines
(shell comments) give the sample image URLs, the request log and the index::

    RUNCOMFY_EMULATOR_URL=http://127.0.0.1:8189 AIRFLOW_CONN_RUNCOMFY_DEFAULT='{"conn_type": ...}'
    # sample image: http://127.0.0.1:8189/samples/portrait.png
    ...
    # request log:  http://127.0.0.1:8189/_emulator/requests
    # index:        http://127.0.0.1:8189/  (endpoints, samples, knobs)

With ``--ready-file PATH`` the emulator also writes ``{"base_url", "port", "pid"}`` there (atomically)
once it is serving, so scripts can wait for the file instead of parsing stdout. It exits 0 on
SIGTERM/SIGINT after closing every connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys

from .catalog import AddedModel
from .dialect import PRESETS, dialect_named
from .media import sample_names
from .records import Fault
from .server import EmulatorConfig, EmulatorServer, is_loopback


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments (kept separate so tests and docs can inspect them)."""
    p = argparse.ArgumentParser(
        prog="python -m airflow_provider_runcomfy.emulator",
        description="Run a local emulator of the RunComfy Model API.",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; any other needs --allow-remote)",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other machines can reach (the emulator is a test tool: anyone who reaches "
        "it can drive it; set --control-token too)",
    )
    p.add_argument(
        "--control-token",
        default=os.environ.get("RUNCOMFY_EMULATOR_CONTROL_TOKEN"),
        metavar="TOKEN",
        help="require this token (header X-Emulator-Control-Token) on /_emulator/ controls "
        "(default: $RUNCOMFY_EMULATOR_CONTROL_TOKEN, else none)",
    )
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free port)")
    p.add_argument("--token", default="emulator-token", help="the valid API token (default emulator-token)")
    p.add_argument(
        "--extra-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="another valid token (a second account); repeatable",
    )
    p.add_argument("--queue-seconds", type=float, default=1.0, help="seconds a job stays in_queue")
    p.add_argument("--run-seconds", type=float, default=2.0, help="seconds a job stays in_progress")
    p.add_argument("--fail-with", default=None, metavar="TEXT", help="end every job failed with this error")
    p.add_argument(
        "--result-ttl",
        type=float,
        default=None,
        metavar="S",
        help="seconds after finishing when a request id answers 404001 (default: never)",
    )
    p.add_argument(
        "--balance",
        type=int,
        default=None,
        metavar="N",
        help="submits the account can pay for (default: unlimited)",
    )
    p.add_argument(
        "--hold-until-submits",
        type=int,
        default=None,
        metavar="N",
        help="hold the first N jobs in_queue until the N-th is submitted, then start them all",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="JSON",
        help='a fault as JSON, e.g. \'{"path": "/status$", "status": 503}\'; repeatable',
    )
    p.add_argument(
        "--fault-seed",
        type=int,
        default=None,
        metavar="N",
        help="seed the random draws of faults with a rate below 1",
    )
    p.add_argument(
        "--log-maxlen",
        type=int,
        default=200_000,
        metavar="N",
        help="requests the request log keeps (the newest N; default 200000)",
    )
    p.add_argument(
        "--no-catalog", action="store_true", help="make GET /v1/models... answer 503 (catalog unavailable)"
    )
    p.add_argument(
        "--schema-form",
        choices=("page", "catalog"),
        default="page",
        help="how the catalog writes input schemas: as RunComfy's model pages do (default) or as the "
        "partner nodes' catalog does",
    )
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="JSON",
        help='serve one more model: \'{"model_id": "me/m", "input_schema": {...}, "base_price_usd": 0.01}\'',
    )
    p.add_argument(
        "--dialect",
        default="documented",
        metavar="NAME",
        help="how answers are worded: documented (default), live (what RunComfy's own clients accept "
        f"from the live service), or presets joined with '+'; presets: {', '.join(PRESETS)}",
    )
    p.add_argument("--record-peer-pid", action="store_true", help="log each local client's process id")
    p.add_argument("--max-output-side", type=int, default=1024, help="longest side of output images")
    p.add_argument("--public-url", default=None, help="base URL to put in answers (behind a proxy)")
    p.add_argument("--ready-file", default=None, metavar="PATH", help="write {base_url, port, pid} here")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return p


def guide_lines(base_url: str) -> str:
    """What a user needs next, one URL a line: the sample images, the request log and the index.

    Each line starts with ``#`` so the whole output stays shell-safe (only the first line sets
    variables) and ends with the URL, so ``grep sample | awk '{print $NF}'`` picks them.
    """
    lines = [f"# sample image: {base_url}/samples/{name}" for name in sample_names()]
    lines.append(f"# request log:  {base_url}/_emulator/requests")
    lines.append(f"# index:        {base_url}/  (endpoints, samples, knobs)")
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> int:
    config = EmulatorConfig()
    config.update(
        {
            "queue_seconds": args.queue_seconds,
            "run_seconds": args.run_seconds,
            "failure_message": args.fail_with,
            "result_ttl_seconds": args.result_ttl,
            "balance": args.balance,
            "hold_until_submits": args.hold_until_submits,
            "catalog_available": not args.no_catalog,
            "schema_form": args.schema_form,
            "dialect": args.dialect,
        }
    )
    server = EmulatorServer(
        host=args.host,
        port=args.port,
        tokens=[args.token, *args.extra_token],
        config=config,
        record_peer_pid=args.record_peer_pid,
        max_output_side=args.max_output_side,
        public_url=args.public_url,
        verbose=args.verbose,
        fault_seed=args.fault_seed,
        log_maxlen=args.log_maxlen,
        control_token=args.control_token,
    )
    for raw in args.fault:
        server.faults.add(Fault.from_dict(json.loads(raw)))
    for raw in args.model:
        server.catalog.add(AddedModel.from_dict(json.loads(raw)).entry())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        if args.ready_file:  # first, so a script that saw the stdout line also finds the file
            tmp = f"{args.ready_file}.tmp{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"base_url": server.base_url, "port": server.port, "pid": os.getpid()}, fh)
            os.replace(tmp, args.ready_file)
        conn = json.dumps({"conn_type": "runcomfy", "host": server.base_url, "password": args.token})
        print(
            f"RUNCOMFY_EMULATOR_URL={server.base_url} AIRFLOW_CONN_RUNCOMFY_DEFAULT={shlex.quote(conn)}",
            flush=True,
        )
        print(guide_lines(server.base_url), flush=True)
        await stop.wait()
    finally:
        await server.close()
        if args.ready_file:
            with contextlib.suppress(OSError):
                os.remove(args.ready_file)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, serve until SIGTERM/SIGINT, return the exit code (0 on a clean stop)."""
    args = build_parser().parse_args(argv)
    try:
        for raw in args.fault:
            Fault.from_dict(json.loads(raw))
        for raw in args.model:
            AddedModel.from_dict(json.loads(raw)).entry()
    except (ValueError, TypeError) as exc:
        print(f"bad --fault or --model: {exc}", file=sys.stderr)
        return 2
    try:
        dialect_named(args.dialect)
    except ValueError as exc:
        print(f"bad --dialect: {exc}", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        if not args.allow_remote:
            print(
                f"refusing --host {args.host!r}: other machines could reach this test emulator (and drive "
                "its /_emulator/ controls). Pass --allow-remote to mean it, with --control-token.",
                file=sys.stderr,
            )
            return 2
        print(
            f"WARNING: the RunComfy emulator listens on {args.host!r}, reachable from other machines; "
            + (
                "its controls need the control token."
                if args.control_token
                else "its /_emulator/ controls are OPEN to anyone who reaches it (set --control-token)."
            ),
            file=sys.stderr,
            flush=True,
        )
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
