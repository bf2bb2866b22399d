"""The emulator's dialects: each variant of the live service's vocabulary, alone, together and per request."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_runcomfy.emulator import DIALECTS, Dialect, EmulatorControl, Fault, RunComfyEmulator
from airflow_provider_runcomfy.emulator.__main__ import build_parser, main
from airflow_provider_runcomfy.emulator.dialect import (
    MODEL_API_PRESETS,
    ROBUSTNESS_PRESETS,
    UNKNOWN_WORD,
    dialect_named,
)
from tests.emulator.helpers import ECHO

if TYPE_CHECKING:
    import httpx


def life(
    client: httpx.Client, rid: str, timeout: float = 15.0
) -> tuple[list[str], list[str], dict[str, Any]]:
    """Poll status and result until the result is final: every status word, result word, last result."""
    status_words: list[str] = []
    result_words: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status_words.append(client.get(f"/v1/requests/{rid}/status").json()["status"])
        result = client.get(f"/v1/requests/{rid}/result").json()
        result_words.append(result["status"])
        if result["status"] in ("succeeded", "completed", "failed", "cancelled", "canceled"):
            # The job may have ended between the two reads: the status's last word comes after.
            status_words.append(client.get(f"/v1/requests/{rid}/status").json()["status"])
            return status_words, result_words, result
        time.sleep(0.02)
    raise AssertionError(f"job {rid} did not finish in {timeout}s")


def echo(client: httpx.Client) -> str:
    r = client.post(f"/v1/models/{ECHO}", json={"prompt": "dialect"})
    assert r.status_code == 200, r.text
    rid: str = r.json()["request_id"]
    return rid


def test_documented_is_the_default(rc: RunComfyEmulator, client: httpx.Client) -> None:
    assert rc.dialect == Dialect() == DIALECTS["documented"]
    statuses, results, last = life(client, echo(client))
    assert set(statuses) == {"in_queue", "in_progress", "completed"}
    assert set(results) == {"in_queue", "in_progress", "succeeded"}
    assert "error_code" not in last
    assert "model_id" not in last


def test_completed_results(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.dialect = "completed-results"
    statuses, results, last = life(client, echo(client))
    assert results[-1] == "completed"
    assert last["output"]["image"].startswith(rc.base_url)
    assert statuses[-1] == "completed"


def test_final_status_words_and_us_spelling(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.dialect = "final-status-words+canceled"
    assert life(client, echo(client))[0][-1] == "succeeded"
    rc.failure_message = "sampler crashed"
    statuses, results, last = life(client, echo(client))
    assert (statuses[-1], results[-1], last["error"]) == ("failed", "failed", "sampler crashed")
    rc.failure_message = None
    rc.queue_seconds = 30
    rid = echo(client)
    client.post(f"/v1/requests/{rid}/cancel")
    assert client.get(f"/v1/requests/{rid}/status").json()["status"] == "canceled"
    assert client.get(f"/v1/requests/{rid}/result").json()["status"] == "canceled"


def test_in_flight_words(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.dialect = "in-flight-words"
    rc.queue_seconds, rc.run_seconds = 0.6, 0.6
    statuses, results, _ = life(client, echo(client))
    assert {"pending", "waiting", "starting", "processing"} <= set(results)
    assert results.index("pending") < results.index("waiting") < results.index("starting")
    assert results.index("starting") < results.index("processing") < len(results) - 1
    assert set(statuses) == {"in_queue", "in_progress", "completed"}, "the status endpoint keeps its words"


def test_unknown_status_word_while_in_flight(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.dialect = "unknown-status"
    statuses, results, _ = life(client, echo(client))
    assert statuses[0] == UNKNOWN_WORD
    assert set(statuses) == {UNKNOWN_WORD, "completed"}
    assert statuses[-1] == "completed"
    assert {"in_queue", "in_progress"} <= set(results)


def test_null_error_codes_on_every_success_answer(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.dialect = "null-error-codes"
    submit = client.post(f"/v1/models/{ECHO}", json={"prompt": "x"})
    rid = submit.json()["request_id"]
    answers = [submit, client.get(f"/v1/requests/{rid}/status"), client.get(f"/v1/requests/{rid}/result")]
    answers.append(client.post(f"/v1/requests/{rid}/cancel"))
    assert [a.status_code for a in answers] == [200, 200, 200, 202]
    assert all(a.json()["error_code"] is None for a in answers)
    unknown = client.get("/v1/requests/nope/status")
    assert unknown.json()["error_code"] == 404001, "errors keep their codes"


@pytest.mark.parametrize(
    ("dialect", "queued_answer", "running_answer"),
    [
        ("documented", {"status": "completed", "outcome": "cancelled"}, {"outcome": "not_cancellable"}),
        ("cancel-requested", {"status": "cancellation_requested"}, {"status": "cancellation_requested"}),
        ("cancel-status-only", {"status": "cancelled"}, {"outcome": "not_cancellable"}),
        ("cancel-status-only+canceled", {"status": "canceled"}, {"outcome": "not_cancellable"}),
    ],
)
def test_cancel_answers(
    rc: RunComfyEmulator,
    client: httpx.Client,
    dialect: str,
    queued_answer: dict[str, Any],
    running_answer: dict[str, Any],
) -> None:
    rc.dialect = dialect
    rc.queue_seconds = 30
    queued = echo(client)
    body = client.post(f"/v1/requests/{queued}/cancel").json()
    assert body == {"request_id": queued, **queued_answer}
    assert client.get(f"/v1/requests/{queued}/result").json()["status"] in ("cancelled", "canceled")

    rc.queue_seconds, rc.run_seconds = 0, 30
    running = echo(client)
    time.sleep(0.1)
    body = client.post(f"/v1/requests/{running}/cancel").json()
    assert {k: body[k] for k in running_answer} == running_answer
    assert client.get(f"/v1/requests/{running}/status").json()["status"] == "in_progress", "it runs on"


def test_extra_fields(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.dialect = "extra-fields"
    rid = echo(client)
    assert "instance_id" not in client.get(f"/v1/requests/{rid}/status").json(), "not while queued"
    _, _, last = life(client, rid)
    assert last["model_id"] == ECHO
    assert client.get(f"/v1/requests/{rid}/status").json()["instance_id"]


def test_live_is_every_client_variant_at_once(rc: RunComfyEmulator, client: httpx.Client) -> None:
    rc.dialect = "live"
    rc.queue_seconds, rc.run_seconds = 0.4, 0.4
    statuses, results, last = life(client, echo(client))
    assert statuses[-1] == "succeeded"
    assert results[-1] == "completed"
    assert {"pending", "starting"} & set(results)
    assert last["error_code"] is None
    assert last["model_id"] == ECHO
    assert rc.dialect.cancel_answer == "requested"
    assert rc.dialect.unknown_status_word is None, "live keeps to words RunComfy's clients have seen"


def test_a_dialect_fault_words_only_the_requests_it_matches(
    rc: RunComfyEmulator, client: httpx.Client
) -> None:
    rid = echo(client)
    rc.add_fault(Fault(path=r"/status$", kind="dialect", dialect="unknown-status", times=2))
    words = [client.get(f"/v1/requests/{rid}/status").json()["status"] for _ in range(3)]
    assert words == [UNKNOWN_WORD, UNKNOWN_WORD, "in_queue"]
    assert [r.fault for r in rc.requests[-3:]] == ["dialect", "dialect", None]
    rc.add_fault(Fault(path=r"/result$", kind="dialect", dialect="null-error-codes"))
    assert client.get(f"/v1/requests/{rid}/result").json()["error_code"] is None


def test_bad_dialects_are_refused_early(rc: RunComfyEmulator) -> None:
    presets = "documented, model-api, every-variant, live"
    with pytest.raises(ValueError, match=f"unknown dialect nope; presets: {presets}"):
        rc.dialect = "nope"
    with pytest.raises(ValueError, match="needs a dialect"):
        Fault(path="/status$", kind="dialect")
    with pytest.raises(ValueError, match="unknown dialect"):
        Fault.from_dict({"path": "/status$", "kind": "dialect", "dialect": "lvie"})
    with pytest.raises(ValueError, match="cancel_answer"):
        Dialect(cancel_answer="sometimes")
    assert rc.dialect == Dialect(), "a refused value changes nothing"


def test_combined_spec_takes_every_flag() -> None:
    combined = dialect_named("completed-results + canceled, null-error-codes")
    assert (combined.completed_results, combined.us_spelling, combined.null_error_codes) == (True, True, True)
    assert not combined.final_status_words
    assert combined.name == "completed-results+canceled+null-error-codes"


def test_control_endpoint_and_cli_flag(rc: RunComfyEmulator) -> None:
    control = EmulatorControl(rc.base_url)
    config = control.configure(dialect="live")
    assert config["dialect"] == DIALECTS["live"].to_dict()
    assert rc.dialect == DIALECTS["live"]
    control.configure(dialect=DIALECTS["canceled"].to_dict())  # the flags as JSON round-trip
    assert rc.dialect == DIALECTS["canceled"]
    assert build_parser().parse_args(["--dialect", "live"]).dialect == "live"
    assert build_parser().parse_args([]).dialect == "documented"
    assert main(["--dialect", "nope"]) == 2


# What RunComfy's two clients that read the Model API's words accept, written from their code
# (runcomfy-com/runcomfy-mcp runcomfy_client.py; comfyui-runcomfy-partner-nodes runcomfy/execution.py):
#: The MCP server polls the status endpoint until one of these; any other word means "poll on".
MCP_FINAL_STATUS = {"completed", "cancelled", "failed"}
#: The partner nodes read only the result endpoint; a word outside this set fails the node.
NODES_RESULT_WORDS = {
    *("completed", "succeeded", "failed", "cancelled"),
    *("in_queue", "in_progress", "pending", "waiting", "starting", "processing"),
}


def what_the_clients_refuse(rc: RunComfyEmulator, client: httpx.Client) -> list[str]:
    """Run a success, a failure and a cancelled queued job; say what would break either client."""
    problems: list[str] = []
    rc.queue_seconds, rc.run_seconds = 0.2, 0.3
    for failure in (None, "boom"):
        rc.failure_message = failure
        statuses, results, last = life(client, echo(client))
        if statuses[-1] not in MCP_FINAL_STATUS:
            problems.append(f"MCP: the status endpoint ends at {statuses[-1]!r}, never final for it")
        problems += [f"nodes: result word {w!r}" for w in sorted(set(results) - NODES_RESULT_WORDS)]
        if last.get("error_code") is not None:
            problems.append("MCP: a result carries a non-null error_code")
    rc.failure_message = None
    rc.queue_seconds = 30
    queued = echo(client)
    answer = client.post(f"/v1/requests/{queued}/cancel").json()
    if "cancelled" not in (answer.get("status"), answer.get("outcome")):
        problems.append(f"nodes: a cancelled queued job reads as 'may be charged' ({answer})")
    statuses, results, _ = life(client, queued)
    if statuses[-1] not in MCP_FINAL_STATUS:
        problems.append(f"MCP: a cancelled job's status ends at {statuses[-1]!r}")
    problems += [f"nodes: result word {w!r}" for w in sorted(set(results) - NODES_RESULT_WORDS)]
    return problems


@pytest.mark.parametrize("preset", MODEL_API_PRESETS)
def test_the_model_api_presets_break_neither_of_runcomfys_clients(
    rc: RunComfyEmulator, client: httpx.Client, preset: str
) -> None:
    rc.dialect = preset
    assert what_the_clients_refuse(rc, client) == []


def test_model_api_sends_every_variant_both_clients_accept(
    rc: RunComfyEmulator, client: httpx.Client
) -> None:
    rc.dialect = "model-api"
    rc.queue_seconds, rc.run_seconds = 0.4, 0.4
    statuses, results, last = life(client, echo(client))
    assert statuses[-1] == "completed"
    assert results[-1] == "completed"
    assert {"pending", "starting"} & set(results)
    assert last["error_code"] is None
    assert last["model_id"] == ECHO


def test_every_variant_is_robustness_only(rc: RunComfyEmulator, client: httpx.Client) -> None:
    """The union of every client's tolerance breaks both of RunComfy's own clients: a robustness test."""
    assert DIALECTS["live"] is DIALECTS["every-variant"], "the earlier name still works"
    assert set(MODEL_API_PRESETS) | set(ROBUSTNESS_PRESETS) == set(DIALECTS)
    assert not set(MODEL_API_PRESETS) & set(ROBUSTNESS_PRESETS)
    rc.dialect = "every-variant"
    problems = what_the_clients_refuse(rc, client)
    assert any(p.startswith("MCP:") for p in problems), problems
    assert any(p.startswith("nodes:") for p in problems), problems
