"""Real clients run whole sessions through a three-replica fleet behind HAProxy round-robin (tests/support/fleet.py):
every request may land on another replica, and nothing the client sees may tell.

The Python SDK (mcp) and the TypeScript SDK in the 2025 era (a session with progress, elicitation, sampling and a
stream resumed with Last-Event-ID after the server ended it early), and the Python SDK in the stateless 2026-07-28
era. HAProxy names the replica that answered each request (X-Served-By); each test asserts that one session's
requests were served by more than one replica, so the session really crossed replicas.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.conftest import FIXTURES, run_process, run_scenario
from tests.support.fleet import SERVED_BY, Fleet, run_fleet
from tests.support.node import node22, node_env

pytestmark = pytest.mark.e2e

LEGACY = "legacy"
MODERN = "2026-07-28"
SCENARIO_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with run_fleet(tmp_path_factory.mktemp("fleet-sessions")) as running:
        yield running


@pytest.fixture(scope="module")
def api_key(fleet: Fleet) -> str:
    return fleet.api_key("sessions")


@dataclass
class Served:
    """Which replica answered each request, as HAProxy said: (JSON-RPC method or HTTP verb, session id, replica)."""

    seen: list[tuple[str, str | None, str]] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)  # replicas that answered a GET with Last-Event-ID

    async def record(self, response: httpx2.Response) -> None:
        request = response.request
        body = json.loads(request.content) if request.content else {}
        what = body.get("method", "result" if "result" in body else request.method) if isinstance(body, dict) else "?"
        self.seen.append((str(what), request.headers.get("mcp-session-id"), response.headers.get(SERVED_BY, "")))
        if request.headers.get("last-event-id"):
            self.resumed.append(response.headers.get(SERVED_BY, ""))

    def client(self, key: str) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers={"authorization": f"Bearer {key}"},
            event_hooks={"response": [self.record]},
            trust_env=False,
            timeout=30,
        )

    def replicas(self, session: str | None) -> set[str]:
        return {replica for _, sid, replica in self.seen if sid == session}


class Person:
    """Answers sampling and elicitation like a model and a person would, and remembers the asks."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def sample(self, _ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.asked.append("sampling")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="Paris"), model="e2e", stop_reason="endTurn"
        )

    async def elicit(self, _ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append("elicitation")
        return types.ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.com"})


def text_of(result: types.CallToolResult) -> str:
    assert result.is_error is False, result
    [content] = result.content
    assert isinstance(content, types.TextContent)
    return content.text


async def full_session(fleet: Fleet, key: str, era: str, served: Served, person: Person) -> dict[str, Any]:
    progress: list[tuple[float, float | None]] = []

    async def on_progress(value: float, total: float | None, _message: str | None) -> None:
        progress.append((value, total))

    async with (
        served.client(key) as http,
        Client(
            streamable_http_client(fleet.url, http_client=http),
            mode=era,
            sampling_callback=person.sample,
            elicitation_callback=person.elicit,
        ) as client,
    ):
        names = {t.name for t in (await client.list_tools()).tools}
        out: dict[str, Any] = {
            "version": client.protocol_version,
            "names": names,
            "progress_text": text_of(
                await client.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
            ),
            "elicited": text_of(await client.call_tool("test_elicitation", {"message": "Who are you?"})),
            "sampled": text_of(await client.call_tool("test_sampling", {"prompt": "Capital of France?"})),
            "echoes": [text_of(await client.call_tool("echo", {"text": f"py {i}"})) for i in range(4)],
        }
        if era == LEGACY:
            out["resumed"] = text_of(await client.call_tool("test_reconnection", {}))
        out["progress"] = progress
        return out


def assert_full_session(out: dict[str, Any], person: Person, prefix: str) -> None:
    assert {"test_tool_with_progress", "test_elicitation", "test_sampling", "echo"} <= out["names"]
    assert out["progress"] == [(0, 100), (50, 100), (100, 100)]
    assert out["progress_text"] == "Tool with progress executed successfully"
    assert out["elicited"] == "User response: action=accept, content={'username': 'ada', 'email': 'ada@example.com'}"
    assert out["sampled"] == "LLM response: Paris"
    assert out["echoes"] == [f"{prefix} {i}" for i in range(4)]
    assert sorted(person.asked) == ["elicitation", "sampling"]


def test_python_sdk_2025_session_works_while_its_requests_alternate_between_replicas(
    fleet: Fleet, api_key: str
) -> None:
    served, person = Served(), Person()

    out = run_scenario(lambda: full_session(fleet, api_key, LEGACY, served, person), SCENARIO_TIMEOUT)

    assert out["version"] == "2025-11-25"
    assert_full_session(out, person, "py")
    assert out["resumed"] == "Reconnection test completed"
    assert served.resumed, "the SDK resumed the ended stream with Last-Event-ID"
    sessions = {sid for _, sid, _ in served.seen if sid}
    assert len(sessions) == 1, served.seen  # one session from initialize to DELETE, never a new one
    [session] = sessions
    assert len(served.replicas(session)) > 1, served.seen
    assert all(replica in fleet.names for _, _, replica in served.seen), served.seen


def test_python_sdk_2026_requests_alternate_between_replicas(fleet: Fleet, api_key: str) -> None:
    served, person = Served(), Person()

    out = run_scenario(lambda: full_session(fleet, api_key, MODERN, served, person), SCENARIO_TIMEOUT)

    assert out["version"] == MODERN
    assert_full_session(out, person, "py")
    assert all(sid is None for _, sid, _ in served.seen), served.seen
    # The input_required retries of elicitation and sampling carry requestState: any replica can finish them.
    assert {replica for _, _, replica in served.seen} == fleet.names, served.seen


def test_typescript_sdk_2025_session_works_while_its_requests_alternate_between_replicas(
    fleet: Fleet, api_key: str
) -> None:
    done = run_process(
        [str(node22()), str(FIXTURES / "fleet_ts_client.mjs"), fleet.url, api_key],
        env=node_env(),
        cwd=FIXTURES,
        timeout=SCENARIO_TIMEOUT,
    )
    assert done.returncode == 0, done.describe() + "\n" + fleet.describe()
    out = done.json()

    assert out["protocolVersion"] == "2025-11-25" and out["sessionId"]
    assert {"test_tool_with_progress", "test_elicitation", "test_sampling", "echo"} <= set(out["tools"])
    assert out["progress"] == [[0, 100], [50, 100], [100, 100]]
    results = out["results"]
    texts = {name: r["content"][0]["text"] for name, r in results.items() if name != "echoes"}
    assert texts == {
        "progress": "Tool with progress executed successfully",
        "elicitation": "User response: action=accept, content={'username': 'ada', 'email': 'ada@example.com'}",
        "sampling": "LLM response: Paris",
        "reconnection": "Reconnection test completed",
    }
    assert [e["content"][0]["text"] for e in results["echoes"]] == [f"ts {i}" for i in range(4)]
    assert [len(out["asked"]["sampling"]), len(out["asked"]["elicitation"])] == [1, 1]
    exchanges = out["exchanges"]
    assert not [e for e in exchanges if e["status"] == 404], exchanges  # never "session not found"
    in_session = [e for e in exchanges if e["session"] == out["sessionId"]]
    assert len({e["servedBy"] for e in in_session}) > 1, exchanges
    assert any(e["lastEventId"] for e in in_session), "the SDK resumed the ended stream with Last-Event-ID"
