"""The kanban demo connector, driven through the real dispatcher the way a client calls it."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest

from patchbay.app import Runtime
from patchbay.connectors.base import ConnectorEnv
from patchbay.connectors.kanban import KanbanConnector, KanbanOptions
from patchbay.connectors.kanban import repository as repository_mod
from patchbay.context import Context
from patchbay.errors import ConnectorError
from patchbay.protocol.scope import CallScope
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio
COLUMNS = ["To do", "In progress", "Done"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _runtime(tmp_path: Path, **options: Any) -> Runtime:
    connector = {"name": "kanban", "type": "kanban", "prefix": "", "seed": True, **options}
    data = {"store": {"url": f"sqlite:///{tmp_path / 'patchbay.db'}"}, "connectors": [connector]}
    return Runtime(from_dict(data, source="<test>", base_dir=tmp_path))


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = _runtime(tmp_path)
    await rt.start()
    yield rt
    await rt.stop()


def _scope() -> CallScope:
    return CallScope(era="legacy", version="2025-11-25", request_id=1, method="tools/call", client_caps={})


async def call(rt: Runtime, name: str, **arguments: Any) -> dict[str, Any]:
    """The raw tools/call result; every success is checked against the tool's outputSchema."""
    result: dict[str, Any] = await rt.dispatcher.dispatch(
        "tools/call", {"name": name, "arguments": arguments}, _scope()
    )
    if not result["isError"]:
        _validator(json.dumps(_wire_tools(rt)[name]["outputSchema"])).validate(result["structuredContent"])
    return result


async def ok(rt: Runtime, name: str, **arguments: Any) -> Any:
    result = await call(rt, name, **arguments)
    assert result["isError"] is False, result["content"]
    return result["structuredContent"]


async def fails(rt: Runtime, name: str, **arguments: Any) -> str:
    result = await call(rt, name, **arguments)
    assert result["isError"] is True, result
    assert "structuredContent" not in result
    text: str = result["content"][0]["text"]
    return text


@functools.cache
def _validator(schema: str) -> jsonschema.Draft202012Validator:
    # Built once per schema: jsonschema.validate() re-checks the schema itself on every call, which is slow.
    return jsonschema.Draft202012Validator(json.loads(schema), format_checker=jsonschema.FormatChecker())


def _wire_tools(rt: Runtime) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in rt.catalog.tools_wire}


async def snapshot(rt: Runtime) -> list[Any]:
    """Everything a client can read, to prove a failed call changed nothing."""
    boards = await ok(rt, "list_boards")
    cards = []
    for board in boards["boards"]:
        page = await ok(rt, "list_cards", board_id=board["id"], limit=100)
        cards += [await ok(rt, "get_card", card_id=c["id"]) for c in page["cards"]]
    return [boards, cards]


async def card_titled(rt: Runtime, title: str) -> dict[str, Any]:
    found = await ok(rt, "search_cards", query=title)
    card: dict[str, Any] = next(c for c in found["cards"] if c["title"] == title)
    return card


async def column_titles(rt: Runtime, column: str) -> list[str]:
    page = await ok(rt, "list_cards", board_id=1, column=column)
    assert [c["position"] for c in page["cards"]] == list(range(len(page["cards"])))
    return [c["title"] for c in page["cards"]]


# -- seeding and lifecycle --------------------------------------------------------------------------------------


async def test_seeding_happens_once_across_reopens(tmp_path: Path) -> None:
    for _ in range(2):
        rt = _runtime(tmp_path)
        await rt.start()
        boards = (await ok(rt, "list_boards"))["boards"]
        await rt.stop()
        assert [b["name"] for b in boards] == ["Product launch"]
        assert boards[0]["card_count"] == 8


async def test_concurrent_opens_seed_once(tmp_path: Path) -> None:
    env = ConnectorEnv(base_dir=tmp_path, store_url=f"sqlite:///{tmp_path / 'patchbay.db'}")
    connectors = [KanbanConnector("kanban", KanbanOptions(seed=True), env) for _ in range(3)]
    async with anyio.create_task_group() as group:
        for connector in connectors:
            group.start_soon(connector.open)
    listed = await connectors[0].tools()[0].handler({}, Context(_scope()))
    for connector in connectors:
        await connector.close()
    assert len(listed.structured["boards"]) == 1


async def test_without_seed_the_database_starts_empty(tmp_path: Path) -> None:
    rt = _runtime(tmp_path, seed=False)
    await rt.start()
    assert await ok(rt, "list_boards") == {"boards": []}
    assert "boards are: none yet" in await fails(rt, "list_cards", board_id=1)
    await rt.stop()


async def test_database_option_keeps_boards_in_their_own_database(tmp_path: Path) -> None:
    rt = _runtime(tmp_path, database="sqlite:///boards/kanban.db")
    (tmp_path / "boards").mkdir()
    await rt.start()
    assert len((await ok(rt, "list_boards"))["boards"]) == 1
    await rt.stop()
    assert (tmp_path / "boards" / "kanban.db").is_file()
    # The server's own store (manifest versions, audit trail, every migration's tables) may exist: no board is in it.
    store = tmp_path / "patchbay.db"
    if store.exists():
        with sqlite3.connect(store) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            boards = (
                conn.execute("SELECT count(*) FROM kanban_boards").fetchone()[0] if "kanban_boards" in tables else 0
            )
        assert boards == 0


async def test_unopenable_database_fails_start_with_a_connector_error(tmp_path: Path) -> None:
    rt = _runtime(tmp_path, database=f"sqlite:///{tmp_path / 'missing' / 'kanban.db'}")
    with pytest.raises(ConnectorError, match=r"connector .kanban.: cannot open the database .*folder exists"):
        await rt.start()


async def test_health_checks_the_database_until_closed(tmp_path: Path) -> None:
    env = ConnectorEnv(base_dir=tmp_path, store_url=f"sqlite:///{tmp_path / 'patchbay.db'}")
    connector = KanbanConnector("kanban", KanbanOptions(), env)
    assert (await connector.health()).ok is False
    await connector.open()
    assert (await connector.health()).ok is True
    await connector.close()
    assert (await connector.health()).ok is False


# -- tool definitions -------------------------------------------------------------------------------------------

EXPECTED_HINTS = {
    # name: (readOnly, destructive, idempotent, openWorld)
    "list_boards": (True, False, True, False),
    "list_cards": (True, False, True, False),
    "search_cards": (True, False, True, False),
    "get_card": (True, False, True, False),
    "create_card": (False, False, False, False),
    "update_card": (False, False, True, False),
    "move_card": (False, False, True, False),
    "delete_card": (False, True, True, False),
}


async def test_every_tool_states_its_annotations_explicitly_and_correctly(runtime: Runtime) -> None:
    wire = _wire_tools(runtime)
    assert set(wire) == set(EXPECTED_HINTS)
    for name, (read_only, destructive, idempotent, open_world) in EXPECTED_HINTS.items():
        hints = wire[name]["annotations"]
        assert hints["readOnlyHint"] is read_only, name
        assert hints["destructiveHint"] is destructive, name
        assert hints["idempotentHint"] is idempotent, name
        assert hints["openWorldHint"] is open_world, name
        assert wire[name]["title"] == hints["title"] != ""
    # The definitions themselves say it too, not only the wire defaults.
    for tool in runtime.connectors[0].tools():
        annotations = tool.annotations
        expected = EXPECTED_HINTS[tool.name]
        assert (annotations.read_only, annotations.open_world) == (expected[0], expected[3])
        if not annotations.read_only:
            assert (annotations.destructive, annotations.idempotent) == expected[1:3]


async def test_every_tool_has_a_one_line_description_and_an_object_output_schema(runtime: Runtime) -> None:
    for name, tool in _wire_tools(runtime).items():
        assert tool["description"] and "\n" not in tool["description"], name
        assert tool["outputSchema"]["type"] == "object", name
        assert tool["inputSchema"]["type"] == "object", name
        jsonschema.Draft202012Validator.check_schema(tool["outputSchema"])


# -- reads ------------------------------------------------------------------------------------------------------


async def test_list_boards_reports_columns_and_card_counts(runtime: Runtime) -> None:
    (board,) = (await ok(runtime, "list_boards"))["boards"]
    assert [c["name"] for c in board["columns"]] == COLUMNS
    assert [c["card_count"] for c in board["columns"]] == [3, 3, 2]
    assert board["card_count"] == 8


async def test_list_cards_pages_through_every_card_once(runtime: Runtime) -> None:
    seen: list[dict[str, Any]] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        page = await ok(runtime, "list_cards", board_id=1, limit=3, offset=offset)
        assert page["total"] == 8
        seen += page["cards"]
        offset = page["next_offset"]
        pages += 1
    assert pages == 3
    assert len({c["id"] for c in seen}) == 8
    assert [c["column"] for c in seen] == ["To do"] * 3 + ["In progress"] * 3 + ["Done"] * 2


async def test_list_cards_past_the_end_is_empty(runtime: Runtime) -> None:
    assert await ok(runtime, "list_cards", board_id=1, offset=50) == {"cards": [], "total": 8, "next_offset": None}


async def test_list_cards_filters_case_insensitively(runtime: Runtime) -> None:
    by_column = await ok(runtime, "list_cards", board_id=1, column="in PROGRESS")
    assert by_column["total"] == 3 and {c["column"] for c in by_column["cards"]} == {"In progress"}
    by_assignee = await ok(runtime, "list_cards", board_id=1, assignee="maya")
    assert {c["title"] for c in by_assignee["cards"]} == {"Write launch blog post", "Prepare press kit"}
    by_label = await ok(runtime, "list_cards", board_id=1, label="Marketing", column="done")
    assert [c["title"] for c in by_label["cards"]] == ["Record product demo video"]


async def test_search_matches_titles_and_descriptions_with_a_snippet(runtime: Runtime) -> None:
    found = await ok(runtime, "search_cards", query="STRIPE")
    (hit,) = found["cards"]
    assert hit["title"] == "Finalise pricing tiers"
    assert "Stripe" in hit["snippet"] and len(hit["snippet"]) < 200
    in_title = await ok(runtime, "search_cards", query="press kit", board_id=1)
    assert [c["title"] for c in in_title["cards"]] == ["Prepare press kit"]


async def test_search_ranks_title_matches_first_and_respects_limit(runtime: Runtime) -> None:
    await ok(runtime, "create_card", board_id=1, column="To do", title="Zebra", description="about a launch")
    found = await ok(runtime, "search_cards", query="launch", limit=2)
    assert found["total"] >= 3 and len(found["cards"]) == 2
    assert "launch" in found["cards"][0]["title"].lower()


async def test_search_matches_percent_and_underscore_literally(runtime: Runtime) -> None:
    await ok(runtime, "create_card", board_id=1, column="To do", title="Raise prices by 10%")
    await ok(runtime, "create_card", board_id=1, column="To do", title="Rename user_id")
    await ok(runtime, "create_card", board_id=1, column="To do", title="Rename userXid")
    # As a pattern, "10%" would also match "...at 100% CPU" in a seeded card, and "%" every card.
    percent = await ok(runtime, "search_cards", query="10%")
    assert [c["title"] for c in percent["cards"]] == ["Raise prices by 10%"]
    assert (await ok(runtime, "search_cards", query="%"))["total"] == 2
    underscore = await ok(runtime, "search_cards", query="user_id")
    assert [c["title"] for c in underscore["cards"]] == ["Rename user_id"]
    backslash = await ok(runtime, "search_cards", query="\\")
    assert backslash["cards"] == []


async def test_get_card_returns_the_full_card(runtime: Runtime) -> None:
    card = await ok(runtime, "get_card", card_id=(await card_titled(runtime, "Finalise pricing tiers"))["id"])
    assert card["board"] == "Product launch" and card["column"] == "In progress"
    assert card["labels"] == ["blocked", "pricing"] and card["assignee"] == "Jonas"
    assert "Stripe" in card["description"] and card["due_date"] is not None
    assert card["created_at"].endswith("Z")  # UTC, in the form JSON Schema's date-time and JavaScript read


# -- writes -----------------------------------------------------------------------------------------------------


async def test_create_card_adds_it_at_the_bottom_of_the_column(runtime: Runtime) -> None:
    card = await ok(
        runtime,
        "create_card",
        board_id=1,
        column="to do",
        title="  Book the launch party venue  ",
        description="Rooftop, 60 people",
        assignee="Sam",
        labels=["events", "Events", " "],
        due_date="2030-06-01",
    )
    assert card["title"] == "Book the launch party venue" and card["column"] == "To do"
    assert card["labels"] == ["events"] and card["due_date"] == "2030-06-01" and card["position"] == 3
    assert await ok(runtime, "get_card", card_id=card["id"]) == card
    assert (await column_titles(runtime, "To do"))[-1] == "Book the launch party venue"


async def test_update_card_changes_only_the_given_fields(runtime: Runtime) -> None:
    before = await ok(runtime, "get_card", card_id=(await card_titled(runtime, "Prepare press kit"))["id"])
    after = await ok(runtime, "update_card", card_id=before["id"], labels=["marketing", "urgent"], assignee="")
    assert after["labels"] == ["marketing", "urgent"] and after["assignee"] is None
    unchanged = {"title", "description", "due_date", "column", "position", "created_at"}
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert after["updated_at"] >= before["updated_at"]
    cleared = await ok(runtime, "update_card", card_id=before["id"], due_date="", title="Press kit v2")
    assert cleared["due_date"] is None and cleared["title"] == "Press kit v2"
    assert await ok(runtime, "get_card", card_id=before["id"]) == cleared


async def test_update_card_twice_with_the_same_arguments_gives_the_same_card(runtime: Runtime) -> None:
    card_id = (await card_titled(runtime, "Prepare press kit"))["id"]
    first = await ok(runtime, "update_card", card_id=card_id, labels=["Marketing"], title="Press kit")
    second = await ok(runtime, "update_card", card_id=card_id, labels=["Marketing"], title="Press kit")
    assert {k: v for k, v in first.items() if k != "updated_at"} == {
        k: v for k, v in second.items() if k != "updated_at"
    }


async def test_move_card_to_another_column_renumbers_both(runtime: Runtime) -> None:
    card_id = (await card_titled(runtime, "Write launch blog post"))["id"]
    moved = await ok(runtime, "move_card", card_id=card_id, column="IN PROGRESS", position=1)
    assert moved["column"] == "In progress" and moved["position"] == 1
    assert await column_titles(runtime, "To do") == ["Prepare press kit", "Set up status page"]
    assert await column_titles(runtime, "In progress") == [
        "Finalise pricing tiers",
        "Write launch blog post",
        "Load-test the signup flow",
        "Onboarding checklist in the app",
    ]


async def test_move_card_without_position_goes_to_the_bottom_and_within_a_column_reorders(runtime: Runtime) -> None:
    card_id = (await card_titled(runtime, "Set up status page"))["id"]
    assert (await ok(runtime, "move_card", card_id=card_id, column="Done"))["position"] == 2
    await ok(runtime, "move_card", card_id=card_id, column="Done", position=0)
    assert (await column_titles(runtime, "Done"))[0] == "Set up status page"
    await ok(runtime, "move_card", card_id=card_id, column="Done", position=99)
    assert (await column_titles(runtime, "Done"))[-1] == "Set up status page"


async def test_delete_card_removes_it_and_closes_the_gap(runtime: Runtime) -> None:
    card_id = (await card_titled(runtime, "Write launch blog post"))["id"]
    assert await ok(runtime, "delete_card", card_id=card_id) == {"deleted": card_id}
    assert f"No card with id {card_id}" in await fails(runtime, "get_card", card_id=card_id)
    assert await column_titles(runtime, "To do") == ["Prepare press kit", "Set up status page"]
    assert (await ok(runtime, "list_boards"))["boards"][0]["card_count"] == 7


async def test_deleting_a_card_deletes_its_labels(runtime: Runtime, tmp_path: Path) -> None:
    card = await ok(runtime, "create_card", board_id=1, column="Done", title="Tagged", labels=["x", "Y"])
    assert card["labels"] == ["x", "Y"]
    database = tmp_path / "patchbay.db"

    def labels_of(card_id: int) -> list[str]:
        with sqlite3.connect(database) as connection:
            rows = connection.execute("SELECT label FROM kanban_card_labels WHERE card_id = ?", (card_id,))
            return sorted(label for (label,) in rows)

    assert labels_of(card["id"]) == ["Y", "x"]
    await ok(runtime, "delete_card", card_id=card["id"])
    assert labels_of(card["id"]) == []


# -- bad input --------------------------------------------------------------------------------------------------

NEW = {"board_id": 1, "column": "To do", "title": "A card"}
BAD_CALLS = [
    ("create_card", {**NEW, "board_id": 99}, "No board with id 99; boards are: 1 (Product launch)"),
    ("create_card", {**NEW, "column": "Doing"}, "No column 'Doing' on board 1; columns are: To do, In progress, Done"),
    ("create_card", {**NEW, "title": "   "}, "title must not be empty"),
    ("create_card", {**NEW, "title": "x" * 201}, "title is 201 characters; the limit is 200"),
    ("create_card", {**NEW, "due_date": "2025-02-30"}, "due_date '2025-02-30' is not a date; use YYYY-MM-DD"),
    ("create_card", {**NEW, "due_date": "next friday"}, "due_date 'next friday' is not a date"),
    ("create_card", {"board_id": 1, "column": "To do"}, "Invalid arguments: title: Field required"),
    ("update_card", {"card_id": 999, "title": "x"}, "No card with id 999. Use list_cards or search_cards"),
    ("update_card", {"card_id": 1, "title": ""}, "title must not be empty"),
    ("update_card", {"card_id": 1, "due_date": "31/12/2030"}, "due_date '31/12/2030' is not a date"),
    ("update_card", {"card_id": 1}, "Nothing to update: give at least one of title"),
    ("move_card", {"card_id": 1, "column": "Archive"}, "No column 'Archive' on board 1; columns are: To do,"),
    ("move_card", {"card_id": 999, "column": "Done"}, "No card with id 999"),
    ("move_card", {"card_id": 1, "column": "Done", "position": -1}, "Invalid arguments: position"),
    ("delete_card", {"card_id": 999}, "No card with id 999"),
    ("get_card", {"card_id": 999}, "No card with id 999"),
    ("list_cards", {"board_id": 7}, "No board with id 7"),
    ("list_cards", {"board_id": 1, "column": "Doing"}, "No column 'Doing' on board 1"),
    ("list_cards", {"board_id": 1, "limit": 0}, "Invalid arguments: limit"),
    ("search_cards", {"query": "  "}, "query must not be empty"),
    ("search_cards", {"query": "x", "board_id": 5}, "No board with id 5"),
]


@pytest.mark.parametrize(("tool", "arguments", "message"), BAD_CALLS, ids=[f"{t}-{m[:30]}" for t, _, m in BAD_CALLS])
async def test_bad_input_fails_with_directions_and_changes_nothing(
    runtime: Runtime, tool: str, arguments: dict[str, Any], message: str
) -> None:
    before = await snapshot(runtime)
    assert message in await fails(runtime, tool, **arguments)
    assert await snapshot(runtime) == before


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("create_card", NEW),
        ("update_card", {"card_id": 1, "title": "Renamed", "labels": ["x"]}),
        ("move_card", {"card_id": 1, "column": "Done", "position": 0}),
        ("delete_card", {"card_id": 1}),
    ],
)
async def test_a_write_that_fails_midway_is_rolled_back(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, tool: str, arguments: dict[str, Any]
) -> None:
    before = await snapshot(runtime)

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("disk on fire")

    # Fails after the changes are written, before the commit: every write builds its answer last.
    monkeypatch.setattr(repository_mod.schemas, "Card", broken)
    monkeypatch.setattr(repository_mod.schemas, "Deleted", broken)
    text = await fails(runtime, tool, **arguments)
    assert "failed unexpectedly" in text and "disk on fire" not in text
    monkeypatch.undo()
    assert await snapshot(runtime) == before
