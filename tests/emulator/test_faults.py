"""Fault injection and the ``/_emulator/`` control endpoints."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from airflow_provider_runcomfy.emulator import EmulatorControl, Fault, RunComfyEmulator

from .helpers import ECHO, submit, wait_result


def test_status_fault_with_retry_after_and_times(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rid = submit(client, ECHO, {})
    rc.add_fault(Fault(path=r"/status$", status=503, retry_after=2, times=2))
    for _ in range(2):
        r = client.get(f"/v1/requests/{rid}/status")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "2"
        assert r.json() == {"error_message": "injected fault"}
    assert client.get(f"/v1/requests/{rid}/status").status_code == 200
    assert rc.faults == []
    polls = [rec for rec in rc.requests if rec.path.endswith("/status")]
    assert [(p.status, p.fault) for p in polls] == [(503, "status"), (503, "status"), (200, None)]
    assert all(p.request_id == rid for p in polls)


def test_fractional_retry_after_and_custom_body(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.add_fault(Fault(path=r"/result$", status=429, retry_after=0.25, body={"message": "slow down"}))
    r = client.get("/v1/requests/abc/result")
    assert (r.status_code, r.headers["retry-after"], r.json()) == (429, "0.25", {"message": "slow down"})


def test_faulted_submit_creates_no_job(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.add_fault(Fault(path=r"^/v1/models/", method="POST", status=500))
    before = len(rc.jobs())
    assert client.post(f"/v1/models/{ECHO}", json={}).status_code == 500
    assert len(rc.jobs()) == before
    assert rc.requests[-1].request_id is None
    assert rc.requests[-1].status == 500


def test_error_body_on_http_200(rc: RunComfyEmulator, client: httpx.Client) -> None:
    body = {"error_code": 400002, "error_message": "InsufficientResources"}
    rc.add_fault(Fault(path=r"^/v1/models/", status=200, body=body))
    before = len(rc.jobs())
    r = client.post(f"/v1/models/{ECHO}", json={})
    assert r.status_code == 200
    assert r.json() == body
    assert len(rc.jobs()) == before


def test_method_filter_and_forever(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.add_fault(Fault(path=r"/cancel$", method="POST", status=502, times=None))
    rid = submit(client, ECHO, {})
    for _ in range(3):
        assert client.post(f"/v1/requests/{rid}/cancel").status_code == 502
    assert client.get(f"/v1/requests/{rid}/status").status_code == 200  # GET is not matched
    assert rc.faults[0][1] is None
    rc.clear_faults()
    assert client.post(f"/v1/requests/{rid}/cancel").status_code == 202


def test_drop_closes_without_answer(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.add_fault(Fault(path=r"^/v1/models/", kind="drop"))
    before = len(rc.jobs())
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(f"/v1/models/{ECHO}", json={})
    assert len(rc.jobs()) == before
    record = rc.requests[-1]
    assert (record.status, record.fault, record.request_id) == (None, "drop", None)
    submit(client, ECHO, {})  # the client reconnects; the fault was used up


def test_delay_then_normal_answer(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.add_fault(Fault(path=r"^/v1/models/", kind="delay", delay_seconds=0.4))
    started = time.monotonic()
    rid = submit(client, ECHO, {})
    assert time.monotonic() - started >= 0.4
    assert any(j["request_id"] == rid for j in rc.jobs())
    rc.add_fault(Fault(path=r"/status$", kind="delay", delay_seconds=0.5))
    with pytest.raises(httpx.ReadTimeout):  # delays also model read timeouts
        client.get(f"/v1/requests/{rid}/status", timeout=0.1)


def test_delay_before_status_fault(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.add_fault(Fault(path=r"/status$", status=504, delay_seconds=0.3))
    started = time.monotonic()
    assert client.get("/v1/requests/x/status").status_code == 504
    assert time.monotonic() - started >= 0.3


def last_record(rc: RunComfyEmulator, prefix: str, wait: float = 2.0) -> Any:
    """The last logged request whose path starts with ``prefix`` (logged as its answer ends: wait)."""
    deadline = time.monotonic() + wait
    while True:
        found = [r for r in rc.requests if r.path.startswith(prefix)]
        if found or time.monotonic() > deadline:
            assert found, f"no request to {prefix} was logged"
            return found[-1]
        time.sleep(0.01)


def test_truncate_interrupts_a_download(rc: RunComfyEmulator) -> None:
    rc.add_fault(Fault(path=r"^/blobs/", kind="truncate", truncate_after=100_000))
    chunks: list[bytes] = []

    def download() -> None:
        with httpx.stream("GET", rc.blob_url(1_000_000)) as r:
            assert r.headers["content-length"] == "1000000"
            chunks.extend(r.iter_bytes())

    with pytest.raises(httpx.RemoteProtocolError):
        download()
    assert sum(len(c) for c in chunks) == 100_000
    # This test's own record, not the last one: a delayed request of an earlier test that its client
    # gave up on is logged when its delay ends, which may be now.
    record = last_record(rc, "/blobs/")
    assert record.status is None
    assert record.fault == "truncate"
    assert len(httpx.get(rc.blob_url(1_000_000)).content) == 1_000_000


def test_truncate_an_output_file(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.queue_seconds, rc.run_seconds = 0.0, 0.05
    url = wait_result(client, submit(client, ECHO, {"x": 1}))["output"]["image"]
    rc.add_fault(Fault(path=r"^/files/", kind="truncate", truncate_after=10))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url)
    assert httpx.get(url).status_code == 200


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="kind"):
        Fault(path="x", kind="explode")
    with pytest.raises(ValueError, match="unknown Fault fields"):
        Fault.from_dict({"path": "x", "stauts": 500})
    fault = Fault(path=r"/status$", method="get", retry_after=1.5, times=None)
    assert fault.method == "GET"
    assert Fault.from_dict(fault.to_dict()) == fault


def test_control_endpoints(rc: RunComfyEmulator, client: httpx.Client) -> None:
    base = f"{rc.base_url}/_emulator"
    health = httpx.get(f"{base}/health").json()
    assert health["status"] == "ok"
    assert health["base_url"] == rc.base_url

    r = httpx.post(f"{base}/faults", json={"path": "/status$", "status": 503, "times": 1})
    assert r.status_code == 200
    assert r.json() == {"added": 1}
    assert httpx.get(f"{base}/faults").json()[0]["fault"]["status"] == 503
    assert client.get("/v1/requests/x/status").status_code == 503
    assert httpx.post(f"{base}/faults", json={"path": "x", "kind": "nope"}).status_code == 400
    httpx.post(f"{base}/faults", json=[{"path": "a"}, {"path": "b"}])
    assert httpx.delete(f"{base}/faults").json() == {"cleared": 2}

    config = httpx.post(f"{base}/config", json={"queue_seconds": 0, "run_seconds": 0.05, "balance": 5}).json()
    assert config["balance"] == 5
    assert rc.queue_seconds == 0
    assert rc.run_seconds == 0.05
    assert httpx.post(f"{base}/config", json={"queue_seconds": -1}).status_code == 400
    assert httpx.post(f"{base}/config", json={"nope": 1}).status_code == 400
    httpx.post(f"{base}/config", json={"failure_message": "boom", "balance": None})
    res = wait_result(client, submit(client, ECHO, {}))
    assert res["error"] == "boom"
    jobs = httpx.get(f"{base}/jobs").json()
    assert jobs[-1]["status"] == "failed"
    assert jobs[-1]["error"] == "boom"

    records = httpx.get(f"{base}/requests").json()
    assert records
    assert not any(rec["path"].startswith("/_emulator/") for rec in records)
    assert {
        "time",
        "method",
        "path",
        "query",
        "status",
        "authorized",
        "auth_header_present",
        "user_agent",
        "body",
        "request_id",
        "peer",
        "pid",
    } <= set(records[0])
    assert httpx.delete(f"{base}/requests").json()["cleared"] == len(records)
    assert httpx.get(f"{base}/requests").json() == []


def test_control_client(rc: RunComfyEmulator, client: httpx.Client) -> None:
    control = EmulatorControl(rc.base_url)
    assert control.health()["status"] == "ok"
    control.add_fault(Fault(path=r"/result$", status=500))
    assert client.get("/v1/requests/x/result").status_code == 500
    assert control.configure(run_seconds=0.2)["run_seconds"] == 0.2
    records = control.requests()
    assert records[-1].status == 500
    assert records[-1].path == "/v1/requests/x/result"
    assert control.clear_requests() == len(records)
    assert control.clear_faults() == 0


def test_fault_rate_hits_a_share_of_requests_and_spares_the_rest() -> None:
    """A fault with ``rate`` hits about that share of matching requests; spared ones are served normally."""
    with RunComfyEmulator(token="rate-token", fault_seed=7) as emu:
        emu.add_fault(Fault(path=r"/status$", status=503, times=None, rate=0.25))
        with httpx.Client(base_url=emu.base_url, headers={"Authorization": "Bearer rate-token"}) as client:
            rid = submit(client, ECHO, {})
            codes = [client.get(f"/v1/requests/{rid}/status").status_code for _ in range(400)]
    assert set(codes) == {200, 503}
    assert 50 <= codes.count(503) <= 150, codes.count(503)  # 100 expected; seeded, so repeatable
    faulted = [r for r in emu.requests if r.fault == "status"]
    assert len(faulted) == codes.count(503)


def test_fault_rate_must_be_a_share() -> None:
    for bad in (0, 1.5, -0.1, True):
        with pytest.raises(ValueError, match="rate"):
            Fault(path="/status$", rate=bad)
    assert Fault.from_dict({"path": "/x", "rate": 0.5}).rate == 0.5
