"""
The ``runcomfy`` Airflow connection: what its fields mean to the provider, and its form.

A connection's host is the API base URL, its password the API token, its extra the retry and timeout
knobs. Reading them (:class:`ApiSettings`) is apart from the hook that uses them, so the rules (an
empty host means RunComfy's public API, a password typed into the host is never sent, a bad knob
fails with the connection's name) read in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from airflow_provider_runcomfy import conn_fields
from airflow_provider_runcomfy.exceptions import RunComfyAuthError, RunComfyBadRequestError
from airflow_provider_runcomfy.retry import RetryPolicy
from airflow_provider_runcomfy.transport import Timeouts

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_BASE_URL = "https://model-api.runcomfy.net"


def _without_userinfo(url: str) -> str:
    """A URL without ``user:password@``: a password in the host field is never shown nor sent."""
    parsed = httpx.URL(url)
    if not parsed.userinfo:
        return url
    return str(parsed.copy_with(username=None, password=None))


def normalize_base_url(host: str | None, port: int | None = None) -> str:
    """
    Turn the connection's host into the API base URL, without ``/v1`` and without a trailing slash.

    Empty means RunComfy's public API; a host without a scheme gets ``https://``; a trailing ``/v1``
    is dropped because every path the hook builds starts with it.
    """
    url = (host or "").strip().rstrip("/")
    if not url:
        return DEFAULT_BASE_URL
    if "://" not in url:
        url = f"https://{url}"
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    url = _without_userinfo(url).rstrip("/")
    parsed = httpx.URL(url)
    if port and parsed.port is None:
        url = str(parsed.copy_with(port=port)).rstrip("/")
    return url


@dataclass(frozen=True)
class ApiSettings:
    """Everything the hook needs from the connection; the token is left out of ``repr``."""

    base_url: str
    token: str = field(repr=False)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)

    @classmethod
    def from_connection(cls, conn: Any, extra: Mapping[str, Any]) -> ApiSettings:
        """Read a ``runcomfy`` connection: host = API base URL, password = token, extra = knobs."""
        token = (conn.password or "").strip()
        if not token:
            raise RunComfyAuthError(
                f"Connection {conn.conn_id!r} has no RunComfy API token: put it in the connection's "
                "password field (shown as 'API token')."
            )
        try:
            retry, timeouts = RetryPolicy.from_extra(extra), Timeouts.from_extra(extra)
        except ValueError as err:
            raise RunComfyBadRequestError(f"Connection {conn.conn_id!r}: {err}") from None
        return cls(
            base_url=normalize_base_url(conn.host, conn.port),
            token=token,
            retry=retry,
            timeouts=timeouts,
        )


def connection_form_widgets() -> dict[str, Any]:
    """Form fields for the retry and timeout knobs (Airflow 2.11's form; 3.2+ reads ``conn-fields``)."""
    try:
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import StringField
    except ImportError:  # Airflow 3 has no Flask form; it reads ``conn-fields`` instead.
        return {}
    return {
        name: StringField(lazy_gettext(spec["label"]), widget=BS3TextFieldWidget())
        for name, spec in conn_fields().items()
    }
