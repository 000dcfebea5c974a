"""A 2026-07-28 upstream's multi round-trip requests and capability errors reach a 2026-07-28 client through a
real `patchbay serve` exactly as the upstream sent them.

The upstream is the conformance fixture (tests/conformance/patchbay.toml) served by its own `patchbay serve`; the
front publishes it with a prefix. Requests are plain HTTP, so the tests see the wire: keys, requests, errors and
HTTP statuses, compared with what the fixture answers directly.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

from tests.conformance.test_conformance import CONFIG as FIXTURE
from tests.integration.test_upstream_mcp import readyz, wait_for
from tests.support.servers import RunningServer, run_patchbay

pytestmark = pytest.mark.e2e

FRONT = """
[server]
connector_retry_max_seconds = 1

[store]
url = "sqlite:///:memory:"

[[connectors]]
name = "fx"
type = "mcp"
url = "__URL__"
"""
ALL_CAPS = {"elicitation": {}, "sampling": {}, "roots": {}}


@contextlib.contextmanager
def fronted(folder: Path, front_config: str = FRONT) -> Iterator[tuple[RunningServer, RunningServer]]:
    """The conformance fixture served by its own Patchbay, and a front whose connector ``fx`` proxies it
    (``front_config`` with ``__URL__`` standing for the fixture's URL), once the front reports it up."""
    with run_patchbay(FIXTURE, log_dir=folder / "fixture") as fixture:
        config = folder / "front.toml"
        config.write_text(front_config.replace("__URL__", fixture.url))
        with run_patchbay(config, log_dir=folder / "front", start_timeout=60) as front:
            wait_for(lambda: readyz(front)["connectors"]["fx"]["ok"], "the fronted fixture")
            yield fixture, front


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, RunningServer]]:
    with fronted(tmp_path_factory.mktemp("passthrough")) as both:
        yield both


def call(
    server: RunningServer, tool: str, caps: dict[str, Any] | None = None, **extra: Any
) -> tuple[int, dict[str, Any]]:
    """POST a 2026-07-28 tools/call; the HTTP status and the JSON-RPC response (from JSON or the SSE stream)."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": ALL_CAPS if caps is None else caps,
        "io.modelcontextprotocol/clientInfo": {"name": "passthrough-test", "version": "1"},
    }
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call"}
    body["params"] = {"name": tool, "arguments": {}, "_meta": meta, **extra}
    headers = {
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": tool,
    }
    response = httpx2.post(server.url, json=body, headers=headers, timeout=30, trust_env=False)
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        events = [orjson.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
        return response.status_code, next(e for e in events if e.get("id") == 7)
    return response.status_code, response.json()


def asked(server: RunningServer, tool: str, caps: dict[str, Any] | None = None) -> dict[str, Any]:
    status, answer = call(server, tool, caps)
    assert status == 200, answer
    result: dict[str, Any] = answer["result"]
    assert result["resultType"] == "input_required", result
    return result


def text(answer: dict[str, Any]) -> str:
    result = answer["result"]
    assert result["resultType"] == "complete" and not result.get("isError"), result
    return str(result["content"][0]["text"])


def accept(**content: Any) -> dict[str, Any]:
    return {"action": "accept", "content": content}


def test_a_2026_client_gets_the_upstream_input_requests_with_their_own_keys(
    servers: tuple[RunningServer, RunningServer],
) -> None:
    fixture, front = servers
    direct = asked(fixture, "test_input_required_result_multiple_inputs")
    fronted = asked(front, "fx_test_input_required_result_multiple_inputs")
    assert fronted["inputRequests"] == direct["inputRequests"]
    assert sorted(fronted["inputRequests"]) == ["client_roots", "greeting", "user_name"]
    answers = {
        "user_name": accept(name="Alice"),
        "greeting": {"role": "assistant", "content": {"type": "text", "text": "Hi"}, "model": "m"},
        "client_roots": {"roots": [{"uri": "file:///tmp/r"}]},
    }
    status, answer = call(
        front,
        "fx_test_input_required_result_multiple_inputs",
        inputResponses=answers,
        requestState=fronted["requestState"],
    )
    assert status == 200 and text(answer) == "Got client_roots, greeting, user_name"


def test_the_upstream_request_state_travels_inside_the_front_signed_one_over_several_rounds(
    servers: tuple[RunningServer, RunningServer],
) -> None:
    _, front = servers
    first = asked(front, "fx_test_input_required_result_multi_round")
    assert list(first["inputRequests"]) == ["step1"]
    status, second = call(
        front,
        "fx_test_input_required_result_multi_round",
        inputResponses={"step1": accept(name="Alice")},
        requestState=first["requestState"],
    )
    assert status == 200 and list(second["result"]["inputRequests"]) == ["step2"], second
    status, done = call(
        front,
        "fx_test_input_required_result_multi_round",
        inputResponses={"step2": accept(color="blue")},  # step1 is only in the upstream's own state
        requestState=second["result"]["requestState"],
    )
    assert status == 200 and text(done) == "Alice likes blue"


def test_an_altered_or_misused_request_state_is_refused_by_the_front(
    servers: tuple[RunningServer, RunningServer],
) -> None:
    _, front = servers
    state = asked(front, "fx_test_input_required_result_elicitation")["requestState"]
    body, mac = state.split(".")
    payload = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["c"] = {"upstream": "forged"}  # swap the upstream's state for another one
    forged = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode() + "." + mac
    answers = {"user_name": accept(name="Eve")}
    for tool, given in (
        ("fx_test_input_required_result_elicitation", forged),
        ("fx_test_input_required_result_request_state", state),  # issued for another call
    ):
        status, answer = call(front, tool, inputResponses=answers, requestState=given)
        assert answer["error"]["code"] == -32602 and status == 400, answer


def test_the_upstream_asks_only_what_the_client_declared(servers: tuple[RunningServer, RunningServer]) -> None:
    _, front = servers
    sampling_only = asked(front, "fx_test_input_required_result_capabilities", {"sampling": {}})
    assert [(k, r["method"]) for k, r in sampling_only["inputRequests"].items()] == [
        ("sample", "sampling/createMessage")
    ]
    status, answer = call(front, "fx_test_input_required_result_capabilities", {})
    assert status == 200 and text(answer) == "The client can take no input requests."


def test_a_missing_client_capability_is_the_upstream_error_with_its_status(
    servers: tuple[RunningServer, RunningServer],
) -> None:
    fixture, front = servers
    direct_status, direct = call(fixture, "test_missing_capability", {})
    status, answer = call(front, "fx_test_missing_capability", {})
    assert (status, answer["error"]["code"]) == (direct_status, direct["error"]["code"]) == (400, -32021)
    assert answer["error"]["data"] == direct["error"]["data"] == {"requiredCapabilities": {"sampling": {}}}


def test_extra_input_responses_on_a_first_call_reach_the_upstream_which_ignores_them(
    servers: tuple[RunningServer, RunningServer],
) -> None:
    _, front = servers
    answers = {"user_name": accept(name="Bo"), "unknown_extra_key": accept(foo="bar")}
    status, answer = call(front, "fx_test_input_required_result_elicitation", inputResponses=answers)
    assert status == 200 and text(answer) == "Hello, Bo!"
