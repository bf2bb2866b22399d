"""
The real-process fan-out: four mapped deferrable edits with one worker slot, and the same DAG waiting in
the worker. Its DAGs live in ``tests/real_process_dags``; the real-process test asserts on it and the
worker-slot benchmark times it, so both read its figures from here.
"""

from __future__ import annotations

from devtools.processes import TESTS_DIR

DAGS_DIR = TESTS_DIR / "real_process_dags"

TOKEN = "rc-real-process-token-5e4d3c2b1a"
#: How long each emulated job runs once the emulator lets the four start together. The hold (not this
#: figure) makes the test independent of how fast the machine starts tasks: Airflow 2's
#: SequentialExecutor starts a new ``airflow tasks run`` interpreter for each (about 4.5 s idle, 8 s
#: and more under load), so without it the four submits could spread past the first job's end.
JOB_SECONDS = 15.0
DEFERRABLE_DAG = "rc_real_fanout_deferrable"
SYNC_DAG = "rc_real_fanout_sync"
MAPPED_TASK = "edit"
N_TASKS = 4
