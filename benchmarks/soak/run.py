"""
One soak run: start everything, trigger the fan-out, inject the failures at their moments, wait (bounded)
for the run to end, then collect what the emulator and the metadata database saw.

The injections, in order, each when its moment comes (or skipped, and said so, when it never comes):

1. **mark failed**: as soon as ``held`` (a deferred task whose job is queued for an hour) is
   deferred, a user marks it failed through the REST API; its trigger's ``on_kill`` must cancel the job;
2. **503 storm**: every free API call answers 503 (with ``Retry-After``) for a while, and submits get 429s;
3. **triggerer kill**: ``kill -9`` of the triggerer holding the most triggers, started again 30 s later;
4. **worker task kill**: ``kill -9`` of the task process of a running in-worker task (its submitting PID);
5. **scheduler restart**: SIGTERM, wait, start again (a deploy).

Meanwhile it samples, every second, each Airflow process's tree of PIDs (the emulator logs the client
PID of every call, so a poll is attributed to the triggerer that made it) and the trigger assignment.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from airflow_provider_runcomfy.emulator.records import Fault
from benchmarks.soak.cluster import DAG_ID, Deployment, Postgres, Redis
from devtools.processes import EmulatorProcess, process_tree

TOKEN = "runcomfy-soak-token-7f6e5d4c"


#: The emulator's background faults: random, at these rates, for the whole run. Submits only get
#: answers that certainly did not create a job (429) or slow ones: a submit whose answer is lost
#: fails its task by design (RunComfy has no idempotency key; see RELIABILITY.md).
def background_faults(scale: float) -> list[Fault]:
    """The fault mix, every rate multiplied by ``scale``."""
    free = r"^/v1/requests/"
    polls = r"^/v1/requests/.*/(status|result)$"
    faults = [
        Fault(path=free, status=503, retry_after=1, times=None, rate=0.03),
        Fault(path=free, status=429, retry_after=1, times=None, rate=0.02),
        Fault(path=free, kind="drop", times=None, rate=0.02),
        Fault(path=free, kind="delay", delay_seconds=2.0, times=None, rate=0.03),
        Fault(path=r"/status$", kind="truncate", truncate_after=9, times=None, rate=0.01),
        Fault(
            path=polls,
            status=200,
            body={"error_code": 500001, "error_message": "InternalError: please retry"},
            times=None,
            rate=0.01,
        ),
        # RunComfy's live vocabulary (``completed`` results, ``canceled``, ``pending``/``processing``...,
        # ``error_code: null``, cancels without ``outcome``) on a quarter of all answers, mixed with
        # the documented words on the same jobs.
        Fault(path=r"^/v1/", kind="dialect", dialect="live", times=None, rate=0.25),
        Fault(path=r"^/v1/models/", method="POST", status=429, retry_after=1, times=None, rate=0.05),
        Fault(path=r"^/v1/models/", method="POST", kind="delay", delay_seconds=1.5, times=None, rate=0.05),
    ]
    return [Fault(**{**f.to_dict(), "rate": min(1.0, f.rate * scale)}) for f in faults]


@dataclass
class Options:
    """What one soak run does (see ``python -m benchmarks.soak --help``)."""

    jobs: int = 200
    executor: str = "local"
    in_worker: int | None = None
    poll_interval: float = 5.0
    deferred_job: tuple[float, float] = (10.0, 50.0)
    worker_job_seconds: float = 10.0
    fault_scale: float = 1.0
    timeout: float = 1800.0
    triggerer_down_seconds: float = 30.0
    workdir: Path = Path("/tmp")
    seed: int = 20261203


@dataclass
class Event:
    """An injection: what, when (epoch seconds), and details."""

    name: str
    at: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Observed:
    """What the run saw while it went on."""

    triggered_at: float = 0.0
    finished_at: float = 0.0
    run_state: str | None = None
    events: list[Event] = field(default_factory=list)
    pids: dict[str, set[int]] = field(default_factory=dict)  # process name -> every PID seen in its tree
    max_deferred: int = 0
    triggers_by_host: list[tuple[float, dict[str, int]]] = field(default_factory=list)

    def event(self, name: str) -> Event | None:
        """The injection named ``name``, if it happened."""
        return next((e for e in self.events if e.name == name), None)


class Database:
    """Read-only queries on the metadata database (psycopg2, autocommit)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._conn: Any = None

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one query; reconnect once if the connection broke."""
        for attempt in (1, 2):
            try:
                if self._conn is None:
                    self._conn = psycopg2.connect(
                        host="127.0.0.1", port=self.port, user="postgres", dbname="airflow"
                    )
                    self._conn.autocommit = True
                with self._conn.cursor() as cur:
                    cur.execute(sql, params)
                    return list(cur.fetchall())
            except psycopg2.OperationalError:
                self._conn = None
                if attempt == 2:
                    raise
        return []

    def task_states(self, run_id: str) -> dict[tuple[str, int], tuple[str | None, int]]:
        """``{(task_id, map_index): (state, try_number)}`` of the run."""
        rows = self.query(
            "SELECT task_id, map_index, state, try_number FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s",
            DAG_ID,
            run_id,
        )
        return {(t, m): (s, n) for t, m, s, n in rows}

    def triggers_by_host(self) -> dict[str, int]:
        """How many triggers each triggerer (by soak hostname) holds now."""
        rows = self.query(
            "SELECT j.hostname, count(*) FROM trigger t JOIN job j ON t.triggerer_id = j.id "
            "GROUP BY j.hostname"
        )
        return {host: n for host, n in rows}

    def trigger_tis(self, hostname: str) -> list[tuple[str, int]]:
        """The task instances whose triggers the triggerer ``hostname`` holds now."""
        rows = self.query(
            "SELECT ti.task_id, ti.map_index FROM task_instance ti JOIN trigger t ON ti.trigger_id = t.id "
            "JOIN job j ON t.triggerer_id = j.id WHERE j.hostname = %s AND ti.state = 'deferred'",
            hostname,
        )
        return [(t, m) for t, m in rows]

    def run_state(self, run_id: str) -> str | None:
        """The DAG run's state."""
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", DAG_ID, run_id)
        return rows[0][0] if rows else None

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def submits_by_ti(records: list[Any]) -> dict[tuple[str, int], list[Any]]:
    """Accepted (job-creating) submits per task instance, from the request log's bodies."""
    out: dict[tuple[str, int], list[Any]] = {}
    for record in records:
        if record.method == "POST" and record.path.startswith("/v1/models/") and record.request_id:
            body = record.body if isinstance(record.body, dict) else {}
            out.setdefault((str(body.get("soak")), int(body.get("map_index", -99))), []).append(record)
    return out


class Soak:
    """One soak run; ``run()`` returns everything the report needs."""

    def __init__(self, options: Options) -> None:
        self.o = options
        self.workdir = options.workdir
        self.observed = Observed()
        self.postgres = Postgres(self.workdir)
        self.redis = Redis(self.workdir) if options.executor == "celery" else None
        self.emulator = EmulatorProcess(
            self.workdir,
            token=TOKEN,
            queue_seconds=options.deferred_job[0],
            run_seconds=options.deferred_job[1],
            extra_args=[
                "--fault-seed",
                str(options.seed),
                "--log-maxlen",
                "5000000",
                *[
                    arg
                    for f in background_faults(options.fault_scale)
                    for arg in ("--fault", json.dumps(f.to_dict()))
                ],
            ],
        )
        self.deployment: Deployment | None = None
        self.db: Database | None = None
        self.run_id = f"soak_{int(time.time())}"
        self.killed: set[str] = set()
        self._log: list[Any] = []
        self._log_seen: set[tuple[Any, ...]] = set()

    def log(self) -> list[Any]:
        """The emulator's request log so far, fetched incrementally (it grows to many thousands)."""
        since = self._log[-1].time - 5 if self._log else None  # answers are logged slightly out of order
        for record in self.emulator.control.requests(since=since):
            key = (record.time, record.method, record.path, tuple(record.peer), record.status)
            if key not in self._log_seen:
                self._log_seen.add(key)
                self._log.append(record)
        self._log.sort(key=lambda r: r.time)
        return self._log

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start PostgreSQL, Redis, the emulator and Airflow; wait until the DAG is parsed."""
        self.postgres.start()
        if self.redis is not None:
            self.redis.start()
        self.emulator.start()
        conn = {
            "conn_type": "runcomfy",
            "host": self.emulator.base_url,
            "password": TOKEN,
            "extra": {"retry_backoff": 0.5, "retry_max_delay": 10},
        }
        in_worker = self.o.in_worker if self.o.in_worker is not None else max(4, self.o.jobs // 10)
        self.deployment = Deployment(
            self.workdir,
            db_url=self.postgres.url,
            executor=self.o.executor,
            broker_url=f"redis://127.0.0.1:{self.redis.port}/0" if self.redis else None,
            extra_env={
                "AIRFLOW_CONN_RUNCOMFY_DEFAULT": json.dumps(conn),
                "RUNCOMFY_SOAK_JOBS": str(self.o.jobs),
                "RUNCOMFY_SOAK_IN_WORKER": str(in_worker),
                "RUNCOMFY_SOAK_POLL": str(self.o.poll_interval),
                "RUNCOMFY_SOAK_QUEUE": str(self.o.deferred_job[0]),
                "RUNCOMFY_SOAK_RUN": str(self.o.deferred_job[1]),
                "RUNCOMFY_SOAK_WORKER_RUN": str(self.o.worker_job_seconds),
            },
        )
        self.deployment.start()
        self.db = Database(self.postgres.port)
        deadline = time.monotonic() + 300
        while not self.db.query("SELECT 1 FROM serialized_dag WHERE dag_id = %s", DAG_ID):
            self.deployment.check_alive()
            errors = self.db.query("SELECT filename, stacktrace FROM import_error")
            if errors:
                raise RuntimeError(f"DAG import errors: {errors}")
            if time.monotonic() > deadline:
                raise RuntimeError("the soak DAG was not parsed in 300 s")
            time.sleep(1)

    def stop(self) -> None:
        """Stop everything this run started (safe to call twice, and after a failed start)."""
        if self.db is not None:
            self.db.close()
        if self.deployment is not None:
            self.deployment.stop()
        self.emulator.stop()
        if self.redis is not None:
            self.redis.stop()
        self.postgres.stop()

    # -- the run ------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Trigger the DAG, inject, wait for the end (bounded by ``timeout``); return the raw figures."""
        assert self.deployment is not None
        assert self.db is not None
        dep, db, obs = self.deployment, self.db, self.observed
        dep.api("POST", f"dags/{DAG_ID}/dagRuns", {"dag_run_id": self.run_id, "logical_date": None})
        obs.triggered_at = time.time()
        steps = [
            self._mark_failed,
            self._storm,
            self._kill_triggerer,
            self._kill_worker_task,
            self._restart_scheduler,
        ]
        pending_revive: float | None = None
        deadline = time.monotonic() + self.o.timeout
        while time.monotonic() < deadline:
            dep.check_alive(skip=self.killed)
            self._sample()
            if pending_revive is not None and time.time() >= pending_revive:
                victim = self.observed.event("triggerer_kill")
                assert victim is not None
                dep.revive(victim.details["name"])
                self.killed.discard(victim.details["name"])
                obs.events.append(Event("triggerer_restart", time.time(), {"name": victim.details["name"]}))
                pending_revive = None
            for step in list(steps):  # each injection fires once, when its moment comes
                if step():
                    steps.remove(step)
                    if step == self._kill_triggerer:
                        pending_revive = time.time() + self.o.triggerer_down_seconds
            state = db.run_state(self.run_id)
            if state in ("success", "failed") and pending_revive is None:
                obs.run_state, obs.finished_at = state, time.time()
                break
            time.sleep(1)
        else:
            obs.run_state, obs.finished_at = f"unfinished after {self.o.timeout:.0f} s", time.time()
        for step in steps:
            obs.events.append(Event(f"skipped:{step.__name__.lstrip('_')}", time.time()))
        time.sleep(3)  # let the last calls land in the log
        return {
            "tis": db.task_states(self.run_id),
            "records": self.emulator.requests(),
            "jobs": self.emulator.jobs(),
            "observed": obs,
            "logs": dict(dep.logs),
            "home": dep.home,
            "versions": {
                "postgres": self.postgres.version,
                "redis": self.redis.version if self.redis else None,
            },
        }

    def _sample(self) -> None:
        assert self.deployment is not None
        assert self.db is not None
        for name, proc in self.deployment.procs.items():
            if proc.poll() is None:
                self.observed.pids.setdefault(name, set()).update(process_tree(proc.pid))
        by_host = self.db.triggers_by_host()
        self.observed.triggers_by_host.append((time.time(), by_host))
        deferred = self.db.query(
            "SELECT count(*) FROM task_instance WHERE dag_id = %s AND run_id = %s AND state = 'deferred'",
            DAG_ID,
            self.run_id,
        )[0][0]
        self.observed.max_deferred = max(self.observed.max_deferred, deferred)

    def _elapsed(self) -> float:
        return time.time() - self.observed.triggered_at

    # -- injections (each returns True once done) ------------------------------------------------------

    def _mark_failed(self) -> bool:
        assert self.deployment is not None
        assert self.db is not None
        state = self.db.task_states(self.run_id).get(("held", -1), (None, 0))[0]
        if state != "deferred":
            return False
        jobs = {job["request_id"]: job for job in self.emulator.jobs()}
        (submit,) = submits_by_ti(self.log()).get(("held", -1), [None])
        if submit is None or jobs[submit.request_id]["status"] != "in_queue":
            return False
        # Only once a triggerer runs its trigger (it has polled): Airflow calls ``on_kill`` only for a
        # trigger running in a triggerer (see RELIABILITY.md, "what is Airflow's").
        triggerers = self.observed.pids.get("triggerer-1", set()) | self.observed.pids.get(
            "triggerer-2", set()
        )
        polls = self.log()
        if not any(
            r.request_id == submit.request_id and r.path.endswith("/status") and r.pid in triggerers
            for r in polls
        ):
            return False
        self.deployment.api(
            "PATCH", f"dags/{DAG_ID}/dagRuns/{self.run_id}/taskInstances/held", {"new_state": "failed"}
        )
        self.observed.events.append(Event("mark_failed", time.time(), {"request_id": submit.request_id}))
        return True

    def _storm(self) -> bool:
        if self._elapsed() < 25:
            return False
        calls = max(100, self.o.jobs)
        storm = [
            Fault(path=r"^/v1/requests/", status=503, retry_after=2, times=calls),
            Fault(path=r"^/v1/models/", method="POST", status=429, retry_after=2, times=max(20, calls // 10)),
        ]
        for fault in storm:  # first in line: the storm hits before the background faults
            self.emulator.control.add_fault(fault)
        self.observed.events.append(
            Event("storm", time.time(), {"503_calls": calls, "429_submits": storm[1].times})
        )
        return True

    def _kill_triggerer(self) -> bool:
        assert self.deployment is not None
        assert self.db is not None
        by_host = self.db.triggers_by_host()
        total = sum(by_host.get(n, 0) for n in ("triggerer-1", "triggerer-2"))
        wanted = min(20, max(4, (self.o.jobs - (self.o.in_worker or self.o.jobs // 10)) // 4))
        if total < wanted and self._elapsed() < 120:
            return False
        # Not while the marked-failed trigger is being cancelled: a triggerer that dies before it
        # runs ``on_kill`` cancels nothing, and no other triggerer will (see RELIABILITY.md).
        mark = self.observed.event("mark_failed")
        if (mark is None and self._elapsed() < 120) or (mark is not None and time.time() < mark.at + 20):
            return False
        if not by_host:
            return False
        victim = max(("triggerer-1", "triggerer-2"), key=lambda n: by_host.get(n, 0))
        tis = self.db.trigger_tis(victim)
        self.deployment.kill(victim)
        self.killed.add(victim)
        self.observed.events.append(
            Event("triggerer_kill", time.time(), {"name": victim, "triggers": by_host, "tis": tis})
        )
        return True

    def _kill_worker_task(self) -> bool:
        assert self.deployment is not None
        assert self.db is not None
        states = self.db.task_states(self.run_id)
        submits = submits_by_ti(self.log())
        for (task_id, index), (state, try_number) in sorted(states.items()):
            if task_id != "in_worker" or state != "running" or (task_id, index) not in submits:
                continue
            pid = submits[(task_id, index)][-1].pid
            if pid is None or not Path(f"/proc/{pid}").exists():
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                self.observed.events.append(
                    Event(
                        "worker_task_kill",
                        time.time(),
                        {"ti": [task_id, index], "pid": pid, "try": try_number},
                    )
                )
                return True
        return False

    def _restart_scheduler(self) -> bool:
        assert self.deployment is not None
        kill = self.observed.event("triggerer_kill")
        if kill is None or time.time() < kill.at + 45:
            return False
        started = time.time()
        self.deployment.restart("scheduler", graceful=True, grace=60)
        self.observed.events.append(
            Event("scheduler_restart", started, {"took_seconds": time.time() - started})
        )
        return True
