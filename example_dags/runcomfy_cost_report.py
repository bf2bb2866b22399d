"""
Any RunComfy model over a fan-out, every job checked and priced before it is paid for, then the bill.

Each mapped task checks its inputs against the model's input schema from RunComfy's catalog (before
paying), estimates its cost (XCom ``cost_estimate``) and refuses to submit when the estimate is over
``max_cost_usd``. After the jobs, ``total_cost`` adds up the ``cost_usd`` RunComfy reported for each
(XCom ``result``) and says which jobs reported none.

Run it with your own model and inputs, e.g.::

    airflow dags trigger runcomfy_cost_report --conf '{"model_id": "bytedance/dreamina-4-0/edit",
        "jobs": [{"image_urls": ["https://.../a.png"], "prompt": "pencil sketch", "force_single": true}],
        "max_cost_usd": 0.1}'
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param, task

from airflow_provider_runcomfy.operators.runcomfy import RunComfyModelOperator

with DAG(
    dag_id="runcomfy_cost_report",
    description="Run a RunComfy model over many inputs with a per-job budget, then sum what it cost.",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    params={
        "model_id": Param("bytedance/dreamina-4-0/edit", type="string", description="Any RunComfy model id."),
        "jobs": Param(
            [
                {"image_urls": ["https://example.com/a.png"], "prompt": "sketch", "force_single": True},
                {"image_urls": ["https://example.com/b.png"], "prompt": "watercolour", "force_single": True},
            ],
            type="array",
            description="One object of the model's inputs per job.",
        ),
        "max_cost_usd": Param(0.5, type="number", description="The most one job may cost (estimated)."),
    },
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["runcomfy", "example"],
) as dag:

    @task
    def jobs(**context: Any) -> list[dict[str, Any]]:
        """One set of operator arguments per job, from the run's params: what the runs are mapped over."""
        params = context["params"]
        return [{"inputs": inputs, "max_cost_usd": params["max_cost_usd"]} for inputs in params["jobs"]]

    # [START howto_operator_runcomfy_cost]
    generate = RunComfyModelOperator.partial(
        task_id="generate",
        model_id="{{ params.model_id }}",
        deferrable=True,
    ).expand_kwargs(jobs())

    @task
    def total_cost(ti: Any = None) -> dict[str, Any]:
        """Add up the cost RunComfy reported for every mapped job (``result["cost_usd"]``)."""
        found = ti.xcom_pull(task_ids="generate", key="result")
        results = [found] if isinstance(found, dict) else [r for r in found or () if r]
        costs = [r["cost_usd"] for r in results if r.get("cost_usd") is not None]
        unpriced = [r["request_id"] for r in results if r.get("cost_usd") is None]
        total = round(sum(costs), 6)
        print(f"{len(results)} RunComfy job(s): ${total:g} reported; {len(unpriced)} without a reported cost")
        return {"jobs": len(results), "total_usd": total, "without_cost": unpriced}

    generate >> total_cost()
    # [END howto_operator_runcomfy_cost]
