"""Schema migrations, run from code: no ``alembic.ini`` is needed at run time.

The scripts live in ``patchbay/store/migrations`` (shipped in the wheel). Each feature's tables form their own
Alembic branch, labelled after the feature (``kanban`` …), so a connector pointed at a database of its own
upgrades only its branch (``upgrade(engine, "kanban@head")``) while Patchbay's store upgrades every branch
(``"heads"``). The version table is ``patchbay_schema_version``, so sharing a database with an application
that uses Alembic itself cannot clash.

Alembic is imported only when there is something to migrate: a store already at ``target`` is recognised by
reading the version table with SQLAlchemy Core and comparing it with the scripts' revisions
(``patchbay.store.revisions``), so a server restarting on a current store never loads it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, column, inspect, select, table, text
from sqlalchemy.engine import URL

from patchbay.store.engine import create_engine, writer
from patchbay.store.revisions import read_scripts

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPTS = Path(__file__).with_name("migrations")
VERSION_TABLE = "patchbay_schema_version"
# Any constant works: it only has to be the same in every Patchbay process (PostgreSQL advisory lock key).
_PG_LOCK_KEY = 0x5041_5443


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` for Patchbay's scripts; with ``connection``, env.py migrates through it."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.set_main_option("version_table", VERSION_TABLE)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


_IN_PROCESS = threading.Lock()


def upgrade(engine_or_url: Engine | str | URL, target: str = "heads") -> None:
    """Bring the database up to ``target`` ("heads": every branch; "kanban@head": one). A no-op when current.

    Concurrent starts are safe: the whole upgrade is one transaction that first takes a database-wide lock
    (SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory lock), so a second process waits, then finds nothing to do.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database cannot be reached or a migration failed (rolled back).
    """
    owned = not isinstance(engine_or_url, Engine)
    engine = create_engine(engine_or_url) if not isinstance(engine_or_url, Engine) else engine_or_url
    try:
        # One upgrade at a time in this process: parts of a server (auth, manifest, audit) open the store from
        # worker threads at once, and CPython 3.11 can fail ("AST constructor recursion depth mismatch") when two
        # threads parse the migration scripts concurrently.
        with _IN_PROCESS:
            if is_current(engine, target):
                return
            from alembic import command

            with writer(engine).connect() as connection, connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                command.upgrade(alembic_config(connection), target)
    finally:
        if owned:
            engine.dispose()


def is_current(engine: Engine, target: str = "heads") -> bool:
    """True when ``upgrade(engine, target)`` has nothing to do, decided without Alembic; False when unsure.

    Read without the migration lock: a concurrent upgrade can only bring the database nearer ``target``, and a
    False sends the caller to Alembic, which checks again under the lock.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database cannot be reached.
    """
    scripts = read_scripts(SCRIPTS / "versions")
    return scripts is not None and scripts.is_current(current_heads(engine), target)


def current_heads(engine: Engine) -> set[str]:
    """The revisions the database is at (one per branch); empty for a database never migrated.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database cannot be reached.
    """
    with engine.connect() as connection:
        # Checked first: on PostgreSQL a failed SELECT would abort the transaction it ran in.
        if not inspect(connection).has_table(VERSION_TABLE):
            return set()
        versions = table(VERSION_TABLE, column("version_num"))
        return set(connection.execute(select(versions.c.version_num)).scalars())
