"""The embedded store: engine settings, migrations from code, and safety under concurrent starts."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from patchbay.store import Base, alembic_config, create_engine, current_heads, resolve_url, upgrade, writer
from patchbay.store.migrate import VERSION_TABLE

KANBAN_TABLES = {"kanban_boards", "kanban_columns", "kanban_cards", "kanban_card_labels"}
# One head per feature branch (kanban, auth, ...).
ALL_HEADS = set(ScriptDirectory.from_config(alembic_config()).get_heads())


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def test_sqlite_engine_enables_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    engine = create_engine(_url(tmp_path))
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    engine.dispose()


def test_every_sqlite_file_connection_syncs_at_checkpoints_not_every_commit(tmp_path: Path) -> None:
    # synchronous is per connection, not stored in the file: every reader and the writer connection set it.
    engine = create_engine(_url(tmp_path))
    with engine.connect() as first, engine.connect() as second, writer(engine).connect() as writing:
        for connection in (first, second, writing):
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    engine.dispose()


def test_sqlite_transactions_roll_back_ddl(tmp_path: Path) -> None:
    # Python's sqlite3 would autocommit DDL; our BEGIN hook makes it transactional, which migrations rely on.
    engine = create_engine(_url(tmp_path))
    with engine.connect() as connection:
        transaction = connection.begin()
        connection.execute(text("CREATE TABLE scratch (id INTEGER)"))
        transaction.rollback()
    assert "scratch" not in inspect(engine).get_table_names()
    engine.dispose()


def test_memory_database_is_shared_across_connections() -> None:
    engine = create_engine("sqlite://")
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= KANBAN_TABLES
    engine.dispose()


def test_upgrade_on_empty_database_creates_the_tables(tmp_path: Path) -> None:
    upgrade(_url(tmp_path))
    engine = create_engine(_url(tmp_path))
    assert KANBAN_TABLES | {VERSION_TABLE} <= set(inspect(engine).get_table_names())
    assert "kanban_0001" in ALL_HEADS
    assert current_heads(engine) == ALL_HEADS
    engine.dispose()


def test_upgrading_twice_is_a_no_op(tmp_path: Path) -> None:
    engine = create_engine(_url(tmp_path))
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO kanban_boards (name, description) VALUES ('kept', '')"))
    upgrade(engine)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT name FROM kanban_boards")).scalars().all() == ["kept"]
    assert current_heads(engine) == ALL_HEADS
    engine.dispose()


def test_upgrade_of_one_branch_leaves_other_branches_alone(tmp_path: Path) -> None:
    engine = create_engine(_url(tmp_path))
    upgrade(engine, "kanban@head")
    assert current_heads(engine) == {"kanban_0001"}
    engine.dispose()


def test_migrations_match_the_models(tmp_path: Path) -> None:
    engine = create_engine(_url(tmp_path))
    upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = [d for d in compare_metadata(context, Base.metadata) if d[1].name != VERSION_TABLE]
    assert diff == []
    engine.dispose()


def test_concurrent_upgrades_all_succeed_once(tmp_path: Path) -> None:
    starts = 4
    barrier = threading.Barrier(starts)
    errors: list[BaseException] = []

    def start() -> None:
        engine = create_engine(_url(tmp_path))
        try:
            barrier.wait(timeout=10)
            upgrade(engine)
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(starts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    engine = create_engine(_url(tmp_path))
    with engine.connect() as connection:
        assert connection.execute(text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar() == len(ALL_HEADS)
    engine.dispose()


def test_foreign_keys_cascade_deletes(tmp_path: Path) -> None:
    engine = create_engine(_url(tmp_path))
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO kanban_boards (id, name, description) VALUES (1, 'b', '')"))
        connection.execute(text("INSERT INTO kanban_columns (board_id, name, position) VALUES (1, 'c', 0)"))
        connection.execute(text("DELETE FROM kanban_boards"))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM kanban_columns")).scalar() == 0
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///data/x.db", "sqlite:///{base}/data/x.db"),
        ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
        ("sqlite://", "sqlite://"),
        ("postgresql://u:p@db/app", "postgresql://u:p@db/app"),
    ],
)
def test_resolve_url_makes_relative_sqlite_paths_absolute(tmp_path: Path, url: str, expected: str) -> None:
    assert resolve_url(url, tmp_path) == expected.format(base=tmp_path.resolve())
