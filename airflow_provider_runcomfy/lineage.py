"""
OpenLineage for RunComfy tasks: which media went in, which came out, and where the copies went.

* A model operator's run reads its **input media** (every URL among its inputs: the images an edit
  uses, the image a video starts from) and writes its **outputs** (the URLs RunComfy made). A run
  facet ``runcomfy`` names the model and the request, and the cost when the result carries one.
* A download run reads the **output URLs** and writes the **stored files**, each a dataset of its
  own storage.

Datasets are named as the OpenLineage naming spec says: ``file`` + absolute path for local files,
``s3://bucket`` / ``gs://bucket`` + key for object stores, ``https://host[:port]`` + path for web
URLs. Query strings and credentials are left out: signed CDN links carry their signature there, and
lineage goes to other systems.

Everything OpenLineage is imported inside the methods, through common-compat where it offers the
classes: the OpenLineage listener is the only caller, so without
``apache-airflow-providers-openlineage`` installed none of this is ever imported, and the provider
works the same.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_runcomfy.cost import COST_ESTIMATE_XCOM_KEY
from airflow_provider_runcomfy.links import RESULT_XCOM_KEY, is_web_url

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

#: The key of the run facet this provider adds to its model runs.
RUN_FACET_KEY = "runcomfy"


def dataset_name(location: str) -> tuple[str, str] | None:
    """
    ``(namespace, name)`` of a location per the OpenLineage naming spec, or ``None`` if unnamable.

    >>> dataset_name("s3://media/runs/a.png")
    ('s3://media', 'runs/a.png')
    >>> dataset_name("https://cdn.example.com/o/a.png?X-Amz-Signature=secret")
    ('https://cdn.example.com', '/o/a.png')
    >>> dataset_name("/data/runs/a.png")
    ('file', '/data/runs/a.png')
    """
    if not isinstance(location, str) or not location:
        return None
    if "://" not in location:
        return ("file", os.path.abspath(location))
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme == "file":
        return ("file", parts.path or "/")
    if is_web_url(location):
        port = f":{parts.port}" if parts.port else ""
        return (f"{scheme}://{host}{port}", parts.path or "/")
    bucket = parts.netloc.rpartition("@")[2]
    if not bucket:
        return None
    return (f"{scheme}://{bucket}", parts.path.lstrip("/") or "/")


def media_urls(value: Any) -> list[str]:
    """Every web URL inside a model's inputs (nested lists and dicts too), in order, once each."""
    found: list[str] = []

    def visit(item: Any) -> None:
        if isinstance(item, str):
            if is_web_url(item) and item not in found:
                found.append(item)
        elif isinstance(item, Mapping):
            for nested in item.values():
                visit(nested)
        elif isinstance(item, Iterable) and not isinstance(item, bytes):
            for nested in item:
                visit(nested)

    visit(value)
    return found


def _datasets(kind: type, locations: Iterable[str]) -> list[Any]:
    """One dataset per distinct location, in order (a mapped input may repeat a URL)."""
    named: list[tuple[str, str]] = []
    for location in locations:
        name = dataset_name(location)
        if name is not None and name not in named:
            named.append(name)
    return [kind(namespace=namespace, name=name) for namespace, name in named]


@functools.cache
def run_facet_class() -> type:
    """
    The ``runcomfy`` run facet class, made on first use: its base comes from the OpenLineage client,
    which may not be installed.
    """
    import attrs
    from airflow.providers.common.compat.openlineage.facet import RunFacet

    @attrs.define
    class RunComfyRunFacet(RunFacet):  # type: ignore[misc, valid-type, unused-ignore]
        """The RunComfy job behind an Airflow task run: model, request and (when known) cost."""

        model_id: str | None
        request_id: str | None
        cost_usd: float | None = None
        cost_estimate: Any = None

    return RunComfyRunFacet


def _own_xcom(task_instance: Any, key: str) -> Any:
    """One of the task instance's own XComs (``None`` when it has none)."""
    return task_instance.xcom_pull(
        task_ids=task_instance.task_id, key=key, map_indexes=task_instance.map_index
    )


def _result_of(task_instance: Any) -> dict[str, Any]:
    """The task instance's own ``result`` XCom (``{}`` when it has none: not waited, or failed)."""
    value = _own_xcom(task_instance, RESULT_XCOM_KEY)
    return value if isinstance(value, dict) else {}


class ModelLineageMixin:
    """``get_openlineage_facets_on_complete`` for the model operators (``RunComfyModelOperator``)."""

    model_id: str
    request_id: str | None

    if TYPE_CHECKING:

        def build_inputs(self) -> dict[str, Any]: ...  # the operator's own

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        """
        Inputs: the input media URLs. Outputs: the output URLs. Run facet: model, request, cost.

        Read from the rendered fields and the ``result`` XCom rather than from attributes set while
        waiting: a deferrable task finishes in a new process, with a fresh operator object.
        ``cost_usd`` is reported when the result carries it, ``cost_estimate`` from its own XCom.
        """
        from airflow.providers.common.compat.openlineage.facet import InputDataset, OutputDataset
        from airflow.providers.openlineage.extractors import OperatorLineage

        # OpenLineage calls this for a failed task too: a task that knows it has no result (it
        # failed, or only submitted) does not ask XCom, whose miss Airflow logs at error level.
        result = {} if getattr(self, "awaiting_result", False) else _result_of(task_instance)
        try:
            inputs = media_urls(self.build_inputs())
        except Exception:  # inputs that failed validation: the run failed before any lineage
            inputs = []
        request_id = result.get("request_id") or self.request_id
        facet = run_facet_class()(
            model_id=result.get("model_id") or self.model_id,
            request_id=request_id,
            cost_usd=result.get("cost_usd"),
            # The estimate is its own XCom (pushed before the submit), so a failed job has one too.
            cost_estimate=result.get("cost_estimate") or self._cost_estimate_of(task_instance),
        )
        return OperatorLineage(
            inputs=_datasets(InputDataset, inputs),
            outputs=_datasets(OutputDataset, result.get("urls") or []),
            run_facets={RUN_FACET_KEY: facet} if request_id else {},
        )

    def _cost_estimate_of(self, task_instance: Any) -> Any:
        """
        The estimate this object made, else its XCom, unless this object ran and never made one.

        A resumed deferrable task (a fresh object) or one that never ran here asks XCom; a task that
        failed before its estimate (an input error) knows no estimate XCom exists.
        """
        made = getattr(self, "cost_estimate", None)
        if made is not None:
            return made
        if getattr(self, "_ran", False) and self.request_id is None:
            return None
        return _own_xcom(task_instance, COST_ESTIMATE_XCOM_KEY)


class DownloadLineageMixin:
    """``get_openlineage_facets_on_complete`` for ``RunComfyDownloadOperator``."""

    copied: tuple[list[str], list[str]] | None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        """Inputs: the output URLs copied. Outputs: the stored files, as datasets of their storage."""
        from airflow.providers.common.compat.openlineage.facet import InputDataset, OutputDataset
        from airflow.providers.openlineage.extractors import OperatorLineage

        if self.copied is None:
            return OperatorLineage()
        urls, stored = self.copied
        return OperatorLineage(inputs=_datasets(InputDataset, urls), outputs=_datasets(OutputDataset, stored))
