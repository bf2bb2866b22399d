"""
Asset events for new media: the download operator's event carries what it stored, and a consumer
DAG scheduled on the asset gets a run that can read it.

The first test runs the edit -> animate -> keep pipeline with ``dag.test()`` (Airflow 3.3 and 2.11)
and reads the recorded event back from the metadata DB. The second runs the example pair
``example_dags/runcomfy_new_media_assets.py`` in a real deployment (scheduler, triggerer, DAG
processor and API server; Airflow 3.3), because only a real scheduler turns an asset event into a
consumer run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests import airflow_utils as au

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[1]
VIDEO = "bytedance/dreamina-3-0/pro/image-to-video"
EDIT = "bytedance/dreamina-4-0/edit"


def asset_events(uri: str) -> list[dict[str, Any]]:
    """The ``extra`` of every event of one asset (Airflow 3) or dataset (2.11), oldest first."""
    from airflow.utils.session import create_session

    au.init_db()

    if au.AIRFLOW_3:
        from airflow.models.asset import AssetEvent as Event
        from airflow.models.asset import AssetModel as Model

        key = Event.asset_id
    else:
        from airflow.models.dataset import DatasetEvent as Event
        from airflow.models.dataset import DatasetModel as Model

        key = Event.dataset_id
    with create_session() as session:
        rows = (
            session.query(Event)
            .join(Model, Model.id == key)
            .filter(Model.uri == uri)
            .order_by(Event.id)
            .all()
        )
        return [dict(row.extra or {}) for row in rows]


def test_download_records_what_it_stored_in_the_asset_event(emu: Any, tmp_path: Path) -> None:
    dag = au.test_dags(emu.base_url)["rc_edit_animate_keep"]
    before = len(asset_events("runcomfy://test/videos"))
    if not au.AIRFLOW_3:  # 2.11's dag.test() records events only for datasets already in the DB
        dag.sync_to_db()
    run = au.run_dag(dag, {"destination": str(tmp_path / "kept")})
    assert run.state == "success", au.task_states(run)

    events = asset_events("runcomfy://test/videos")
    assert len(events) == before + 1, "one event per successful copy"
    extra = events[-1]
    stored = au.xcoms(run)[("keep", -1)]
    assert extra["stored"] == stored
    assert all(Path(path).is_file() for path in extra["stored"])
    animate_ids = au.xcoms(run, "request_id")
    assert sorted(extra["request_ids"]) == sorted(animate_ids[("animate", i)] for i in (0, 1)), (
        "the jobs that made the stored videos, not the edit before them"
    )
    assert extra["model_ids"] == [VIDEO]


# -- a real deployment: the example pair ------------------------------------------------------------

real_processes = pytest.mark.skipif(
    not au.AIRFLOW_3, reason="asset-scheduled consumer runs are tested with a real Airflow 3.3 deployment"
)


@pytest.fixture
def example_stack(tmp_path: Path) -> Iterator[Any]:
    """Emulator and Airflow (scheduler, triggerer, DAG processor, API server) on the example DAGs."""
    from devtools.airflow_stack import AirflowStack
    from devtools.fanout import TOKEN
    from devtools.processes import EmulatorProcess
    from tests.test_real_processes import pytestmark as real_process_mark

    if real_process_mark.args[0]:  # RUNCOMFY_SKIP_REAL_PROCESSES, or no /proc
        pytest.skip(real_process_mark.kwargs["reason"])
    emulator = EmulatorProcess(tmp_path, token=TOKEN, run_seconds=1.0)
    emulator.start()
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "runcomfy_new_media_assets.py").write_text(
        (ROOT / "example_dags" / "runcomfy_new_media_assets.py").read_text(encoding="utf-8"), encoding="utf-8"
    )
    stack = AirflowStack(tmp_path, dags, {"AIRFLOW_CONN_RUNCOMFY_DEFAULT": emulator.conn_json()})
    try:
        stack.start()
        yield stack, emulator
    except BaseException:
        print(stack.tails())
        raise
    finally:
        stack.stop()
        emulator.stop()


def xcom_value(stack: Any, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
    """One XCom value of a real deployment's run (Airflow 3 stores them as JSON)."""
    rows = stack.query(
        "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = ?",
        dag_id,
        run_id,
        task_id,
        key,
    )
    assert rows, f"no XCom {key!r} of {dag_id}.{task_id} in {run_id}"
    return json.loads(rows[0][0])


@real_processes
def test_consumer_runs_with_the_stored_files_in_its_event(example_stack: Any, tmp_path: Path) -> None:
    producer, consumer = "runcomfy_new_media_producer", "runcomfy_new_media_consumer"
    stack, emulator = example_stack
    stack.wait_parsed([producer, consumer])
    conf = {
        "images": [f"{emulator.base_url}/samples/portrait.png", f"{emulator.base_url}/samples/landscape.jpg"],
        "destination": (tmp_path / "media").as_uri(),
    }
    run_id = f"rc_assets__{time.time_ns()}"
    stack.cli("dags", "trigger", producer, "--run-id", run_id, "--conf", json.dumps(conf))
    info = stack.wait_run(producer, run_id)
    assert info.state == "success", stack.task_states(producer, run_id)

    deadline = time.monotonic() + 180
    consumer_runs: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        stack.check_alive()
        consumer_runs = [
            (rid, state)
            for rid, state in stack.query("SELECT run_id, state FROM dag_run WHERE dag_id = ?", consumer)
            if state in ("success", "failed")
        ]
        if consumer_runs:
            break
        time.sleep(1)
    assert consumer_runs, f"the consumer got no finished run: {stack.query('SELECT * FROM dag_run')}"
    (consumer_run, state), *_ = consumer_runs
    assert state == "success", stack.task_states(consumer, consumer_run)
    assert stack.query("SELECT run_type FROM dag_run WHERE run_id = ?", consumer_run) == [
        ("asset_triggered",)
    ]

    # What the producer stored, what its event says, and what the consumer read from that event.
    stored = xcom_value(stack, producer, run_id, "keep")
    assert len(stored) == 2
    assert all(Path(uri.removeprefix("file://")).is_file() for uri in stored)
    (extra,) = [
        json.loads(row[0])
        for row in stack.query(
            "SELECT e.extra FROM asset_event e JOIN dagrun_asset_event d ON d.event_id = e.id "
            "JOIN dag_run r ON r.id = d.dag_run_id WHERE r.dag_id = ? AND r.run_id = ?",
            consumer,
            consumer_run,
        )
    ]
    request_id = xcom_value(stack, producer, run_id, "edit", "request_id")
    assert extra == {"stored": stored, "request_ids": [request_id], "model_ids": [EDIT]}
    read = xcom_value(stack, consumer, consumer_run, "catalogue")
    assert read == [extra], "the consumer read the stored files from its triggering event"
