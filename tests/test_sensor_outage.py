"""
The sensor rides out an outage like every other wait: a poll that still fails after the hook's retries
is not the end of the task, up to ``max_failed_polls`` polls in a row; one more fails it with a clear
error that carries no token.

Real Airflow (``dag.test()``, on 3.x and 2.11) against the emulator, whose fault injection makes
every retry of a poll fail: the connection allows one retry, so a failed poll is two 503s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_runcomfy.emulator import Fault
from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook
from tests import airflow_utils as au
from tests.conftest import TEST_TOKEN, conn_json

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

EDIT = "bytedance/dreamina-4-0/edit"
MODES = pytest.mark.parametrize("mode", ["poke", "deferrable"])


def submit(emu: Any) -> str:
    return RunComfyHook().submit(EDIT, {"image_urls": [emu.sample_url("portrait.png")], "prompt": "ink"})


def failed_status_answers(emu: Any, request_id: str) -> int:
    return sum(1 for r in emu.requests if r.path.endswith(f"/{request_id}/status") and r.status == 503)


@pytest.fixture
def sense_through(
    emu: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[[str, int | None], tuple[Any, str, Path]]:
    """
    Run the outage sensor DAG in ``mode`` on a new job whose status polls answer 503 ``times`` times
    (``None``: every time), with a connection whose polls try twice (the try and one retry).

    Returns the run, the request id and the file the failure callback writes to.
    """
    monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", conn_json(emu.base_url, max_retries=1))
    failures = tmp_path / "failures.txt"
    monkeypatch.setenv("RUNCOMFY_TEST_FAILURES", str(failures))

    def run(mode: str, times: int | None) -> tuple[Any, str, Path]:
        request_id = submit(emu)
        emu.add_fault(Fault(path=rf"/{request_id}/status$", kind="status", status=503, times=times))
        dag = au.test_dags(emu.base_url)[f"rc_sense_outage_{mode}"]
        return au.run_dag(dag, run_conf={"request_id": request_id}), request_id, failures

    return run


@MODES
def test_the_sensor_pokes_on_through_failed_polls_and_succeeds(
    emu: Any,
    sense_through: Any,
    mode: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # Two whole polls fail (each the try and its retry): the first poke, or the check before deferring.
    run, request_id, failures = sense_through(mode, 4)
    assert run.state == "success", au.task_states(run)
    assert failed_status_answers(emu, request_id) == 4, "both failed polls reached the emulator"
    urls = au.xcoms(run)[("sense", -1)]
    assert urls
    assert all(url.startswith(emu.base_url) for url in urls)
    assert au.xcoms(run, "result")[("sense", -1)]["request_id"] == request_id
    assert not failures.exists()
    logs = caplog.text + "".join(capfd.readouterr())
    assert f"Poll 1 of request {request_id} failed" in logs
    if mode == "poke":  # deferred, the second failed poll is the trigger's first (its count starts anew)
        assert f"Poll 2 of request {request_id} failed" in logs
    assert TEST_TOKEN not in logs


@MODES
def test_more_failed_polls_in_a_row_than_allowed_fail_the_sensor_clearly(
    emu: Any,
    sense_through: Any,
    mode: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    run, request_id, failures = sense_through(mode, None)
    assert run.state == "failed"
    assert au.task_states(run)[("sense", -1)] == "failed"
    (text,) = failures.read_text().splitlines()
    assert text.startswith("RunComfyJobError: Waiting for RunComfy request "), text
    assert request_id in text
    assert "3 polls in a row failed; the last:" in text
    assert "503" in text
    assert TEST_TOKEN not in text
    logs = caplog.text + "".join(capfd.readouterr())
    assert TEST_TOKEN not in logs
    # Deferrable: the check before deferring failed once, then the trigger counted its own 3 in a row.
    assert failed_status_answers(emu, request_id) == (3 if mode == "poke" else 4) * 2
