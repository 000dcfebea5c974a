"""Appending records to the audit chain: one transaction assigns ``seq`` and ``prev_hash`` and inserts the rows.

The chain head (``audit_chain_head``, one row) is read and moved inside the write transaction, so writers in
different processes (the server, a CLI command recording an admin action) take turns: on SQLite the transaction
holds the database's write lock from BEGIN (``BEGIN IMMEDIATE``, see ``patchbay.store.engine``); on PostgreSQL
the head row is locked with ``SELECT ... FOR UPDATE``. Neither can hand out a ``seq`` twice or fork the chain.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine

# The store package first: its models module imports every sibling model module (audit ones included), which
# must not start from a half-imported audit_models.
import patchbay.store  # noqa: F401
from patchbay.gate import audit_chain
from patchbay.gate.audit_models import CLIENT_ID_LENGTH, NAME_LENGTH, SUBJECT_LENGTH
from patchbay.store import write_path

__all__ = ["INDEXED", "append", "append_rows", "columns_of", "write_now"]

# The indexed copies of body fields, and the length each column holds (longer values are cut; body keeps all).
_COPIES = (
    ("request_ref", 64),
    ("method", 100),
    ("name", NAME_LENGTH),
    ("subject", SUBJECT_LENGTH),
    ("client_id", CLIENT_ID_LENGTH),
    ("client_name", 200),
    ("outcome", 20),
    ("transport", 20),
)
# Every column copied from the body (the indexed ones, then duration_ms, the body's latency_ms), in the order of
# the INSERT below (after seq; then body, prev_hash, hash); `audit verify` holds each against the body.
INDEXED = ("ts", "kind", *(key for key, _ in _COPIES), "duration_ms")
_NUMBERS = (int, float)  # a tuple: isinstance is cheaper with one than with int | float


def columns_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The indexed columns for ``record``: copies of its fields, cut to the column's length."""
    return dict(zip(INDEXED, _copies(record), strict=True))


def _copies(record: Mapping[str, Any]) -> tuple[Any, ...]:
    # columns_of's values in INDEXED order, as the writer inserts them (no dict: it runs once per record).
    kind = str(record["kind"])
    cut = [None if (value := record.get(key)) is None else str(value)[:length] for key, length in _COPIES]
    if cut[1] is None:  # method
        cut[1] = ""
    latency = record.get("latency_ms")
    if kind == "call" and isinstance(latency, _NUMBERS) and not isinstance(latency, bool):
        duration = float(latency)
    else:  # an intent, an event, or a value that is not a number (the body keeps whatever it was)
        duration = None
    return (float(record["ts"]), kind, *cut, duration)


# Fixed statements sent straight to the driver: building them with SQLAlchemy Core took about a millisecond per
# commit on the writer's thread (statement construction and cache keys), fifty times the SQLite commit itself.
# (read the head, move the head, start a missing head) for "?" drivers (sqlite3) ...
_QMARK = (
    "SELECT seq, hash FROM audit_chain_head WHERE id = 1",
    "UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1",
    "INSERT INTO audit_chain_head (id, seq, hash) VALUES (?, ?, ?)",
)
# ... and for "%s" drivers (psycopg, pg8000), which lock the head row for the transaction.
_FORMAT = (
    "SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE",
    "UPDATE audit_chain_head SET seq = %s, hash = %s WHERE id = 1",
    "INSERT INTO audit_chain_head (id, seq, hash) VALUES (%s, %s, %s)",
)
_INSERT = (
    "INSERT INTO audit_records (seq, ts, kind, request_ref, method, name, subject, client_id, client_name, outcome,"
    " transport, duration_ms, body, prev_hash, hash) VALUES "
)
_WIDTH = 15  # values per row
# Rows per INSERT statement: a batch goes as a few multi-row statements of these sizes (at most 64 x 15 = 960
# parameters: under the 999 of SQLite before 3.32), not one statement per row. executemany steps each row on
# its own, letting the GIL go and taking it back around every step, which the event loop's thread feels; a few
# fixed sizes keep the statements in the driver's statement cache.
_CHUNKS = (64, 32, 16, 8, 4, 2, 1)


def _inserts(mark: str) -> dict[int, str]:
    row = "(" + ", ".join([mark] * _WIDTH) + ")"
    return {size: _INSERT + ", ".join([row] * size) for size in _CHUNKS}


_INSERTS = {"qmark": _inserts("?"), "format": _inserts("%s")}


def append(connection: Connection, records: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """Insert ``records`` at the end of the chain, in order; returns each one's ``(seq, hash)``.

    Must run inside a write transaction (it is the caller's to commit).
    """
    driver = connection.connection.driver_connection
    return append_rows(driver, connection.dialect.paramstyle, records)


def append_rows(driver: Any, paramstyle: str, records: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """:func:`append` on the driver's own connection (sqlite3, psycopg ...), whose ``paramstyle`` is the
    dialect's: for the audit writer, which runs its transactions on the driver connection directly.

    Must run inside a write transaction (it is the caller's to commit).
    """
    head_sql, move_sql, start_sql = _QMARK if paramstyle == "qmark" else _FORMAT
    inserts = _INSERTS["qmark" if paramstyle == "qmark" else "format"]
    cursor = driver.cursor()
    try:
        cursor.execute(head_sql)
        head = cursor.fetchone()
        if head is None:  # a store whose head row was deleted by hand: start it again (verify reports the gap)
            cursor.execute(start_sql, (1, 0, audit_chain.GENESIS))
            seq, prev = 0, audit_chain.GENESIS
        else:
            seq, prev = int(head[0]), str(head[1]) or audit_chain.GENESIS
        if records:  # link's checks, once per batch: every later prev is a hash made here
            audit_chain.check_link(prev, seq + 1, seq + len(records))
        values: list[Any] = []  # the rows' values one after the other, as the multi-row INSERTs take them
        linked: list[tuple[int, str]] = []
        for record in records:
            seq += 1
            body = audit_chain.canonical_bytes(record)
            digest = audit_chain.link_checked(prev, seq, body)
            values += (seq, *_copies(record), body.decode("utf-8"), prev, digest)
            linked.append((seq, digest))
            prev = digest
        if linked:
            _insert(cursor, inserts, values)
            cursor.execute(move_sql, (seq, prev))
    finally:
        cursor.close()
    return linked


def _insert(cursor: Any, inserts: dict[int, str], values: list[Any]) -> None:
    start, rows = 0, len(values) // _WIDTH
    for size in _CHUNKS:
        while rows >= size:
            cursor.execute(inserts[size], values[start : start + size * _WIDTH])
            start, rows = start + size * _WIDTH, rows - size


def write_now(engine: Engine, records: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """Append ``records`` and commit before returning (CLI commands, which have no recorder of their own).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store could not be written; nothing of ``records`` is stored.
    """
    stamped = [{"ts": time.time(), **record} for record in records]
    return write_path(engine).run_sync(lambda connection: append(connection, stamped))


def admin_event(settings: Any, method: str, **fields: Any) -> None:
    """Record an admin action taken with the CLI (``users.add``, ``keys.revoke`` ...) straight into the trail of the
    configured store, committed before the command reports success. Nothing when ``[audit] enabled = false``.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store could not be written.
    """
    if not settings.audit.enabled:
        return
    import getpass

    from patchbay.store import create_engine, upgrade

    engine = create_engine(settings.store_url)
    try:
        upgrade(engine, "audit@head")
        write_now(engine, [{"kind": "event", "method": method, "actor": getpass.getuser(), "via": "cli", **fields}])
    finally:
        engine.dispose()
