"""
The generic model operator, :class:`RunComfyModelOperator`: run any RunComfy model as a task.

The life of one task, and why each step is where it is:

1. ``execute()`` finds the model's input schema and price (RunComfy's catalog, else the schema
   shipped for a documented model, or the user's ``input_schema``), checks the rendered inputs
   against the schema, estimates the cost (XCom ``cost_estimate``), refuses a job over
   ``max_cost_usd``, and probes the input images with Pillow, so a job that cannot succeed, or
   costs more than allowed, is never paid for (this module);
2. it submits the job and pushes the ``request_id`` to XCom at once, before anything can fail, and
   (Airflow 3.3+) saves it in the task instance's ``task_state_store``, so a retry reconnects to a job
   that is still running instead of paying for a second one (:mod:`.model_wait`);
3. it waits: in the triggerer (``deferrable=True``, no worker slot held) or in the worker
   (:mod:`.model_wait`, through :mod:`airflow_provider_runcomfy.waiting`);
4. on success it returns the list of output URLs (``return_value``, ready for ``.expand()``) and
   pushes the ``result`` summary (with ``cost_usd`` when RunComfy reports the cost); anything else
   raises a domain exception naming request and model.

The operators of the two documented models subclass it (:mod:`.dreamina`). This module is imported
while DAG files are parsed, so httpx, Pillow, jsonschema, the schema interpreter and the hook are
imported only when a task runs.
"""

from __future__ import annotations

import os  # noqa: TC003 - the signatures are evaluated at run time (inspect.signature, IDEs)
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_provider_runcomfy.exceptions import RunComfyInputError
from airflow_provider_runcomfy.jobs import DEFAULT_PROGRESS_INTERVAL
from airflow_provider_runcomfy.lineage import ModelLineageMixin
from airflow_provider_runcomfy.links import RunComfyOutputLink
from airflow_provider_runcomfy.operators.model_wait import ModelWaitMixin
from airflow_provider_runcomfy.operators.schema_lookup import SchemaLookupMixin
from airflow_provider_runcomfy.validation import check_model_id, validate_inputs

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_runcomfy.cost import CostEstimate
    from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook
    from airflow_provider_runcomfy.schema import ModelSchema

#: The defaults of the keyword parameters every model operator takes, named once so that the
#: model-specific operators, which spell these parameters out for IDEs and ``help()``, cannot drift.
DEFAULT_DEFERRABLE: bool = conf.getboolean("operators", "default_deferrable", fallback=False)
DEFAULT_POLL_INTERVAL: float = 5
DEFAULT_TIMEOUT: float = 3600


class RunComfyModelOperator(SchemaLookupMixin, ModelLineageMixin, ModelWaitMixin, BaseOperator):
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

    # -- the paid step (the rest of ResumableJobMixin: ModelWaitMixin) -----------------------------

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
        self._claim_before_paying(context)
        request_id = self.hook.submit(self.model_id, payload)
        self._remember_for_retries(context, request_id)
        self._track(context, request_id)
        self.log.info("Submitted RunComfy request %s to model %s", request_id, self.model_id)
        self._end_time = time.time() + float(self.timeout)
        return request_id

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
