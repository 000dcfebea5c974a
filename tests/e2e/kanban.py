"""What the e2e tests expect of the built-in demo (kanban) connector, shared by every client's test."""

from __future__ import annotations

import uuid
from typing import Any

DEMO_TOOLS = frozenset(
    {
        "list_boards",
        "list_cards",
        "search_cards",
        "get_card",
        "create_card",
        "update_card",
        "move_card",
        "delete_card",
    }
)
READ_ONLY_TOOLS = frozenset({"list_boards", "list_cards", "search_cards", "get_card"})
# The fields create_card returns that get_card must return unchanged.
CARD_FIELDS = ("id", "board_id", "board", "column", "position", "title", "description", "assignee", "labels")


def unique_title(client: str) -> str:
    """A card title no other test (or earlier run against the same demo dir) uses."""
    return f"e2e {client} {uuid.uuid4().hex[:12]}"


def first_board(list_boards_result: dict[str, Any]) -> dict[str, Any]:
    """The seeded board from list_boards' structuredContent, checked for the fields create_card needs."""
    boards = list_boards_result["boards"]
    assert boards, "the demo is seeded with at least one board"
    board = boards[0]
    assert isinstance(board["id"], int)
    assert board["columns"] and all(isinstance(c["name"], str) for c in board["columns"])
    return board


def create_card_args(board: dict[str, Any], title: str) -> dict[str, Any]:
    return {
        "board_id": board["id"],
        "column": board["columns"][0]["name"],
        "title": title,
        "description": "written by an e2e client",
        "labels": ["e2e"],
    }


def assert_created(card: dict[str, Any], board: dict[str, Any], title: str) -> None:
    assert isinstance(card["id"], int)
    assert card["title"] == title
    assert card["board_id"] == board["id"]
    assert card["column"] == board["columns"][0]["name"]
    assert card["labels"] == ["e2e"]
    assert card["description"] == "written by an e2e client"


def assert_same_card(fetched: dict[str, Any], created: dict[str, Any]) -> None:
    assert {k: fetched[k] for k in CARD_FIELDS} == {k: created[k] for k in CARD_FIELDS}


def assert_demo_tool_list(tools: list[dict[str, Any]]) -> None:
    """tools/list as JSON (camelCase, as on the wire): every demo tool, with schemas and honest annotations."""
    by_name = {t["name"]: t for t in tools}
    assert by_name.keys() >= DEMO_TOOLS, f"missing: {sorted(DEMO_TOOLS - by_name.keys())}"
    for name in DEMO_TOOLS:
        tool = by_name[name]
        assert tool["description"]
        assert tool["inputSchema"]["type"] == "object"
        assert tool["outputSchema"]["type"] == "object"
        assert tool["annotations"]["readOnlyHint"] is (name in READ_ONLY_TOOLS)
    assert by_name["delete_card"]["annotations"]["destructiveHint"] is True
    assert by_name["create_card"]["annotations"]["destructiveHint"] is False
