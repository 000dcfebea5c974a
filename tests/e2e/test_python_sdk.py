"""The official Python MCP SDK (mcp 2.x `Client`) against a real `patchbay serve`.

Streamable HTTP in both protocol eras (2025-11-25 handshake and 2026-07-28 stateless), stdio and the legacy SSE
transport. Every HTTP request the SDK sends is recorded by an httpx2 event hook, so the era is asserted on the wire.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning

from tests.e2e import kanban
from tests.e2e.conftest import CONFORMANCE_CONFIG, WireLog, run_scenario
from tests.support.servers import RunningServer

pytestmark = pytest.mark.e2e

LEGACY = "legacy"
MODERN = "2026-07-28"
META_VERSION = "io.modelcontextprotocol/protocolVersion"


def wire_tools(result: types.ListToolsResult) -> list[dict[str, Any]]:
    return [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in result.tools]


async def kanban_round_trip(client: Client, label: str) -> dict[str, Any]:
    """List the demo tools, read the boards, create a card, read it back by id and find it by search."""
    kanban.assert_demo_tool_list(wire_tools(await client.list_tools()))

    boards = await client.call_tool("list_boards", {})
    assert boards.is_error is False, boards
    assert boards.structured_content is not None
    board = kanban.first_board(boards.structured_content)

    title = kanban.unique_title(label)
    created = await client.call_tool("create_card", kanban.create_card_args(board, title))
    assert created.is_error is False, created
    assert created.structured_content is not None
    kanban.assert_created(created.structured_content, board, title)

    fetched = await client.call_tool("get_card", {"card_id": created.structured_content["id"]})
    assert fetched.is_error is False, fetched
    assert fetched.structured_content is not None
    kanban.assert_same_card(fetched.structured_content, created.structured_content)

    found = await client.call_tool("search_cards", {"query": title})
    assert found.structured_content is not None
    assert [c["id"] for c in found.structured_content["cards"]] == [created.structured_content["id"]]
    return created.structured_content


def assert_handshake_era(wire: WireLog) -> None:
    """2025-11-25: initialize first (no session yet), then every request carries the session the server issued."""
    posts = [r for r in wire.requests if r.method == "POST"]
    assert posts[0].body["method"] == "initialize"
    assert posts[0].session_id is None
    session_ids = {r.session_id for r in wire.requests[1:]}
    assert len(session_ids) == 1 and None not in session_ids, session_ids
    assert {r.protocol_version for r in wire.requests[1:]} == {"2025-11-25"}
    assert wire.requests[-1].method == "DELETE", "the SDK ends its session on exit"


def assert_stateless_era(wire: WireLog) -> None:
    """2026-07-28: no initialize, no Mcp-Session-Id; every request names its version in _meta and the header."""
    assert "initialize" not in wire.rpc_methods()
    assert all(r.session_id is None for r in wire.requests), [r for r in wire.requests if r.session_id]
    assert all(r.method == "POST" for r in wire.requests)
    for request in wire.requests:
        assert request.protocol_version == MODERN
        if "method" in request.body:
            assert request.body["params"]["_meta"][META_VERSION] == MODERN


ERA_CHECKS: dict[str, Callable[[WireLog], None]] = {LEGACY: assert_handshake_era, MODERN: assert_stateless_era}


@pytest.mark.parametrize("era", [LEGACY, MODERN])
def test_python_sdk_lists_reads_and_writes_demo_cards_over_streamable_http(
    demo_server: RunningServer, era: str
) -> None:
    wire = WireLog()

    async def scenario() -> None:
        async with (
            wire.client() as http,
            Client(streamable_http_client(demo_server.url, http_client=http), mode=era) as client,
        ):
            assert client.protocol_version == ("2025-11-25" if era == LEGACY else MODERN)
            await kanban_round_trip(client, f"python-sdk-{era}")

    run_scenario(scenario)
    ERA_CHECKS[era](wire)


def test_python_sdk_auto_mode_negotiates_the_stateless_era(demo_server: RunningServer) -> None:
    wire = WireLog()

    async def scenario() -> str:
        async with wire.client() as http, Client(streamable_http_client(demo_server.url, http_client=http)) as client:
            await client.list_tools()
            return client.protocol_version

    assert run_scenario(scenario) == MODERN
    assert wire.rpc_methods()[0] == "server/discover"
    assert_stateless_era(wire)


@pytest.mark.parametrize("era", [LEGACY, MODERN])
def test_progress_and_log_messages_reach_python_sdk_callbacks(conformance_server: RunningServer, era: str) -> None:
    progress: list[tuple[float, float | None, str | None]] = []
    logs: list[types.LoggingMessageNotificationParams] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async def scenario() -> tuple[types.CallToolResult, types.CallToolResult]:
        async with Client(
            conformance_server.url,
            mode=era,
            logging_callback=on_log,
            log_level="debug" if era == MODERN else None,  # 2026-07-28 opts in per request, in _meta
        ) as client:
            if era == LEGACY:
                with pytest.warns(MCPDeprecationWarning):  # deprecated by 2026-07-28, still the 2025 way
                    await client.set_logging_level("debug")
            with_progress = await client.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
            with_logging = await client.call_tool("test_tool_with_logging", {})
            return with_progress, with_logging

    with_progress, with_logging = run_scenario(scenario)

    assert with_progress.is_error is False
    assert [(value, total) for value, total, _ in progress] == [(0, 100), (50, 100), (100, 100)]
    assert with_logging.is_error is False
    assert [(m.level, m.data) for m in logs] == [
        ("info", "Tool execution started"),
        ("info", "Tool processing data"),
        ("info", "Tool execution completed"),
    ]


class ClientSide:
    """Sampling and elicitation callbacks that answer like a person and a model would, and remember the asks."""

    def __init__(self) -> None:
        self.sampling: list[types.CreateMessageRequestParams] = []
        self.elicitation: list[types.ElicitRequestParams] = []

    async def sample(self, _ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.sampling.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="Paris"),
            model="e2e-model",
            stop_reason="endTurn",
        )

    async def elicit(self, _ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.elicitation.append(params)
        return types.ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.com"})


@pytest.mark.parametrize("era", [LEGACY, MODERN])
def test_sampling_and_elicitation_reach_python_sdk_callbacks(conformance_server: RunningServer, era: str) -> None:
    """2025-11-25 asks on the call's SSE stream; 2026-07-28 returns input_required and the SDK retries the call."""
    side = ClientSide()
    wire = WireLog()

    async def scenario() -> tuple[types.CallToolResult, types.CallToolResult]:
        async with (
            wire.client() as http,
            Client(
                streamable_http_client(conformance_server.url, http_client=http),
                mode=era,
                sampling_callback=side.sample,
                elicitation_callback=side.elicit,
            ) as client,
        ):
            sampled = await client.call_tool("test_sampling", {"prompt": "What is the capital of France?"})
            elicited = await client.call_tool("test_elicitation", {"message": "Who are you?"})
            return sampled, elicited

    sampled, elicited = run_scenario(scenario)

    assert sampled.is_error is False
    assert sampled.content == [types.TextContent(type="text", text="LLM response: Paris")]
    [ask] = side.sampling
    assert ask.max_tokens == 100
    assert [m.content for m in ask.messages] == [types.TextContent(type="text", text="What is the capital of France?")]

    assert elicited.is_error is False
    [text] = elicited.content
    assert isinstance(text, types.TextContent)
    assert text.text == "User response: action=accept, content={'username': 'ada', 'email': 'ada@example.com'}"
    [form] = side.elicitation
    assert isinstance(form, types.ElicitRequestFormParams)
    assert form.message == "Who are you?"
    assert form.requested_schema["required"] == ["username", "email"]

    ERA_CHECKS[era](wire)
    for tool in ("test_sampling", "test_elicitation"):
        calls = [r.body["params"] for r in wire.calls_to(tool)]
        if era == LEGACY:
            # One tools/call; the client's answer went back as a JSON-RPC response POSTed in the same session.
            assert len(calls) == 1
        else:
            # MCP 2026-07-28 multi round-trip: an input_required result, then the retry carrying the answer and
            # the server's requestState.
            assert len(calls) == 2
            assert "inputResponses" not in calls[0]
            assert len(calls[1]["inputResponses"]) == 1
            assert calls[1]["requestState"]
    answers = [r.body for r in wire.requests if r.body and "result" in r.body]
    assert len(answers) == (2 if era == LEGACY else 0)


def test_input_required_result_round_trips_through_python_sdk(conformance_server: RunningServer) -> None:
    asked: list[types.ElicitRequestParams] = []

    async def elicit_name(_ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def scenario() -> types.CallToolResult:
        async with Client(conformance_server.url, mode=MODERN, elicitation_callback=elicit_name) as client:
            return await client.call_tool("test_input_required_result_elicitation", {})

    result = run_scenario(scenario)
    assert result.is_error is False
    assert result.content == [types.TextContent(type="text", text="Hello, Ada!")]
    [form] = asked
    assert isinstance(form, types.ElicitRequestFormParams)
    assert form.message == "What is your name?"


@pytest.mark.parametrize("era", [LEGACY, MODERN])
def test_python_sdk_stdio_client_lists_and_calls_demo_tools(tmp_path: Path, era: str) -> None:
    demo_dir = tmp_path / "demo"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "patchbay", "serve", "--stdio", "--demo"],
        env={"PATCHBAY_DEMO_DIR": str(demo_dir), "PYTHONUNBUFFERED": "1"},
        cwd=tmp_path,
    )
    errlog_path = tmp_path / "stdio-server.log"

    async def scenario() -> dict[str, Any]:
        with errlog_path.open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog), mode=era) as client:
                assert client.protocol_version == ("2025-11-25" if era == LEGACY else MODERN)
                return await kanban_round_trip(client, f"python-stdio-{era}")

    try:
        card = run_scenario(scenario)
    finally:
        print(errlog_path.read_text(errors="replace") if errlog_path.exists() else "(no server log)")
    assert (demo_dir / "demo.db").is_file(), "the demo store lives in PATCHBAY_DEMO_DIR"
    assert card["title"].startswith("e2e python-stdio-")


def test_python_sdk_stdio_client_calls_conformance_fixture_tools(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "patchbay", "serve", "--stdio", "--config", str(CONFORMANCE_CONFIG)],
        cwd=tmp_path,
    )

    async def scenario() -> tuple[set[str], types.CallToolResult]:
        with (tmp_path / "stdio-server.log").open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog), mode=LEGACY) as client:
                names = {t.name for t in (await client.list_tools()).tools}
                return names, await client.call_tool("test_simple_text", {})

    names, result = run_scenario(scenario)
    assert {"test_simple_text", "test_tool_with_progress", "test_sampling", "test_elicitation"} <= names
    assert result.content == [types.TextContent(type="text", text="This is a simple text response for testing.")]


def test_python_sdk_legacy_sse_client_lists_reads_and_writes_demo_cards(demo_server: RunningServer) -> None:
    sessions: list[str] = []

    async def scenario() -> dict[str, Any]:
        transport = sse_client(f"{demo_server.base_url}/sse", on_session_created=sessions.append)
        async with Client(transport, mode=LEGACY) as client:
            assert client.protocol_version == "2025-11-25"
            return await kanban_round_trip(client, "python-sse")

    card = run_scenario(scenario)
    assert len(sessions) == 1 and sessions[0], "the endpoint event names a session for POST /messages"
    assert card["title"].startswith("e2e python-sse ")
