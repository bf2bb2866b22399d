"""
Cost before and after a job: the estimate from the catalog's price, the budget guard, the reported cost;
and the operator's choice of schema (its own ``input_schema``, the catalog's, the shipped one).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_runcomfy.catalog import ModelInfo, PriceUnit
from airflow_provider_runcomfy.cost import CostEstimate, check_budget, estimate_cost, reported_cost
from airflow_provider_runcomfy.exceptions import (
    RunComfyBudgetExceededError,
    RunComfyInputError,
    RunComfySchemaError,
)
from airflow_provider_runcomfy.jobs import RequestWatch, summarize_result
from airflow_provider_runcomfy.operators.runcomfy import RunComfyImageToVideoOperator, RunComfyModelOperator
from tests.airflow_utils import FakeTI

EDIT = "bytedance/dreamina-4-0/edit"
VIDEO = "bytedance/dreamina-3-0/pro/image-to-video"


def priced(model_id: str, price: float, unit: str, schema: dict[str, Any] | None = None) -> ModelInfo:
    return ModelInfo.from_api(
        {"model_id": model_id, "base_price_usd": price, "price_unit": unit, "input_schema": schema}
    )


# -- the estimate ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "inputs", "usd", "basis"),
    [
        pytest.param(
            priced("a/b", 0.1, "output"), {}, 0.1, "1 output (the inputs do not say how many)", id="one"
        ),
        pytest.param(
            priced("a/b", 0.1, "output"), {"num_images": 3}, 0.3, "3 outputs (num_images=3)", id="count"
        ),
        pytest.param(
            priced("a/b", 0.02, "output", {"properties": {"num_outputs": {"type": "integer", "default": 2}}}),
            {},
            0.04,
            "2 outputs (num_outputs default 2)",
            id="count-default",
        ),
        pytest.param(
            priced(EDIT, 0.03, "output"),
            {},
            0.03,
            "1 output at least (the model may return a set",
            id="edit-set",
        ),
        pytest.param(
            priced(EDIT, 0.03, "output"), {"force_single": True}, 0.03, "1 output (force_single", id="single"
        ),
        pytest.param(priced("a/b", 0.1, "second"), {"duration": 8}, 0.8, "8 s (duration=8)", id="duration"),
        pytest.param(
            priced("a/b", 0.1, "second"), {"duration": "6"}, 0.6, "6 s (duration='6')", id="duration-str"
        ),
        pytest.param(
            priced("a/b", 0.1, "second"), {"seconds": 2.5}, 0.25, "2.5 s (seconds=2.5)", id="seconds"
        ),
        pytest.param(priced(VIDEO, 0.05, "second"), {}, 0.25, "5 s (frames=121)", id="frames-default"),
        pytest.param(
            priced(VIDEO, 0.05, "second"), {"frames": 241}, 0.5, "10 s (frames=241)", id="frames-241"
        ),
        pytest.param(
            priced(VIDEO, 0.05, "second"),
            {"frames": 99},
            None,
            "frames=99 has no documented",
            id="frames-odd",
        ),
        pytest.param(
            priced("a/b", 0.1, "second"), {"duration": "auto"}, None, "not a number of seconds", id="auto"
        ),
        pytest.param(priced("a/b", 0.1, "second"), {}, None, "the inputs give no duration", id="no-duration"),
        pytest.param(
            ModelInfo(model_id="a/b"), {}, None, "no estimate: the catalog gave no price", id="no-price"
        ),
        pytest.param(None, {}, None, "no estimate: the catalog gave no price", id="no-catalog"),
    ],
)
def test_estimates(info: ModelInfo | None, inputs: dict[str, Any], usd: float | None, basis: str) -> None:
    estimate = estimate_cost(info, inputs)
    assert estimate.usd == (pytest.approx(usd) if usd is not None else None)
    assert basis in estimate.basis
    assert estimate.is_known is (usd is not None)
    if usd is not None:
        assert estimate.basis.endswith(info.describe_price())  # type: ignore[union-attr]


def test_amounts_are_exact_decimals() -> None:
    assert (
        estimate_cost(priced("a/b", 0.1, "output"), {"num_images": 3}).usd == 0.3
    )  # not 0.30000000000000004


def test_the_xcom_form() -> None:
    estimate = estimate_cost(priced("a/b", 0.02, "output"), {"num_images": 2})
    assert estimate.to_xcom() == {
        "usd": 0.04,
        "price_unit": "output",
        "basis": "2 outputs (num_images=2) x $0.02/output",
    }
    assert json.dumps(estimate.to_xcom())
    assert CostEstimate(None, None, "why").to_xcom() == {"usd": None, "price_unit": None, "basis": "why"}


def test_the_budget_guard() -> None:
    estimate = CostEstimate(0.3, PriceUnit.OUTPUT, "3 outputs x $0.1/output")
    check_budget(estimate, None, model="a/b")
    check_budget(estimate, 0.3, model="a/b")  # at the limit is within it
    with pytest.raises(RunComfyBudgetExceededError) as info:
        check_budget(estimate, 0.25, model="a/b")
    assert isinstance(info.value, AirflowFailException), "no retry spent on it"
    assert "$0.3 (3 outputs x $0.1/output), is over max_cost_usd $0.25" in str(info.value)
    assert (info.value.limit_usd, info.value.estimate_usd) == (0.25, 0.3)
    with pytest.raises(
        RunComfyBudgetExceededError, match=r"max_cost_usd is \$1 but the cost .* cannot be estimated"
    ):
        check_budget(CostEstimate(None, None, "no estimate: the catalog could not be read"), 1, model="a/b")


def test_the_budget_guard_of_a_batch_names_the_whole_batch() -> None:
    estimate = CostEstimate(0.09, PriceUnit.OUTPUT, "3 jobs x 1 output x $0.03/output")
    check_budget(estimate, 0.09, model="a/b", jobs=3)
    with pytest.raises(RunComfyBudgetExceededError) as info:
        check_budget(estimate, 0.05, model="a/b", jobs=3)
    assert "the whole batch's 3 a/b job(s), $0.09 (3 jobs x" in str(info.value)
    assert "is over max_cost_usd $0.05" in str(info.value)
    assert (info.value.limit_usd, info.value.estimate_usd) == (0.05, 0.09)
    unknown = CostEstimate(None, None, "no estimate: the catalog could not be read")
    with pytest.raises(RunComfyBudgetExceededError, match=r"batch's 3 a/b job\(s\) cannot be estimated"):
        check_budget(unknown, 1, model="a/b", jobs=3)


# -- the cost RunComfy reports -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "cost"),
    [({"cost": 0.06}, 0.06), ({"cost": 0}, 0.0), ({}, None), ({"cost": "0.1"}, None), ({"cost": -1}, None)],
)
def test_reported_cost_is_optional(body: dict[str, Any], cost: float | None) -> None:
    assert reported_cost(body) == cost
    summary = summarize_result({"request_id": "r", "status": "succeeded", **body}, model_id="a/b")
    assert summary.get("cost_usd") == cost
    assert ("cost_usd" in summary) is (cost is not None), "the result contract is unchanged without a cost"


def test_the_wait_carries_the_cost_to_the_event() -> None:
    import logging

    event = RequestWatch("r", logging.getLogger("test")).outcome(
        {"request_id": "r", "status": "succeeded", "output": {"image": "https://cdn/x.png"}, "cost": 0.02}
    )
    assert event is not None
    assert event["result"]["cost_usd"] == 0.02


def test_the_hook_asks_for_the_cost_and_can_leave_it_out(emu: Any) -> None:
    from airflow_provider_runcomfy.hooks.runcomfy import RunComfyHook

    hook = RunComfyHook()
    request_id = hook.submit("runcomfy/emulator/echo", {"x": 1})
    hook.get_result(request_id)
    hook.get_result(request_id, include_cost=False)
    queries = [r.query for r in emu.requests if r.path.endswith("/result")]
    assert queries == [{"include_cost": "true"}, {}]


# -- the operator: which schema, which price ---------------------------------------------------------


def execute(op: RunComfyModelOperator) -> FakeTI:
    ti = FakeTI()
    op.execute({"ti": ti})  # type: ignore[arg-type]
    return ti


def no_submit(emu: Any) -> bool:
    return not [r for r in emu.requests if r.method == "POST"]


def test_a_documented_model_falls_back_to_its_shipped_schema(
    emu: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    emu.catalog_available = False
    op = RunComfyImageToVideoOperator(
        task_id="v", image_url=emu.sample_url("landscape.jpg"), prompt="p", frames=120
    )
    with pytest.raises(RunComfyInputError, match="frames: must be one of 121, 241; got 120"):
        execute(op)
    assert no_submit(emu)
    assert "schema shipped with the provider" in caplog.text + "".join(capfd.readouterr())


def test_strict_schema_is_satisfied_by_a_shipped_schema(emu: Any) -> None:
    emu.catalog_available = False
    op = RunComfyImageToVideoOperator(
        task_id="v",
        image_url=emu.sample_url("landscape.jpg"),
        prompt="p",
        strict_schema=True,
        wait_for_completion=False,
    )
    ti = execute(op)
    assert ti.xcom["request_id"]
    assert ti.xcom["cost_estimate"]["usd"] is None, "no price without the catalog: none is made up"


def test_input_schema_given_by_the_user_is_applied(emu: Any, tmp_path: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": 3}},
        "required": ["text"],
    }
    emu.add_model(
        "me/tiny", {"type": "object", "properties": {"text": {"type": "string"}}}
    )  # lax on the server
    try:
        path = tmp_path / "tiny.json"
        path.write_text(json.dumps(schema))
        for given in (schema, str(path)):
            op = RunComfyModelOperator(
                task_id="t", model_id="me/tiny", inputs={"text": "long"}, input_schema=given
            )
            with pytest.raises(RunComfyInputError, match="text: is 4 characters long; at most 3"):
                execute(op)
        assert no_submit(emu)
        op = RunComfyModelOperator(
            task_id="t",
            model_id="me/tiny",
            inputs={"text": "ok"},
            input_schema=schema,
            wait_for_completion=False,
        )
        ti = execute(op)
        assert ti.xcom["cost_estimate"]["usd"] == pytest.approx(0.01), "the catalog still gives the price"
    finally:
        emu.remove_model("me/tiny")


def test_a_broken_input_schema_fails_before_any_network(emu: Any) -> None:
    op = RunComfyModelOperator(
        task_id="t", model_id="me/tiny", inputs={}, input_schema={"properties": {"a": {"type": "nope"}}}
    )
    with pytest.raises(RunComfySchemaError):
        execute(op)
    assert no_submit(emu)


@pytest.mark.parametrize("limit", [-1, "0.5", True])
def test_a_bad_max_cost_is_refused(emu: Any, limit: Any) -> None:
    op = RunComfyModelOperator(task_id="t", model_id="runcomfy/emulator/echo", inputs={}, max_cost_usd=limit)
    with pytest.raises(RunComfyInputError, match="max_cost_usd"):
        execute(op)
    assert not emu.requests, "checked before any call"


def test_a_model_the_catalog_does_not_list_is_sent_unchecked_or_refused(emu: Any) -> None:
    from airflow_provider_runcomfy.exceptions import RunComfySchemaUnavailableError

    strict = RunComfyModelOperator(
        task_id="t", model_id="runcomfy/emulator/echo", inputs={"a": 1}, strict_schema=True
    )
    with pytest.raises(RunComfySchemaUnavailableError, match="catalog does not list this model"):
        execute(strict)
    assert no_submit(emu)
    lax = RunComfyModelOperator(
        task_id="t", model_id="runcomfy/emulator/echo", inputs={"a": 1}, wait_for_completion=False
    )
    ti = execute(lax)
    assert ti.xcom["cost_estimate"] == {
        "usd": None,
        "price_unit": None,
        "basis": "no estimate: RunComfy's catalog does not list this model",
    }
