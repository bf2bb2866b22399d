"""``EmulatorControl``: drive an emulator running in another process through ``/_emulator/``.

Real-process tests start the emulator with the CLI, run Airflow against it, and use this small
stdlib client (no httpx, no airflow) to inject faults, change knobs and read the request log.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from .records import Fault, RequestRecord

#: The header of the control token (the same as ``server.CONTROL_TOKEN_HEADER``; this module stays light).
_CONTROL_TOKEN_HEADER = "X-Emulator-Control-Token"


class EmulatorControl:
    """
    Client of the control endpoints of the emulator at ``base_url`` (``http://127.0.0.1:PORT``).

    :param control_token: the emulator's control token, when it was started with one.
    """

    def __init__(self, base_url: str, timeout: float = 10.0, control_token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json"}
        if control_token:
            self._headers[_CONTROL_TOKEN_HEADER] = control_token
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str, data: Any = None) -> Any:
        body = None if data is None else json.dumps(data).encode("utf-8")
        request = urllib.request.Request(
            f"{self.base_url}/_emulator/{path}",
            data=body,
            method=method,
            headers=self._headers,
        )
        with self._opener.open(request, timeout=self.timeout) as resp:
            return json.loads(resp.read() or b"null")

    def health(self) -> dict[str, Any]:
        """``GET /_emulator/health``: status, base_url, pid, number of jobs."""
        result: dict[str, Any] = self._call("GET", "health")
        return result

    def requests(self, since: float | None = None) -> list[RequestRecord]:
        """The request log (records with ``time >= since`` when given)."""
        path = "requests" if since is None else f"requests?since={since!r}"
        return [RequestRecord.from_dict(item) for item in self._call("GET", path)]

    def clear_requests(self) -> int:
        """Empty the request log; returns how many records were dropped."""
        return int(self._call("DELETE", "requests")["cleared"])

    def add_fault(self, fault: Fault) -> None:
        """Inject ``fault`` (see ``Fault``)."""
        self._call("POST", "faults", fault.to_dict())

    def clear_faults(self) -> int:
        """Remove every fault; returns how many were active."""
        return int(self._call("DELETE", "faults")["cleared"])

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """
        Set knobs (queue_seconds, run_seconds, failure_message, result_ttl_seconds,
        balance, hold_until_submits, dialect, catalog_available).
        """
        result: dict[str, Any] = self._call("POST", "config", knobs)
        return result

    def jobs(self) -> list[dict[str, Any]]:
        """Every job the emulator knows (see ``RunComfyEmulator.jobs``)."""
        result: list[dict[str, Any]] = self._call("GET", "jobs")
        return result

    def add_model(self, model: dict[str, Any]) -> dict[str, Any]:
        """Serve one more model: ``{"model_id", "input_schema", "base_price_usd"?, "price_unit"?, ...}``."""
        result: dict[str, Any] = self._call("POST", "models", model)
        return result
