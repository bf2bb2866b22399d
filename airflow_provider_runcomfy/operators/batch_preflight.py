"""
The pre-flight of a batch: every check a :class:`RunComfyBatchOperator` makes before its first paid POST.

A batch pays for nothing until every item passed: one catalog read (schema and price), the schema
check of every item (with its private files read and sent inline, as for a single job), the header
probes of every input image (``probe_concurrency`` at once, so 5,000 probes are not 5,000 round trips
in a row), and the batch's cost estimate (the sum, with its basis) against ``max_cost_usd``. Bad items
raise one :class:`~airflow_provider_runcomfy.batch.RunComfyBatchInputError` that lists them all, or are
recorded as ``skipped`` with ``skip_invalid=True``.

It lives apart from the operator because it is one job with its own state (the items read once, the
schema found once) that ends before the window starts; the operator keeps the window, the waits and
the retries. :class:`BatchPreflight` is made when the task runs (the templated fields are rendered
then) and also rebuilds an item's payload after a deferral, since payloads live only in memory.

Light at import (no httpx, no Pillow, no hook): the hook, the image probes and the media readers are
loaded when a check runs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_runcomfy.batch import ItemProblem, ItemStatus, RunComfyBatchInputError
from airflow_provider_runcomfy.cost import COST_ESTIMATE_XCOM_KEY, CostEstimate, check_budget, estimate_cost
from airflow_provider_runcomfy.exceptions import RunComfyInputError
from airflow_provider_runcomfy.operators.schema_lookup import SchemaLookupMixin
from airflow_provider_runcomfy.validation import check_model_id, validate_inputs

if TYPE_CHECKING:
    import os
    from collections.abc import Callable

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_runcomfy.batch import Ledger
    from airflow_provider_runcomfy.catalog import ModelInfo
    from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook
    from airflow_provider_runcomfy.schema import ModelSchema


def check_settings(operator: Any) -> None:
    """Refuse a batch operator's numeric setting that makes no sense, by name: ``timeout: must be ...``."""
    for name in ("poll_interval", "timeout", "progress_interval"):
        value = getattr(operator, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise RunComfyInputError(name, f"must be a positive number of seconds, got {value!r}")
    for name, least in (("max_in_flight", 1), ("allow_failures", 0), ("probe_concurrency", 1)):
        value = getattr(operator, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise RunComfyInputError(name, f"must be a whole number >= {least}, got {value!r}")
    limit = operator.max_cost_usd
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int | float) or not limit >= 0
    ):
        raise RunComfyInputError("max_cost_usd", f"must be a number of US dollars >= 0, got {limit!r}")


@dataclass(eq=False, kw_only=True)
class BatchPreflight(SchemaLookupMixin):
    """
    The checks of one batch's items before any of them is paid for, and the payloads they give.

    The schema lookup is the single operators' (:class:`SchemaLookupMixin`), done once for all items.

    :param model_id: the rendered model id.
    :param input_schema: the operator's ``input_schema`` (a dict, a JSON file path, or ``None``).
    :param strict_schema: refuse when no schema is found, or when it states a rule that cannot be applied.
    :param validate_images: probe every input image before paying.
    :param skip_invalid: skip refused items (recorded as ``skipped``) instead of refusing the batch.
    :param source_conn_id: the object store connection private media inputs are read from.
    :param probe_concurrency: how many items' images are probed at once.
    :param max_cost_usd: the whole batch's budget, or ``None``.
    :param get_hook: gives the operator's hook (called only when a check needs RunComfy).
    :param log: the task's logger.
    """

    model_id: str
    input_schema: dict[str, Any] | str | os.PathLike[str] | None
    strict_schema: bool
    validate_images: bool
    skip_invalid: bool
    source_conn_id: str | None
    probe_concurrency: int
    max_cost_usd: float | None
    get_hook: Callable[[], RunComfyHook]
    log: Any
    _items: list[Any] | None = field(default=None, init=False)
    _schema_found: bool = field(default=False, init=False)
    _schema: ModelSchema | None = field(default=None, init=False)

    @property
    def hook(self) -> RunComfyHook:
        """The operator's hook (the schema lookup reads the catalog with it)."""
        return self.get_hook()

    def read_inputs(self, value: Any) -> list[Any]:
        """The rendered ``inputs`` as a list (an XCom sequence or a tuple works too); items unchecked."""
        if self._items is None:
            if isinstance(value, str | bytes | dict) or value is None:
                raise RunComfyInputError(
                    "inputs", f"must be a list of input dicts, one per item, got {type(value).__name__}"
                )
            try:
                self._items = list(value)
            except TypeError:
                raise RunComfyInputError(
                    "inputs", f"must be a list of input dicts, one per item, got {type(value).__name__}"
                ) from None
        return self._items

    def run(self, context: Context, items: list[Any], ledger: Ledger) -> dict[int, dict[str, Any]]:
        """
        Check every item before any POST: schema, images, cost; return the payloads of the items to run.

        Bad items raise one error listing them all, or become ``skipped`` with ``skip_invalid``. The
        estimate is pushed (XCom ``cost_estimate``) before the budget is checked, so a refused batch
        shows what it would have cost.
        """
        check_model_id(self.model_id)
        self.log.info("Checking %d item(s) for model %s before submitting any", len(items), self.model_id)
        info, why = self._catalog_entry()
        self._find_schema(info, why)
        # strict_schema=True refuses a schema rule the provider cannot apply, as for a single job.
        self._refuse_unapplied_rules()
        payloads: dict[int, dict[str, Any]] = {}
        problems: list[ItemProblem] = []
        for index, inputs in enumerate(items):
            try:
                payloads[index] = self.payload(index, inputs, info, why)
            except RunComfyInputError as err:
                problems.append(ItemProblem.of(index, err))
        if self.validate_images and payloads:
            problems += self._probe_images(payloads)
        if problems:
            problems.sort(key=lambda problem: problem.index)
            if not self.skip_invalid:
                raise RunComfyBatchInputError(problems, len(items))
            for problem in problems:
                item = ledger.items[problem.index]
                item.status = ItemStatus.SKIPPED
                item.error = f"{problem.field}: {problem.rule}"
                payloads.pop(problem.index, None)
            self.log.warning(
                "Skipping %d of %d item(s) the pre-flight refused (skip_invalid=True): %s",
                len({p.index for p in problems}),
                len(items),
                "; ".join(problem.describe() for problem in problems[:10]),
            )
        estimate = self._estimate(info, why, payloads)
        ledger.estimated_cost_usd = estimate.usd
        self.log.info("Estimated cost of the batch's %d job(s): %s", len(payloads), estimate.describe())
        context["ti"].xcom_push(key=COST_ESTIMATE_XCOM_KEY, value=estimate.to_xcom())
        check_budget(estimate, self.max_cost_usd, model=self.model_id, jobs=len(payloads))
        return payloads

    def payload_after_resume(self, items: list[Any], index: int) -> dict[str, Any]:
        """An item's payload after a deferral: the inputs render the same, so they check the same."""
        if not self._schema_found:
            info, why = self._catalog_entry()
            self._find_schema(info, why)
        return self.payload(index, items[index])

    def _find_schema(self, info: ModelInfo | None, why: str | None) -> ModelSchema | None:
        """The single operators' lookup (:class:`SchemaLookupMixin`), done once for every item."""
        if not self._schema_found:
            self._schema = super()._find_schema(info, why)
            self._schema_found = True
        return self._schema

    def payload(
        self, index: int, inputs: Any, info: ModelInfo | None = None, why: str | None = None
    ) -> dict[str, Any]:
        """The checked inputs of one item, as they will be sent."""
        if not isinstance(inputs, dict):
            raise RunComfyInputError(
                "inputs", f"must be a dict of the model's inputs, got {type(inputs).__name__}"
            )
        schema = self._find_schema(info, why)
        if schema is None:
            return validate_inputs(self.model_id, inputs, None)
        from airflow_provider_runcomfy.media_sources import (
            check_inline_media,
            check_request_size,
            inline_private_files,
        )

        # Private files (local, file://, s3://... with source_conn_id) are read and sent inline, and
        # every inline file is checked like a fetched one, as for a single job. The payload lives only
        # in memory: after a deferral it is rebuilt from the inputs (payload_after_resume).
        inlined = inline_private_files(schema, inputs, conn_id=self.source_conn_id)
        payload = validate_inputs(self.model_id, inlined, schema)
        check_inline_media(schema, payload)
        check_request_size(payload)
        return payload

    def _probe_images(self, payloads: dict[int, dict[str, Any]]) -> list[ItemProblem]:
        """Probe every input image of every item, ``probe_concurrency`` at once; the items that fail."""
        schema = self._schema
        if schema is None:
            return []
        work = [
            (index, groups) for index, payload in payloads.items() if (groups := schema.image_groups(payload))
        ]
        if not work:
            return []
        from airflow_provider_runcomfy.images import aprobe_images

        settings = self.hook.settings
        gate_size = int(self.probe_concurrency)

        async def probe_all() -> list[ItemProblem]:
            gate = asyncio.Semaphore(gate_size)

            async def probe_item(index: int, groups: list[Any]) -> ItemProblem | None:
                async with gate:
                    try:
                        for rules, images in groups:  # one group per image field: each has its own limits
                            await aprobe_images(
                                images,
                                rules,
                                timeouts=settings.timeouts,
                                retry=settings.retry,
                                max_concurrency=4,
                            )
                    except RunComfyInputError as err:
                        return ItemProblem.of(index, err)
                return None

            found = await asyncio.gather(*(probe_item(index, groups) for index, groups in work))
            return [problem for problem in found if problem is not None]

        count = sum(len(images) for _, groups in work for _, images in groups)
        self.log.info("Probing %d input image(s) of %d item(s), %d at a time", count, len(work), gate_size)
        return asyncio.run(probe_all())

    def _estimate(
        self, info: ModelInfo | None, why: str | None, payloads: dict[int, dict[str, Any]]
    ) -> CostEstimate:
        """The batch's cost estimate: the sum of its items', with the basis in words."""
        schema = self._schema.schema if self._schema is not None else None
        estimates = [
            estimate_cost(
                info,
                payload,
                input_schema=schema,
                why_no_price=why or "the catalog gives no price for this model",
            )
            for payload in payloads.values()
        ]
        unit = estimates[0].price_unit if estimates else (info.price_unit if info else None)
        if not estimates:
            return CostEstimate(0.0, unit, "no job to run")
        unknown = next((e for e in estimates if not e.is_known), None)
        if unknown is not None:
            return CostEstimate(None, unit, unknown.basis)
        total = round(sum(e.usd or 0.0 for e in estimates), 6)
        bases = {e.basis for e in estimates}
        basis = (
            f"{len(estimates)} jobs x {estimates[0].basis}"
            if len(bases) == 1
            else f"the sum of {len(estimates)} jobs' estimates, e.g. {estimates[0].basis}"
        )
        return CostEstimate(total, unit, basis)
