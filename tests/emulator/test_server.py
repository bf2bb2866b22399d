"""The server itself: HTTP details, test content, 1,000 keep-alive pollers, peer PIDs, CLI, shutdown."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from airflow_provider_runcomfy.emulator import RunComfyEmulator, blob_bytes
from airflow_provider_runcomfy.emulator.media import sample_names

from .conftest import TOKEN
from .helpers import ECHO, image_size, submit, wait_result

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_samples_are_valid_inputs(rc: RunComfyEmulator) -> None:
    expected = {
        "portrait.png": ("PNG", (768, 1024)),
        "landscape.jpg": ("JPEG", (1280, 720)),
        "square.png": ("PNG", (1024, 1024)),
    }
    assert set(rc.sample_names()) >= set(expected)
    for name, (fmt, size) in expected.items():
        r = httpx.get(rc.sample_url(name))
        assert r.status_code == 200
        assert r.headers["content-type"] == ("image/png" if fmt == "PNG" else "image/jpeg")
        assert image_size(r.content) == (fmt, size)
        assert len(r.content) < 4 * 1024 * 1024  # under the video model's 4.7 MB limit
    listing = httpx.get(f"{rc.base_url}/samples").json()["samples"]
    assert {s["name"] for s in listing} >= set(expected)
    assert httpx.get(f"{rc.base_url}/samples/nope.png").status_code == 404
    with pytest.raises(KeyError):
        rc.sample_url("nope.png")


def test_index_lists_endpoints_samples_and_knobs(rc: RunComfyEmulator) -> None:
    """``GET /`` explains the emulator: every listed sample URL works, knobs match the config."""
    r = httpx.get(f"{rc.base_url}/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    index = r.json()
    assert index["base_url"] == rc.base_url
    paths = {e["path"] for e in index["endpoints"]}
    assert {"/v1/models/{model_id}", "/v1/requests/{request_id}/status", "/_emulator/requests"} <= paths
    assert index["samples"] == [rc.sample_url(name) for name in rc.sample_names()]
    assert index["request_log"] == f"{rc.base_url}/_emulator/requests"
    assert index["knobs"] == httpx.get(index["knobs_url"]).json()
    assert "bytedance/dreamina-4-0/edit" in index["models"]
    assert httpx.get(index["request_log"]).status_code == 200
    page = httpx.get(f"{rc.base_url}/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.headers["content-type"].startswith("text/html")
    assert f'<a href="{rc.sample_url("portrait.png")}">' in page.text
    assert httpx.post(f"{rc.base_url}/").status_code == 405
    assert rc.requests == []  # the index is for people: not in the request log
    # GET / and the catalog agree: the same models, the catalog's endpoints listed
    catalog = httpx.get(
        f"{rc.base_url}/v1/models", params={"limit": 1000}, headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    assert index["models"] == [m["model_id"] for m in catalog["models"]]
    assert {"/v1/models", "/v1/models/categories", "/v1/models/{model_id}"} <= paths
    assert "runcomfy/emulator/echo" not in index["models"], "the echo test model is no catalog model"
    assert "runcomfy/emulator/echo" in index["test_models"]


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_generated_image_padded_to_15mb(rc: RunComfyEmulator, fmt: str) -> None:
    r = httpx.get(rc.image_url(1200, 900, fmt, size_bytes=15_000_000))
    assert r.status_code == 200
    assert r.headers["content-type"] == f"image/{fmt}"
    assert int(r.headers["content-length"]) == len(r.content) >= 15_000_000
    assert image_size(r.content) == (fmt.upper(), (1200, 900))


@pytest.mark.parametrize(("fmt", "pil"), [("gif", "GIF"), ("webp", "WEBP"), ("jpg", "JPEG")])
def test_generated_image_formats(rc: RunComfyEmulator, fmt: str, pil: str) -> None:
    r = httpx.get(rc.image_url(321, 123, fmt, size_bytes=200_000))
    assert len(r.content) >= 200_000
    assert image_size(r.content) == (pil, (321, 123))


def test_generated_image_without_length(rc: RunComfyEmulator) -> None:
    with httpx.Client() as c:
        r = c.get(rc.image_url(640, 480, "png", nolength=True))
    assert "content-length" not in r.headers
    assert r.headers["connection"] == "close"
    assert image_size(r.content) == ("PNG", (640, 480))
    assert httpx.get(f"{rc.base_url}/images/gen?w=0").status_code == 400
    assert httpx.get(f"{rc.base_url}/images/gen?fmt=bmp").status_code == 400


def test_not_an_image(rc: RunComfyEmulator) -> None:
    r = httpx.get(rc.not_image_url())
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert b"<html>" in r.content


def test_blob_streams_exact_bytes(rc: RunComfyEmulator) -> None:
    size = 48 * 1024 * 1024 + 123
    digest = hashlib.sha256()
    received = 0
    with httpx.stream("GET", rc.blob_url(size, "video/mp4")) as r:
        assert r.headers["content-type"] == "video/mp4"
        assert int(r.headers["content-length"]) == size
        for chunk in r.iter_raw():
            digest.update(chunk)
            received += len(chunk)
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(blob_bytes(0, size)).hexdigest()


def test_range_and_head(rc: RunComfyEmulator) -> None:
    url = rc.blob_url(1_000_000)
    r = httpx.get(url, headers={"Range": "bytes=999000-"})
    assert r.status_code == 206
    assert r.headers["content-range"] == "bytes 999000-999999/1000000"
    assert r.content == blob_bytes(999_000, 1_000_000)
    assert httpx.get(url, headers={"Range": "bytes=2000000-"}).status_code == 416
    head = httpx.head(rc.sample_url("square.png"))
    assert head.status_code == 200
    assert int(head.headers["content-length"]) > 0
    assert head.content == b""


def _raw_exchange(port: int, payload: bytes, reads: int = 1) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        data = b""
        while data.count(b"HTTP/1.1 ") < reads or not data.endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_keep_alive_pipelining_and_bad_requests(rc: RunComfyEmulator) -> None:
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    two = (b"GET /v1/requests/a/status HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n") * 2
    answer = _raw_exchange(rc.port, two, reads=2)
    assert answer.count(b"HTTP/1.1 404 Not Found") == 2  # both answered on one connection
    assert len({r.peer for r in rc.requests}) == 1
    assert _raw_exchange(rc.port, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400")
    body = json.dumps({"k": "v"}).encode()
    chunked = (
        b"POST /v1/models/"
        + ECHO.encode()
        + b" HTTP/1.1\r\nHost: x\r\n"
        + auth
        + b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    answer = _raw_exchange(rc.port, chunked, reads=2)
    assert b"100 Continue" in answer
    assert b"200 OK" in answer
    assert b"request_id" in answer
    assert rc.requests[-1].body == {"k": "v"}


def test_thousand_keep_alive_pollers(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.queue_seconds, rc.run_seconds = 0.0, 60.0
    rid = submit(client, ECHO, {})
    request = (
        f"GET /v1/requests/{rid}/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {TOKEN}\r\nUser-Agent: poller\r\n\r\n"
    ).encode()
    clients, polls = 1000, 3

    async def poller() -> list[int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", rc.port)
        codes = []
        try:
            for _ in range(polls):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = json.loads(await reader.readexactly(length))
                assert body["status"] == "in_progress"
                codes.append(int(head.split(b" ")[1]))
                await asyncio.sleep(0.05)
        finally:
            writer.close()
        return codes

    async def main() -> list[list[int]]:
        return await asyncio.wait_for(asyncio.gather(*(poller() for _ in range(clients))), 60)

    started = time.monotonic()
    results = asyncio.run(main())
    elapsed = time.monotonic() - started
    assert all(codes == [200] * polls for codes in results)
    assert elapsed < 30
    logged = [r for r in rc.requests if r.user_agent == "poller"]
    assert len(logged) == clients * polls
    assert len({r.peer for r in logged}) == clients  # three polls per connection: keep-alive held


def test_record_peer_pid_in_process_and_subprocess() -> None:
    with RunComfyEmulator(record_peer_pid=True) as emu:
        assert httpx.get(emu.sample_url()).status_code == 200
        code = f"import urllib.request; urllib.request.urlopen({emu.sample_url('square.png')!r}).read()"
        child = subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
        assert child.returncode == 0
        child_proc = subprocess.Popen([sys.executable, "-c", f"import time; {code}; time.sleep(0.5)"])
        child_proc.wait(timeout=30)
        records = emu.requests
    assert records[0].pid == os.getpid()
    assert records[-1].pid == child_proc.pid
    assert records[1].pid not in (None, os.getpid())


def test_stop_releases_threads_and_port() -> None:
    before = {t.ident for t in threading.enumerate()}
    emu = RunComfyEmulator(queue_seconds=0, run_seconds=0.05)
    with emu:
        port = emu.port
        with httpx.Client(headers={"Authorization": f"Bearer {emu.token}"}) as c:
            r = c.post(
                f"{emu.base_url}/v1/models/bytedance/dreamina-4-0/edit",
                json={"prompt": "x", "image_urls": [emu.sample_url()]},
            )
            assert r.status_code == 200
            time.sleep(0.3)
        keep_alive = socket.create_connection(("127.0.0.1", port))
        keep_alive.sendall(b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}"):
            answer += keep_alive.recv(4096)
        assert b"keep-alive" in answer
        assert emu.running
        assert json.loads(emu.connection_json()) == {
            "conn_type": "runcomfy",
            "host": emu.base_url,
            "password": "emulator-token",
        }
    assert not emu.running
    assert {t.ident for t in threading.enumerate()} <= before
    assert keep_alive.recv(10) == b""  # the server closed the idle keep-alive connection
    keep_alive.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    with pytest.raises(RuntimeError):
        emu.start()


def test_cli_serves_and_exits_on_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    fault = json.dumps({"path": "/result$", "status": 503, "times": 1})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_runcomfy.emulator",
            "--port",
            "0",
            "--token",
            "cli-token",
            "--queue-seconds",
            "0",
            "--run-seconds",
            "0.1",
            "--ready-file",
            str(ready),
            "--fault",
            fault,
            "--balance",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("RUNCOMFY_EMULATOR_URL=http://127.0.0.1:")
        base_url = line.split()[0].split("=", 1)[1]
        conn = json.loads(line.split("AIRFLOW_CONN_RUNCOMFY_DEFAULT=", 1)[1].strip().strip("'"))
        assert conn == {"conn_type": "runcomfy", "host": base_url, "password": "cli-token"}
        guide = [proc.stdout.readline().strip() for _ in range(len(sample_names()) + 2)]
        samples = [x.rsplit(" ", 1)[1] for x in guide if x.startswith("# sample image: ")]
        assert samples == [f"{base_url}/samples/{name}" for name in sample_names()]
        assert f"# request log:  {base_url}/_emulator/requests" in guide
        assert guide[-1].startswith(f"# index:        {base_url}/ ")
        for url in samples:  # each printed sample URL serves a real image
            assert httpx.get(url).headers["content-type"].startswith("image/")
        info = json.loads(ready.read_text())
        assert info == {"base_url": base_url, "port": int(base_url.rsplit(":", 1)[1]), "pid": proc.pid}
        with httpx.Client(base_url=base_url, headers={"Authorization": "Bearer cli-token"}) as c:
            rid = c.post(f"/v1/models/{ECHO}", json={"hello": "cli"}).json()["request_id"]
            assert c.get(f"/v1/requests/{rid}/result").status_code == 503
            time.sleep(0.3)
            assert c.get(f"/v1/requests/{rid}/result").json()["status"] == "succeeded"
            assert httpx.get(f"{base_url}/_emulator/config").json()["balance"] == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert not ready.exists()


def test_held_jobs_stay_queued_until_the_last_is_submitted_then_all_start(
    rc: RunComfyEmulator, client: httpx.Client
) -> None:
    """``hold_until_submits``: "these jobs ran together" is the emulator's fact, not the clock's."""
    rc.hold_until_submits = 3
    first = [submit(client, ECHO, {"n": i}) for i in range(2)]
    time.sleep(1.0)  # well past queue (0.3 s) + run (0.4 s): unheld jobs would be done
    assert [client.get(f"/v1/requests/{rid}/status").json()["status"] for rid in first] == ["in_queue"] * 2
    last = submit(client, ECHO, {"n": 2})
    results = [wait_result(client, rid, timeout=10) for rid in [*first, last]]
    assert [r["status"] for r in results] == ["succeeded"] * 3
    jobs = {j["request_id"]: j for j in rc.jobs()}
    submitted_last = max(jobs[rid]["created_at"] for rid in [*first, last])
    assert all(jobs[rid]["finished_at"] > submitted_last for rid in first)
    # One-shot: the knob cleared itself, and the next job runs on its own clock.
    assert rc.hold_until_submits is None
    assert wait_result(client, submit(client, ECHO, {"n": 3}), timeout=10)["status"] == "succeeded"


def test_a_held_job_can_be_cancelled_and_the_hold_knob_is_checked(
    rc: RunComfyEmulator, client: httpx.Client
) -> None:
    rc.hold_until_submits = 2
    held = submit(client, ECHO, {"n": 0})
    answer = client.post(f"/v1/requests/{held}/cancel")
    assert answer.status_code == 202
    assert client.get(f"/v1/requests/{held}/status").json()["status"] == "cancelled"
    other = submit(client, ECHO, {"n": 1})  # the second submit releases the hold; the cancel stands
    assert wait_result(client, other, timeout=10)["status"] == "succeeded"
    assert client.get(f"/v1/requests/{held}/result").json()["status"] == "cancelled"
    bad = httpx.post(f"{rc.base_url}/_emulator/config", json={"hold_until_submits": 0})
    assert bad.status_code == 400
    assert "hold_until_submits must be an integer >= 1 or null" in bad.text
    with pytest.raises(ValueError, match="hold_until_submits"):
        rc.hold_until_submits = -1


def test_emulator_process_runs_it_as_its_own_process_and_stops_it(tmp_path: Path) -> None:
    from airflow_provider_runcomfy.emulator import EmulatorProcess

    with EmulatorProcess(tmp_path, token=TOKEN, run_seconds=0.2, extra_args=["--fault-seed", "7"]) as emu:
        assert emu.pid != os.getpid()
        assert json.loads(emu.conn_json())["host"] == emu.base_url
        assert emu.configure(queue_seconds=0.1)["queue_seconds"] == 0.1
        with httpx.Client(base_url=emu.base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            rid = submit(client, ECHO, {"n": 1})
            assert wait_result(client, rid)["status"] == "succeeded"
        (record,) = [r for r in emu.requests() if r.method == "POST"]
        assert record.pid == os.getpid(), "it records the client's PID by default"
        assert [j["request_id"] for j in emu.jobs()] == [rid]
        proc = emu.proc
    assert proc is not None
    assert proc.poll() is not None, "stopped on leaving the block"
    assert not emu.ready_file.exists()
