"""
How a model operator finds the schema its inputs are checked against, before anything is paid.

Shared by :class:`~airflow_provider_runcomfy.operators.model.RunComfyModelOperator` (and its
Dreamina subclasses) and the batch's pre-flight
(:class:`~airflow_provider_runcomfy.operators.batch_preflight.BatchPreflight`), so a batch item is
checked exactly as a single job: the same catalog read, the same order of sources
(the user's ``input_schema``, the catalog's, the one shipped for a documented model), the same
``strict_schema`` rules.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from airflow_provider_runcomfy.exceptions import (
    RunComfyAuthError,
    RunComfyError,
    RunComfyNotFoundError,
    RunComfySchemaError,
    RunComfySchemaUnavailableError,
    RunComfyUnknownModelError,
)

if TYPE_CHECKING:
    from airflow_provider_runcomfy.catalog import ModelInfo
    from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook
    from airflow_provider_runcomfy.schema import ModelSchema


def load_input_schema(value: Any) -> dict[str, Any]:
    """
    Read ``input_schema``: a dict, or the path of a JSON file holding the schema.

    A file may hold a whole catalog answer (or a schema file shipped with the provider): its
    ``input_schema`` is used then, so a saved ``GET /v1/models/{model_id}`` works as it is.

    :raises RunComfySchemaError: when the file cannot be read or is not a JSON object.
    """
    if isinstance(value, str | os.PathLike):
        try:
            with open(value, encoding="utf-8") as handle:
                value = json.load(handle)
        except (OSError, ValueError) as err:
            raise RunComfySchemaError(f"input_schema: cannot read {os.fspath(value)!r}: {err}") from None
    if isinstance(value, dict) and "properties" not in value and isinstance(value.get("input_schema"), dict):
        value = value["input_schema"]
    if not isinstance(value, dict):
        raise RunComfySchemaError(
            f"input_schema must be a dict or a JSON file path, got {type(value).__name__}"
        )
    return value


class SchemaLookupMixin:
    """
    The schema lookup of an operator that submits to one model.

    The operator (or the batch's pre-flight) provides ``model_id``, ``input_schema``, ``strict_schema``,
    ``hook`` and ``log``;
    the schema found is kept in ``_schema``.
    """

    model_id: str
    input_schema: Any
    strict_schema: bool
    _schema: ModelSchema | None

    if TYPE_CHECKING:
        log: Any  # the operator's logger (Airflow's LoggingMixin)

        @property
        def hook(self) -> RunComfyHook: ...

    def _catalog_entry(self) -> tuple[ModelInfo | None, str | None]:
        """The model's catalog entry, or ``None`` and why (a failure here never fails the task)."""
        try:
            return self.hook.get_model(self.model_id), None
        except RunComfyAuthError:
            raise  # the submit would be refused too: say so now
        except (RunComfyUnknownModelError, RunComfyNotFoundError):
            return None, "RunComfy's catalog does not list this model"
        except RunComfyError as err:
            self.log.warning("RunComfy's model catalog could not be read: %s", err)
            return None, f"RunComfy's catalog could not be read ({type(err).__name__})"

    def _find_schema(self, info: ModelInfo | None, why: str | None) -> ModelSchema | None:
        """The schema to check the inputs against: the user's, the catalog's, or the shipped one."""
        from airflow_provider_runcomfy.schema import bundled_spec, compile_schema

        label = info.display_name if info is not None else None
        if self.input_schema is not None:
            return compile_schema(
                self.model_id, load_input_schema(self.input_schema), label=label, source="input_schema"
            )
        if info is not None and info.input_schema is not None:
            try:
                schema = compile_schema(self.model_id, info.input_schema, label=label, source="catalog")
            except RunComfySchemaError as err:
                if bundled_spec(self.model_id.strip("/")) is None:
                    raise  # never "sent unchecked" because the catalog served a broken schema
                self.log.warning("The catalog's input schema of %s cannot be used: %s", self.model_id, err)
                why = "its catalog schema cannot be used"
            else:
                self.log.info("Checking the inputs against the catalog's schema of %s", schema.label)
                return schema
        elif info is not None:
            why = "the catalog gives no input schema for it"
        bundled = bundled_spec(self.model_id.strip("/"))
        if bundled is not None:
            self.log.info(
                "Checking the inputs against the schema shipped with the provider for %s (%s)",
                bundled.label,
                why,
            )
            return bundled
        if self.strict_schema:
            raise RunComfySchemaUnavailableError(
                f"Not submitted: strict_schema=True and no input schema of model {self.model_id!r} "
                f"could be found ({why}). Pass input_schema=... (e.g. copied from the model's page), "
                "or set strict_schema=False to send the inputs unchecked."
            )
        self.log.warning(
            "No input schema of model %s could be found (%s): its inputs are sent unchecked. Set "
            "strict_schema=True to refuse instead, or pass input_schema=...",
            self.model_id,
            why,
        )
        return None

    def _refuse_unapplied_rules(self) -> None:
        """With ``strict_schema=True``, a schema rule the provider cannot apply refuses the job."""
        schema = self._schema
        if schema is None or not schema.unapplied or not self.strict_schema:
            return
        raise RunComfySchemaError(
            f"Not submitted: strict_schema=True and the input schema of {schema.label} states rules the "
            f"provider cannot check: {'; '.join(schema.unapplied)}. Set strict_schema=False to submit "
            "with those rules unchecked (each is logged as a warning)."
        )
