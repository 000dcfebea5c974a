"""Rows as JSON (``structuredContent``) and as a readable text table (the text copy of the same result).

Values become JSON types: dates and times as ISO 8601 strings, decimals as numbers when that is exact enough,
bytes as a short hex preview, and text longer than ``max_value_chars`` cut with a note saying so.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Result

from patchbay.errors import ToolError

ELLIPSIS = "…"
_FETCH_BATCH = 500
_FLOAT_DIGITS = 15  # decimals with more significant digits stay strings, so no digit is lost


@dataclass(slots=True)
class Page:
    columns: list[str]
    rows: list[list[Any]]
    offset: int
    truncated: bool
    """More rows follow this page."""
    notes: list[str] = field(default_factory=list)

    @property
    def next_offset(self) -> int | None:
        return self.offset + len(self.rows) if self.truncated else None

    def structured(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "rows": self.rows,
            "row_count": len(self.rows),
            "truncated": self.truncated,
            "next_offset": self.next_offset,
            "notes": self.notes,
        }


@dataclass(slots=True)
class Cutter:
    """Converts values to JSON and counts the text it had to cut."""

    max_chars: int
    cut: list[str] = field(default_factory=list)

    def row(self, values: Sequence[Any], columns: Sequence[str], index: int) -> list[Any]:
        return [self.value(v, columns[i], index) for i, v in enumerate(values)]

    def value(self, value: Any, column: str, row: int) -> Any:
        converted = to_json(value)
        if isinstance(converted, str) and len(converted) > self.max_chars:
            self.cut.append(f"row {row} {column} ({len(converted):,} characters)")
            return converted[: self.max_chars] + ELLIPSIS
        return converted

    def notes(self) -> list[str]:
        if not self.cut:
            return []
        shown = "; ".join(self.cut[:5]) + (f"; and {len(self.cut) - 5} more" if len(self.cut) > 5 else "")
        return [
            f"{len(self.cut)} value(s) longer than {self.max_chars:,} characters were cut (ending in {ELLIPSIS}): "
            f"{shown}. Select a substring of the column to read the rest."
        ]


def read_page(result: Result[Any], *, offset: int, limit: int, max_chars: int, deadline: float) -> Page:
    """Skip ``offset`` rows, keep up to ``limit``, and look one row further to know whether more follow.

    Raises:
        ToolError: fetching ran past ``deadline`` (a ``time.monotonic()`` value).
    """
    columns = [str(c) for c in result.keys()]  # noqa: SIM118 - Result is not a dict
    cutter = Cutter(max_chars)
    rows: list[list[Any]] = []
    seen = 0
    more = False
    while not more:
        batch = result.fetchmany(_FETCH_BATCH)
        if not batch:
            break
        if time.monotonic() > deadline:
            raise ToolError(
                "reading the result took longer than the time limit; ask for fewer rows or a smaller offset"
            )
        for raw in batch:
            if seen >= offset + limit:
                more = True
                break
            if seen >= offset:
                rows.append(cutter.row(tuple(raw), columns, seen))
            seen += 1
    result.close()
    return Page(columns, rows, offset, more, cutter.notes())


def to_json(value: Any) -> Any:
    """``value`` as a JSON-compatible Python value."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        return _decimal(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        preview = data[:32].hex()
        return f"<{len(data):,} bytes: {preview}{ELLIPSIS if len(data) > 32 else ''}>"
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    return str(value)


def _decimal(value: decimal.Decimal) -> Any:
    if not value.is_finite():
        return str(value)
    if value == value.to_integral_value():
        return int(value)
    if len(value.as_tuple().digits) <= _FLOAT_DIGITS:
        return float(value)
    return str(value)


def text_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table: readable as plain text, rendered as a table where Markdown is."""
    header = "| " + " | ".join(_cell(c) for c in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join([header, rule, *body])


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = value if isinstance(value, str) else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "\\r").replace("\n", "\\n")


def page_text(page: Page, *, what: str = "row", pageable: bool = True) -> str:
    """The text copy of a query result: the table, then how to get more, then the notes.

    ``pageable`` is False for results that cannot be asked for again from an offset (a write action's returned rows):
    then the text says the rest was left out instead of naming an ``offset`` the tool does not take.
    """
    parts = [text_table(page.columns, page.rows) if page.columns else "(the statement returned no columns)"]
    first = page.offset + 1
    if page.rows:
        span = f"{what}s {first}-{page.offset + len(page.rows)}" if len(page.rows) > 1 else f"{what} {first}"
        parts.append(f"{span}{'' if page.truncated else ' (end of result)'}.")
    else:
        parts.append(f"No {what}s" + (f" from offset {page.offset}." if page.offset else "."))
    if page.truncated and pageable:
        parts.append(f"More rows follow: call again with offset={page.next_offset}.")
    elif page.truncated:
        parts.append(f"More rows were returned; only the first {len(page.rows)} are shown (max_rows).")
    parts.extend(page.notes)
    return "\n".join(parts)
