"""
What an IDE, ``help()`` and ``inspect`` show: every model operator spells out the shared keyword
parameters (typed, documented, with the same defaults), instead of hiding them in ``**kwargs``.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from airflow_provider_runcomfy.operators.runcomfy import (
    RunComfyImageEditOperator,
    RunComfyImageToVideoOperator,
    RunComfyModelOperator,
)

#: The keyword parameters every model operator takes, and the type an IDE should show for each.
SHARED: dict[str, Any] = {
    "runcomfy_conn_id": str,
    "wait_for_completion": bool,
    "deferrable": bool,
    "poll_interval": float,
    "timeout": float,
    "cancel_on_kill": bool,
    "validate_images": bool,
    "source_conn_id": str | None,
    "strict_schema": bool,
    "input_schema": None,  # dict[str, Any] | str | os.PathLike[str] | None: compared as text below
    "max_cost_usd": float | None,
    "progress_interval": float,
}
OPERATORS = [RunComfyModelOperator, RunComfyImageEditOperator, RunComfyImageToVideoOperator]


@pytest.mark.parametrize("operator", OPERATORS, ids=lambda c: c.__name__)
def test_every_shared_parameter_is_explicit_typed_and_documented(operator: type) -> None:
    params = inspect.signature(operator, eval_str=True).parameters
    base = inspect.signature(RunComfyModelOperator, eval_str=True).parameters
    for name, annotation in SHARED.items():
        assert name in params, f"{operator.__name__} hides {name} in **kwargs"
        param = params[name]
        assert param.kind is inspect.Parameter.KEYWORD_ONLY
        if name == "input_schema":
            assert "PathLike" in str(param.annotation)
            assert "dict[str, typing.Any]" in str(param.annotation)
        else:
            assert param.annotation == annotation, (name, param.annotation)
        assert param.default == base[name].default, f"{operator.__name__}.{name} default drifted"
        assert f":param {name}:" in (operator.__doc__ or ""), f"{operator.__name__} does not document {name}"
    # only BaseOperator's own parameters (task_id, retries, ...) are left to **kwargs
    assert [p.name for p in params.values() if p.kind is inspect.Parameter.VAR_KEYWORD] == ["kwargs"]


def test_the_issue_s_list_is_shown_for_the_edit_operator() -> None:
    shown = str(inspect.signature(RunComfyImageEditOperator))
    for text in (
        "deferrable: 'bool'",
        "timeout: 'float' = 3600",
        "max_cost_usd: 'float | None' = None",
        "poll_interval: 'float' = 5",
        "wait_for_completion: 'bool' = True",
        "strict_schema: 'bool' = False",
        "input_schema: 'dict[str, Any] | str | os.PathLike[str] | None' = None",
    ):
        assert text in shown, f"{text} not in {shown}"


@pytest.mark.parametrize(
    ("operator", "own"),
    [
        (RunComfyImageEditOperator, {"image_urls": ["https://example.com/a.png"], "prompt": "p"}),
        (RunComfyImageToVideoOperator, {"image_url": "https://example.com/a.png", "prompt": "p"}),
    ],
    ids=lambda v: getattr(v, "__name__", "inputs"),
)
def test_the_spelled_out_parameters_reach_the_operator(operator: type, own: dict[str, Any]) -> None:
    chosen = {
        "runcomfy_conn_id": "other_conn",
        "wait_for_completion": False,
        "deferrable": True,
        "poll_interval": 2.5,
        "timeout": 90.0,
        "cancel_on_kill": False,
        "validate_images": False,
        "source_conn_id": "aws_default",
        "strict_schema": True,
        "input_schema": {"type": "object", "properties": {}},
        "max_cost_usd": 0.25,
        "progress_interval": 60.0,
    }
    task = operator(task_id="t", retries=3, **own, **chosen)
    assert {name: getattr(task, name) for name in chosen} == chosen
    assert task.retries == 3  # BaseOperator's own parameters still pass through **kwargs


def test_default_args_still_fill_the_spelled_out_parameters() -> None:
    from airflow.providers.common.compat.sdk import DAG

    with DAG("sig_defaults", schedule=None, default_args={"timeout": 120.0, "deferrable": True}):
        task = RunComfyImageEditOperator(task_id="t", image_urls=["https://example.com/a.png"], prompt="p")
    assert (task.timeout, task.deferrable) == (120.0, True)
