"""The revocation generation: how a serving process sees, on its next request, a revocation made anywhere.

Database triggers (migration ``auth_0002``) raise ``auth_revocation_epoch.generation`` whenever a token, API key,
client or user is revoked, disabled, deleted or has its scopes or roles changed, whichever process does it: this
server's endpoints, the ``patchbay`` CLI, another replica, SQL by hand. The verified-token cache is trusted only
while the generation it was filled under is still the store's (:class:`patchbay.auth.core.TokenCache`), so each
request with a token reads the generation once.

The reading is a :class:`RevocationEpoch`, chosen from the store: a SQLite file is read on the event loop through a
private connection (a WAL reader never waits for the writer), and only when its write-ahead log shows a commit
since the last read; any other store through the engine in a worker thread (PostgreSQL: one primary-key read per
request). A fleet that wants no store read per request can provide another implementation, e.g. a generation kept
in memory and raised by a Redis channel.
"""

from __future__ import annotations

import contextlib
import mmap
import sqlite3
from typing import Protocol

import anyio.to_thread
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

READ = "SELECT generation FROM auth_revocation_epoch WHERE id = 1"
# A WAL reader waits only while a crashed writer's log is recovered; never hold the event loop longer.
READ_BUSY_MS = 1_000
# Both copies of the wal-index header (2 x 48 bytes) at the start of the -shm file.
WAL_INDEX_HEADERS = 96


class RevocationEpoch(Protocol):
    def unchanged(self) -> int | None:
        """The generation read last, when the store provably saw no commit since; None: ask :meth:`current`."""
        ...

    async def current(self) -> int | None:
        """The store's revocation generation now; None when it cannot be read (then no cached token is trusted)."""
        ...

    def close(self) -> None: ...


class SqliteFileEpoch:
    """Reads the generation of a SQLite file through a connection of its own, opened on first use.

    In WAL mode every commit, by any connection of any process, rewrites the wal-index header at the start of the
    ``-shm`` file (SQLite's documented WAL file format, walformat.html §2.1): while those 96 bytes are as they were
    at the last read, nothing was committed since, and the generation read then still holds. So a request costs one
    comparison of mapped memory, and the SQL read happens only after some commit.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self._shm: mmap.mmap | None = None
        self._seen: bytes | None = None
        self._generation: int | None = None

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            connection.execute(f"PRAGMA busy_timeout={READ_BUSY_MS:d}")
            connection.execute("PRAGMA query_only=ON")
            connection.execute(READ).fetchall()  # opens the WAL and its -shm, which stay while we are connected
            wal = connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        except sqlite3.Error:
            connection.close()
            raise
        if wal:  # without WAL (or its -shm) every request reads the generation
            with contextlib.suppress(OSError, ValueError), open(self.path + "-shm", "rb") as shm:
                self._shm = mmap.mmap(shm.fileno(), WAL_INDEX_HEADERS, access=mmap.ACCESS_READ)
        return connection

    def unchanged(self) -> int | None:
        # The request path's check, without a coroutine: one comparison of mapped memory.
        shm = self._shm
        if shm is not None and self._seen is not None and shm[:WAL_INDEX_HEADERS] == self._seen:
            return self._generation
        return None

    async def current(self) -> int | None:
        try:
            if self._connection is None:
                self._connection = self._open()
            # The header is taken before the read: a commit landing between them changes it, so the next call
            # reads again instead of trusting a generation older than that commit.
            header = self._shm[:WAL_INDEX_HEADERS] if self._shm is not None else None
            if header is not None and header == self._seen:
                return self._generation
            # fetchall ends the statement, so no read transaction (and no old snapshot) outlives this call.
            rows = self._connection.execute(READ).fetchall()
        except sqlite3.Error:
            self._seen = None
            return None  # not migrated yet, or unreadable: trust nothing cached
        self._generation = int(rows[0][0]) if rows else None
        self._seen = header if self._generation is not None else None
        return self._generation

    def close(self) -> None:
        if self._shm is not None:
            self._shm.close()
            self._shm = None
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

    def unchanged(self) -> int | None:
        return None  # a server's commits leave no local trace: read every time

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
