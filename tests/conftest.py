"""
Test configuration shared by the whole suite.

Airflow reads its configuration once, when it is first imported, so every ``AIRFLOW_*`` variable is
set here at module level, before any test module imports Airflow. The throwaway ``AIRFLOW_HOME``
(its own SQLite database, no example DAGs) comes from the provider's own pytest plugin
(``airflow_provider_runcomfy.testing``): the suite uses what it ships to users. It is forced here
(a developer's ``AIRFLOW_HOME`` is never touched) with the DAGs folder ``tests/dags``, where
Airflow 3's ``dag.test()`` finds the suite's DAG files.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_runcomfy.testing import isolated_airflow_env

if TYPE_CHECKING:
    from collections.abc import Iterator

TESTS_DIR = Path(__file__).resolve().parent
isolated_airflow_env(dags_folder=TESTS_DIR / "dags", force=True)
os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", "")
os.environ.pop("AIRFLOW_CONN_RUNCOMFY_DEFAULT", None)

#: The token every test emulator accepts; tests assert it never leaks.
TEST_TOKEN = "rc-test-token-9f8e7d6c5b4a"


@pytest.fixture(scope="session")
def emulator() -> Iterator[object]:
    """One RunComfy emulator on 127.0.0.1 for the session, with quick jobs; tests reset its knobs."""
    from airflow_provider_runcomfy.emulator import RunComfyEmulator

    with RunComfyEmulator(token=TEST_TOKEN, queue_seconds=0.3, run_seconds=0.5) as emu:
        yield emu


#: The dialects the core DAG tests run in: RunComfy's documented words, and every variant its own
#: clients accept from the live service (see ``airflow_provider_runcomfy/emulator/dialect.py``).
BOTH_DIALECTS = pytest.mark.parametrize("emu", ["documented", "live"], indirect=True)


@pytest.fixture
def emu(
    emulator: object, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[object]:
    """
    The session emulator, clean for one test, wired to the ``runcomfy_default`` connection.

    The connection comes from ``AIRFLOW_CONN_RUNCOMFY_DEFAULT``, the way users configure it, with a
    fast retry policy so retry tests do not sleep for real. It answers in the documented dialect,
    or in the one a test picks with ``@pytest.mark.parametrize("emu", [...], indirect=True)``
    (:data:`BOTH_DIALECTS`).
    """
    emulator.dialect = getattr(request, "param", "documented")  # type: ignore[attr-defined]
    emulator.clear_faults()  # type: ignore[attr-defined]
    emulator.clear_requests()  # type: ignore[attr-defined]
    emulator.queue_seconds = 0.3  # type: ignore[attr-defined]
    emulator.run_seconds = 0.5  # type: ignore[attr-defined]
    emulator.failure_message = None  # type: ignore[attr-defined]
    emulator.result_ttl_seconds = None  # type: ignore[attr-defined]
    emulator.balance = None  # type: ignore[attr-defined]
    emulator.catalog_available = True  # type: ignore[attr-defined]
    from airflow_provider_runcomfy.catalog import CATALOG_CACHE

    CATALOG_CACHE.clear()  # every test sees the emulator's catalog as it is now
    monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", conn_json(emulator.base_url))  # type: ignore[attr-defined]
    yield emulator
    emulator.clear_faults()  # type: ignore[attr-defined]
    emulator.dialect = "documented"  # type: ignore[attr-defined]


def conn_json(base_url: str, token: str = TEST_TOKEN, **extra: object) -> str:
    """The ``AIRFLOW_CONN_...`` JSON of a runcomfy connection, with a fast default retry policy."""
    return json.dumps(
        {
            "conn_type": "runcomfy",
            "host": base_url,
            "password": token,
            "extra": {"retry_backoff": 0.01, "retry_max_delay": 0.05, **extra},
        }
    )


def submits(emu: Any) -> list[Any]:
    """The paid submits (``POST /v1/models/...``) in the emulator's request log."""
    return [r for r in emu.requests if r.method == "POST" and r.path.startswith("/v1/models/")]


@contextlib.contextmanager
def cancelling_the_first_submit(emu: Any) -> Iterator[None]:
    """While the block runs, cancel the first job submitted, as a user would in RunComfy's UI."""
    from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook

    def cancel_when_submitted() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            posted = [r for r in submits(emu) if r.request_id]
            if posted:
                RunComfyHook().cancel(posted[0].request_id)
                return
            time.sleep(0.05)

    canceller = threading.Thread(target=cancel_when_submitted)
    canceller.start()
    try:
        yield
    finally:
        canceller.join()
