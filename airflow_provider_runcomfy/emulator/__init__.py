"""A faithful local emulator of the RunComfy Model API, for tests, demos and benchmarks.

It implements RunComfy's documented Model API contract: submit, status, result
and cancel with the documented status words and error codes, the two Dreamina models' input rules,
and real output files (PNG images, a Motion-JPEG AVI video) served like a CDN. Around that it adds
what tests need: demo and generated input images, large blobs, fault injection, a request log,
and control endpoints for tests in other processes. A dialect knob (``dialect="live"``) makes it
answer in the wider vocabulary RunComfy's own clients accept from the live service.

It uses only the standard library and Pillow (no airflow, no httpx), so it runs under any Airflow
version, in-process (``RunComfyEmulator``) or as a process
(``python -m airflow_provider_runcomfy.emulator``).

Example::

    from airflow_provider_runcomfy.emulator import RunComfyEmulator, Fault

    with RunComfyEmulator(queue_seconds=0.5, run_seconds=1.0) as emu:
        emu.add_fault(Fault(path=r"/status$", status=503, retry_after=1))
        ...  # point the provider at emu.connection_json()
"""

from __future__ import annotations

from .catalog import DEMO_IMAGE_MODEL, DEMO_VIDEO_MODEL, CatalogEntry
from .control import EmulatorControl
from .dialect import PRESETS as DIALECTS
from .dialect import Dialect
from .media import blob_bytes
from .process import EmulatorProcess
from .records import Fault, RequestRecord
from .rules import ECHO_MODEL, EDIT_MODEL, MODELS, SIZE_FIELD, VIDEO_MODEL, InputError
from .runner import RunComfyEmulator
from .server import EmulatorConfig, EmulatorServer

__all__ = [
    "DEMO_IMAGE_MODEL",
    "DEMO_VIDEO_MODEL",
    "DIALECTS",
    "ECHO_MODEL",
    "EDIT_MODEL",
    "MODELS",
    "SIZE_FIELD",
    "VIDEO_MODEL",
    "CatalogEntry",
    "Dialect",
    "EmulatorConfig",
    "EmulatorControl",
    "EmulatorProcess",
    "EmulatorServer",
    "Fault",
    "InputError",
    "RequestRecord",
    "RunComfyEmulator",
    "blob_bytes",
]
