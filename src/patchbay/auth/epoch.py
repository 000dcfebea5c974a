"""The revocation generation: how a serving process sees, on its next request, a revocation made anywhere.

Database triggers (migration ``auth_0002``) raise ``auth_revocation_epoch.generation`` whenever a token, API key,
client or user is revoked, disabled, deleted or has its scopes or roles changed, whichever process does it: this
server's endpoints, the ``patchbay`` CLI, another replica, SQL by hand. The verified-token cache is trusted only
while the generation it was filled under is still the store's (:class:`patchbay.auth.core.TokenCache`), so each
request with a token reads the generation once.

The reading is a :class:`RevocationEpoch`, chosen from the store: a SQLite file is read on the event loop through a
private connection (a WAL reader never waits for the writer; a few microseconds), any other store through the
engine in a worker thread (PostgreSQL: one primary-key read per request). A fleet that wants no store read per
request can provide another implementation, e.g. a generation kept in memory and raised by a Redis channel.
"""

from __future__ import annotations

import sqlite3
from typing import Protocol

import anyio.to_thread
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

READ = "SELECT generation FROM auth_revocation_epoch WHERE id = 1"
# A WAL reader waits only while a crashed writer's log is recovered; never hold the event loop longer.
READ_BUSY_MS = 1_000


class RevocationEpoch(Protocol):
    async def current(self) -> int | None:
        """The store's revocation generation now; None when it cannot be read (then no cached token is trusted)."""
        ...

    def close(self) -> None: ...


class SqliteFileEpoch:
    """Reads the generation of a SQLite file through a connection of its own, opened on first use."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout={READ_BUSY_MS:d}")
        connection.execute("PRAGMA query_only=ON")
        return connection

    async def current(self) -> int | None:
        try:
            if self._connection is None:
                self._connection = self._connect()
            # fetchall ends the statement, so no read transaction (and no old snapshot) outlives this call.
            rows = self._connection.execute(READ).fetchall()
        except sqlite3.Error:
            return None  # not migrated yet, or unreadable: trust nothing cached
        return int(rows[0][0]) if rows else None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class EngineEpoch:
    """Reads the generation through the store's engine in a worker thread (PostgreSQL, in-memory SQLite)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _read(self) -> int | None:
        try:
            with self.engine.connect() as connection:
                value = connection.execute(text(READ)).scalar()
        except SQLAlchemyError:
            return None
        return int(value) if value is not None else None

    async def current(self) -> int | None:
        return await anyio.to_thread.run_sync(self._read)

    def close(self) -> None:
        """The engine belongs to the caller."""


def epoch_for(engine: Engine) -> RevocationEpoch:
    """The cheapest reader that sees every other connection's commits to ``engine``'s database."""
    url = engine.url
    database = url.database or ""
    memory = database in ("", ":memory:") or url.query.get("mode") == "memory" or database.startswith("file:")
    if url.get_backend_name() == "sqlite" and not memory:
        return SqliteFileEpoch(database)
    return EngineEpoch(engine)
