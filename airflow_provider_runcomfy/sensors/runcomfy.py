"""
Wait for a RunComfy request submitted elsewhere (an operator with ``wait_for_completion=False``,
another DAG, a script) and hand its output URLs on, exactly like the operators do.

The sensor owns no waiting logic of its own: each poke is one poll of
:mod:`airflow_provider_runcomfy.waiting` (the same rules as the operators' wait and the trigger,
failed polls ridden out included), and its deferrable mode hands over to the same trigger.
"""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseSensorOperator, PokeReturnValue, conf

from airflow_provider_runcomfy.jobs import DEFAULT_PROGRESS_INTERVAL, RequestWatch, WaitProgress
from airflow_provider_runcomfy.links import RunComfyOutputLink
from airflow_provider_runcomfy.waiting import (
    DEFAULT_MAX_FAILED_POLLS,
    DEFERRAL_GRACE,
    WaitCore,
    finish_wait,
    poll,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook


class RunComfyRequestSensor(BaseSensorOperator):
    """
    Wait for a RunComfy request to finish; return its output URLs, with the ``result`` XCom beside them.

    A failed or cancelled job raises at once instead of poking on. In deferrable mode the wait runs
    in the triggerer through :class:`RunComfyRequestTrigger`, the same as the operators'. The
    ``result``'s ``model_id`` is ``None``: a request id alone does not name its model.

    :param request_id: the RunComfy request id, e.g. ``"{{ ti.xcom_pull('submit') }}"``. (templated)
    :param runcomfy_conn_id: the Airflow connection of type ``runcomfy``.
    :param deferrable: wait in the triggerer, holding no worker slot.
    :param cancel_on_kill: cancel a still-queued job when the deferred task is killed (Airflow 3.3+).
    :param progress_interval: while the job does not change, seconds between two progress lines
        (state, queue position, time waited and left before ``timeout``, polls made and failed);
        each change is logged at once. Default 300 (5 minutes). In ``reschedule`` mode each poke is
        a new start, so only changes are logged.
    :param max_failed_polls: how many polls in a row may fail (each after the hook's retries, e.g.
        during an outage of RunComfy's API) before the sensor fails; until then it pokes on. Errors
        no poll can fix (a bad token, an unknown request) fail at once. In ``reschedule`` mode the
        count starts afresh at each poke.

    ``poke_interval``, ``timeout`` and ``mode`` are the usual sensor parameters; in deferrable mode
    ``poke_interval`` is the trigger's poll interval and ``timeout`` its deadline (a job still
    queued then is cancelled).
    """

    template_fields: Sequence[str] = ("request_id",)
    ui_color = "#e8f0ff"
    operator_extra_links = (RunComfyOutputLink(),)

    def __init__(
        self,
        *,
        request_id: str,
        runcomfy_conn_id: str = "runcomfy_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        cancel_on_kill: bool = True,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        max_failed_polls: int = DEFAULT_MAX_FAILED_POLLS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.request_id = request_id
        self.runcomfy_conn_id = runcomfy_conn_id
        self.deferrable = deferrable
        self.cancel_on_kill = cancel_on_kill
        self.progress_interval = progress_interval
        self.max_failed_polls = max_failed_polls
        self._wait: WaitCore | None = None
        self._ran = False  # execute() or execute_complete() ran on this object (not the UI's copy)
        self._urls: list[str] | None = None

    @cached_property
    def hook(self) -> RunComfyHook:
        """The RunComfy hook (imported here so that parsing a DAG file never loads httpx)."""
        from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook

        return RunComfyHook(runcomfy_conn_id=self.runcomfy_conn_id)

    def execute(self, context: Context) -> Any:
        """Poke (or defer after one poke that finds the job still going)."""
        self._ran = True
        if not self.deferrable:
            return super().execute(context)
        result = self.poke(context)
        if result.is_done:
            return result.xcom_value
        from airflow_provider_runcomfy.triggers.runcomfy import RunComfyRequestTrigger

        timeout = float(self.timeout)
        self.defer(
            trigger=RunComfyRequestTrigger(
                request_id=self.request_id,
                runcomfy_conn_id=self.runcomfy_conn_id,
                poll_interval=float(self.poke_interval),
                end_time=time.time() + timeout,
                cancel_on_timeout=True,
                cancel_on_kill=self.cancel_on_kill,
                max_failed_polls=int(self.max_failed_polls),
                watch_memory=self._core().watch.memory(),
                progress_interval=float(self.progress_interval),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=timeout) + DEFERRAL_GRACE,
        )
        return None

    def poke(self, context: Context) -> PokeReturnValue:
        """
        One look at the request: not done yet, done with URLs, or an error raised at once.

        A poll that fails after the hook's retries is not done yet, up to ``max_failed_polls`` in a
        row; then the wait ends in an error naming the last failure.
        """
        core = self._core()
        event = poll(self.hook, core, fatal_raises=True)
        if event is None:
            core.between_polls()
            return PokeReturnValue(is_done=False)
        self._urls = finish_wait(self, context, event, model_id=None)
        return PokeReturnValue(is_done=True, xcom_value=self._urls)

    def _core(self) -> WaitCore:
        """
        One wait for all the pokes of this try, so that each change (and each unknown word) is logged
        once, a failed status whose result stays silent ends the wait on the second poke, and failed
        polls are counted in a row.
        """
        request_id = str(self.request_id)
        if self._wait is None or self._wait.request_id != request_id:
            now = time.time()  # a sensor's wait starts at its first poke: the submit was elsewhere
            end_time = now + float(self.timeout)
            progress = WaitProgress(started_at=now, end_time=end_time, interval=float(self.progress_interval))
            self._wait = WaitCore(
                RequestWatch(request_id, self.log, progress=progress),
                poll_interval=float(self.poke_interval),
                end_time=end_time,
                max_failed_polls=int(self.max_failed_polls),
            )
        return self._wait

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> list[str]:
        """Resume after the trigger fired: return the URLs on success, raise on anything else."""
        self._ran = True
        self._urls = finish_wait(self, context, event, model_id=None)
        return self._urls

    @property
    def awaiting_result(self) -> bool:
        """
        This sensor ran and holds no result (it waits, or it failed): no ``result`` XCom exists.

        The output link reads it instead of asking XCom, whose miss Airflow logs at error level
        after the sensor's own exception. A sensor object that never ran (the UI's) says ``False``.
        """
        return self._ran and self._urls is None
