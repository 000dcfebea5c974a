"""What the two readers of the audit trail share: ``patchbay audit`` (``patchbay.cli.audit``) and the console's
Audit page (``patchbay.console.audit_data``).

Both take times as a duration back from now (``90s 30m 1h 7d 2w``) or ISO 8601 (UTC unless it has an offset), and
both export the same CSV: fixed columns, so a SIEM mapping stays valid whichever one wrote the file, and cells a
spreadsheet would run as a formula quoted as text. Each reader says in its own words what a wrong time is.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

__all__ = ["CSV_COLUMNS", "csv_cell", "csv_row", "parse_time"]

CSV_COLUMNS = (
    "seq",
    "time",
    "kind",
    "method",
    "name",
    "outcome",
    "transport",
    "subject",
    "username",
    "client_id",
    "client_name",
    "request_ref",
    "latency_ms",
    "result_bytes",
    "detail",
    "hash",
)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
# OWASP "CSV Injection": what a spreadsheet reads as the start of a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def parse_time(text: str, now: float) -> float | None:
    """``text`` as epoch seconds: a duration back from ``now`` or ISO 8601 (without an offset: UTC, as a browser's
    ``datetime-local`` value comes); None when it is neither."""
    text = text.strip()
    match = _DURATION.match(text)
    if match:
        return now - float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def csv_cell(value: Any) -> str:
    """One CSV cell: text as it is unless a spreadsheet would run it as a formula (then with a leading single quote,
    so it is shown as text), numbers and booleans as JSON, anything else as compact JSON with sorted keys."""
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_STARTS) else value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return csv_cell(json.dumps(value, sort_keys=True, separators=(",", ":")))


def csv_row(body: str, seq: int, time: str, digest: str) -> list[str]:
    """A record's CSV line, in ``CSV_COLUMNS`` order: every value from its JSON ``body`` but the three given (the
    record's position, its time as the reader writes times, and its chain hash)."""
    parsed = json.loads(body)
    values = {**(parsed if isinstance(parsed, dict) else {}), "seq": seq, "time": time, "hash": digest}
    return [csv_cell(values.get(column)) for column in CSV_COLUMNS]
