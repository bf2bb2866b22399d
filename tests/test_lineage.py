"""
OpenLineage: what an edit -> animate -> download run tells a lineage backend.

The end-to-end test runs the pipeline with ``dag.test()`` in a child process whose Airflow has an
OpenLineage file transport configured: the OpenLineage provider's own listener extracts and emits the
events, exactly as in a deployment, and the test reads what was written. (A child process because
the provider reads and caches its configuration once per process, and the rest of the suite runs
without lineage.) It needs ``apache-airflow-providers-openlineage``, installed in the 3.3 test
environment only: the 2.11 environment proves the provider works without it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_runcomfy.lineage import dataset_name, media_urls
from tests import airflow_utils as au

ROOT = Path(__file__).resolve().parents[1]
HAS_OPENLINEAGE = importlib.util.find_spec("airflow.providers.openlineage") is not None
needs_openlineage = pytest.mark.skipif(
    not HAS_OPENLINEAGE or not au.AIRFLOW_3,
    reason="lineage is tested on Airflow 3.3 with apache-airflow-providers-openlineage (scripts/_env.sh)",
)

RUN_PIPELINE = """
import json, sys
from pathlib import Path
from tests import airflow_utils as au
dag = au.test_dags(sys.argv[1])["rc_edit_animate_keep"]
run = au.run_dag(dag, {"destination": sys.argv[2]})
Path(sys.argv[3]).write_text(json.dumps({
    "state": str(run.state),
    "results": {f"{k[0]}:{k[1]}": v for k, v in au.xcoms(run, "result").items()},
    "stored": au.xcoms(run)[("keep", -1)],
}))
"""


@needs_openlineage
def test_edit_animate_download_lineage_names_every_file(emu: Any, tmp_path: Path) -> None:
    events_file = tmp_path / "openlineage.jsonl"
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        # Emit in a thread of the task process rather than a fork of it (the default): same events.
        "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN_PIPELINE,
            emu.base_url,
            str(tmp_path / "kept"),
            str(tmp_path / "run.json"),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    outcome = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert outcome["state"] == "success"
    results, stored = outcome["results"], outcome["stored"]

    events = [json.loads(line) for line in events_file.read_text(encoding="utf-8").splitlines() if line]
    complete = {
        (e["job"]["name"], e["run"]["facets"].get("airflow", {}).get("taskInstance", {}).get("map_index")): e
        for e in events
        if e.get("eventType") == "COMPLETE" and e["job"]["name"].startswith("rc_edit_animate_keep.")
    }

    def names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(d["namespace"], d["name"]) for d in datasets]

    emulator = emu.base_url  # http://127.0.0.1:PORT: the namespace of every emulator URL

    edit = next(e for (job, _), e in complete.items() if job == "rc_edit_animate_keep.edit")
    assert names(edit["inputs"]) == [
        (emulator, "/samples/portrait.png"),
        (emulator, "/samples/landscape.jpg"),
    ], "the input images"
    edit_urls = results["edit:-1"]["urls"]
    assert names(edit["outputs"]) == [dataset_name(url) for url in edit_urls], "the edited images"
    facet = edit["run"]["facets"]["runcomfy"]
    assert facet["model_id"] == "bytedance/dreamina-4-0/edit"
    assert facet["request_id"] == results["edit:-1"]["request_id"]

    animates = [e for (job, _), e in complete.items() if job == "rc_edit_animate_keep.animate"]
    assert len(animates) == 2, "one event per mapped task instance"
    assert sorted(i for e in animates for i in names(e["inputs"])) == sorted(
        dataset_name(url) for url in edit_urls
    ), "each video starts from one edited image"
    video_urls = [results[f"animate:{i}"]["urls"][0] for i in (0, 1)]
    assert sorted(o for e in animates for o in names(e["outputs"])) == sorted(
        dataset_name(url) for url in video_urls
    )
    assert {e["run"]["facets"]["runcomfy"]["model_id"] for e in animates} == {
        "bytedance/dreamina-3-0/pro/image-to-video"
    }

    keep = next(e for (job, _), e in complete.items() if job == "rc_edit_animate_keep.keep")
    assert sorted(names(keep["inputs"])) == sorted(dataset_name(url) for url in video_urls)
    assert names(keep["outputs"]) == [("file", path) for path in stored], "the stored files"
    assert all(Path(path).is_file() for path in stored)


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("s3://media/runs/a.png", ("s3://media", "runs/a.png")),
        ("gs://media/runs/a.png", ("gs://media", "runs/a.png")),
        ("file:///data/a.png", ("file", "/data/a.png")),
        ("/data/a.png", ("file", "/data/a.png")),
        ("https://cdn.example.com/o/a.png?X-Amz-Signature=s3cr3t", ("https://cdn.example.com", "/o/a.png")),
        ("http://user:pw@127.0.0.1:8765/files/a.png", ("http://127.0.0.1:8765", "/files/a.png")),
        ("s3:///no-bucket", None),
        ("", None),
    ],
)
def test_dataset_names_follow_the_openlineage_naming_spec(location: str, expected: Any) -> None:
    assert dataset_name(location) == expected


def test_media_urls_are_every_web_url_among_the_inputs() -> None:
    inputs = {
        "prompt": "make it https://not-a-url? no: prose",
        "image_urls": ["https://a/1.png", "https://a/2.png", "https://a/1.png"],
        "extra": {"mask_url": "https://a/m.png", "n": 3},
    }
    assert media_urls(inputs) == ["https://a/1.png", "https://a/2.png", "https://a/m.png"]


def test_without_openlineage_nothing_of_it_is_imported() -> None:
    """Operators, links and lineage import no OpenLineage module until the listener asks."""
    code = (
        "import sys; import airflow.providers.common.compat.sdk;"
        "from airflow.providers.common.compat.sdk import BaseOperator;"  # what Airflow itself loads
        "before = set(sys.modules);"
        "import airflow_provider_runcomfy.operators.runcomfy, airflow_provider_runcomfy.sensors.runcomfy;"
        "print(sorted(m for m in set(sys.modules) - before if 'openlineage' in m))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert out == "[]"


class _TI:
    """A task instance as the listener hands it over: its own ``result`` and ``cost_estimate`` XComs."""

    task_id, map_index = "edit", -1

    def __init__(self, result: dict[str, Any] | None, estimate: dict[str, Any] | None = None) -> None:
        self.xcom = {"result": result, "cost_estimate": estimate}

    def xcom_pull(self, *, task_ids: str, key: str, map_indexes: int) -> Any:
        assert (task_ids, map_indexes) == ("edit", -1)
        return self.xcom[key]


@needs_openlineage
def test_cost_is_reported_when_the_result_carries_it() -> None:
    from airflow_provider_runcomfy.operators.runcomfy import RunComfyImageEditOperator

    op = RunComfyImageEditOperator(task_id="edit", image_urls=["https://a/1.png"], prompt="x")
    result = {
        "request_id": "r-1",
        "model_id": "bytedance/dreamina-4-0/edit",
        "urls": ["https://cdn/o.png"],
        "cost_usd": 0.03,
        "cost_estimate": {"usd": 0.03, "basis": "catalog"},
    }
    lineage = op.get_openlineage_facets_on_complete(_TI(result))
    facet = lineage.run_facets["runcomfy"]
    assert (facet.request_id, facet.cost_usd, facet.cost_estimate) == ("r-1", 0.03, result["cost_estimate"])
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("https://a", "/1.png")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("https://cdn", "/o.png")]

    without = op.get_openlineage_facets_on_complete(_TI({**result, "cost_usd": None, "cost_estimate": None}))
    assert without.run_facets["runcomfy"].cost_usd is None
    # The estimate the operator pushed before its submit (its own XCom key) is reported too.
    estimate = {"usd": 0.03, "price_unit": "output", "basis": "1 output x $0.03/output"}
    pushed = op.get_openlineage_facets_on_complete(_TI({**result, "cost_estimate": None}, estimate))
    assert pushed.run_facets["runcomfy"].cost_estimate == estimate
    # Submitted without waiting: no result, no outputs, but still the inputs it read.
    bare = op.get_openlineage_facets_on_complete(_TI(None))
    assert bare.outputs == []
    assert [d.name for d in bare.inputs] == ["/1.png"]
