"""The four API endpoints: exact bodies, the job life cycle, outputs, cancel and the documented errors."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

from .conftest import OTHER_TOKEN, TOKEN
from .helpers import ECHO, EDIT, VIDEO, avi_duration, avi_frames, image_size, submit, wait_result

if TYPE_CHECKING:
    from airflow_provider_runcomfy.emulator import RunComfyEmulator


def test_submit_answers_absolute_urls(rc: RunComfyEmulator, client: httpx.Client) -> None:
    r = client.post(f"/v1/models/{EDIT}", json={"prompt": "a red hat", "image_urls": [rc.sample_url()]})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"request_id", "status_url", "result_url", "cancel_url"}
    rid = body["request_id"]
    assert uuid.UUID(rid).version == 4
    base = f"{rc.base_url}/v1/requests/{rid}"
    assert body["status_url"] == f"{base}/status"
    assert body["result_url"] == f"{base}/result"
    assert body["cancel_url"] == f"{base}/cancel"
    assert rc.requests[-1].request_id == rid


def test_life_cycle_words_and_bodies(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.queue_seconds, rc.run_seconds = 0.3, 0.4
    rid = submit(client, EDIT, {"prompt": "sunset", "image_urls": [rc.sample_url("square.png")]})
    statuses: list[str] = []
    results: list[str] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        s = client.get(f"/v1/requests/{rid}/status").json()
        res = client.get(f"/v1/requests/{rid}/result").json()
        assert s["request_id"] == rid == res["request_id"]
        assert s["status_url"].endswith(f"/v1/requests/{rid}/status")
        assert s["result_url"].endswith(f"/v1/requests/{rid}/result")
        if s["status"] == "in_queue":
            assert isinstance(s["queue_position"], int)
            assert s["queue_position"] >= 0
        else:
            assert "queue_position" not in s
        if res["status"] != "succeeded":
            assert "output" not in res
            assert res["finished_at"] is None
        assert "error" not in res
        statuses.append(s["status"])
        results.append(res["status"])
        if s["status"] == "completed" and res["status"] == "succeeded":
            break
        time.sleep(0.04)
    dedup = [w for i, w in enumerate(statuses) if i == 0 or statuses[i - 1] != w]
    assert dedup == ["in_queue", "in_progress", "completed"]
    assert [w for i, w in enumerate(results) if i == 0 or results[i - 1] != w] == [
        "in_queue",
        "in_progress",
        "succeeded",
    ]
    assert list(res) == ["request_id", "status", "output", "created_at", "finished_at"]
    created = datetime.fromisoformat(res["created_at"])
    finished = datetime.fromisoformat(res["finished_at"])
    assert res["created_at"].endswith("Z")
    assert created.utcoffset() == timedelta(0)
    assert 0.6 <= (finished - created).total_seconds() < 5


def test_queue_position_counts_older_queued_jobs(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.queue_seconds = 2.0
    ids = [submit(client, ECHO, {"n": i}) for i in range(3)]
    positions = [client.get(f"/v1/requests/{rid}/status").json()["queue_position"] for rid in ids]
    # Jobs of earlier tests may still be queued ahead: positions are relative.
    assert positions == [positions[0], positions[0] + 1, positions[0] + 2]
    for rid in ids:
        client.post(f"/v1/requests/{rid}/cancel")


def test_edit_outputs_are_real_pngs_served_without_auth(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.queue_seconds, rc.run_seconds = 0.0, 0.1
    urls = [rc.sample_url("portrait.png"), rc.sample_url("landscape.jpg")]
    res = wait_result(client, submit(client, EDIT, {"prompt": "paint it blue", "image_urls": urls}))
    assert res["status"] == "succeeded"
    images = res["output"]["images"]
    assert len(images) == 2
    sizes = []
    for url in images:
        r = httpx.get(url)  # no Authorization header: CDN-like
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/png"
        assert int(r.headers["content-length"]) == len(r.content)
        fmt, size = image_size(r.content)
        assert fmt == "PNG"
        sizes.append(size)
    # No size asked: the model's default 2048x2048(1:1), scaled down to the emulator's 1024 px limit
    assert sizes == [(1024, 1024), (1024, 1024)]
    assert not any(rec.auth_header_present for rec in rc.requests if rec.path.startswith("/files/"))


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [
        ("2048x2048(1:1)", 1024, (1024, 1024)),  # the case: not the portrait input's 768x1024
        ("2560x1440(16:9)", 1024, (1024, 576)),
        ("3024x1296(21:9)", 1024, (1024, 439)),
        ("2304x1728(4:3)", 2048, (2048, 1536)),
        ("1024x1024(1:1)", 2048, (1024, 1024)),  # never scaled up
    ],
)
def test_edit_outputs_follow_the_requested_size(size: str, max_side: int, expected: tuple[int, int]) -> None:
    from airflow_provider_runcomfy.emulator import RunComfyEmulator

    with (
        RunComfyEmulator(token=TOKEN, queue_seconds=0, run_seconds=0.05, max_output_side=max_side) as emu,
        httpx.Client(base_url=emu.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=20) as c,
    ):
        inputs = {"prompt": "x", "image_urls": [emu.sample_url("portrait.png")], "width×height": size}
        res = wait_result(c, submit(c, EDIT, inputs))
        assert res["status"] == "succeeded"
        (url,) = res["output"]["images"]
        assert image_size(httpx.get(url).content) == ("PNG", expected)


@pytest.mark.parametrize(("count", "force_single", "expected"), [(1, False, 1), (5, False, 4), (3, True, 1)])
def test_edit_output_count(
    rc: RunComfyEmulator, client: httpx.Client, count: int, force_single: bool, expected: int
) -> None:
    rc.queue_seconds, rc.run_seconds = 0.0, 0.05
    urls = [rc.sample_url("square.png")] * count
    inputs = {"prompt": "x", "image_urls": urls, "force_single": force_single}
    res = wait_result(client, submit(client, EDIT, inputs))
    assert len(res["output"]["images"]) == expected


def test_video_output_is_a_playable_mjpeg_avi(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.queue_seconds, rc.run_seconds = 0.0, 0.1
    res = wait_result(client, submit(client, VIDEO, {"prompt": "slow zoom", "image_urls": [rc.sample_url()]}))
    assert res["status"] == "succeeded"
    assert set(res["output"]) == {"video"}
    r = httpx.get(res["output"]["video"])
    assert r.status_code == 200
    assert r.headers["content-type"] == "video/x-msvideo"
    assert r.url.path.endswith("/video.avi")
    assert r.content[:4] == b"RIFF"
    assert r.content[8:12] == b"AVI "
    assert b"hdrl" in r.content[:200]
    assert b"idx1" in r.content
    frames = avi_frames(r.content)
    assert len(frames) >= 10
    for frame in frames:
        assert frame[:2] == b"\xff\xd8"
    fmt, (w, h) = image_size(frames[-1])
    assert fmt == "JPEG"
    assert max(w, h) <= 640


@pytest.mark.parametrize(("frames", "seconds"), [(121, 5.0), (241, 10.0)])
def test_video_lasts_as_long_as_frames_asks(
    rc: RunComfyEmulator, client: httpx.Client, frames: int, seconds: float
) -> None:
    """Dreamina's ``frames`` is at 24 fps: 121 is about 5 s, 241 about 10 s (encoded at a lower rate)."""
    rc.queue_seconds, rc.run_seconds = 0.0, 0.1
    inputs = {"prompt": "slow zoom", "image_urls": [rc.sample_url()], "frames": frames}
    res = wait_result(client, submit(client, VIDEO, inputs))
    data = httpx.get(res["output"]["video"]).content
    count, duration = avi_duration(data)
    assert duration == pytest.approx(seconds, abs=0.25)
    assert count == len(avi_frames(data))  # the header tells the truth about the file


def test_echo_model_draws_its_inputs(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.queue_seconds, rc.run_seconds = 0.0, 0.05
    res = wait_result(client, submit(client, ECHO, {"anything": [1, 2], "goes": {"x": True}}))
    assert res["status"] == "succeeded"
    r = httpx.get(res["output"]["image"])
    assert image_size(r.content) == ("PNG", (640, 480))


def test_failure_message_fails_jobs(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.queue_seconds, rc.run_seconds = 0.0, 0.1
    rc.failure_message = "GPU exploded"
    rid = submit(client, ECHO, {})
    res = wait_result(client, rid)
    assert client.get(f"/v1/requests/{rid}/status").json()["status"] == "completed"
    assert res["status"] == "failed"
    assert res["error"] == "GPU exploded"
    assert "output" not in res
    assert res["finished_at"] is not None


def test_include_cost(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.queue_seconds, rc.run_seconds = 0.0, 0.05
    rid = submit(client, EDIT, {"prompt": "x", "image_urls": [rc.sample_url()] * 2})
    wait_result(client, rid)
    with_cost = client.get(f"/v1/requests/{rid}/result", params={"include_cost": "true"}).json()
    assert isinstance(with_cost["cost"], float)
    assert with_cost["cost"] > 0
    assert "cost" not in client.get(f"/v1/requests/{rid}/result").json()


def test_cancel_queued_job(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.queue_seconds = 3.0
    rid = submit(client, ECHO, {})
    r = client.post(f"/v1/requests/{rid}/cancel")
    assert r.status_code == 202
    assert r.json() == {"request_id": rid, "status": "completed", "outcome": "cancelled"}
    assert client.get(f"/v1/requests/{rid}/status").json()["status"] == "cancelled"
    res = client.get(f"/v1/requests/{rid}/result").json()
    assert res["status"] == "cancelled"
    assert res["finished_at"] is not None
    assert "output" not in res
    assert client.post(f"/v1/requests/{rid}/cancel").json()["outcome"] == "cancelled"


def test_cancel_running_job_is_not_cancellable(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.queue_seconds, rc.run_seconds = 0.0, 3.0
    rid = submit(client, ECHO, {})
    time.sleep(0.05)
    assert client.get(f"/v1/requests/{rid}/status").json()["status"] == "in_progress"
    r = client.post(f"/v1/requests/{rid}/cancel")
    assert r.status_code == 202
    assert r.json() == {"request_id": rid, "status": "in_progress", "outcome": "not_cancellable"}
    assert client.get(f"/v1/requests/{rid}/status").json()["status"] == "in_progress"


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Basic abc", f"Token {TOKEN}"])
def test_bad_or_missing_token(rc: RunComfyEmulator, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    jobs_before = len(rc.jobs())
    for method, path in [("POST", f"/v1/models/{EDIT}"), ("GET", f"/v1/requests/{uuid.uuid4()}/status")]:
        r = httpx.request(method, rc.base_url + path, headers=headers, json={"prompt": "x"})
        assert r.status_code == 401
        assert r.json()["error_code"] == 400004
        assert r.json()["error_message"]
    records = rc.requests
    assert records
    assert all(not rec.authorized for rec in records)
    assert all(rec.auth_header_present == (auth is not None) for rec in records)
    assert len(rc.jobs()) == jobs_before


def test_token_never_in_the_log(rc: RunComfyEmulator, client: httpx.Client) -> None:
    submit(client, ECHO, {})
    httpx.get(f"{rc.base_url}/v1/requests/x/status", headers={"Authorization": "Bearer secret-wrong"})
    dumped = json.dumps([rec.to_dict() for rec in rc.requests])
    assert TOKEN not in dumped
    assert "secret-wrong" not in dumped
    assert [rec.authorized for rec in rc.requests] == [True, False]
    remote = httpx.get(f"{rc.base_url}/_emulator/requests").text
    assert TOKEN not in remote


def test_other_accounts_request_is_forbidden(rc: RunComfyEmulator, client: httpx.Client) -> None:
    with httpx.Client(base_url=rc.base_url, headers={"Authorization": f"Bearer {OTHER_TOKEN}"}) as other:
        rid = submit(other, ECHO, {})
        assert other.get(f"/v1/requests/{rid}/status").status_code == 200
    for method, action in [("GET", "status"), ("GET", "result"), ("POST", "cancel")]:
        r = client.request(method, f"/v1/requests/{rid}/{action}")
        assert r.status_code == 403
        assert r.json()["error_code"] == 403001


def test_unknown_request_id(client: httpx.Client) -> None:
    for method, action in [("GET", "status"), ("GET", "result"), ("POST", "cancel")]:
        r = client.request(method, f"/v1/requests/{uuid.uuid4()}/{action}")
        assert r.status_code == 404
        assert r.json()["error_code"] == 404001


def test_expired_request_id_and_files(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.queue_seconds, rc.run_seconds, rc.result_ttl_seconds = 0.0, 0.05, 0.4
    rid = submit(client, ECHO, {"a": 1})
    res = wait_result(client, rid)
    file_url = res["output"]["image"]
    assert httpx.get(file_url).status_code == 200
    time.sleep(0.5)
    for action in ("status", "result"):
        r = client.get(f"/v1/requests/{rid}/{action}")
        assert r.status_code == 404
        assert r.json()["error_code"] == 404001
        assert "expired" in r.json()["error_message"]
    assert httpx.get(file_url).status_code == 404


def test_unknown_model(client: httpx.Client) -> None:
    r = client.post("/v1/models/bytedance/no-such-model", json={"prompt": "x"})
    assert r.status_code == 400
    assert r.json()["error_code"] == 400001


def test_balance_runs_out(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.balance = 1
    submit(client, ECHO, {})
    r = client.post(f"/v1/models/{ECHO}", json={})
    assert r.status_code == 402
    assert r.json()["error_code"] == 400002
    assert rc.balance == 0
    assert rc.requests[-1].request_id is None  # no job was created


def test_unknown_paths_and_methods(rc: RunComfyEmulator, client: httpx.Client) -> None:
    r = client.get("/nothing/here")
    assert r.status_code == 404
    assert "error_message" in r.json()
    assert client.get(f"/v1/models/{EDIT}").status_code == 200  # a GET there is a catalog read
    assert client.delete(f"/v1/models/{EDIT}").status_code == 405
    assert client.delete(f"/v1/requests/{uuid.uuid4()}/status").status_code == 405


def test_echo_job_takes_its_timing_from_its_inputs(rc: RunComfyEmulator, client: httpx.Client) -> None:
    """The echo model's queue_seconds/run_seconds inputs set one job's life; others keep the config's."""
    held = submit(client, ECHO, {"queue_seconds": 600, "run_seconds": 0})
    quick = submit(client, ECHO, {"queue_seconds": 0, "run_seconds": 0.1})
    default = submit(client, ECHO, {"queue_seconds": "soon"})  # not a number: the config's 0.3 s
    assert client.get(f"/v1/requests/{held}/status").json()["status"] == "in_queue"
    assert wait_result(client, quick)["status"] == "succeeded"
    assert wait_result(client, default)["status"] == "succeeded"
    assert client.get(f"/v1/requests/{held}/status").json()["status"] == "in_queue"
    assert client.post(f"/v1/requests/{held}/cancel").json()["outcome"] == "cancelled"
