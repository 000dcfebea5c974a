"""The embedded store: engine settings, migrations from code, and safety under concurrent starts."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect, text

from patchbay.store import Base, alembic_config, create_engine, current_heads, resolve_url, upgrade, writer
from patchbay.store.migrate import SCRIPTS, VERSION_TABLE, is_current
from patchbay.store.revisions import read_scripts

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


# -- knowing a store is current without Alembic ---------------------------------------------------------------


def test_the_scripts_read_without_alembic_have_the_heads_alembic_finds() -> None:
    alembic_map = ScriptDirectory.from_config(alembic_config()).revision_map
    scripts = read_scripts(SCRIPTS / "versions")

    assert scripts is not None
    assert scripts.heads == ALL_HEADS
    assert set(scripts.revisions) == {r.revision for r in alembic_map.iterate_revisions("heads", "base")}
    for label in ("kanban", "auth"):
        expected = {r.revision for r in alembic_map.get_revisions(f"{label}@head") if r is not None}
        assert scripts.branch_heads(label) == expected


def test_a_fresh_store_is_not_current_and_upgrade_brings_every_branch_to_head(tmp_path: Path) -> None:
    engine = create_engine(_url(tmp_path))
    assert current_heads(engine) == set()
    assert not is_current(engine)

    upgrade(engine)

    assert is_current(engine) and is_current(engine, "kanban@head") and is_current(engine, "auth@head")
    assert current_heads(engine) == ALL_HEADS
    assert {"auth_revocation_epoch", "auth_api_keys"} | KANBAN_TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_an_old_store_is_not_current_and_upgrade_finishes_it_keeping_its_rows(tmp_path: Path) -> None:
    engine = create_engine(_url(tmp_path))
    upgrade(engine, "auth_0001")  # a store written by a Patchbay before the revocation generation
    upgrade(engine, "kanban@head")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO auth_api_keys (name, key_hash, hint, scopes, roles, created_at) "
                "VALUES ('kept', 'h', 'pb_', 'mcp', '', 0)"
            )
        )
    assert current_heads(engine) == {"auth_0001", "kanban_0001"}
    assert is_current(engine, "kanban@head")
    assert not is_current(engine, "auth@head")
    assert not is_current(engine)

    upgrade(engine)

    assert current_heads(engine) == ALL_HEADS
    assert "auth_revocation_epoch" in inspect(engine).get_table_names()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT name FROM auth_api_keys")).scalars().all() == ["kept"]
    engine.dispose()


def test_a_store_with_one_branch_is_current_for_that_branch_only(tmp_path: Path) -> None:
    engine = create_engine(_url(tmp_path))
    upgrade(engine, "kanban@head")

    assert is_current(engine, "kanban@head")
    assert not is_current(engine, "auth@head")
    assert not is_current(engine)
    upgrade(engine, "kanban@head")
    assert current_heads(engine) == {"kanban_0001"}  # the no-op left the auth branch alone
    engine.dispose()


def test_a_store_from_a_newer_patchbay_is_left_to_alembic_which_refuses_it(tmp_path: Path) -> None:
    engine = create_engine(_url(tmp_path))
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(
            text(f"UPDATE {VERSION_TABLE} SET version_num = 'auth_0099' WHERE version_num = 'auth_0002'")
        )

    assert not is_current(engine)
    with pytest.raises(CommandError, match="auth_0099"):
        upgrade(engine)
    assert current_heads(engine) == (ALL_HEADS - {"auth_0002"}) | {"auth_0099"}
    engine.dispose()


def _script(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(body, encoding="utf-8")


def test_a_merge_revision_is_the_one_head_of_the_branches_it_joins(tmp_path: Path) -> None:
    _script(tmp_path, "a", 'revision = "a"\ndown_revision = None\nbranch_labels = ("x",)\n')
    _script(tmp_path, "b1", 'revision: str = "b1"\ndown_revision: str | None = "a"\n')
    _script(tmp_path, "b2", 'revision = "b2"\ndown_revision = "a"\n')
    _script(tmp_path, "m", 'revision = "m"\ndown_revision = ("b1", "b2")\ndepends_on = None\n')

    scripts = read_scripts(tmp_path)

    assert scripts is not None
    assert scripts.heads == {"m"} and scripts.branch_heads("x") == {"m"}
    assert scripts.is_current({"m"}, "heads") and scripts.is_current({"m"}, "x@head")
    assert not scripts.is_current({"b1", "b2"}, "heads") and not scripts.is_current({"b1", "b2"}, "x@head")
    assert not scripts.is_current(set(), "heads")
    assert not scripts.is_current({"m"}, "m")  # a target other than heads or label@head: Alembic decides


def test_a_branch_with_two_heads_or_a_cross_branch_dependency_is_left_to_alembic(tmp_path: Path) -> None:
    two_heads, depends = tmp_path / "two", tmp_path / "depends"
    _script(two_heads, "a", 'revision = "a"\ndown_revision = None\nbranch_labels = "x"\n')
    _script(two_heads, "b1", 'revision = "b1"\ndown_revision = "a"\n')
    _script(two_heads, "b2", 'revision = "b2"\ndown_revision = "a"\n')
    _script(depends, "a", 'revision = "a"\ndown_revision = None\n')
    _script(depends, "c", 'revision = "c"\ndown_revision = None\ndepends_on = "a"\n')

    branched, dependent = read_scripts(two_heads), read_scripts(depends)

    assert branched is not None and dependent is not None
    assert branched.is_current({"b1", "b2"}, "heads")
    assert not branched.is_current({"b1", "b2"}, "x@head")  # Alembic refuses "x@head" with two heads
    assert dependent.heads == {"a", "c"}
    assert not dependent.is_current({"a", "c"}, "heads")


@pytest.mark.parametrize(
    "body",
    [
        'REVISION = "a"\nrevision = make_id()\ndown_revision = None\n',  # not a literal
        "down_revision = None\n",  # no revision at all
        'revision = "a"\ndown_revision = "gone"\n',  # builds on a script that is not there
        'revision = "a"\ndown_revision = 3\n',  # not a revision id
        'revision = "a"\ndown_revision = None\ndef broken(:\n',  # not Python
    ],
)
def test_a_script_the_reader_cannot_vouch_for_sends_every_upgrade_to_alembic(tmp_path: Path, body: str) -> None:
    _script(tmp_path, "a", body)

    assert read_scripts(tmp_path) is None


def test_two_scripts_with_one_revision_id_send_every_upgrade_to_alembic(tmp_path: Path) -> None:
    _script(tmp_path, "one", 'revision = "a"\ndown_revision = None\n')
    _script(tmp_path, "two", 'revision = "a"\ndown_revision = None\n')
    _script(tmp_path, "__init__", "revision = 3\n")  # not a script: skipped as Alembic does

    assert read_scripts(tmp_path) is None
    (tmp_path / "two.py").unlink()
    scripts = read_scripts.__wrapped__(tmp_path)
    assert scripts is not None and scripts.heads == {"a"}
