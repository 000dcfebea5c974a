"""Engines for Patchbay's store: one ``create_engine`` that makes SQLite safe for a server.

SQLite needs three settings to behave under a multi-threaded server: WAL (readers never block the writer),
foreign keys (off by default in SQLite, and our cascades depend on them) and a busy timeout (wait for the
write lock instead of failing at once); a fourth, ``synchronous=NORMAL``, keeps a disk sync out of every
commit. Python's ``sqlite3`` also defers ``BEGIN`` until the first DML statement ("legacy transaction
control"), which makes DDL non-transactional and lets a read-then-write transaction fail with SQLITE_BUSY.
We take over ``BEGIN`` ourselves, as the SQLAlchemy docs recommend, so every transaction is real and write
transactions can take the write lock up front (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from patchbay.store.writes import BEGIN_OPTION, WAIT_SECONDS, is_memory, write_path

BUSY_TIMEOUT_MS = int(WAIT_SECONDS * 1000)
# SQLite's durability level for file databases (documented under [store] in docs/configuration.md).
SYNCHRONOUS = "NORMAL"


def create_engine(url: str | URL, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine for ``url``; SQLite gets WAL, foreign keys, a busy timeout and real transactions.

    Raises:
        sqlalchemy.exc.ArgumentError: ``url`` is not a SQLAlchemy URL.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, **kwargs)
    if is_memory(parsed):
        # Each connection to :memory: is its own empty database: share one connection across threads.
        kwargs.setdefault("poolclass", StaticPool)
        kwargs.setdefault("connect_args", {"check_same_thread": False})
    engine = sa.create_engine(parsed, **kwargs)
    install_sqlite_hooks(engine, memory=is_memory(parsed))
    return engine


def writer(engine: Engine) -> Engine:
    """``engine``'s database for write transactions: they lock the database at BEGIN, so they never deadlock,
    and on a SQLite file they take turns on the file's one writer connection (``patchbay.store.writes``)."""
    return write_path(engine).engine


def resolve_url(url: str, base_dir: Path) -> str:
    """``url`` with a relative SQLite path made absolute against ``base_dir`` (the config file's folder)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or is_memory(parsed) or parsed.database is None:
        return url
    path = Path(parsed.database)
    if path.is_absolute():
        return url
    return parsed.set(database=str((base_dir / path).resolve())).render_as_string(hide_password=False)


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL once; the mode is stored in the file, so later connections find it set.

    The switch needs a moment of exclusive access, and SQLite may refuse it at once when another connection
    is busy (the busy handler is not always consulted); if that other connection is the one switching, WAL is
    on when we look again.
    """
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            raise


def _null(_value: None) -> None:
    return None


def install_sqlite_hooks(engine: Engine, *, memory: bool) -> None:
    # Binding None, sqlite3 looks for __adapt__ on its protocol and __conform__ on None (two AttributeErrors
    # raised and cleared: about 2 µs per NULL parameter, and an audit row has several) unless an adapter is
    # registered for NoneType. This one binds NULL as before. The registry is the sqlite3 module's, so the
    # (value-preserving) adapter serves every SQLite connection of the process.
    sqlite3.register_adapter(type(None), _null)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy (see the module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # The busy timeout first, so everything after it waits for locks instead of failing at once.
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS:d}")
            cursor.execute("PRAGMA foreign_keys=ON")
            if not memory:
                _use_wal(cursor)
                # In WAL mode NORMAL syncs the disk at checkpoints, not at every commit: a power cut can lose
                # the last commits but never corrupts the file (sqlite.org/pragma.html#pragma_synchronous).
                # FULL's sync per commit stalled the one writer thread for milliseconds to tens of milliseconds.
                cursor.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")
