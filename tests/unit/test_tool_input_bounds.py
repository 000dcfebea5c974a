"""Forged, negative, huge, fractional and wrong-type cursors and numbers, for every built-in tool that takes one:
each is a tool error naming the argument (or JSON-RPC invalid params for list cursors), never a crash."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from patchbay.app import Runtime
from patchbay.connectors.documents import tools as document_tools
from patchbay.protocol.jsonrpc import INVALID_PARAMS, RpcError
from patchbay.protocol.scope import CallScope
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio
HUGE = 10**30
CRASH = "failed unexpectedly"
URL = "https://intranet.example.com/{source}/{path_noext}"


def _runtime(tmp_path: Path, connector: dict[str, Any]) -> Runtime:
    data = {"store": {"url": f"sqlite:///{tmp_path / 'patchbay.db'}"}, "connectors": [connector]}
    return Runtime(from_dict(data, source="<test>", base_dir=tmp_path))


async def call(rt: Runtime, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    scope = CallScope(era="legacy", version="2025-11-25", request_id=1, method="tools/call", client_caps={})
    result: dict[str, Any] = await rt.dispatcher.dispatch("tools/call", {"name": name, "arguments": arguments}, scope)
    return result


async def refused(rt: Runtime, name: str, arguments: dict[str, Any]) -> str:
    """The message of a tool error; fails on success and on the generic crash message."""
    result = await call(rt, name, arguments)
    text: str = result["content"][0]["text"]
    assert result["isError"] is True, result
    assert CRASH not in text, text
    return text


# -- documents: search cursors and fetch part ids ---------------------------------------------------------------


@pytest.fixture
async def documents(tmp_path: Path) -> AsyncIterator[Runtime]:
    folder = tmp_path / "policies"
    folder.mkdir()
    for number in range(12):
        (folder / f"policy-{number}.md").write_text(f"# Policy {number}\n\nThe travel policy, part {number}.\n")
    connector = {"name": "docs", "type": "documents", "prefix": "", "max_results": 3, "url_template": URL}
    rt = _runtime(tmp_path, {**connector, "sources": [{"name": "kb", "folder": str(folder)}]})
    await rt.start()
    yield rt
    await rt.stop()


def forged(body: Any) -> str:
    return document_tools.CURSOR_PREFIX + base64.urlsafe_b64encode(json.dumps(body).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        forged({"q": "travel", "o": HUGE}),
        forged({"q": "travel", "o": 2**63}),
        forged({"q": "travel", "o": document_tools.MAX_RESULTS}),
        forged({"q": "travel", "o": -3}),
        forged({"q": "travel", "o": 0}),
        forged({"q": "travel", "o": 1.5}),
        forged({"q": "travel", "o": True}),
        forged({"q": "travel", "o": "3"}),
        forged({"q": 7, "o": 3}),
        forged(["travel", 3]),
        forged("travel"),
        "cursor:" + base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "cursor:!!!",
    ],
)
async def test_a_forged_search_cursor_is_a_tool_error(documents: Runtime, cursor: str) -> None:
    assert "not one search returned" in await refused(documents, "search", {"query": cursor})


async def test_paging_stops_at_the_result_cap(documents: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(document_tools, "MAX_RESULTS", 6)
    first = (await call(documents, "search", {"query": "travel"}))["structuredContent"]
    second = (await call(documents, "search", {"query": first["next_cursor"]}))["structuredContent"]
    assert len(first["results"]) == len(second["results"]) == 3
    assert "next_cursor" not in second  # 12 documents match, but the cap is 6
    beyond = forged({"q": "travel", "o": 6})
    assert "not one search returned" in await refused(documents, "search", {"query": beyond})


@pytest.mark.parametrize("suffix", ["@²", "@٣", "@-1", "@1.5"])
async def test_a_forged_part_in_a_fetch_id_is_a_tool_error(documents: Runtime, suffix: str) -> None:
    hit = (await call(documents, "search", {"query": "travel"}))["structuredContent"]["results"][0]
    message = await refused(documents, "fetch", {"id": hit["id"] + suffix})
    assert message == f"No document with id '{hit['id']}{suffix}'. Use an id returned by search."


async def test_a_part_number_past_the_document_is_a_tool_error(documents: Runtime) -> None:
    hit = (await call(documents, "search", {"query": "travel"}))["structuredContent"]["results"][0]
    message = await refused(documents, "fetch", {"id": hit["id"] + "@" + "9" * 40})
    assert message.startswith(f"Document '{hit['id']}' has only ")
    assert message.endswith(f"characters; part {'9' * 40} is past it.")


@pytest.mark.parametrize("value", [HUGE, -1, 1.5, True, None, ["x"], {"q": "x"}])
async def test_search_and_fetch_refuse_non_string_arguments(documents: Runtime, value: Any) -> None:
    assert "'query' must be a non-empty string" in await refused(documents, "search", {"query": value})
    assert "'id' must be a non-empty string" in await refused(documents, "fetch", {"id": value})


# -- kanban: ids, offsets, positions ----------------------------------------------------------------------------


@pytest.fixture
async def kanban(tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = _runtime(tmp_path, {"name": "kanban", "type": "kanban", "prefix": ""})
    await rt.start()
    yield rt
    await rt.stop()


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("list_cards", {"board_id": HUGE}, "board_id"),
        ("list_cards", {"board_id": 0}, "board_id"),
        ("list_cards", {"board_id": 1, "offset": HUGE}, "offset"),
        ("list_cards", {"board_id": 1, "offset": 2**63}, "offset"),
        ("list_cards", {"board_id": 1, "offset": -1}, "offset"),
        ("list_cards", {"board_id": 1, "offset": 1.5}, "offset"),
        ("list_cards", {"board_id": 1, "offset": "ten"}, "offset"),
        ("list_cards", {"board_id": 1, "limit": HUGE}, "limit"),
        ("search_cards", {"query": "a", "board_id": HUGE}, "board_id"),
        ("search_cards", {"query": "a", "limit": -5}, "limit"),
        ("get_card", {"card_id": HUGE}, "card_id"),
        ("get_card", {"card_id": -HUGE}, "card_id"),
        ("get_card", {"card_id": [1]}, "card_id"),
        ("create_card", {"board_id": HUGE, "column": "To do", "title": "x"}, "board_id"),
        ("update_card", {"card_id": HUGE, "title": "x"}, "card_id"),
        ("move_card", {"card_id": 1, "column": "Done", "position": HUGE}, "position"),
        ("move_card", {"card_id": 1, "column": "Done", "position": -1}, "position"),
        ("delete_card", {"card_id": HUGE}, "card_id"),
    ],
)
async def test_kanban_numbers_out_of_range_are_argument_errors(
    kanban: Runtime, tool: str, arguments: dict[str, Any], field: str
) -> None:
    message = await refused(kanban, tool, arguments)
    assert message.startswith("Invalid arguments") and field in message


# -- sql: query paging, action parameters, record keys ----------------------------------------------------------

ACTIONS = [
    {
        "name": "close_ticket",
        "description": "Close a ticket.",
        "sql": "UPDATE tickets SET status = 'closed', weight = :weight WHERE id = :id",
        "params": {"id": "integer", "weight": {"type": "number", "required": False}},
    }
]


@pytest.fixture
async def sql(tmp_path: Path) -> AsyncIterator[Runtime]:
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE tickets (id INTEGER PRIMARY KEY, status TEXT, weight REAL)")
        conn.execute("CREATE TABLE pairs (a INTEGER, b TEXT, PRIMARY KEY (a, b))")
        conn.execute("INSERT INTO tickets (status) VALUES ('open')")
    conn.close()
    connector = {"name": "crm", "type": "sql", "prefix": "", "url": f"sqlite:///{db}", "actions": ACTIONS}
    rt = _runtime(tmp_path, connector)
    await rt.start()
    yield rt
    await rt.stop()


@pytest.mark.parametrize("offset", [HUGE, 2**62, 1e300, -1, 1.5, "5", True, [0]])
async def test_sql_query_offset_outside_its_range_is_an_argument_error(sql: Runtime, offset: Any) -> None:
    message = await refused(sql, "query", {"sql": "SELECT id FROM tickets", "offset": offset})
    assert "'offset' must be an integer from 0 to 10000000" in message


async def test_sql_query_offset_past_the_rows_is_an_empty_page(sql: Runtime) -> None:
    result = await call(sql, "query", {"sql": "SELECT id FROM tickets", "offset": 10_000_000})
    assert result["isError"] is False and result["structuredContent"]["rows"] == []


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"id": HUGE}, "'id' must be from"),
        ({"id": -HUGE}, "'id' must be from"),
        ({"id": 1e300}, "'id' must be from"),
        ({"id": 1, "weight": HUGE}, "'weight' must be from"),
        ({"id": "1"}, "'id' must be an integer"),
    ],
)
async def test_sql_action_numbers_the_database_cannot_bind_are_argument_errors(
    sql: Runtime, arguments: dict[str, Any], field: str
) -> None:
    assert field in await refused(sql, "close_ticket", arguments)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("tickets", HUGE),
        ("tickets", -HUGE),
        ("tickets", 1e300),
        ("tickets", "9" * 40),
        ("pairs", {"a": HUGE, "b": "x"}),
    ],
)
async def test_sql_record_keys_out_of_range_are_tool_errors(sql: Runtime, table: str, key: Any) -> None:
    assert "does not fit column" in await refused(sql, "fetch_record", {"table": table, "key": key})


# -- protocol list cursors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["tools/list", "resources/list", "resources/templates/list", "prompts/list"])
@pytest.mark.parametrize("cursor", ["forged", "", HUGE, -1, 1.5, True, ["x"], {"o": 1}])
async def test_list_cursors_never_handed_out_are_invalid_params(kanban: Runtime, method: str, cursor: Any) -> None:
    scope = CallScope(era="legacy", version="2025-11-25", request_id=1, method=method, client_caps={})
    with pytest.raises(RpcError) as caught:
        await kanban.dispatcher.dispatch(method, {"cursor": cursor}, scope)
    assert caught.value.code == INVALID_PARAMS
