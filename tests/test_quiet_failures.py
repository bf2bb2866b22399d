"""
A task that fails for a known reason says so once: after its own exception, no error-level line
follows from the provider's code (the output link, the stored-output link or the lineage asking
XCom for a ``result`` or ``stored_url`` that never came, which Airflow logs as an error).

Each case runs in real Airflow (``dag.test()``) against the emulator; the logs are read where each
Airflow line writes them (stdlib logging on 2.11, structlog's console on 3.3).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_runcomfy.operators.runcomfy import RunComfyDownloadOperator, RunComfyImageEditOperator
from airflow_provider_runcomfy.sensors.runcomfy import RunComfyRequestSensor
from tests import airflow_utils as au

START = datetime(2026, 1, 1)
#: A structlog console line at error level or above (Airflow 3), e.g. ``... [error    ] XCom not found``.
CONSOLE_ERROR = re.compile(r"\[(error|critical|exception)\s*\]")


def ours(logger: str, message: str) -> bool:
    """A line of the provider's code: its loggers, or Airflow reporting an XCom lookup of ours that missed.

    Airflow's own summary of a failed run (2.11's ``dag.test()`` logs "Task failed; ti=..." at error
    level) is Airflow's report of the failure, not a line of ours."""
    return "runcomfy" in logger or "XCom not found" in message


def errors_after(caplog: pytest.LogCaptureFixture, console: str, exception: str) -> list[str]:
    """Error-level lines of ours logged after the first mention of ``exception`` (the task's failure)."""
    found: list[str] = []
    records = caplog.records
    first = next(
        (
            i
            for i, r in enumerate(records)
            if exception in r.getMessage()
            or (r.exc_text and exception in r.exc_text)
            or (r.exc_info and r.exc_info[1] is not None and type(r.exc_info[1]).__name__ == exception)
        ),
        None,
    )
    if first is not None:
        found += [
            f"{r.name}: {r.getMessage()}"
            for r in records[first + 1 :]
            if r.levelno >= logging.ERROR and ours(r.name, r.getMessage())
        ]
    at = console.find(exception)
    if at >= 0:
        found += [
            line for line in console[at:].splitlines() if CONSOLE_ERROR.search(line) and ours(line, line)
        ]
    return found


def edit_dag(dag_id: str, *, deferrable: bool, image_urls: list[str]) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        RunComfyImageEditOperator(
            task_id="edit",
            image_urls=image_urls,
            prompt="pencil sketch",
            deferrable=deferrable,
            poll_interval=0.2,
        )
    return dag


def submit_then_sense_dag(dag_id: str, image_url: str) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        submit = RunComfyImageEditOperator(
            task_id="submit", image_urls=[image_url], prompt="watercolour", wait_for_completion=False
        )
        RunComfyRequestSensor(task_id="sense", request_id=submit.output, deferrable=True, poke_interval=0.2)
    return dag


def download_dag(dag_id: str, url: str, destination: str) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        RunComfyDownloadOperator(task_id="keep", urls=[url], destination=destination)
    return dag


def run_and_read(
    emu: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], dag: DAG
) -> tuple[Any, str]:
    caplog.set_level(logging.INFO)
    run = au.run_dag(dag)
    return run, caplog.text + "".join(capfd.readouterr())


Case = "Callable[[Any, Any], tuple[DAG, str, str]]"


@pytest.mark.parametrize("mode", ["deferrable", "sync"])
def test_a_failed_job_is_the_last_error(
    emu: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], mode: str
) -> None:
    emu.failure_message = "GPU node lost during sampling"
    dag = edit_dag(
        f"quiet_failed_job_{mode}",
        deferrable=mode == "deferrable",
        image_urls=[emu.sample_url("portrait.png")],
    )
    run, logs = run_and_read(emu, caplog, capfd, dag)
    assert run.state == "failed"
    assert "GPU node lost during sampling" in logs
    assert "XCom not found" not in logs
    console = logs[len(caplog.text) :]
    assert errors_after(caplog, console, "RunComfyJobFailedError") == []


def test_an_input_error_is_the_last_error(
    emu: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    dag = edit_dag("quiet_input_error", deferrable=True, image_urls=["ftp://example.com/a.png"])
    run, logs = run_and_read(emu, caplog, capfd, dag)
    assert run.state == "failed"
    assert "RunComfyInputError" in logs
    assert "XCom not found" not in logs
    assert errors_after(caplog, logs[len(caplog.text) :], "RunComfyInputError") == []
    assert not [r for r in emu.requests if r.method == "POST"], "nothing was paid for"


def test_a_sensor_whose_job_failed_and_a_submit_only_task_stay_quiet(
    emu: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    emu.failure_message = "GPU node lost during sampling"
    run, logs = run_and_read(
        emu, caplog, capfd, submit_then_sense_dag("quiet_sensor", emu.sample_url("portrait.png"))
    )
    assert au.task_states(run) == {("submit", -1): "success", ("sense", -1): "failed"}
    assert "XCom not found" not in logs, (
        "neither the submit-only task nor the failed sensor asks for a result"
    )
    assert errors_after(caplog, logs[len(caplog.text) :], "RunComfyJobFailedError") == []


def test_a_failed_download_is_the_last_error(
    emu: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    gone = f"{emu.base_url}/files/no-such-output.png"  # the emulator's CDN answers 404: an expired link
    run, logs = run_and_read(emu, caplog, capfd, download_dag("quiet_download", gone, str(tmp_path)))
    assert run.state == "failed"
    assert "RunComfyOutputExpiredError" in logs
    assert "XCom not found" not in logs
    assert errors_after(caplog, logs[len(caplog.text) :], "RunComfyOutputExpiredError") == []
