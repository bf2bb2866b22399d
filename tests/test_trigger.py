"""RunComfyRequestTrigger on its own: serialization, every event, faults, timeout and on_kill."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import pytest

from airflow_provider_runcomfy.emulator import Fault
from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook
from airflow_provider_runcomfy.triggers.runcomfy import RunComfyRequestTrigger
from tests.conftest import BOTH_DIALECTS, TEST_TOKEN, conn_json

EDIT = "bytedance/dreamina-4-0/edit"


def submit(emu: Any) -> str:
    return RunComfyHook().submit(EDIT, {"image_urls": [emu.sample_url("portrait.png")], "prompt": "neon"})


def run_trigger(trigger: RunComfyRequestTrigger, timeout: float = 30) -> list[dict[str, Any]]:
    """Run the trigger as the triggerer does, after a serialize round trip, and collect its events."""
    classpath, kwargs = trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in rebuilt.run()]

    return asyncio.run(asyncio.wait_for(collect(), timeout))


def test_serialize_holds_no_secret_and_round_trips() -> None:
    trigger = RunComfyRequestTrigger(request_id="abc", poll_interval=2, end_time=123.0, cancel_on_kill=False)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_runcomfy.triggers.runcomfy.RunComfyRequestTrigger"
    assert kwargs == {
        "request_id": "abc",
        "runcomfy_conn_id": "runcomfy_default",
        "poll_interval": 2.0,
        "end_time": 123.0,
        "cancel_on_timeout": True,
        "cancel_on_kill": False,
        "max_failed_polls": 5,
        "watch_memory": None,
        "progress_interval": 300.0,
    }
    assert RunComfyRequestTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert RunComfyRequestTrigger("only-the-id").serialize()[1]["request_id"] == "only-the-id"


@BOTH_DIALECTS
def test_success_event_carries_urls_and_output(
    emu: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO)
    emu.queue_seconds, emu.run_seconds = 0.4, 0.4
    request_id = submit(emu)
    (event,) = run_trigger(RunComfyRequestTrigger(request_id, poll_interval=0.05))
    assert event["status"] == "success"
    assert event["request_id"] == request_id
    result = event["result"]
    assert result["urls"]
    assert result["urls"] == result["output"]["images"]
    assert result["status"] == "succeeded"
    # Many polls, but each change is logged once.
    polls = [r for r in emu.requests if r.path.endswith("/status")]
    assert len(polls) > 5
    # Airflow 2 logs through logging (caplog, and a console copy), Airflow 3 through structlog (console).
    console = "".join(capfd.readouterr())
    assert max(caplog.text.count("is running"), console.count("is running")) == 1
    assert TEST_TOKEN not in caplog.text + console


@BOTH_DIALECTS
def test_failed_event_carries_runcomfy_error(emu: Any) -> None:
    emu.failure_message = "content policy violation"
    (event,) = run_trigger(RunComfyRequestTrigger(submit(emu), poll_interval=0.05))
    assert event["status"] == "failed"
    assert "content policy violation" in event["message"]


@BOTH_DIALECTS
def test_cancelled_event(emu: Any) -> None:
    emu.queue_seconds = 30
    request_id = submit(emu)
    assert RunComfyHook().cancel(request_id).is_accepted
    (event,) = run_trigger(RunComfyRequestTrigger(request_id, poll_interval=0.05))
    assert event == {"status": "cancelled", "request_id": request_id, "message": "the job was cancelled"}


@BOTH_DIALECTS
def test_timeout_checks_once_more_then_cancels_a_queued_job(emu: Any) -> None:
    emu.queue_seconds = 30
    request_id = submit(emu)
    (event,) = run_trigger(RunComfyRequestTrigger(request_id, poll_interval=0.05, end_time=time.time() + 0.3))
    assert event["status"] == "timeout"
    documented = emu.dialect.name == "documented"
    assert ("has been cancelled" if documented else "its cancel was requested") in event["message"]
    cancels = [r for r in emu.requests if r.path.endswith("/cancel")]
    assert [r.request_id for r in cancels] == [request_id]
    assert RunComfyHook().get_status(request_id)["status"] == ("cancelled" if documented else "canceled")


@BOTH_DIALECTS
def test_timeout_leaves_a_running_job_alone(emu: Any) -> None:
    emu.queue_seconds, emu.run_seconds = 0, 30
    request_id = submit(emu)
    time.sleep(0.2)
    (event,) = run_trigger(RunComfyRequestTrigger(request_id, poll_interval=0.05, end_time=time.time() + 0.3))
    assert event["status"] == "timeout"
    assert "not cancelled" in event["message"]
    assert not [r for r in emu.requests if r.path.endswith("/cancel")]


def test_deadline_already_passed_but_job_done_is_a_success(emu: Any) -> None:
    request_id = submit(emu)
    time.sleep(1.2)
    (event,) = run_trigger(RunComfyRequestTrigger(request_id, end_time=time.time() - 1))
    assert event["status"] == "success"


def test_transient_faults_ride_the_retry_policy(emu: Any) -> None:
    request_id = submit(emu)
    emu.add_fault(Fault(path=r"/status$", kind="status", status=503, times=3))
    emu.add_fault(Fault(path=r"/result$", kind="drop", times=1))
    (event,) = run_trigger(RunComfyRequestTrigger(request_id, poll_interval=0.05))
    assert event["status"] == "success"


def test_a_streak_of_failed_polls_ends_in_an_error(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", conn_json(emu.base_url, max_retries=1))
    request_id = submit(emu)
    emu.add_fault(Fault(path=r"/status$", kind="status", status=502, times=None))
    (event,) = run_trigger(RunComfyRequestTrigger(request_id, poll_interval=0.01, max_failed_polls=3))
    assert event["status"] == "error"
    assert "3 polls in a row failed" in event["message"]
    assert len([r for r in emu.requests if r.path.endswith("/status")]) == 6  # 3 polls x (1 + 1 retry)


def test_unknown_request_is_an_error_at_once(emu: Any) -> None:
    (event,) = run_trigger(RunComfyRequestTrigger("no-such-request", poll_interval=0.05))
    assert event["status"] == "error"
    assert "404001" in event["message"]


def test_bad_token_is_an_error_without_the_token(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", conn_json(emu.base_url, token="rc-bad-token-777"))
    (event,) = run_trigger(RunComfyRequestTrigger("whatever", poll_interval=0.05))
    assert event["status"] == "error"
    assert "rc-bad-token-777" not in str(event)


def test_on_kill_cancels_a_queued_job(emu: Any) -> None:
    emu.queue_seconds = 30
    request_id = submit(emu)
    asyncio.run(RunComfyRequestTrigger(request_id).on_kill())
    assert RunComfyHook().get_status(request_id)["status"] == "cancelled"


def test_on_kill_cancel_survives_the_triggerers_second_cancel(
    emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Found by the soak: Airflow 3.3's triggerer cancels a killed trigger's task again at its next sync
    (about a second later) while ``on_kill`` runs. A cancel call waiting out a 429 was cut off there,
    and the queued job lived on. Here the first cancel call gets a 429 and ``on_kill``'s task is
    cancelled while it waits, as the triggerer does; the cancel must still go through.
    """
    emu.queue_seconds = 30
    request_id = submit(emu)
    emu.add_fault(Fault(path=r"/cancel$", status=429, retry_after=0.5, times=1))
    monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", conn_json(emu.base_url, retry_max_delay=2))

    async def kill_like_the_triggerer() -> None:
        on_kill = asyncio.create_task(RunComfyRequestTrigger(request_id).on_kill())
        await asyncio.sleep(0.2)  # the cancel call got its 429 and waits for its retry
        on_kill.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await on_kill
        await asyncio.sleep(1.5)  # the triggerer's loop runs on

    asyncio.run(kill_like_the_triggerer())
    cancels = [r.status for r in emu.requests if r.path.endswith("/cancel")]
    assert cancels == [429, 202]
    assert RunComfyHook().get_status(request_id)["status"] == "cancelled"


def test_on_kill_respects_cancel_on_kill_false(emu: Any) -> None:
    emu.queue_seconds = 30
    request_id = submit(emu)
    asyncio.run(RunComfyRequestTrigger(request_id, cancel_on_kill=False).on_kill())
    assert RunComfyHook().get_status(request_id)["status"] == "in_queue"


def test_cleanup_never_cancels(emu: Any) -> None:
    """A trigger moving to another triggerer is cleaned up; the job must live on."""
    emu.queue_seconds = 30
    request_id = submit(emu)
    trigger = RunComfyRequestTrigger(request_id, poll_interval=0.05)

    async def start_then_stop() -> None:
        agen = trigger.run()
        task = asyncio.ensure_future(agen.__anext__())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await trigger.cleanup()

    asyncio.run(start_then_stop())
    assert not [r for r in emu.requests if r.path.endswith("/cancel")]
    assert RunComfyHook().get_status(request_id)["status"] == "in_queue"


@pytest.mark.parametrize("emu", ["unknown-status"], indirect=True)
def test_the_trigger_goes_on_from_the_tasks_look_before_deferring(
    emu: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """What the task logged before deferring (an unknown word) the trigger does not log again."""
    from airflow_provider_runcomfy.jobs import RequestWatch
    from airflow_provider_runcomfy.operators.runcomfy import look_once

    def trigger_logs() -> str:  # stdlib logging on Airflow 2, structlog's console on Airflow 3
        text = caplog.text + "".join(capfd.readouterr())
        caplog.clear()
        return text

    caplog.set_level(logging.INFO)
    said = "unknown status word 'warming_up' on the status endpoint"
    task_log = logging.getLogger("runcomfy.test.task")
    emu.queue_seconds, emu.run_seconds = 0.3, 0.3
    task_watch = RequestWatch(request_id := submit(emu), task_log)
    assert look_once(RunComfyHook(), task_watch) is None
    assert said in trigger_logs(), "the task's look logs it"
    memory = task_watch.memory()
    (event,) = run_trigger(RunComfyRequestTrigger(request_id, poll_interval=0.05, watch_memory=memory))
    assert event["status"] == "success"
    assert said not in trigger_logs(), "the trigger went on from the task's watch"
    # Without the memory (a trigger serialized by an older version) it says it once itself.
    (event,) = run_trigger(RunComfyRequestTrigger(submit(emu), poll_interval=0.05))
    assert event["status"] == "success"
    assert said in trigger_logs()
