"""Reading the audit trail for the console: filters, keyset pages, one record, exports and the records after a seq.

Pages are newest first and keyed by ``(ts, seq)``: every filter's index is ``(column, ts)`` (``ts`` alone without a
filter; ``patchbay.gate.audit_models``), and an index entry ends with the row's key (SQLite's rowid is ``seq``),
so ``ORDER BY ts DESC, seq DESC`` is a walk of one index range that stops after a page, whatever the size of the
trail. Ordering by ``seq`` alone would sort every matching row first. The page cursor in a link is a ``seq``; its
``ts`` is read back by primary key, so a link never carries a float.

Every function here is synchronous and reads through the engine: the pages run them in a worker thread.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine, Select, and_, or_, select

from patchbay.gate import audit_query
from patchbay.gate.audit_models import AuditRecord as R
from patchbay.gate.audit_query import CSV_COLUMNS, csv_row

__all__ = [
    "CSV_COLUMNS",
    "PAGE_ROWS",
    "AuditFilter",
    "AuditPage",
    "FilterError",
    "Row",
    "csv_lines",
    "export_rows",
    "is_truncated",
    "jsonl_lines",
    "newer_query",
    "newer_than",
    "newest_seq",
    "older_query",
    "page",
    "parse_filter",
    "parse_time",
    "record",
]

PAGE_ROWS = 50
EXPORT_BATCH = 500
# The longest text a filter field takes: the indexed columns' own bound (patchbay.gate.audit_models).
MAX_FIELD = 2048
_COLUMNS: tuple[Any, ...] = (
    R.seq,
    R.ts,
    R.kind,
    R.method,
    R.name,
    R.subject,
    R.client_id,
    R.client_name,
    R.outcome,
    R.transport,
)


class FilterError(ValueError):
    """A filter field the console cannot use: ``field`` names the form field, the message what it accepts."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What the audit page's form selects; every field optional, all given fields must hold."""

    user: str = ""
    client: str = ""
    tool: str = ""
    outcome: str = ""
    since: str = ""
    until: str = ""

    def params(self, **extra: str | int | None) -> str:
        """The filter as a query string (for links: the pager, the exports, the live tail), with ``extra``."""
        pairs = [(f.name, getattr(self, f.name)) for f in fields(self) if getattr(self, f.name)]
        pairs += [(k, str(v)) for k, v in extra.items() if v is not None]
        return urlencode(pairs)

    @property
    def empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True, slots=True)
class Bounds:
    """The filter as column conditions: times resolved to epoch seconds."""

    subject: str | None
    client: str | None
    tool: str | None
    outcome: str | None
    since: float | None
    until: float | None


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    ts: float
    kind: str
    method: str
    name: str | None
    subject: str | None
    client_id: str | None
    client_name: str | None
    outcome: str | None
    transport: str | None

    @property
    def when(self) -> str:
        return iso(self.ts)


@dataclass(frozen=True, slots=True)
class AuditPage:
    rows: list[Row]
    older: int | None  # the seq to pass as ``before`` for the next (older) page; None on the last page
    newer: int | None  # the seq to pass as ``after`` for the previous (newer) page; None on the first page
    gone: bool = False  # the cursor's record no longer exists (retention): the newest page is shown instead


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(field: str, text: str, now: float) -> float:
    """``text`` as epoch seconds: a duration back from ``now`` (``90s 30m 1h 7d 2w``) or ISO 8601 (UTC unless it
    has an offset; a browser's ``datetime-local`` value is ISO 8601 without one).

    Raises:
        FilterError: naming ``field`` and the forms it accepts.
    """
    parsed = audit_query.parse_time(text, now)
    if parsed is None:
        raise FilterError(
            field,
            f"{text.strip()[:60]!r} is not a time: give a duration back from now (30m, 1h, 7d) or a date and time "
            "(2026-12-01 or 2026-12-01T09:30, UTC)",
        )
    return parsed


def parse_filter(query: Mapping[str, str], now: float) -> tuple[AuditFilter, Bounds]:
    """The filter the query string gives, and its column conditions.

    Raises:
        FilterError: a field is too long, or a time is not a time, or ``since`` is not before ``until``.
    """
    given = {f.name: (query.get(f.name) or "").strip() for f in fields(AuditFilter)}
    for name, value in given.items():
        if len(value) > MAX_FIELD:
            raise FilterError(name, f"at most {MAX_FIELD} characters")
    chosen = AuditFilter(**given)
    since = parse_time("since", chosen.since, now) if chosen.since else None
    until = parse_time("until", chosen.until, now) if chosen.until else None
    if since is not None and until is not None and since >= until:
        raise FilterError("until", "must be later than since")
    bounds = Bounds(
        subject=_subject(chosen.user) if chosen.user else None,
        client=chosen.client or None,
        tool=chosen.tool or None,
        outcome=chosen.outcome or None,
        since=since,
        until=until,
    )
    return chosen, bounds


def _subject(user: str) -> str:
    # A subject is kind:name (user:ada, key:ci); a bare name is a person's, as on the CLI's --user.
    return user if ":" in user or user == "anonymous" else f"user:{user}"


def _where(query: Select[Any], bounds: Bounds) -> Select[Any]:
    # One equality per indexed column: the planner picks the most selective (column, ts) index for the range.
    if bounds.subject is not None:
        query = query.where(R.subject == bounds.subject)
    if bounds.client is not None:
        query = query.where(R.client_id == bounds.client)
    if bounds.tool is not None:
        query = query.where(R.name == bounds.tool)
    if bounds.outcome is not None:
        query = query.where(R.outcome == bounds.outcome)
    if bounds.since is not None:
        query = query.where(R.ts >= bounds.since)
    if bounds.until is not None:
        query = query.where(R.ts < bounds.until)
    return query


def _before(ts: float, seq: int) -> Any:
    # (ts, seq) < (cursor): the `ts <=` part is an index range; the OR only trims ties at the cursor's ts.
    return and_(R.ts <= ts, or_(R.ts < ts, R.seq < seq))


def _after(ts: float, seq: int) -> Any:
    return and_(R.ts >= ts, or_(R.ts > ts, R.seq > seq))


def _row(values: Any) -> Row:
    return Row(*values)


def older_query(bounds: Bounds, cursor: tuple[float, int] | None = None) -> Select[Any]:
    """The next page's statement: records ``bounds`` selects, newest first, older than ``cursor`` (ts, seq)."""
    query = _where(select(*_COLUMNS), bounds)
    if cursor is not None:
        query = query.where(_before(*cursor))
    return query.order_by(R.ts.desc(), R.seq.desc()).limit(PAGE_ROWS + 1)


def newer_query(bounds: Bounds, cursor: tuple[float, int]) -> Select[Any]:
    """The previous page's statement: records newer than ``cursor``, oldest first (the page reverses them)."""
    query = _where(select(*_COLUMNS), bounds).where(_after(*cursor))
    return query.order_by(R.ts, R.seq).limit(PAGE_ROWS + 1)


def page(engine: Engine, bounds: Bounds, *, before: int | None = None, after: int | None = None) -> AuditPage:
    """One page of at most ``PAGE_ROWS`` records, newest first: the newest, those older than the record ``before``,
    or those newer than the record ``after``. A cursor whose record is gone (retention) gives the newest page."""
    cursor_seq = before if before is not None else after
    with engine.connect() as connection:
        cursor_ts = None
        if cursor_seq is not None:
            cursor_ts = connection.execute(select(R.ts).where(R.seq == cursor_seq)).scalar()
        if cursor_seq is None or cursor_ts is None:
            found = connection.execute(older_query(bounds)).all()
            rows = [_row(r) for r in found[:PAGE_ROWS]]
            return AuditPage(rows, rows[-1].seq if len(found) > PAGE_ROWS else None, None, cursor_seq is not None)
        cursor = (float(cursor_ts), cursor_seq)
        if after is not None:
            found = connection.execute(newer_query(bounds, cursor)).all()
            rows = [_row(r) for r in found[:PAGE_ROWS]][::-1]
            newer = rows[0].seq if rows and len(found) > PAGE_ROWS else None
            return AuditPage(rows, rows[-1].seq if rows else cursor_seq, newer)
        found = connection.execute(older_query(bounds, cursor)).all()
    rows = [_row(r) for r in found[:PAGE_ROWS]]
    return AuditPage(rows, rows[-1].seq if len(found) > PAGE_ROWS else None, rows[0].seq if rows else cursor_seq)


def record(engine: Engine, seq: int) -> tuple[Row, dict[str, Any], str] | None:
    """The record ``seq``: its columns, its body (as the recorder wrote it, arguments already redacted) and its
    chain hash; None when there is none."""
    with engine.connect() as connection:
        found = connection.execute(select(*_COLUMNS, R.body, R.hash).where(R.seq == seq)).first()
    if found is None:
        return None
    body = json.loads(found.body)
    return _row(found[: len(_COLUMNS)]), body if isinstance(body, dict) else {"body": body}, found.hash


def newer_than(engine: Engine, bounds: Bounds, seq: int, limit: int = PAGE_ROWS) -> list[Row]:
    """Records with a ``seq`` above ``seq`` that ``bounds`` selects, oldest first (the live tail)."""
    query = _where(select(*_COLUMNS), bounds).where(R.seq > seq).order_by(R.seq).limit(limit)
    with engine.connect() as connection:
        return [_row(r) for r in connection.execute(query).all()]


def newest_seq(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(R.seq).order_by(R.seq.desc()).limit(1)).scalar() or 0)


def is_truncated(engine: Engine, bounds: Bounds, max_rows: int) -> bool:
    """Whether ``bounds`` selects more than ``max_rows`` records (one index step past the bound, no count)."""
    query = _where(select(R.seq), bounds).order_by(R.ts.desc(), R.seq.desc()).offset(max_rows).limit(1)
    with engine.connect() as connection:
        return connection.execute(query).first() is not None


def export_rows(engine: Engine, bounds: Bounds, max_rows: int) -> Iterator[tuple[Row, str, str]]:
    """At most ``max_rows`` records, newest first, as ``(row, body, hash)``: read a batch at a time, so an export
    holds one batch in memory whatever its size."""
    left, cursor = max_rows, None
    base = _where(select(*_COLUMNS, R.body, R.hash), bounds).order_by(R.ts.desc(), R.seq.desc())
    while left > 0:
        query = base if cursor is None else base.where(_before(*cursor))
        with engine.connect() as connection:
            batch = connection.execute(query.limit(min(EXPORT_BATCH, left))).all()
        for found in batch:
            yield _row(found[: len(_COLUMNS)]), found.body, found.hash
        if len(batch) < min(EXPORT_BATCH, left):
            return
        left -= len(batch)
        cursor = (batch[-1].ts, batch[-1].seq)


def jsonl_lines(rows: Iterator[tuple[Row, str, str]]) -> Iterator[str]:
    for _, body, _ in rows:
        yield body + "\n"


def csv_lines(rows: Iterator[tuple[Row, str, str]]) -> Iterator[str]:
    """The header, then one line per record; every value comes from the record's body (fixed columns, so a SIEM
    mapping stays valid)."""
    buffer = io.StringIO()
    out = csv.writer(buffer, quoting=csv.QUOTE_ALL)

    def line(values: list[str]) -> str:
        out.writerow(values)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(list(CSV_COLUMNS))
    for row, body, digest in rows:
        yield line(csv_row(body, row.seq, iso(row.ts), digest))
