"""
:class:`RunComfyDownloadOperator`: copy RunComfy's outputs into the user's storage.

Its own module because it shares nothing with the model operators but the links and the lineage: it
submits nothing, waits for nothing, and needs no RunComfy token (only the connection's retry policy
and timeouts). Its streaming copy lives in :mod:`airflow_provider_runcomfy.downloads`, imported when
the task runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseHook, BaseOperator

from airflow_provider_runcomfy.lineage import DownloadLineageMixin
from airflow_provider_runcomfy.links import STORED_URL_XCOM_KEY, RunComfyStoredOutputLink, stored_link

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import Context


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
