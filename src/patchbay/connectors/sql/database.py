"""The database behind an sql connector: engines, the read-only wall, timeouts, and error translation.

Reads and writes use separate engines. Every read runs where the database itself refuses writes:

- PostgreSQL: ``SET TRANSACTION READ ONLY`` and ``SET LOCAL statement_timeout`` in a transaction that is rolled
  back afterwards.
- MySQL/MariaDB: ``START TRANSACTION READ ONLY`` and ``max_execution_time`` (MariaDB: ``max_statement_time``).
- SQLite: a connection opened read-only (``mode=ro``) with ``PRAGMA query_only``, an authorizer that permits only
  reading (no ATTACH, no PRAGMA but catalogue ones, no denied function), and a progress handler as the timer.

Writes (declared actions only) run one transaction each, with the same timeout. Driver errors become
``ToolError`` here, with the URL's password scrubbed from anything the driver said.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import QueuePool

from patchbay.connectors.sql import guard
from patchbay.connectors.sql.options import SqlOptions, masked
from patchbay.errors import ConnectorError, ToolError
from patchbay.extras import install_command

T = TypeVar("T")
# The driver each backend gets when the URL names none, and the extra that installs it.
DEFAULT_DRIVERS = {"postgresql": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}
EXTRAS = {"postgresql": "sql-postgres", "mysql": "sql-mysql", "mariadb": "sql-mysql"}
SQLITE_BUSY_MS = 5000
CONNECT_TIMEOUT_S = 10
# SQLite calls the progress handler every this many virtual-machine instructions.
_PROGRESS_STEPS = 10_000
# PRAGMAs SQLAlchemy's inspector uses on SQLite; each only reads the catalogue.
_CATALOGUE_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "table_list",
        "database_list",
    }
)
# PRAGMAs that SQLAlchemy reads on connect; allowed only without a value (reading, not setting).
_READ_PRAGMAS = frozenset({"read_uncommitted", "query_only", "busy_timeout"})
_READ_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})


class Database:
    """Engines for one database, and the two ways to use them: :meth:`read` and :meth:`write`."""

    def __init__(self, url: URL, options: SqlOptions) -> None:
        backend = url.get_backend_name()
        if backend not in guard.DIALECTS:
            raise ConnectorError(
                f"unsupported database '{backend}' in {masked(url)}: use sqlite, postgresql, mysql or mariadb"
            )
        if "+" not in url.drivername and backend in DEFAULT_DRIVERS:
            url = url.set(drivername=f"{backend}+{DEFAULT_DRIVERS[backend]}")
        self.url = url
        self.backend = backend
        self.dialect = guard.DIALECTS[backend]
        self.timeout_ms = options.statement_timeout_ms
        self._secrets = _secrets(url)
        self._read, self._write = self._engines(options)

    @property
    def where(self) -> str:
        return masked(self.url)

    def _engines(self, options: SqlOptions) -> tuple[Engine, Engine]:
        try:
            if self.backend == "sqlite":
                return _sqlite_reader(self.url, options.pool_size), _sqlite_writer(self.url)
            kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": options.pool_size, "max_overflow": 2}
            if self.backend == "postgresql" and "connect_timeout" not in self.url.query:
                # libpq waits for the OS (minutes) on a host that drops packets; a bounded connect keeps retries
                # of a down connector, and shutdown, from hanging on one attempt.
                kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
            # Separate pools, so a long read never holds up a write's connection and vice versa.
            return sa.create_engine(self.url, **kwargs), sa.create_engine(self.url, **kwargs)
        except (NoSuchModuleError, ModuleNotFoundError, ImportError) as exc:
            extra = EXTRAS.get(self.backend, "sql-postgres")
            raise ConnectorError(
                f"the database driver for {self.url.drivername} is not installed ({exc.__class__.__name__}: "
                f"{self.scrub(str(exc))}). Install it with: {install_command(extra)}"
            ) from None
        except SQLAlchemyError as exc:
            raise ConnectorError(f"cannot use the database URL {self.where}: {self.scrub(str(exc))}") from None

    def driver_sql(self, sql: str) -> str:
        """``sql`` ready for ``exec_driver_sql``: drivers with format-style placeholders (psycopg, pymysql) would
        read a literal ``%`` as one, so it is doubled, as SQLAlchemy does for its own literal text."""
        if self._read.dialect.paramstyle in ("format", "pyformat"):
            return sql.replace("%", "%%")
        return sql

    def scrub(self, text: str) -> str:
        """``text`` without the password (plain or URL-quoted)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a read-only transaction with the statement timeout, then roll back.

        Raises:
            ToolError: the database is unreachable, timed out, or refused the statement.
        """
        # Closing the connection rolls the transaction back (the pool's reset-on-return).
        with self._translated(), self._read.connect() as conn:
            if self.backend == "sqlite":
                with _sqlite_deadline(conn, self.timeout_ms):
                    return work(conn)
            self._begin_read_only(conn)
            return work(conn)

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one read-write transaction with the statement timeout; commit when it returns.

        Raises:
            ToolError: the database is unreachable, timed out, or refused the statement (nothing is committed).
        """
        with self._translated(), self._write.begin() as conn:
            if self.backend == "sqlite":
                with _sqlite_deadline(conn, self.timeout_ms):
                    return work(conn)
            self._set_timeout(conn)
            return work(conn)

    def _begin_read_only(self, conn: Connection) -> None:
        if self.backend == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        else:
            conn.exec_driver_sql("START TRANSACTION READ ONLY")
        self._set_timeout(conn)

    def _set_timeout(self, conn: Connection) -> None:
        ms = int(self.timeout_ms)
        if self.backend == "postgresql":
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {ms:d}")
        elif conn.dialect.name == "mariadb" or getattr(conn.dialect, "is_mariadb", False):
            conn.exec_driver_sql(f"SET SESSION max_statement_time = {ms / 1000:.3f}")
        else:
            conn.exec_driver_sql(f"SET SESSION max_execution_time = {ms:d}")

    def ping(self) -> None:
        """Raises ToolError when the database cannot be reached."""
        self.read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar())

    def dispose(self) -> None:
        self._read.dispose()
        self._write.dispose()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            raise ToolError(self.explain(exc)) from None
        except SQLAlchemyError as exc:
            raise ToolError(f"the database call failed: {self.scrub(_first_line(str(exc)))}") from None

    def explain(self, exc: DBAPIError) -> str:
        """A client-safe sentence for a driver error."""
        orig = exc.orig
        said = self.scrub(_first_line(str(orig) if orig is not None else str(exc)))
        code = _error_code(orig)
        if _is_timeout(self.backend, code, said):
            return (
                f"the statement was cancelled after the time limit of {self.timeout_ms} ms "
                "(statement_timeout_ms); narrow it down, e.g. with a WHERE clause or a LIMIT"
            )
        if _is_read_only_refusal(code, said):
            return f"the database refused to write in a read-only query: {said}"
        if exc.connection_invalidated or _is_connection_error(self.backend, code, said, exc):
            return f"the database {self.where} is unreachable: {said}. Try again once it is back."
        return f"the database refused the statement: {said}"


# -- SQLite ----------------------------------------------------------------------------------------------------


def _sqlite_path(url: URL) -> str:
    database = url.database or ""
    if database in ("", ":memory:"):
        raise ConnectorError("an sql connector needs a SQLite file, not an in-memory database")
    return database


def _sqlite_reader(url: URL, pool_size: int) -> Engine:
    uri = f"file:{urllib.parse.quote(_sqlite_path(url))}?mode=ro"

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS:d}")
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(_read_only_authorizer)
        return conn

    # The URL names no file (the creator opens it), so say which pool to use: SQLAlchemy would pick the
    # single-connection pool it uses for :memory:.
    return sa.create_engine(
        "sqlite+pysqlite://", creator=connect, poolclass=QueuePool, pool_size=pool_size, max_overflow=2
    )


def _read_only_authorizer(action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
    if action in _READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        name = (arg2 or "").lower()
        denied = name in guard.DENIED_FUNCTIONS or name.startswith(guard.DENIED_PREFIXES)
        return sqlite3.SQLITE_DENY if denied else sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        pragma = (arg1 or "").lower()
        # Catalogue pragmas take a table name as argument; the others only when read (no value given).
        if pragma in _CATALOGUE_PRAGMAS or (pragma in _READ_PRAGMAS and arg2 is None):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _sqlite_writer(url: URL) -> Engine:
    engine = sa.create_engine(url.set(drivername="sqlite+pysqlite"))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over BEGIN from Python's sqlite3, so each action is one real transaction that takes the write
        # lock up front (BEGIN IMMEDIATE) instead of failing with SQLITE_BUSY halfway.
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS:d}")
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def _sqlite_deadline(conn: Connection, timeout_ms: int) -> Iterator[None]:
    raw: Any = conn.connection.driver_connection
    deadline = time.monotonic() + timeout_ms / 1000

    def progress() -> int:
        # Non-zero interrupts the running statement (sqlite3_progress_handler).
        return 1 if time.monotonic() > deadline else 0

    raw.set_progress_handler(progress, _PROGRESS_STEPS)
    try:
        yield
    finally:
        raw.set_progress_handler(None, 0)


# -- error classification -----------------------------------------------------------------------------------------


def _error_code(orig: BaseException | None) -> str:
    """MySQL's numeric error code, or PostgreSQL's SQLSTATE; "" when the driver gives neither.

    The MySQL code comes first: pymysql also sets a SQLSTATE, but a generic one (a MariaDB statement timeout is
    1969 with SQLSTATE 70100, shared with other interruptions)."""
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return str(args[0])
    sqlstate = getattr(orig, "sqlstate", None)
    return str(sqlstate) if sqlstate else ""


def _is_timeout(backend: str, code: str, said: str) -> bool:
    if backend == "sqlite":
        return said == "interrupted"
    # PostgreSQL 57014 query_canceled; MySQL 3024 ER_QUERY_TIMEOUT; MariaDB 1969 ER_STATEMENT_TIMEOUT.
    return code in ("57014", "3024", "1969")


def _is_read_only_refusal(code: str, said: str) -> bool:
    # PostgreSQL 25006 read_only_sql_transaction; MySQL 1792 ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION.
    lowered = said.lower()
    return code in ("25006", "1792") or "readonly database" in lowered or "not authorized" in lowered


def _is_connection_error(backend: str, code: str, said: str, exc: DBAPIError) -> bool:
    if backend == "sqlite":
        return "unable to open database" in said
    if code.startswith("08") or code in ("57P01", "57P02", "57P03"):  # connection exceptions, admin shutdown
        return True
    # MySQL client errors 2002-2013: cannot connect, server gone away, lost connection.
    if code.isdigit() and 2002 <= int(code) <= 2013:
        return True
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) and not code


def _secrets(url: URL) -> list[str]:
    password = url.password
    if not password:
        return []
    text = str(password)
    return sorted({text, urllib.parse.quote(text, safe=""), urllib.parse.quote_plus(text)}, key=len, reverse=True)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"
