"""Fixtures of the emulator's own tests: one emulator for the package, reset before every test."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from airflow_provider_runcomfy.emulator import RunComfyEmulator

if TYPE_CHECKING:
    from collections.abc import Iterator

TOKEN = "emu-test-token-1234"
OTHER_TOKEN = "emu-other-token-5678"


@pytest.fixture(scope="package")
def rc_server() -> Iterator[RunComfyEmulator]:
    """One emulator for all emulator tests (starting one costs a millisecond, but keep it simple)."""
    with RunComfyEmulator(token=TOKEN, tokens=[OTHER_TOKEN], queue_seconds=0.3, run_seconds=0.4) as emu:
        yield emu


@pytest.fixture
def rc(rc_server: RunComfyEmulator) -> Iterator[RunComfyEmulator]:
    """The package emulator with default knobs, no faults and an empty request log."""
    rc_server.clear_faults()
    rc_server.clear_requests()
    rc_server.queue_seconds = 0.3
    rc_server.run_seconds = 0.4
    rc_server.failure_message = None
    rc_server.result_ttl_seconds = None
    rc_server.balance = None
    rc_server.hold_until_submits = None
    rc_server.catalog_available = True
    rc_server.dialect = "documented"
    yield rc_server
    rc_server.clear_faults()


@pytest.fixture
def client(rc: RunComfyEmulator) -> Iterator[httpx.Client]:
    """An httpx client on the emulator with the valid bearer token."""
    with httpx.Client(base_url=rc.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=20) as c:
        yield c
