"""The store's migrations on a real PostgreSQL: a fresh, an old and a current database each end up at every
branch's head, and a current one is recognised without Alembic."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from patchbay.store import alembic_config, create_engine, current_heads, upgrade
from patchbay.store.migrate import is_current
from tests.support.postgres import PostgresServer

ALL_HEADS = set(ScriptDirectory.from_config(alembic_config()).get_heads())


@pytest.fixture
def engine(pg: PostgresServer, request: pytest.FixtureRequest) -> Iterator[Engine]:
    database = f"store_{request.node.name.removeprefix('test_')[:40]}"
    pg.execute(f'CREATE DATABASE "{database}"')
    made = create_engine(pg.url(database))
    try:
        yield made
    finally:
        made.dispose()


def test_a_fresh_postgresql_store_is_migrated_to_every_head(engine: Engine) -> None:
    assert current_heads(engine) == set()
    assert not is_current(engine)

    upgrade(engine)

    assert current_heads(engine) == ALL_HEADS
    assert is_current(engine)
    assert {"auth_api_keys", "auth_revocation_epoch", "kanban_boards"} <= set(inspect(engine).get_table_names())


def test_an_old_postgresql_store_is_finished_keeping_its_rows(engine: Engine) -> None:
    upgrade(engine, "auth_0001")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO auth_api_keys (name, key_hash, hint, scopes, roles, created_at) "
                "VALUES ('kept', 'h', 'pb_', 'mcp', '', 0)"
            )
        )
    assert not is_current(engine)

    upgrade(engine)

    assert current_heads(engine) == ALL_HEADS
    with engine.connect() as connection:
        assert connection.execute(text("SELECT name FROM auth_api_keys")).scalars().all() == ["kept"]


def test_a_current_postgresql_store_is_left_as_it_is(engine: Engine) -> None:
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO kanban_boards (name, description) VALUES ('kept', '')"))

    assert is_current(engine) and is_current(engine, "kanban@head")
    upgrade(engine)

    assert current_heads(engine) == ALL_HEADS
    with engine.connect() as connection:
        assert connection.execute(text("SELECT name FROM kanban_boards")).scalars().all() == ["kept"]
