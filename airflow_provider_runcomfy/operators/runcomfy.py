"""
Operators that run RunComfy models as Airflow tasks, and copy their outputs to the user's storage.

The life of one task, and why each step is where it is:

1. ``execute()`` finds the model's input schema and price (RunComfy's catalog, else the schema
   shipped for a documented model, or the user's ``input_schema``), checks the rendered inputs
   against the schema, estimates the cost (XCom ``cost_estimate``), refuses a job over
   ``max_cost_usd``, and probes the input images with Pillow, so a job that cannot succeed, or
   costs more than allowed, is never paid for;
2. it submits the job and pushes the ``request_id`` to XCom at once, before anything can fail, and
   (Airflow 3.3+) saves it in the task instance's ``task_state_store``, so a retry reconnects to a job
   that is still running instead of paying for a second one;
3. it waits: in the triggerer (``deferrable=True``, no worker slot held) or in the worker;
4. on success it returns the list of output URLs (``return_value``, ready for ``.expand()``) and
   pushes the ``result`` summary (with ``cost_usd`` when RunComfy reports the cost); anything else
   raises a domain exception naming request and model.

This module is imported while DAG files are parsed, so httpx, Pillow, jsonschema, the schema
interpreter and the hook are imported only when a task runs.
"""

from __future__ import annotations

import os  # noqa: TC003 - the signatures are evaluated at run time (inspect.signature, IDEs)
import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import BaseHook, BaseOperator, ResumableJobMixin, conf

from airflow_provider_runcomfy.exceptions import (
    WAIT_FATAL_ERRORS,
    RunComfyError,
    RunComfyInputError,
    RunComfyNotFoundError,
)
from airflow_provider_runcomfy.jobs import (
    DEFAULT_PROGRESS_INTERVAL,
    Endpoint,
    Phase,
    RequestWatch,
    WaitProgress,
    parse_phase,
    phase_of,
    settled_phase,
)
from airflow_provider_runcomfy.lineage import DownloadLineageMixin, ModelLineageMixin
from airflow_provider_runcomfy.links import (
    STORED_URL_XCOM_KEY,
    RunComfyOutputLink,
    RunComfyStoredOutputLink,
    stored_link,
)
from airflow_provider_runcomfy.operators.schema_lookup import SchemaLookupMixin
from airflow_provider_runcomfy.operators.schema_lookup import (  # kept importable from here
    load_input_schema as load_input_schema,
)
from airflow_provider_runcomfy.validation import (
    EDIT_MODEL_ID,
    SIZE_FIELD,
    VIDEO_MODEL_ID,
    check_model_id,
    normalize_size,
    validate_inputs,
)
from airflow_provider_runcomfy.waiting import (
    DEFERRAL_GRACE,
    cancel_if_queued,
    finish_wait,
    look_before_deferring,
    wait_in_worker,
)
from airflow_provider_runcomfy.waiting import look_once as look_once  # kept importable from here

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_runcomfy.cost import CostEstimate
    from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook
    from airflow_provider_runcomfy.schema import ModelSchema
    from airflow_provider_runcomfy.triggers.runcomfy import RunComfyRequestTrigger

#: The defaults of the keyword parameters every model operator takes, named once so that the
#: model-specific operators, which spell these parameters out for IDEs and ``help()``, cannot drift.
DEFAULT_DEFERRABLE: bool = conf.getboolean("operators", "default_deferrable", fallback=False)
DEFAULT_POLL_INTERVAL: float = 5
DEFAULT_TIMEOUT: float = 3600


class RunComfyModelOperator(SchemaLookupMixin, ModelLineageMixin, ResumableJobMixin, BaseOperator):
    """
    Run any RunComfy model: submit, wait (in the triggerer or the worker), return the output URLs.

    Before anything is paid for, the inputs are checked against the model's input schema and its
    input images probed: the schema is ``input_schema`` when given, else the one RunComfy's catalog
    publishes (``GET /v1/models/{model_id}``), else the one shipped with the provider for the two
    documented Dreamina models. When none can be found the inputs are sent unchecked, with a
    warning, unless ``strict_schema=True``. The cost is estimated from the catalog's price and
    logged; ``max_cost_usd`` refuses a job whose estimate is higher or unknown.

    XCom: ``cost_estimate`` (``{"usd", "price_unit", "basis"}``) before the submit; ``request_id``
    right after it; on success ``return_value`` is the list of output URLs (image, images...,
    video, videos...) and ``result`` the summary ``{"request_id", "model_id", "status", "urls",
    "output", "created_at", "finished_at"}`` plus ``cost_usd`` when RunComfy reports the job's cost.
    With ``wait_for_completion=False``, ``return_value`` is the ``request_id``.

    :param model_id: the RunComfy model id, e.g. ``bytedance/dreamina-4-0/edit``. (templated)
    :param inputs: the model's JSON inputs. (templated)
    :param runcomfy_conn_id: the Airflow connection of type ``runcomfy``.
    :param wait_for_completion: wait for the job and return its outputs; ``False`` returns at once.
    :param deferrable: wait in the triggerer, holding no worker slot.
    :param poll_interval: seconds between status polls.
    :param timeout: the longest wait for the job in seconds, counted from submission (from the
        reconnect, when a retry reconnects to a running job); a job still queued then is cancelled.
    :param cancel_on_kill: cancel the job when the task is killed (a running job cannot be cancelled).
    :param validate_images: probe the input images with Pillow (format, bytes, size) before paying.
        Inline files (``data:`` URIs, and local or object-storage files) are always checked: they
        cost no request.
    :param source_conn_id: the Airflow connection of the object store that media inputs such as
        ``s3://bucket/key.png`` or ``gs://...`` are read from (local paths and ``file://`` need none).
        Such files, like local ones, are checked and sent inline as ``data:`` URIs.
    :param strict_schema: refuse to submit when no input schema of the model can be found (the
        catalog unreachable or silent, and no ``input_schema``), instead of sending unchecked.
    :param input_schema: the model's input schema in RunComfy's form (e.g. copied from its page), as
        a dict or the path of a JSON file (a saved catalog answer with an ``input_schema`` key works
        too); used instead of the catalog's.
    :param max_cost_usd: refuse to submit a job whose estimated cost is higher, or cannot be
        estimated (:class:`~airflow_provider_runcomfy.exceptions.RunComfyBudgetExceededError`).
    :param progress_interval: while the job does not change, seconds between two progress lines
        (state, queue position, time waited and left before ``timeout``, polls made and failed), in
        the triggerer's log or the task's; each change is logged at once. Default 300 (5 minutes).
    """

    template_fields: Sequence[str] = ("model_id", "inputs")
    template_fields_renderers: ClassVar[dict[str, str]] = {"inputs": "json"}
    ui_color = "#e8f0ff"
    operator_extra_links = (RunComfyOutputLink(),)
    external_id_key = "runcomfy_request_id"

    def __init__(
        self,
        *,
        model_id: str,
        inputs: dict[str, Any] | None = None,
        runcomfy_conn_id: str = "runcomfy_default",
        wait_for_completion: bool = True,
        deferrable: bool = DEFAULT_DEFERRABLE,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        cancel_on_kill: bool = True,
        validate_images: bool = True,
        source_conn_id: str | None = None,
        strict_schema: bool = False,
        input_schema: dict[str, Any] | str | os.PathLike[str] | None = None,
        max_cost_usd: float | None = None,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_id = model_id
        self.inputs = inputs if inputs is not None else {}
        self.runcomfy_conn_id = runcomfy_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.cancel_on_kill = cancel_on_kill
        self.validate_images = validate_images
        self.source_conn_id = source_conn_id
        self.strict_schema = strict_schema
        self.input_schema = input_schema
        self.max_cost_usd = max_cost_usd
        self.progress_interval = progress_interval
        self.request_id: str | None = None
        self._schema: ModelSchema | None = None
        self._estimate: CostEstimate | None = None
        self._urls: list[str] | None = None
        self._payload: dict[str, Any] | None = None
        self._end_time: float | None = None
        self._ran = False  # execute() or execute_complete() ran on this object (not the UI's copy)

    @cached_property
    def hook(self) -> RunComfyHook:
        """The RunComfy hook (imported here so that parsing a DAG file never loads httpx)."""
        from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook

        return RunComfyHook(runcomfy_conn_id=self.runcomfy_conn_id)

    def build_inputs(self) -> dict[str, Any]:
        """The model's inputs from the (rendered) operator fields; subclasses map their own fields here."""
        if not isinstance(self.inputs, dict):
            raise RunComfyInputError(
                "inputs", f"must be a dict of the model's inputs, got {type(self.inputs).__name__}"
            )
        return dict(self.inputs)

    # -- execute -----------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        """Check the inputs against the model's schema, estimate the cost, then submit or reconnect, wait."""
        self._ran = True
        self._check_settings()
        self._prepare(context)
        if not self.wait_for_completion:
            return self.submit_job(context)
        return self.execute_resumable(context)

    def _check_settings(self) -> None:
        for name in ("poll_interval", "timeout", "progress_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise RunComfyInputError(name, f"must be a positive number of seconds, got {value!r}")
        limit = self.max_cost_usd
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int | float) or not limit >= 0
        ):
            raise RunComfyInputError("max_cost_usd", f"must be a number of US dollars >= 0, got {limit!r}")

    # -- schema, inputs and cost -------------------------------------------------------------------

    def _prepare(self, context: Context) -> None:
        """
        Find the model's schema and price, check the inputs, estimate and push the cost (free calls only).

        The catalog is read first (cached per process) because it gives both the schema and the
        price; the shipped schema of a documented model is the fallback when it cannot be read.
        """
        from airflow_provider_runcomfy.cost import COST_ESTIMATE_XCOM_KEY, estimate_cost

        check_model_id(self.model_id)
        inputs = self.build_inputs()
        info, why = self._catalog_entry()
        self._schema = self._find_schema(info, why)
        self._refuse_unapplied_rules()
        inputs = self._inline_private_files(inputs)
        self._payload = validate_inputs(self.model_id, inputs, self._schema)
        self._check_inline_files(self._payload)
        self._estimate = estimate_cost(
            info,
            self._payload,
            input_schema=self._schema.schema if self._schema is not None else None,
            why_no_price=why or "the catalog gives no price for this model",
        )
        self.log.info("Estimated cost of this %s job: %s", self.model_id, self._estimate.describe())
        context["ti"].xcom_push(key=COST_ESTIMATE_XCOM_KEY, value=self._estimate.to_xcom())

    def _inline_private_files(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Local and object-storage files of media fields, read and turned into ``data:`` URIs (a copy)."""
        if self._schema is None:
            from airflow_provider_runcomfy.media_sources import files_among

            for field, value in files_among(inputs):
                self.log.warning(
                    "%s looks like a file (%s), but without the model's schema its media fields are "
                    "unknown: it is sent as written, which RunComfy cannot fetch. Pass input_schema=... "
                    "to have it read and sent inline",
                    field,
                    value,
                )
            return inputs
        from airflow_provider_runcomfy.media_sources import inline_private_files

        return inline_private_files(self._schema, inputs, conn_id=self.source_conn_id)

    def _check_inline_files(self, payload: dict[str, Any]) -> None:
        """Check every inline file like a fetched one, and the body against RunComfy's 64 MiB (no request)."""
        from airflow_provider_runcomfy.media_sources import check_inline_media, check_request_size

        found = check_inline_media(self._schema, payload) if self._schema is not None else []
        size = check_request_size(payload)
        for field, inline in found:
            self.log.info("%s: sending %s inline", field, inline.describe())
        if found:
            self.log.info("The request body is %s bytes", f"{size:,}")

    # -- ResumableJobMixin -------------------------------------------------------------------------

    def submit_job(self, context: Context) -> str:
        """Enforce the budget, probe the input images, submit (the paid step), push ``request_id`` at once."""
        from airflow_provider_runcomfy.cost import check_budget

        if self._payload is None or self._estimate is None:
            self._prepare(context)
        payload, estimate = self._payload, self._estimate
        assert payload is not None
        assert estimate is not None
        check_budget(estimate, self.max_cost_usd, model=self.model_id)
        if self.validate_images:
            self._probe_images(payload)
        request_id = self.hook.submit(self.model_id, payload)
        self._remember_for_retries(context, request_id)
        self._track(context, request_id)
        self.log.info("Submitted RunComfy request %s to model %s", request_id, self.model_id)
        self._end_time = time.time() + float(self.timeout)
        return request_id

    def _remember_for_retries(self, context: Context, request_id: str) -> None:
        """
        Save the paid job's id in ``task_state_store`` first, before anything else can fail or be killed.

        The mixin saves it as well, but only once ``submit_job`` has returned, after the XCom push (a
        round trip to Airflow's API). The soak killed a worker in that gap: the retry found no id and
        paid for the job again. Saving first leaves only the POST's own answer in the gap, which no
        client can close without an idempotency key.
        """
        store = context.get("task_state_store")
        if store is None or not self.wait_for_completion or not getattr(self, "durable", True):
            return
        try:
            store.set(self.external_id_key, request_id)
        except Exception:
            # The 2,000-job soak saw Airflow run a superseded try (its task instance reset by the
            # scheduler meanwhile): the POST went out, saving the id answered 404 "Task instance not
            # found", and the next try paid again while this job ran for no one. It was queued a moment
            # ago, so a cancel normally takes it back; best effort, the original error is reported.
            self.log.error(
                "The id of RunComfy request %s could not be saved for retries; cancelling it so that a "
                "retry does not leave it running for no one",
                request_id,
            )
            cancel_if_queued(self.hook, RequestWatch(request_id, self.log), self.log)
            raise

    def get_job_status(self, external_id: Any, context: Context) -> str:
        """
        The :class:`~airflow_provider_runcomfy.jobs.Phase` of a request saved by an earlier try.

        Read with the same table as every wait (:func:`~airflow_provider_runcomfy.jobs.settled_phase`):
        a final word on the status endpoint sends it to the result endpoint, which says how the job
        ended (``succeeded`` or ``completed`` are a success, returned without paying again). Anything
        not explicitly over, an unknown word included, is ``in_flight``: the retry reconnects and its
        wait settles it; so is a request that cannot be checked now (an outage outlasting the hook's
        retries), rather than failing this try too. A request RunComfy no longer knows is ``expired``.
        Only ``failed``, ``cancelled`` and ``expired`` make the retry submit anew.
        """
        request_id = str(external_id)
        result_word = None
        try:
            status_word = self.hook.get_status(request_id).get("status")
            if phase_of(status_word, Endpoint.STATUS).is_terminal:
                result_word = self.hook.get_result(request_id).get("status")
        except RunComfyNotFoundError:
            phase = Phase.EXPIRED
        except WAIT_FATAL_ERRORS:
            raise
        except RunComfyError as err:
            # An outage (503s, timeouts) must not cost this try, let alone lead to a second payment:
            # wait for the job instead; the wait rides out failed polls and learns how it ended.
            self.log.warning(
                "Could not check RunComfy request %s from an earlier try (%s); waiting for it instead of "
                "submitting again",
                request_id,
                err,
            )
            phase = Phase.IN_FLIGHT
        else:
            phase = settled_phase(status_word, result_word)
        self.log.info("RunComfy request %s from an earlier try is %s", request_id, phase.value)
        return phase.value

    def is_job_active(self, status: str) -> bool:
        """In flight (or not known to be over): reconnect instead of paying again."""
        parsed = parse_phase(status)
        return parsed is not None and parsed.is_active

    def is_job_succeeded(self, status: str) -> bool:
        """Succeeded: return its outputs without submitting."""
        parsed = parse_phase(status)
        return parsed is not None and parsed.is_success

    # The mixin returns this method's value when it reconnects to a running job, so it returns the URLs.
    def poll_until_complete(self, external_id: Any, context: Context) -> list[str]:  # type: ignore[override]
        """Wait for the request: defer to the trigger, or poll in the worker; return the output URLs."""
        request_id = str(external_id)
        if self.request_id != request_id:  # a reconnect: the XCom of the earlier try was cleared
            self._track(context, request_id)
            self._end_time = time.time() + float(self.timeout)
        if self.deferrable:
            # The job may be done already (a quick model, a reconnect): then no deferral at all.
            watch = RequestWatch(request_id, self.log, progress=self._progress())
            outcome = self._outcome_if_finished(watch)
            if outcome is not None:
                return self._finish(context, outcome)
            self.defer(
                trigger=self._trigger(request_id, watch),
                method_name="execute_complete",
                timeout=timedelta(seconds=float(self.timeout)) + DEFERRAL_GRACE,
            )
        outcome = wait_in_worker(
            self.hook,
            request_id,
            poll_interval=float(self.poll_interval),
            end_time=self._end_time,
            cancel_on_timeout=True,
            log=self.log,
            progress_interval=float(self.progress_interval),
            started_at=self._progress().started_at,
        )
        return self._finish(context, outcome)

    def get_job_result(self, external_id: Any, context: Context) -> list[str]:
        """The output URLs: from the wait that just ended, or, for an earlier try's success, from RunComfy."""
        if self._urls is not None:
            return self._urls
        request_id = str(external_id)
        self._track(context, request_id)
        try:
            outcome = RequestWatch(request_id, self.log).outcome(self.hook.get_result(request_id))
        except WAIT_FATAL_ERRORS:
            raise
        except RunComfyError as err:
            # An outage must not fail a try whose paid job already succeeded (with every try failed
            # so, a lost job: found by the soak): wait for that job; the wait rides out failed polls.
            self.log.warning(
                "Could not read the result of RunComfy request %s from an earlier try (%s); waiting for it",
                request_id,
                err,
            )
            self._end_time = time.time() + float(self.timeout)
            return self.poll_until_complete(request_id, context)
        return self._finish(context, outcome)

    # -- deferral ----------------------------------------------------------------------------------

    def _outcome_if_finished(self, watch: RequestWatch) -> dict[str, Any] | None:
        """One status check before deferring: the outcome if the job is over, else ``None``."""
        return look_before_deferring(self.hook, watch, self.log)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> list[str]:
        """Resume after the trigger fired: return the URLs on success, raise on anything else."""
        self._ran = True
        if isinstance(event, dict) and event.get("request_id"):
            self.request_id = str(event["request_id"])  # a fresh object: what it resumed for
        return self._finish(context, event)

    def _trigger(self, request_id: str, watch: RequestWatch) -> RunComfyRequestTrigger:
        from airflow_provider_runcomfy.triggers.runcomfy import RunComfyRequestTrigger

        return RunComfyRequestTrigger(
            request_id=request_id,
            runcomfy_conn_id=self.runcomfy_conn_id,
            poll_interval=float(self.poll_interval),
            end_time=self._end_time,
            cancel_on_timeout=True,
            cancel_on_kill=self.cancel_on_kill,
            watch_memory=watch.memory(),
            progress_interval=float(self.progress_interval),
        )

    def _progress(self) -> WaitProgress:
        """The progress of this try's wait: counted from the submit (or reconnect) that set the deadline."""
        end_time = self._end_time
        started_at = time.time() if end_time is None else end_time - float(self.timeout)
        return WaitProgress(started_at=started_at, end_time=end_time, interval=float(self.progress_interval))

    # -- helpers -----------------------------------------------------------------------------------

    def _track(self, context: Context, request_id: str) -> None:
        self.request_id = request_id
        context["ti"].xcom_push(key="request_id", value=request_id)

    def _finish(self, context: Context, event: Any) -> list[str]:
        self._urls = finish_wait(self, context, event, model_id=self.model_id)
        self._warn_if_over_budget(event)
        return self._urls

    def _warn_if_over_budget(self, event: dict[str, Any]) -> None:
        """
        A reported cost over ``max_cost_usd`` is a warning naming both.

        ``max_cost_usd`` guards the estimate before the submit; with a base price that is a lower
        bound, so the bill can still be higher: say so where the user will look.
        """
        limit = self.max_cost_usd
        cost = (event.get("result") or {}).get("cost_usd")
        if limit is None or isinstance(cost, bool) or not isinstance(cost, int | float) or cost <= limit:
            return
        estimate = self._estimate.describe() if self._estimate is not None else "not made in this try"
        self.log.warning(
            "RunComfy request %s cost $%s, over max_cost_usd $%s: the limit guards the estimate before "
            "the submit (%s), and the job was billed more",
            event.get("request_id"),
            f"{cost:g}",
            f"{float(limit):g}",
            estimate,
        )

    def _probe_images(self, payload: dict[str, Any]) -> None:
        if self._schema is None:
            return
        from airflow_provider_runcomfy.media_sources import probe_file_sizes

        groups = self._schema.image_groups(payload)
        settings = self.hook.settings
        if groups:
            from airflow_provider_runcomfy.images import probe_images

            for rules, images in groups:  # one group per image field: each has its own limits
                probe_images(images, rules, timeouts=settings.timeouts, retry=settings.retry)
        # Video and audio: their file_size_mb rules, from the announced length (no decoding).
        probe_file_sizes(self._schema, payload, timeouts=settings.timeouts, retry=settings.retry)

    @property
    def awaiting_result(self) -> bool:
        """
        This task object ran, or submitted (or reconnected to) a job, and holds no result.

        True while it defers or waits, when it failed (before the submit, or with its job), and
        after ``wait_for_completion=False``: then no ``result`` XCom exists, and the output link and
        the lineage read this instead of asking XCom, whose miss Airflow logs at error level after
        the task's own exception. A task object that never ran (the UI's) says ``False``.
        """
        return (self._ran or self.request_id is not None) and self._urls is None

    @property
    def cost_estimate(self) -> dict[str, Any] | None:
        """The estimate this object made (its ``cost_estimate`` XCom), or ``None`` when it made none."""
        return None if self._estimate is None else self._estimate.to_xcom()

    def on_kill(self) -> None:
        """Cancel the job when the task is killed while it waits in the worker (``cancel_on_kill``)."""
        if self.cancel_on_kill and self.request_id:
            cancel_if_queued(self.hook, RequestWatch(self.request_id, self.log), self.log)


class RunComfyImageEditOperator(RunComfyModelOperator):
    """
    Edit images with Dreamina 4.0 (``bytedance/dreamina-4-0/edit``), up to 4K.

    :param image_urls: 1 to 10 JPEG/PNG images (6 or fewer recommended): public URLs, ``data:`` URIs,
        or files (absolute paths, ``file://``, ``s3://``... with ``source_conn_id``). (templated)
    :param prompt: what to do, at most 800 characters. (templated)
    :param size: the output size, ``"2048x2048"`` or the full label ``"2048x2048(1:1)"``; sent as
        the documented ``width×height`` label. (templated)
    :param scale: 0 to 1, how strongly the prompt weighs against the images. (templated)
    :param force_single: force a single output image. (templated)
    :param runcomfy_conn_id: the Airflow connection of type ``runcomfy``.
    :param wait_for_completion: wait for the job and return its outputs; ``False`` returns the
        ``request_id`` at once.
    :param deferrable: wait in the triggerer, holding no worker slot (default: ``[operators]
        default_deferrable``).
    :param poll_interval: seconds between status polls.
    :param timeout: the longest wait for the job in seconds, counted from submission; a job still
        queued then is cancelled.
    :param cancel_on_kill: cancel the job when the task is killed (a running job cannot be cancelled).
    :param validate_images: probe the input images with Pillow before paying.
    :param source_conn_id: the Airflow connection of the object store that ``s3://``, ``gs://``...
        inputs are read from (local paths and ``file://`` need none).
    :param strict_schema: refuse to submit when no input schema of the model can be found, or when
        it states a rule the provider cannot apply.
    :param input_schema: the model's input schema (a dict or a JSON file path) instead of the catalog's.
    :param max_cost_usd: refuse to submit a job whose estimated cost is higher, or cannot be estimated.
    :param progress_interval: seconds between two progress lines while the job does not change (300).

    Options left ``None`` are not sent, so RunComfy's defaults apply. What each step does: see
    :class:`RunComfyModelOperator`; ``BaseOperator``'s own parameters (``task_id``, ``retries``...)
    pass through ``**kwargs``.
    """

    template_fields: Sequence[str] = ("image_urls", "prompt", "size", "scale", "force_single")

    def __init__(
        self,
        *,
        image_urls: Any,
        prompt: str,
        size: str | None = None,
        scale: float | None = None,
        force_single: bool | None = None,
        runcomfy_conn_id: str = "runcomfy_default",
        wait_for_completion: bool = True,
        deferrable: bool = DEFAULT_DEFERRABLE,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        cancel_on_kill: bool = True,
        validate_images: bool = True,
        source_conn_id: str | None = None,
        strict_schema: bool = False,
        input_schema: dict[str, Any] | str | os.PathLike[str] | None = None,
        max_cost_usd: float | None = None,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            model_id=EDIT_MODEL_ID,
            runcomfy_conn_id=runcomfy_conn_id,
            wait_for_completion=wait_for_completion,
            deferrable=deferrable,
            poll_interval=poll_interval,
            timeout=timeout,
            cancel_on_kill=cancel_on_kill,
            validate_images=validate_images,
            source_conn_id=source_conn_id,
            strict_schema=strict_schema,
            input_schema=input_schema,
            max_cost_usd=max_cost_usd,
            progress_interval=progress_interval,
            **kwargs,
        )
        self.image_urls = image_urls
        self.prompt = prompt
        self.size = size
        self.scale = scale
        self.force_single = force_single

    def build_inputs(self) -> dict[str, Any]:
        """Map the operator's fields to the model's documented inputs, leaving unset options out."""
        inputs: dict[str, Any] = {
            "image_urls": _url_list(self.image_urls, "image_urls"),
            "prompt": self.prompt,
        }
        if self.size is not None:
            inputs[SIZE_FIELD] = normalize_size(self.size)
        if self.scale is not None:
            inputs["scale"] = self.scale
        if self.force_single is not None:
            inputs["force_single"] = self.force_single
        return inputs


class RunComfyImageToVideoOperator(RunComfyModelOperator):
    """
    Animate one image with Dreamina 3.0 Pro (``bytedance/dreamina-3-0/pro/image-to-video``).

    :param image_url: one JPEG/PNG image, each side over 320 px: a public URL, a ``data:`` URI or a
        file (absolute path, ``file://``, ``s3://``... with ``source_conn_id``). (templated)
    :param prompt: what should happen, at most 800 characters. (templated)
    :param seed: the random seed (-1 or ``None`` for a random one). (templated)
    :param frames: 121 (about 5 s) or 241 (about 10 s). (templated)
    :param runcomfy_conn_id: the Airflow connection of type ``runcomfy``.
    :param wait_for_completion: wait for the job and return its outputs; ``False`` returns the
        ``request_id`` at once.
    :param deferrable: wait in the triggerer, holding no worker slot (default: ``[operators]
        default_deferrable``).
    :param poll_interval: seconds between status polls.
    :param timeout: the longest wait for the job in seconds, counted from submission; a job still
        queued then is cancelled.
    :param cancel_on_kill: cancel the job when the task is killed (a running job cannot be cancelled).
    :param validate_images: probe the input images with Pillow before paying.
    :param source_conn_id: the Airflow connection of the object store that ``s3://``, ``gs://``...
        inputs are read from (local paths and ``file://`` need none).
    :param strict_schema: refuse to submit when no input schema of the model can be found, or when
        it states a rule the provider cannot apply.
    :param input_schema: the model's input schema (a dict or a JSON file path) instead of the catalog's.
    :param max_cost_usd: refuse to submit a job whose estimated cost is higher, or cannot be estimated.
    :param progress_interval: seconds between two progress lines while the job does not change (300).

    Works with ``.partial(...).expand(image_url=edit.output)`` to animate every image an edit made.
    What each step does: see :class:`RunComfyModelOperator`; ``BaseOperator``'s own parameters
    (``task_id``, ``retries``...) pass through ``**kwargs``.
    """

    template_fields: Sequence[str] = ("image_url", "prompt", "seed", "frames")

    def __init__(
        self,
        *,
        image_url: str,
        prompt: str,
        seed: int | None = None,
        frames: int | None = None,
        runcomfy_conn_id: str = "runcomfy_default",
        wait_for_completion: bool = True,
        deferrable: bool = DEFAULT_DEFERRABLE,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        cancel_on_kill: bool = True,
        validate_images: bool = True,
        source_conn_id: str | None = None,
        strict_schema: bool = False,
        input_schema: dict[str, Any] | str | os.PathLike[str] | None = None,
        max_cost_usd: float | None = None,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            model_id=VIDEO_MODEL_ID,
            runcomfy_conn_id=runcomfy_conn_id,
            wait_for_completion=wait_for_completion,
            deferrable=deferrable,
            poll_interval=poll_interval,
            timeout=timeout,
            cancel_on_kill=cancel_on_kill,
            validate_images=validate_images,
            source_conn_id=source_conn_id,
            strict_schema=strict_schema,
            input_schema=input_schema,
            max_cost_usd=max_cost_usd,
            progress_interval=progress_interval,
            **kwargs,
        )
        self.image_url = image_url
        self.prompt = prompt
        self.seed = seed
        self.frames = frames

    def build_inputs(self) -> dict[str, Any]:
        """Send ``image_urls=[image_url]`` as the model documents, leaving unset options out."""
        if not isinstance(self.image_url, str):
            raise RunComfyInputError(
                "image_url", f"must be one URL string, got {type(self.image_url).__name__}"
            )
        inputs: dict[str, Any] = {"image_urls": [self.image_url], "prompt": self.prompt}
        if self.seed is not None:
            inputs["seed"] = self.seed
        if self.frames is not None:
            inputs["frames"] = self.frames
        return inputs


def _url_list(value: Any, field: str) -> list[Any]:
    """Accept a list, a tuple or an XCom sequence of URLs; a lone string is a mistake worth naming."""
    if isinstance(value, str):
        raise RunComfyInputError(field, "must be a list of URLs, got a single string (wrap it in a list)")
    try:
        return list(value)
    except TypeError:
        raise RunComfyInputError(field, f"must be a list of URLs, got {type(value).__name__}") from None


class RunComfyDownloadOperator(DownloadLineageMixin, BaseOperator):
    """
    Copy RunComfy outputs into your own storage before their links expire.

    RunComfy's output URLs are CDN links whose lifetime is not documented: a pipeline that keeps its
    results copies them in the same run. Each file is streamed (constant memory) to a temporary name
    and moved into place only when complete and checked (length, and images opened with Pillow), so
    a failure never leaves a partial file. File names derive from the URL, so a retry overwrites its
    own files and runs never mix. The token is never sent to the CDN.

    ``return_value`` is the list of stored locations, in the order of ``urls``; ``stored_url`` the URL
    form of the first one that has one, which the ``Stored output`` link opens (see
    :mod:`airflow_provider_runcomfy.links` for which locations have one).

    :param urls: one URL, a list, or the output of a mapped task (a list of lists, flattened in
        order), e.g. ``edit.output`` or ``animate.output``. (templated)
    :param destination: a local directory, or any location Airflow's object storage understands
        (``file://``, ``s3://``, ``gs://``...). (templated)
    :param destination_conn_id: the Airflow connection of the object store, when it needs one.
    :param verify_images: open image outputs with Pillow before keeping them.
    :param runcomfy_conn_id: a ``runcomfy`` connection whose extra sets the retry policy and timeouts
        (the same knobs as the hook); without one, the hook's defaults apply.
    :param max_bytes: the largest file kept, in bytes (``None``: images capped at 256 MiB, videos
        not capped); a larger or endless one fails the task and leaves nothing behind.

    With ``outlets=[Asset("...")]`` (a ``Dataset`` on Airflow 2.11) each successful copy records an
    asset event whose ``extra`` is ``{"stored", "request_ids", "model_ids"}``, so DAGs scheduled on
    the asset run when new media lands (see :mod:`airflow_provider_runcomfy.assets`).
    """

    template_fields: Sequence[str] = ("urls", "destination")
    ui_color = "#eef7ee"
    operator_extra_links = (RunComfyStoredOutputLink(),)

    def __init__(
        self,
        *,
        urls: Any,
        destination: Any,
        destination_conn_id: str | None = None,
        verify_images: bool = True,
        runcomfy_conn_id: str | None = "runcomfy_default",
        max_bytes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_bytes = max_bytes
        self.urls = urls
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.verify_images = verify_images
        self.runcomfy_conn_id = runcomfy_conn_id
        #: ``(urls, stored locations)`` of the copy this task made, once it has made it.
        self.copied: tuple[list[str], list[str]] | None = None
        self._ran = False

    @property
    def awaiting_result(self) -> bool:
        """This task object ran and stored nothing (yet): no ``stored_url`` XCom to ask for."""
        return self._ran and self.copied is None

    def execute(self, context: Context) -> list[str]:
        """Copy every URL and return where each landed."""
        self._ran = True
        from airflow_provider_runcomfy.downloads import copy_outputs, flatten_urls
        from airflow_provider_runcomfy.retry import RetryPolicy
        from airflow_provider_runcomfy.transport import Timeouts

        urls = flatten_urls(self.urls)
        retry, timeouts = RetryPolicy(), Timeouts()
        if self.runcomfy_conn_id:
            try:
                conn = BaseHook.get_connection(self.runcomfy_conn_id)
            except Exception:  # no such connection: the defaults are the hook's defaults
                self.log.debug("No connection %r; using the default retry policy", self.runcomfy_conn_id)
            else:
                retry, timeouts = (
                    RetryPolicy.from_extra(conn.extra_dejson),
                    Timeouts.from_extra(conn.extra_dejson),
                )
        self.log.info("Copying %d RunComfy output(s) to %s", len(urls), self.destination)
        stored = copy_outputs(
            urls,
            self.destination,
            retry=retry,
            timeouts=timeouts,
            verify_images=self.verify_images,
            conn_id=self.destination_conn_id,
            max_bytes=self.max_bytes,
        )
        self.record_stored(context, urls, stored)
        return stored

    def record_stored(self, context: Context, urls: list[str], stored: list[str]) -> None:
        """
        Tell Airflow what was stored: the ``Stored output`` link and the events of Asset outlets.

        Kept for lineage too (``get_openlineage_facets_on_complete`` runs in this same process).
        """
        self.copied = (urls, stored)
        context["ti"].xcom_push(key=STORED_URL_XCOM_KEY, value=stored_link(stored, self.destination_conn_id))
        from airflow_provider_runcomfy.assets import announce_stored

        announce_stored(self, context, urls, stored)
