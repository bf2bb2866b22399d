"""
``data:`` URIs, the way RunComfy's own ComfyUI nodes send a media file inside the request.

A leaf below the schema interpreter (which checks a URI's form) and the media sources (which check
its content and make URIs of private files), so neither has to import the other for it.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from airflow_provider_runcomfy.exceptions import RunComfyInputError, describe_data_uri

_MIME = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*")


@dataclass(frozen=True)
class InlineFile:
    """
    A file sent inside the request, as a ``data:`` URI.

    :param mime: its media type, e.g. ``image/png``.
    :param data: its bytes.
    """

    mime: str
    data: bytes

    @property
    def uri(self) -> str:
        """The ``data:<mime>;base64,...`` URI RunComfy's clients send."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    def describe(self) -> str:
        """How it is shown in messages: ``data:image/png (812,344 bytes, sha256 3fa1c2d4…)``."""
        return describe_data_uri(self.mime, self.data)


def parse_data_uri(field: str, value: str, kind: str | None = None) -> InlineFile:
    """
    Decode a ``data:`` URI of a media field.

    :param field: the input's name with its index, for messages.
    :param value: the URI.
    :param kind: ``image``, ``video`` or ``audio``: the media type must be of that family.
    :raises RunComfyInputError: for a URI without a media type, not base64, of the wrong family, with
        a broken payload, or empty.
    """
    header, comma, payload = value.partition(",")
    if not comma:
        raise RunComfyInputError(field, "is a data: URI without the ',' before its payload")
    params = [part.strip().lower() for part in header[5:].split(";")]
    mime = params[0]
    if not _MIME.fullmatch(mime):
        raise RunComfyInputError(
            field, f"is a data: URI without a media type; write data:{kind or 'image'}/...;base64,..."
        )
    if "base64" not in params[1:]:
        raise RunComfyInputError(field, f"is a data: URI of {mime} that is not base64-encoded (;base64,)")
    if kind is not None and not mime.startswith(f"{kind}/"):
        raise RunComfyInputError(
            field, f"is a data: URI of type {mime}; this field takes {kind} files ({kind}/...)"
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RunComfyInputError(
            field, f"is a data: URI of {mime} whose base64 payload is broken ({len(payload):,} characters)"
        ) from None
    if not data:
        raise RunComfyInputError(field, f"is a data: URI of {mime} with no bytes")
    return InlineFile(mime, data)
