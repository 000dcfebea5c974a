"""The kanban tools on a real PostgreSQL: the Core reads and writes give the same board as on SQLite.

The database is a real throwaway cluster (tests/support/postgres.py); the tools are called through the real
dispatcher, as a client calls them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from patchbay.app import Runtime
from patchbay.protocol.scope import CallScope
from patchbay.settings import from_dict
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def runtime(pg: PostgresServer, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    database = f"kanban_{request.node.name.removeprefix('test_')[:40]}"
    pg.execute(f'CREATE DATABASE "{database}"')
    connector = {"name": "kanban", "type": "kanban", "prefix": "", "seed": True, "database": pg.url(database)}
    data = {"store": {"url": f"sqlite:///{tmp_path / 'patchbay.db'}"}, "connectors": [connector]}
    rt = Runtime(from_dict(data, source="<test>", base_dir=tmp_path))
    await rt.start()
    yield rt
    await rt.stop()


async def call(rt: Runtime, name: str, **arguments: Any) -> dict[str, Any]:
    scope = CallScope(era="legacy", version="2025-11-25", request_id=1, method="tools/call", client_caps={})
    result: dict[str, Any] = await rt.dispatcher.dispatch("tools/call", {"name": name, "arguments": arguments}, scope)
    return result


async def ok(rt: Runtime, name: str, **arguments: Any) -> Any:
    result = await call(rt, name, **arguments)
    assert result["isError"] is False, result["content"]
    return result["structuredContent"]


async def test_cards_are_created_listed_read_and_deleted_on_postgresql(runtime: Runtime) -> None:
    card = await ok(runtime, "create_card", board_id=1, column="to do", title="PG card", labels=["b", "A"])
    assert (card["column"], card["position"], card["labels"], card["board"]) == (
        "To do",
        3,
        ["A", "b"],
        "Product launch",
    )
    assert await ok(runtime, "get_card", card_id=card["id"]) == card
    labelled = await ok(runtime, "list_cards", board_id=1, label="a")
    assert [c["id"] for c in labelled["cards"]] == [card["id"]] and labelled["total"] == 1
    page = await ok(runtime, "list_cards", board_id=1, column="To do", limit=2)
    assert page["total"] == 4 and page["next_offset"] == 2 and [c["position"] for c in page["cards"]] == [0, 1]
    first = page["cards"][0]["id"]
    assert await ok(runtime, "delete_card", card_id=first) == {"deleted": first}
    after = await ok(runtime, "list_cards", board_id=1, column="To do")
    assert [c["position"] for c in after["cards"]] == [0, 1, 2] and after["cards"][-1]["id"] == card["id"]
    missing = await call(runtime, "get_card", card_id=first)
    assert missing["isError"] and f"No card with id {first}" in missing["content"][0]["text"]
    wrong = await call(runtime, "create_card", board_id=1, column="Doing", title="x")
    assert "No column 'Doing' on board 1; columns are: To do, In progress, Done" in wrong["content"][0]["text"]
