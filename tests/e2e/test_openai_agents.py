"""The OpenAI Agents SDK's MCP client (`agents.mcp.MCPServerStreamableHttp`) against a real `patchbay serve`.

Listing and calling tools needs no model, so OPENAI_API_KEY is removed from the environment for the scenario.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import mcp_types as types
import pytest
from agents.mcp import MCPServerStreamableHttp

from tests.e2e import kanban
from tests.e2e.conftest import run_scenario
from tests.support.servers import RunningServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def no_openai_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    yield
    assert "OPENAI_API_KEY" not in os.environ


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert result.is_error is False, result
    assert result.structured_content is not None, result
    return result.structured_content


@pytest.mark.usefixtures("no_openai_key")
def test_openai_agents_mcp_client_lists_reads_and_writes_demo_cards(demo_server: RunningServer) -> None:
    title = kanban.unique_title("openai-agents")

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with MCPServerStreamableHttp(
            params={"url": demo_server.url, "timeout": 10},
            name="patchbay-demo",
            cache_tools_list=True,
            client_session_timeout_seconds=10,
        ) as server:
            tools = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in await server.list_tools()]
            boards = structured(await server.call_tool("list_boards", {}))
            board = kanban.first_board(boards)
            created = structured(await server.call_tool("create_card", kanban.create_card_args(board, title)))
            fetched = structured(await server.call_tool("get_card", {"card_id": created["id"]}))
            return tools, board, created, fetched

    tools, board, created, fetched = run_scenario(scenario)

    kanban.assert_demo_tool_list(tools)
    kanban.assert_created(created, board, title)
    kanban.assert_same_card(fetched, created)
