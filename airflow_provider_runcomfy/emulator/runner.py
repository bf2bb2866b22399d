"""``RunComfyEmulator``: the emulator in a background thread, for synchronous code and pytest fixtures.

The server is asyncio-native; this wrapper owns an event loop in a daemon thread so a test (or a
user's fixture) can simply write ``with RunComfyEmulator() as emu:`` and point a hook at
``emu.base_url``. Every method is safe to call from any thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload
from urllib.parse import urlencode

from .catalog import AddedModel
from .media import sample_names as _sample_names
from .server import EmulatorConfig, EmulatorServer

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

    from .dialect import Dialect
    from .records import Fault, RequestRecord

_Get = TypeVar("_Get")
_Set = TypeVar("_Set")


class _Knob(Generic[_Get, _Set]):
    """
    One ``EmulatorConfig`` knob as an attribute of ``RunComfyEmulator``.

    Reading gives the live value; writing goes through ``EmulatorConfig.update``, so an attribute
    takes exactly what the constructor, ``--flags`` and ``POST /_emulator/config`` take, with the same
    checks, and a new knob is one line here instead of a property pair.
    """

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> _Knob[_Get, _Set]: ...

    @overload
    def __get__(self, obj: RunComfyEmulator, objtype: type | None = None) -> _Get: ...

    def __get__(self, obj: RunComfyEmulator | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return cast("_Get", getattr(obj._config, self.name))

    def __set__(self, obj: RunComfyEmulator, value: _Set) -> None:
        obj._config.update({self.name: value})


class RunComfyEmulator:
    """A local, faithful RunComfy Model API on ``http://127.0.0.1:<port>``.

    Example (a pytest fixture)::

        @pytest.fixture
        def runcomfy():
            with RunComfyEmulator(queue_seconds=0.2, run_seconds=0.5) as emu:
                yield emu

        def test_edit(runcomfy, monkeypatch):
            monkeypatch.setenv("AIRFLOW_CONN_RUNCOMFY_DEFAULT", runcomfy.connection_json())
            ...  # submit with image_urls=[runcomfy.sample_url("portrait.png")]

    Jobs stay ``in_queue`` for ``queue_seconds`` after submit, ``in_progress`` for ``run_seconds``,
    then finish: ``failed`` with ``failure_message`` when it is set, else after fetching and checking
    the input images, ``succeeded`` with real output files served by the emulator. The knobs
    ``queue_seconds``, ``run_seconds``, ``failure_message``, ``result_ttl_seconds``, ``balance`` and
    ``hold_until_submits`` (the next N jobs stay queued until the N-th is submitted, then all start)
    can be changed at any time and apply to jobs submitted afterwards.

    Args:
        host, port: where to listen; port 0 picks a free port (see ``base_url``).
        token: the valid API token; ``tokens`` adds more (each job belongs to the token that
            submitted it: another token gets 403001 for it).
        result_ttl_seconds: once a job finished this long ago, its request id answers 404001 and
            its output files 404 (``None``: kept while the emulator runs).
        balance: how many more submits the account can pay for (``None``: unlimited); at 0 a submit
            answers HTTP 402 with error_code 400002.
        record_peer_pid: resolve each local client connection's process id (Linux) into the log.
        max_output_side: longest side of output images, to keep outputs small and fast.
        public_url: base URL to put in answers instead of ``http://host:port`` (behind a proxy).
        faults: faults active from the start (see ``Fault``).
        fault_seed: seeds the random draws of faults with a ``rate`` below 1.
        dialect: how answers are worded: ``"documented"`` (the default: RunComfy's documented
            contract), ``"live"`` (every variant RunComfy's own clients accept from the live
            service), one variant's preset such as ``"completed-results"``, names joined with
            ``+``, or a ``Dialect``. Settable at any time through the ``dialect`` attribute; a
            ``Fault(kind="dialect", dialect=...)`` words only the requests it matches.
        control_token: when set, the ``/_emulator/`` controls answer 401 without it (header
            ``X-Emulator-Control-Token``); the methods of this object act directly, not over HTTP.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "emulator-token",
        *,
        tokens: Iterable[str] = (),
        queue_seconds: float = 1.0,
        run_seconds: float = 2.0,
        failure_message: str | None = None,
        result_ttl_seconds: float | None = None,
        balance: int | None = None,
        hold_until_submits: int | None = None,
        record_peer_pid: bool = False,
        max_output_side: int = 1024,
        public_url: str | None = None,
        verbose: bool = False,
        faults: Iterable[Fault] = (),
        fault_seed: int | None = None,
        dialect: Dialect | str = "documented",
        control_token: str | None = None,
    ) -> None:
        self._token = token
        all_tokens = [token, *(t for t in tokens if t != token)]
        self._config = EmulatorConfig()
        self._config.update(
            {
                "queue_seconds": queue_seconds,
                "run_seconds": run_seconds,
                "failure_message": failure_message,
                "result_ttl_seconds": result_ttl_seconds,
                "balance": balance,
                "hold_until_submits": hold_until_submits,
                "dialect": dialect,
            }
        )
        self._server = EmulatorServer(
            host=host,
            port=port,
            tokens=all_tokens,
            config=self._config,
            record_peer_pid=record_peer_pid,
            max_output_side=max_output_side,
            public_url=public_url,
            verbose=verbose,
            fault_seed=fault_seed,
            control_token=control_token,
        )
        for fault in faults:
            self._server.faults.add(fault)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None
        self._lock = threading.Lock()
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> RunComfyEmulator:
        """Start serving in a daemon thread; returns once the port is bound (errors are re-raised)."""
        with self._lock:
            if self._thread is not None:
                return self
            if self._stopped:
                raise RuntimeError("a RunComfyEmulator cannot be restarted; create a new one")
            ready = threading.Event()
            failure: list[BaseException] = []
            thread = threading.Thread(
                target=self._thread_main, args=(ready, failure), name="runcomfy-emulator", daemon=True
            )
            thread.start()
            ready.wait()
            if failure:
                thread.join()
                raise failure[0]
            self._thread = thread
            return self

    def _thread_main(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready, failure))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            ready.set()

    async def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        self._stop_event = asyncio.Event()
        try:
            await self._server.start()
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            await self._server.close()
            return
        ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await self._server.close()

    def stop(self) -> None:
        """Stop serving and wait until every socket, task and thread of the emulator is gone."""
        with self._lock:
            thread, loop, event = self._thread, self._loop, self._stop_event
            if thread is None or loop is None or event is None:
                return
            loop.call_soon_threadsafe(event.set)
            thread.join()
            self._thread = None
            self._loop = None
            self._stopped = True

    def __enter__(self) -> RunComfyEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ addresses

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, without ``/v1`` (the connection's host)."""
        return self._server.base_url

    @property
    def port(self) -> int:
        """The bound port (after ``start()``)."""
        return self._server.port

    @property
    def token(self) -> str:
        """The main valid API token."""
        return self._token

    def add_token(self, token: str) -> None:
        """Accept one more API token, as another RunComfy account (for 403001 tests)."""
        self._server.tokens = self._server.tokens | {token}

    def connection_json(self) -> str:
        """The Airflow connection for this emulator, for ``AIRFLOW_CONN_RUNCOMFY_DEFAULT``."""
        return json.dumps({"conn_type": "runcomfy", "host": self.base_url, "password": self._token})

    def sample_names(self) -> list[str]:
        """Names of the demo input images (all valid for both Dreamina models)."""
        return _sample_names()

    def sample_url(self, name: str = "portrait.png") -> str:
        """Public URL of a demo input image; ``KeyError`` for an unknown name."""
        if name not in _sample_names():
            raise KeyError(f"unknown sample {name!r}; samples: {', '.join(_sample_names())}")
        return f"{self.base_url}/samples/{name}"

    def image_url(
        self,
        width: int = 800,
        height: int = 600,
        fmt: str = "png",
        size_bytes: int | None = None,
        *,
        nolength: bool = False,
        pad_before_frame: bool = False,
    ) -> str:
        """Public URL of a generated test image: ``fmt`` png, jpeg, gif or webp, padded to
        ``size_bytes`` (harmless metadata) when given; ``nolength`` serves it without Content-Length;
        ``pad_before_frame`` puts a JPEG's padding before its frame header (a header reader's worst case)."""
        params: dict[str, Any] = {"w": width, "h": height, "fmt": fmt}
        if size_bytes is not None:
            params["bytes"] = size_bytes
        if nolength:
            params["nolength"] = 1
        if pad_before_frame:
            params["pad"] = "head"
        return f"{self.base_url}/images/gen?{urlencode(params)}"

    def not_image_url(self) -> str:
        """Public URL of an HTML page, for "this is not an image" tests."""
        return f"{self.base_url}/images/notimage"

    def blob_url(self, size_bytes: int, content_type: str = "application/octet-stream") -> str:
        """Public URL streaming ``size_bytes`` deterministic bytes (``media.blob_bytes`` gives them)."""
        return f"{self.base_url}/blobs/{size_bytes}?{urlencode({'type': content_type})}"

    # ------------------------------------------------------------------ faults and log

    def add_fault(self, fault: Fault) -> None:
        """Inject ``fault`` into matching requests (after faults already active; first match wins)."""
        self._server.faults.add(fault)

    def clear_faults(self) -> None:
        """Remove every active fault."""
        self._server.faults.clear()

    @property
    def faults(self) -> list[tuple[Fault, int | None]]:
        """Active faults with how many more times each applies (``None``: until cleared)."""
        return self._server.faults.active()

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log, oldest first (control requests are not logged)."""
        return self._server.log.snapshot()

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._server.log.clear()

    def jobs(self) -> list[dict[str, Any]]:
        """Every job the emulator knows: id, model, state, inputs, times, error, output file names."""
        loop = self._loop
        if loop is None:
            return []
        future = asyncio.run_coroutine_threadsafe(self._jobs_snapshot(), loop)
        return future.result(timeout=10)

    async def _jobs_snapshot(self) -> list[dict[str, Any]]:
        return self._server.jobs_snapshot()

    # ------------------------------------------------------------------ knobs

    queue_seconds: _Knob[float, float] = _Knob("Seconds a new job stays ``in_queue``.")
    run_seconds: _Knob[float, float] = _Knob(
        "Seconds a new job stays ``in_progress`` (longer if making its outputs takes longer)."
    )
    failure_message: _Knob[str | None, str | None] = _Knob(
        "When set, new jobs end ``failed`` with this ``error`` text."
    )
    result_ttl_seconds: _Knob[float | None, float | None] = _Knob(
        "Seconds after finishing when a new job's id starts answering 404001 (``None``: never)."
    )
    balance: _Knob[int | None, int | None] = _Knob(
        "Submits the account can still pay for (``None``: unlimited)."
    )
    hold_until_submits: _Knob[int | None, int | None] = _Knob(
        "Hold the next jobs ``in_queue`` until this many were submitted, then start them all (one-shot)."
    )
    dialect: _Knob[Dialect, Dialect | str] = _Knob(
        'How answers are worded (see ``dialect.py``); set a ``Dialect`` or a preset name (``"live"``).'
    )

    # ------------------------------------------------------------------ the model catalog

    catalog_available: _Knob[bool, bool] = _Knob(
        "Whether ``GET /v1/models...`` answers; ``False`` makes it answer 503 (submits still work)."
    )
    schema_form: _Knob[str, str] = _Knob(
        'How the catalog writes input schemas: ``"page"`` as RunComfy\'s model pages do (the default) or '
        '``"catalog"`` as the partner nodes\' catalog does (see ``catalog.py``).'
    )

    def add_model(
        self,
        model_id: str,
        input_schema: dict[str, Any],
        *,
        base_price_usd: float = 0.01,
        price_unit: str = "output",
        display_name: str | None = None,
        categories: Iterable[str] = ("text-to-image",),
    ) -> None:
        """Serve one more model in the catalog, with a schema of RunComfy's form, and accept its submits.

        Its submits are checked against ``input_schema`` and its images against the ``validations``
        when the job runs; outputs are images (or a video when a category ends in ``video``). The
        price is the emulator's own. Adding an existing id replaces it.
        """
        entry = AddedModel(
            model_id=model_id,
            input_schema=input_schema,
            base_price_usd=base_price_usd,
            price_unit=price_unit,
            display_name=display_name,
            categories=list(categories),
        ).entry()
        self._server.catalog.add(entry)

    def remove_model(self, model_id: str) -> bool:
        """Stop serving a model (builtin ones too); ``False`` when it was not served."""
        return self._server.catalog.remove(model_id)
