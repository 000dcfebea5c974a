"""Node clients against a real `patchbay serve`: the official TypeScript SDK and the MCP Inspector CLI (v2).

Both run on the pinned Node 22 from tests/e2e/node (`make node`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import kanban
from tests.e2e.conftest import Completed, inspector_cli, ts_client
from tests.support.servers import RunningServer

pytestmark = pytest.mark.e2e

MODERN = "2026-07-28"
SERVER_INFO_META = "io.modelcontextprotocol/serverInfo"


def succeeded(done: Completed) -> Any:
    assert done.returncode == 0, done.describe()
    return done.json()


def test_typescript_sdk_lists_reads_and_writes_demo_cards(demo_server: RunningServer) -> None:
    title = kanban.unique_title("ts-sdk")
    # The board comes from list_boards in the same connection: {"$from": [call, *path]} (see ts_client.mjs).
    calls = [
        {"name": "list_boards", "arguments": {}},
        {
            "name": "create_card",
            "arguments": {
                "board_id": {"$from": [0, "boards", 0, "id"]},
                "column": {"$from": [0, "boards", 0, "columns", 0, "name"]},
                "title": title,
                "description": "written by an e2e client",
                "labels": ["e2e"],
            },
        },
        {"name": "get_card", "arguments": {"card_id": {"$from": [1, "id"]}}},
    ]

    out = succeeded(ts_client(demo_server.url, calls))

    assert out["sessionId"], "the TypeScript SDK (v1) speaks the 2025 handshake era, in a session"
    assert out["protocolVersion"] == "2025-11-25"
    assert out["serverVersion"]["name"] == "Patchbay demo"
    kanban.assert_demo_tool_list(out["tools"])
    boards, created, fetched = out["results"]
    assert [r["isError"] for r in out["results"]] == [False, False, False]
    board = kanban.first_board(boards["structuredContent"])
    kanban.assert_created(created["structuredContent"], board, title)
    kanban.assert_same_card(fetched["structuredContent"], created["structuredContent"])
    # The text copy of a structured result is the same JSON (MCP 2025-06-18 tools: structured content).
    assert json.loads(fetched["content"][0]["text"]) == fetched["structuredContent"]


def test_typescript_sdk_calls_conformance_fixture_tools(conformance_server: RunningServer) -> None:
    out = succeeded(ts_client(conformance_server.url, [{"name": "test_simple_text"}, {"name": "test_error_handling"}]))

    names = {t["name"] for t in out["tools"]}
    assert {"test_simple_text", "test_tool_with_progress", "test_sampling", "test_elicitation"} <= names
    simple, failing = out["results"]
    assert simple == {
        "content": [{"type": "text", "text": "This is a simple text response for testing."}],
        "isError": False,
    }
    assert failing["isError"] is True
    assert failing["content"][0]["text"] == "This tool intentionally returns an error for testing"


def test_inspector_cli_lists_demo_tools(demo_server: RunningServer, tmp_path: Path) -> None:
    out = succeeded(inspector_cli(demo_server.url, "--method", "tools/list", home=tmp_path))

    kanban.assert_demo_tool_list(out["result"]["tools"])


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_inspector_cli_reads_and_writes_demo_cards(demo_server: RunningServer, tmp_path: Path, era: str) -> None:
    def call(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        done = inspector_cli(
            demo_server.url,
            *("--method", "tools/call", "--tool-name", tool, "--tool-args-json", json.dumps(arguments)),
            *("--protocol-era", era),
            home=tmp_path,
        )
        result: dict[str, Any] = succeeded(done)["result"]
        assert result["isError"] is False, done.describe()
        # Patchbay names itself in every 2026-07-28 result's _meta; the 2025 era has serverInfo from initialize.
        assert (SERVER_INFO_META in result.get("_meta", {})) is (era == "modern"), result.get("_meta")
        return result

    board = kanban.first_board(call("list_boards", {})["structuredContent"])
    title = kanban.unique_title(f"inspector-{era}")
    created = call("create_card", kanban.create_card_args(board, title))["structuredContent"]
    kanban.assert_created(created, board, title)
    fetched = call("get_card", {"card_id": created["id"]})["structuredContent"]
    kanban.assert_same_card(fetched, created)


def test_inspector_cli_exits_5_when_a_tool_reports_an_error(conformance_server: RunningServer, tmp_path: Path) -> None:
    done = inspector_cli(
        conformance_server.url, "--method", "tools/call", "--tool-name", "test_error_handling", home=tmp_path
    )

    assert done.returncode == 5, done.describe()
    assert json.loads(done.stderr)["error"]["code"] == "tool_is_error"


def test_inspector_cli_calls_a_conformance_tool_in_the_modern_era(
    conformance_server: RunningServer, tmp_path: Path
) -> None:
    done = inspector_cli(
        conformance_server.url,
        *("--method", "tools/call", "--tool-name", "test_simple_text", "--protocol-era", "modern"),
        home=tmp_path,
    )

    result = succeeded(done)["result"]
    assert result["content"] == [{"type": "text", "text": "This is a simple text response for testing."}]
    assert result["_meta"][SERVER_INFO_META]["name"] == "patchbay-conformance"
