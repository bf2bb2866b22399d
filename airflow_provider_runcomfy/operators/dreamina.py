"""
The operators of the two documented models: Dreamina 4.0 edit and Dreamina 3.0 Pro image-to-video.

Each is :class:`~.model.RunComfyModelOperator` with the model fixed and its documented inputs spelled
out as typed, templated parameters (for IDEs, ``help()`` and ``.partial().expand()``); what maps them
to the model's inputs is :func:`~airflow_provider_runcomfy.documented.edit_inputs` and
:func:`~airflow_provider_runcomfy.documented.video_inputs`, beside the models' ids, sizes and page
rules. Everything else (schema, cost, submit, wait) is the generic operator's.
"""

from __future__ import annotations

import os  # noqa: TC003 - the signatures are evaluated at run time (inspect.signature, IDEs)
from typing import TYPE_CHECKING, Any

from airflow_provider_runcomfy.documented import EDIT_MODEL_ID, VIDEO_MODEL_ID, edit_inputs, video_inputs
from airflow_provider_runcomfy.jobs import DEFAULT_PROGRESS_INTERVAL
from airflow_provider_runcomfy.operators.model import (
    DEFAULT_DEFERRABLE,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    RunComfyModelOperator,
)

if TYPE_CHECKING:
    from collections.abc import Sequence


class RunComfyImageEditOperator(RunComfyModelOperator):
    """
    Edit images with Dreamina 4.0 (``bytedance/dreamina-4-0/edit``), up to 4K.

    :param image_urls: 1 to 10 JPEG/PNG images (6 or fewer recommended): public URLs, ``data:`` URIs,
        or files (absolute paths, ``file://``, ``s3://``... with ``source_conn_id``). (templated)
    :param prompt: what to do, at most 800 characters. (templated)
    :param size: the output size, ``"2048x2048"`` or the full label ``"2048x2048(1:1)"``; sent as
        the documented ``width×height`` label. (templated)
    :param scale: 0 to 1, how strongly the prompt weighs against the images. (templated)
    :param force_single: force a single output image. (templated)
    :param runcomfy_conn_id: the Airflow connection of type ``runcomfy``.
    :param wait_for_completion: wait for the job and return its outputs; ``False`` returns the
        ``request_id`` at once.
    :param deferrable: wait in the triggerer, holding no worker slot (default: ``[operators]
        default_deferrable``).
    :param poll_interval: seconds between status polls.
    :param timeout: the longest wait for the job in seconds, counted from submission; a job still
        queued then is cancelled.
    :param cancel_on_kill: cancel the job when the task is killed (a running job cannot be cancelled).
    :param validate_images: probe the input images with Pillow before paying.
    :param source_conn_id: the Airflow connection of the object store that ``s3://``, ``gs://``...
        inputs are read from (local paths and ``file://`` need none).
    :param strict_schema: refuse to submit when no input schema of the model can be found, or when
        it states a rule the provider cannot apply.
    :param input_schema: the model's input schema (a dict or a JSON file path) instead of the catalog's.
    :param max_cost_usd: refuse to submit a job whose estimated cost is higher, or cannot be estimated.
    :param progress_interval: seconds between two progress lines while the job does not change (300).

    Options left ``None`` are not sent, so RunComfy's defaults apply. What each step does: see
    :class:`RunComfyModelOperator`; ``BaseOperator``'s own parameters (``task_id``, ``retries``...)
    pass through ``**kwargs``.
    """

    template_fields: Sequence[str] = ("image_urls", "prompt", "size", "scale", "force_single")

    def __init__(
        self,
        *,
        image_urls: Any,
        prompt: str,
        size: str | None = None,
        scale: float | None = None,
        force_single: bool | None = None,
        runcomfy_conn_id: str = "runcomfy_default",
        wait_for_completion: bool = True,
        deferrable: bool = DEFAULT_DEFERRABLE,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        cancel_on_kill: bool = True,
        validate_images: bool = True,
        source_conn_id: str | None = None,
        strict_schema: bool = False,
        input_schema: dict[str, Any] | str | os.PathLike[str] | None = None,
        max_cost_usd: float | None = None,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            model_id=EDIT_MODEL_ID,
            runcomfy_conn_id=runcomfy_conn_id,
            wait_for_completion=wait_for_completion,
            deferrable=deferrable,
            poll_interval=poll_interval,
            timeout=timeout,
            cancel_on_kill=cancel_on_kill,
            validate_images=validate_images,
            source_conn_id=source_conn_id,
            strict_schema=strict_schema,
            input_schema=input_schema,
            max_cost_usd=max_cost_usd,
            progress_interval=progress_interval,
            **kwargs,
        )
        self.image_urls = image_urls
        self.prompt = prompt
        self.size = size
        self.scale = scale
        self.force_single = force_single

    def build_inputs(self) -> dict[str, Any]:
        """Map the operator's fields to the model's documented inputs, leaving unset options out."""
        return edit_inputs(
            self.image_urls, self.prompt, size=self.size, scale=self.scale, force_single=self.force_single
        )


class RunComfyImageToVideoOperator(RunComfyModelOperator):
    """
    Animate one image with Dreamina 3.0 Pro (``bytedance/dreamina-3-0/pro/image-to-video``).

    :param image_url: one JPEG/PNG image, each side over 320 px: a public URL, a ``data:`` URI or a
        file (absolute path, ``file://``, ``s3://``... with ``source_conn_id``). (templated)
    :param prompt: what should happen, at most 800 characters. (templated)
    :param seed: the random seed (-1 or ``None`` for a random one). (templated)
    :param frames: 121 (about 5 s) or 241 (about 10 s). (templated)
    :param runcomfy_conn_id: the Airflow connection of type ``runcomfy``.
    :param wait_for_completion: wait for the job and return its outputs; ``False`` returns the
        ``request_id`` at once.
    :param deferrable: wait in the triggerer, holding no worker slot (default: ``[operators]
        default_deferrable``).
    :param poll_interval: seconds between status polls.
    :param timeout: the longest wait for the job in seconds, counted from submission; a job still
        queued then is cancelled.
    :param cancel_on_kill: cancel the job when the task is killed (a running job cannot be cancelled).
    :param validate_images: probe the input images with Pillow before paying.
    :param source_conn_id: the Airflow connection of the object store that ``s3://``, ``gs://``...
        inputs are read from (local paths and ``file://`` need none).
    :param strict_schema: refuse to submit when no input schema of the model can be found, or when
        it states a rule the provider cannot apply.
    :param input_schema: the model's input schema (a dict or a JSON file path) instead of the catalog's.
    :param max_cost_usd: refuse to submit a job whose estimated cost is higher, or cannot be estimated.
    :param progress_interval: seconds between two progress lines while the job does not change (300).

    Works with ``.partial(...).expand(image_url=edit.output)`` to animate every image an edit made.
    What each step does: see :class:`RunComfyModelOperator`; ``BaseOperator``'s own parameters
    (``task_id``, ``retries``...) pass through ``**kwargs``.
    """

    template_fields: Sequence[str] = ("image_url", "prompt", "seed", "frames")

    def __init__(
        self,
        *,
        image_url: str,
        prompt: str,
        seed: int | None = None,
        frames: int | None = None,
        runcomfy_conn_id: str = "runcomfy_default",
        wait_for_completion: bool = True,
        deferrable: bool = DEFAULT_DEFERRABLE,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        cancel_on_kill: bool = True,
        validate_images: bool = True,
        source_conn_id: str | None = None,
        strict_schema: bool = False,
        input_schema: dict[str, Any] | str | os.PathLike[str] | None = None,
        max_cost_usd: float | None = None,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            model_id=VIDEO_MODEL_ID,
            runcomfy_conn_id=runcomfy_conn_id,
            wait_for_completion=wait_for_completion,
            deferrable=deferrable,
            poll_interval=poll_interval,
            timeout=timeout,
            cancel_on_kill=cancel_on_kill,
            validate_images=validate_images,
            source_conn_id=source_conn_id,
            strict_schema=strict_schema,
            input_schema=input_schema,
            max_cost_usd=max_cost_usd,
            progress_interval=progress_interval,
            **kwargs,
        )
        self.image_url = image_url
        self.prompt = prompt
        self.seed = seed
        self.frames = frames

    def build_inputs(self) -> dict[str, Any]:
        """Send ``image_urls=[image_url]`` as the model documents, leaving unset options out."""
        return video_inputs(self.image_url, self.prompt, seed=self.seed, frames=self.frames)
