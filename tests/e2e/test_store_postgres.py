"""The store's migrations on a real PostgreSQL: a fresh, an old and a current database each end up at every
branch's head, and a current one is recognised without Alembic; replicas of a fleet upgrading one database at once
migrate it once (the advisory lock), and every branch goes down to base and up to head again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from patchbay.store import alembic_config, create_engine, current_heads, upgrade
from patchbay.store.migrate import _PG_LOCK_KEY, VERSION_TABLE, is_current
from tests.support.postgres import PostgresServer

ALL_HEADS = set(ScriptDirectory.from_config(alembic_config()).get_heads())
REPLICAS = 4
DEADLINE = 120.0  # seconds for REPLICAS Python processes to start on two shared cores


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


def _waiting_for_the_migration_lock(engine: Engine) -> int:
    # A bigint advisory key shows in pg_locks as classid (high 32 bits) and objid (low 32 bits), objsubid 1.
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND classid = :high AND objid = :low AND objsubid = 1"
                ),
                {"high": _PG_LOCK_KEY >> 32, "low": _PG_LOCK_KEY & 0xFFFFFFFF},
            ).scalar_one()
        )


def test_replicas_upgrading_one_fresh_postgresql_store_at_once_migrate_it_once(
    engine: Engine, pg: PostgresServer, tmp_path: Path
) -> None:
    config = tmp_path / "patchbay.toml"
    config.write_text('[server]\nname = "replica"\n')  # the store URL, with its password, comes from the env
    env = {**os.environ, "PATCHBAY_STORE__URL": pg.url(engine.url.database or ""), "COLUMNS": "400"}
    with engine.connect() as holder:
        # Hold the migration lock so that every `patchbay store upgrade` reaches it before any of them migrates:
        # then they all contend for it at the same moment once it is released.
        holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_LOCK_KEY})
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "patchbay", "store", "upgrade", "--config", str(config)],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(REPLICAS)
        ]
        try:
            deadline = time.monotonic() + DEADLINE
            while _waiting_for_the_migration_lock(engine) < REPLICAS:
                assert all(proc.poll() is None for proc in procs), [proc.communicate() for proc in procs]
                assert time.monotonic() < deadline, "the upgrades never all waited for the migration lock"
                time.sleep(0.05)
        finally:
            holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_LOCK_KEY})
            holder.commit()
            outputs = [proc.communicate(timeout=DEADLINE) for proc in procs]

    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err
        assert out.strip() == f"store is current: {', '.join(sorted(ALL_HEADS))}", out + err
        assert "already exists" not in err and "duplicate" not in err.lower(), err
    with engine.connect() as connection:
        versions = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    assert sorted(versions) == sorted(ALL_HEADS)  # one row per branch: the schema was brought to head once


def _downgrade_to_base(engine: Engine) -> None:
    with engine.connect() as connection, connection.begin():
        command.downgrade(alembic_config(connection), "base")


def test_every_branch_goes_down_to_base_and_up_to_head_again_on_postgresql(engine: Engine) -> None:
    upgrade(engine)
    tables = set(inspect(engine).get_table_names())

    _downgrade_to_base(engine)
    left = set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        functions = connection.execute(
            text(
                "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE nspname = 'public'"
            )
        ).scalar_one()
    upgrade(engine)

    assert left == {VERSION_TABLE} and current_heads(engine) == ALL_HEADS
    assert functions == 0  # the revocation trigger's function went with its table
    assert set(inspect(engine).get_table_names()) == tables
    with engine.begin() as connection:  # the schema built the second time works: triggers included
        connection.execute(text("INSERT INTO kanban_boards (name, description) VALUES ('again', '')"))
        connection.execute(
            text(
                "INSERT INTO auth_api_keys (name, key_hash, hint, scopes, roles, created_at) "
                "VALUES ('again', 'h', 'pb_', 'mcp', '', 0)"
            )
        )
