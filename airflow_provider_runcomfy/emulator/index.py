"""``GET /``: the emulator explains itself: its endpoints, its sample images and its knobs.

A user who opens the emulator's base URL in a browser (or curls it) should not need the source to
find the sample image URLs for a first DAG, the request log, or how to turn a knob. JSON by default
(scripts and tests read it), HTML when the client prefers ``text/html`` (a browser).

This lives apart from ``server.py`` on purpose: the server only routes ``/`` here, so the index can
grow (new endpoints, new knobs) without touching the request hot path. Knobs are read from
``EmulatorConfig.to_dict()``, so a new knob appears in the index without a change here.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any, Protocol

from . import media
from .rules import ECHO_MODEL
from .wire import Response, json_response

if TYPE_CHECKING:
    from .catalog import Catalog
    from .wire import Request


class _Knobs(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class IndexedServer(Protocol):
    """What the index reads of the server (``EmulatorServer``): named here so the index needs no server."""

    @property
    def base_url(self) -> str: ...

    @property
    def catalog(self) -> Catalog: ...

    @property
    def config(self) -> _Knobs: ...


#: (method, path, auth, what): the emulator's own routes, as documented in ``server.py``.
ENDPOINTS: tuple[tuple[str, str, str, str], ...] = (
    ("POST", "/v1/models/{model_id}", "bearer", "submit a job (RunComfy Model API)"),
    ("GET", "/v1/models", "bearer", "the model catalog (?search, category, kind, include_schema, limit)"),
    ("GET", "/v1/models/categories", "bearer", "the catalog's categories"),
    ("GET", "/v1/models/{model_id}", "bearer", "one catalog entry, with its input schema"),
    ("GET", "/v1/requests/{request_id}/status", "bearer", "job status"),
    ("GET", "/v1/requests/{request_id}/result", "bearer", "job result (?include_cost=true adds the cost)"),
    ("POST", "/v1/requests/{request_id}/cancel", "bearer", "cancel a queued job"),
    ("GET", "/files/{request_id}/{name}", "none", "job outputs, like RunComfy's CDN"),
    ("GET", "/samples", "none", "the sample input images as JSON"),
    ("GET", "/samples/{name}", "none", "one sample input image"),
    ("GET", "/images/gen?w=800&h=600&fmt=png&bytes=N", "none", "a generated test image, padded to N bytes"),
    ("GET", "/images/notimage", "none", "an HTML page (for 'not an image' tests)"),
    ("GET", "/blobs/{size}", "none", "size deterministic bytes (large downloads)"),
    ("GET", "/_emulator/health", "none", "liveness, base URL, pid"),
    ("GET, DELETE", "/_emulator/requests", "none", "the request log (?since=epoch seconds), or clear it"),
    ("GET, POST, DELETE", "/_emulator/faults", "none", "active faults; add one (JSON) or clear them"),
    ("GET, POST", "/_emulator/config", "none", "the knobs below; POST a JSON object to change them"),
    ("GET", "/_emulator/jobs", "none", "every job with its state"),
)


def index_data(server: IndexedServer) -> dict[str, Any]:
    """
    What ``GET /`` answers as JSON: base URL, models, endpoints, sample URLs, the request log, knobs.

    ``models`` are the ones ``GET /v1/models`` lists (the catalog, with models a test added), so the
    two never disagree; the echo model, which the emulator takes but RunComfy's catalog would never
    list, is named apart under ``test_models``.
    """
    base = server.base_url
    catalog = server.catalog.page({"limit": "1000"})["models"]

    return {
        "service": "RunComfy Model API emulator (airflow-provider-runcomfy)",
        "base_url": base,
        "connection": {"conn_type": "runcomfy", "host": base, "password": "<one of the emulator's tokens>"},
        "models": [entry["model_id"] for entry in catalog],
        "test_models": {ECHO_MODEL: "not in the catalog: echoes its inputs into a PNG (soak, chaos tests)"},
        "endpoints": [
            {"method": method, "path": path, "auth": auth, "what": what}
            for method, path, auth, what in ENDPOINTS
        ],
        "samples": [f"{base}/samples/{name}" for name in media.sample_names()],
        "request_log": f"{base}/_emulator/requests",
        "knobs": server.config.to_dict(),
        "knobs_url": f"{base}/_emulator/config",
    }


def _wants_html(request: Request) -> bool:
    """A browser's ``Accept`` lists ``text/html`` first; curl and httpx send ``*/*`` and get JSON."""
    accept = request.headers.get("accept", "")
    return "text/html" in accept.split(",")[0]


def render_html(data: dict[str, Any]) -> str:
    """The same data as a small HTML page (escaped; links only to the emulator itself)."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(x['method'])}</td><td><code>{e(x['path'])}</code></td>"
        f"<td>{e(x['auth'])}</td><td>{e(x['what'])}</td></tr>"
        for x in data["endpoints"]
    )
    samples = "".join(f'<li><a href="{e(url)}">{e(url)}</a></li>' for url in data["samples"])
    models = "".join(f"<li><code>{e(m)}</code></li>" for m in data["models"])
    models += "".join(
        f"<li><code>{e(m)}</code> (test model: {e(what)})</li>" for m, what in data["test_models"].items()
    )
    knobs = e(json.dumps(data["knobs"], indent=2))
    conn = e(json.dumps(data["connection"]))
    log = e(data["request_log"])
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>RunComfy emulator</title></head><body>"
        f"<h1>RunComfy emulator</h1><p>Base URL <code>{e(data['base_url'])}</code>; connection "
        f"<code>{conn}</code></p><h2>Sample input images</h2><ul>{samples}</ul>"
        f"<h2>Models</h2><ul>{models}</ul>"
        f"<h2>Endpoints</h2><table border='1' cellpadding='4'><tr><th>method</th><th>path</th>"
        f"<th>auth</th><th>what</th></tr>{rows}</table>"
        f"<h2>Request log</h2><p><a href='{log}'>{log}</a></p>"
        f"<h2>Knobs</h2><p>POST a JSON object to <code>{e(data['knobs_url'])}</code>:</p><pre>{knobs}</pre>"
        "</body></html>"
    )


def index_response(server: IndexedServer, request: Request) -> Response:
    """``GET /`` (HTML for browsers, JSON otherwise); any other method gets 405."""
    if request.method not in ("GET", "HEAD"):
        return json_response(405, {"error_message": "method not allowed; use GET"}, [("Allow", "GET, HEAD")])
    data = index_data(server)
    if _wants_html(request):
        return Response(body=render_html(data).encode("utf-8"), content_type="text/html; charset=utf-8")
    return Response(body=json.dumps(data, indent=2).encode("utf-8") + b"\n", content_type="application/json")
