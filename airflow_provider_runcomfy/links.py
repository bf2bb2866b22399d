"""
Extra links: a task's outputs one click away in the Airflow UI.

* **RunComfy output** (model operators and the sensor): the first output URL of the ``result`` XCom.
* **Stored output** (the download operator): the first stored location that has an honest URL form,
  which the operator works out while it runs and pushes as the ``stored_url`` XCom.

Both read XCom only, so they work the same on every Airflow line: Airflow 3 calls ``get_link`` in
the worker when the task ends and keeps the answer in XCom (``_link_<class name>``) for the UI;
Airflow 2.11's webserver calls it when the page is drawn. Before the task has a result, there is no
XCom and the link is the empty string, which both UIs show as a disabled button, not an error.

Only ``http(s)`` URLs are ever returned: a link is opened by a person's browser, and a value that
came back from a remote API (``javascript:``, ``data:``) must not become something it would run.
This module is imported while DAG files are parsed, so it imports only the compat SDK.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator

#: The XCom key of the model operators' and the sensor's result summary (``{"urls": [...], ...}``).
RESULT_XCOM_KEY = "result"
#: The XCom key where the download operator keeps the URL form of its first stored location.
STORED_URL_XCOM_KEY = "stored_url"


def is_web_url(value: Any) -> bool:
    """An absolute ``http(s)`` URL with a host: the only kind of value a link may open."""
    if not isinstance(value, str):
        return False
    parts = urlsplit(value.strip())
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def first_output_url(result: Any) -> str:
    """The first web URL among a ``result`` summary's ``urls``, or ``""`` when there is none yet."""
    if not isinstance(result, dict):
        return ""
    urls = result.get("urls")
    if not isinstance(urls, list | tuple):
        return ""
    return next((url for url in urls if is_web_url(url)), "")


def s3_has_custom_endpoint(conn_id: str | None) -> bool:
    """
    Whether ``s3://`` means an S3-compatible store other than AWS (MinIO, Ceph, R2...).

    Then the AWS console would show the wrong place, so no link is better than a wrong one. Read
    where the Amazon provider reads it: the connection's ``endpoint_url`` (top level or
    ``service_config.s3``), else the ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` variables.
    """
    if os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"):
        return True
    if not conn_id:
        return False
    from airflow.providers.common.compat.sdk import BaseHook

    try:
        extra = BaseHook.get_connection(conn_id).extra_dejson
    except Exception:  # an unknown connection fails the copy itself, not the link
        return False
    service = (extra.get("service_config") or {}).get("s3") or {}
    return bool(extra.get("endpoint_url") or extra.get("host") or service.get("endpoint_url"))


def stored_location_url(location: Any, *, s3_custom_endpoint: bool = False) -> str:
    """
    The URL a person can open for one stored location, or ``""`` when no honest one exists.

    * ``http(s)://`` stays as it is.
    * ``gs://bucket/key``: the object's page in the Google Cloud console (``gs://`` only ever means
      Google Cloud Storage).
    * ``s3://bucket/key``: the object's page in the AWS S3 console, unless the store is an
      S3-compatible one behind a custom endpoint (see :func:`s3_has_custom_endpoint`).
    * Local paths and ``file://``: nothing. A ``file://`` link opens the *viewer's* disk, not the
      worker's, so it would show the wrong file or none; browsers also refuse it from an ``http``
      page.
    * Anything else (``abfs://``...): nothing, rather than a guess.
    """
    if not isinstance(location, str) or "://" not in location:
        return ""
    if is_web_url(location):
        return location
    parts = urlsplit(location)
    scheme, bucket, key = parts.scheme.lower(), parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        return ""
    if scheme == "gs":
        return f"https://console.cloud.google.com/storage/browser/_details/{quote(bucket)}/{quote(key)}"
    if scheme in ("s3", "s3a") and not s3_custom_endpoint:
        return f"https://s3.console.aws.amazon.com/s3/object/{quote(bucket)}?prefix={quote(key, safe='')}"
    return ""


def first_stored_url(locations: Any, *, s3_custom_endpoint: bool = False) -> str:
    """The URL form of the first stored location that has one, or ``""``."""
    if isinstance(locations, str):
        locations = [locations]
    if not isinstance(locations, list | tuple):
        return ""
    for location in locations:
        url = stored_location_url(location, s3_custom_endpoint=s3_custom_endpoint)
        if url:
            return url
    return ""


def stored_link(stored: list[str], destination_conn_id: str | None) -> str:
    """
    What the ``Stored output`` link of a copy opens: see :func:`stored_location_url`.

    The storage connection is only looked up when an ``s3://`` location needs it.
    """
    custom = any(s.startswith(("s3://", "s3a://")) for s in stored) and s3_has_custom_endpoint(
        destination_conn_id
    )
    return first_stored_url(stored, s3_custom_endpoint=custom)


class RunComfyOutputLink(BaseOperatorLink):
    """Open the first output of a RunComfy job (model operators and ``RunComfyRequestSensor``)."""

    name = "RunComfy output"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        """
        The first output URL of the task's ``result`` XCom; ``""`` before there is one.

        Airflow 3 calls this in the worker with the live task as each try ends, a deferral
        included. A task still waiting for its job, or one that failed, knows it has no result:
        asking XCom then would cost a call and print an error-level "XCom not found" line in every
        deferred task's log, and after a failed task's own exception.
        """
        if getattr(operator, "awaiting_result", False):
            return ""
        return first_output_url(XCom.get_value(ti_key=ti_key, key=RESULT_XCOM_KEY))


class RunComfyStoredOutputLink(BaseOperatorLink):
    """Open the first stored copy of the outputs (``RunComfyDownloadOperator``)."""

    name = "Stored output"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        """
        The ``stored_url`` XCom, checked again; ``""`` before the copy, or when no location has a URL.

        The URL form is decided by the operator while it runs, because only then is the storage
        connection at hand (to tell AWS S3 from an S3-compatible store); Airflow 2.11's webserver
        draws links from the serialized task, which does not carry ``destination_conn_id``.
        """
        if getattr(operator, "awaiting_result", False):  # ran here, stored nothing: no XCom to ask for
            return ""
        url = XCom.get_value(ti_key=ti_key, key=STORED_URL_XCOM_KEY)
        return url if is_web_url(url) else ""
