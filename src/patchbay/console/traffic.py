"""The last hour's calls, errors and latency, per minute, from the audit trail, drawn as small SVG bar charts.

The store aggregates: one range scan of the ``ts`` index over the last hour, grouped per minute in SQL, so the cost
follows the hour's calls, not the trail's size (a million older records are never read). Only a call's final
record counts (a write's ``intent`` record is its first half). Latency is the ``duration_ms`` column (audit_0005),
never the JSON body: a record written before that column has it NULL, so it counts as a call but not for latency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

WINDOW_MINUTES = 60
ERRORS = ("tool_error", "error", "timed_out", "unrecorded")
REFUSED = ("denied", "rate_limited")
_QUERY = """
SELECT {minute} AS minute, COUNT(*) AS calls,
       SUM(CASE WHEN outcome IN ('tool_error', 'error', 'timed_out', 'unrecorded') THEN 1 ELSE 0 END) AS errors,
       SUM(CASE WHEN outcome IN ('denied', 'rate_limited') THEN 1 ELSE 0 END) AS refused,
       AVG(duration_ms) AS latency_avg, MAX(duration_ms) AS latency_max
FROM audit_records
WHERE ts >= :start AND ts < :end AND kind = 'call' AND outcome <> 'intent'
GROUP BY 1 ORDER BY 1
"""
# The minute index per dialect: SQLite's CAST truncates (ts >= start, so towards the earlier minute); PostgreSQL's
# would round, hence FLOOR there.
_MINUTE = {
    "sqlite": "CAST((ts - :start) / 60 AS INTEGER)",
    "postgresql": "CAST(FLOOR((ts - :start) / 60) AS INTEGER)",
}


@dataclass(frozen=True)
class Minute:
    start: float
    calls: int = 0
    errors: int = 0
    refused: int = 0
    latency_avg: float | None = None
    latency_max: float | None = None

    @property
    def label(self) -> str:
        """The minute as UTC ``HH:MM`` (epoch seconds count no leap seconds, so plain arithmetic is exact)."""
        whole = int(self.start)
        return f"{whole // 3600 % 24:02d}:{whole // 60 % 60:02d}"


def last_hour(engine: Engine, now: float | None = None) -> list[Minute]:
    """The last 60 whole minutes before ``now`` (default: the clock), oldest first, quiet minutes included."""
    start, end = _window(now)
    return _minutes(engine, start, end)


class HourCache:
    """The last hour, asking the store only for the minutes that may still change.

    A minute that ended ``settle_seconds`` ago is final (a call's record is written within seconds of its end), so
    it is kept and never read again: a page shown every few seconds reads a minute or two of records, not the hour.
    """

    def __init__(self, settle_seconds: float = 120.0) -> None:
        self.settle = settle_seconds
        self.closed: dict[int, Minute] = {}

    def last_hour(self, engine: Engine, now: float | None = None) -> list[Minute]:
        clock = time.time() if now is None else now
        start, end = _window(clock)
        final = clock - self.settle
        first = start
        while first in self.closed and first + 60 <= final:
            first += 60
        fresh = _minutes(engine, first, end)
        self.closed = {at: m for at, m in self.closed.items() if at >= start}
        for minute in fresh:
            if minute.start + 60 <= final:
                self.closed[int(minute.start)] = minute
        return [self.closed[at] for at in range(start, first, 60)] + fresh


def _window(now: float | None) -> tuple[int, int]:
    end = (int(time.time() if now is None else now) // 60 + 1) * 60  # the end of the current minute
    return end - WINDOW_MINUTES * 60, end


def _minutes(engine: Engine, start: int, end: int) -> list[Minute]:
    """Each minute from ``start`` to ``end`` (epoch seconds on minute boundaries), aggregated by the store."""
    from sqlalchemy import text  # only with [audit] on, which loads SQLAlchemy anyway

    query = text(_QUERY.format(minute=_MINUTE.get(engine.dialect.name, _MINUTE["sqlite"])))
    with engine.connect() as connection:
        rows = connection.execute(query, {"start": float(start), "end": float(end)}).all()
    found = {int(row.minute): row for row in rows}
    minutes = []
    for index in range((end - start) // 60):
        row = found.get(index)
        at = float(start + index * 60)
        if row is None:
            minutes.append(Minute(at))
        else:
            average = None if row.latency_avg is None else float(row.latency_avg)
            peak = None if row.latency_max is None else float(row.latency_max)
            minutes.append(Minute(at, int(row.calls), int(row.errors or 0), int(row.refused or 0), average, peak))
    return minutes


@dataclass(frozen=True)
class Chart:
    """One bar chart: ``bars`` (SVG ``rect`` elements, already escaped: the template inserts them as they are) in a
    ``width`` by ``height`` view box; ``summary`` is its text alternative."""

    id: str
    title: str
    summary: str
    bars: str
    peak: str
    first: str
    last: str
    bad: bool = False
    width: int = 600
    height: int = 120


def chart(
    minutes: list[Minute], id: str, title: str, values: list[float | None], unit: str, bad: bool = False
) -> Chart:
    """A bar per minute of ``values`` (None: nothing that minute), scaled to the largest."""
    width, height, top = 600, 120, 14  # room above the tallest bar for its scale label
    peak = max((v for v in values if v is not None), default=0.0)
    step = width / max(len(values), 1)
    # Written here rather than in a template loop: up to 60 bars a chart, three charts a page, refreshed every few
    # seconds, and a template escapes each of a bar's five attributes on its own; every part here is a number, a
    # fixed class name or an escaped title.
    kind = "bar-bad" if bad else "bar"
    bars = []
    for index, (minute, value) in enumerate(zip(minutes, values, strict=True)):
        if not value:
            continue
        tall = (height - top) * value / peak if peak else 0.0
        tip = escape(f"{minute.label}: {_fmt(value)} {unit}")
        bars.append(
            f'<rect class="{kind}" x="{round(index * step + 1, 2)}" y="{round(height - tall, 2)}" '
            f'width="{round(step - 2, 2)}" height="{round(tall, 2)}"><title>{tip}</title></rect>'
        )
    total = sum(v for v in values if v is not None)
    busiest = max(range(len(values)), key=lambda i: values[i] or 0.0) if values else 0
    summary = (
        f"{title}, per minute over the last hour: none."
        if not peak
        else f"{title}, per minute over the last hour: peak {_fmt(peak)} {unit} at {minutes[busiest].label}"
        + ("" if unit == "ms" else f", {_fmt(total)} in all")
        + "."
    )
    first, last = (minutes[0].label, minutes[-1].label) if minutes else ("", "")
    return Chart(id, title, summary, "\n".join(bars), f"{_fmt(peak)} {unit}", first, last, bad)


def charts(minutes: list[Minute]) -> list[Chart]:
    return [
        chart(minutes, "chart-calls", "Calls", [float(m.calls) for m in minutes], "calls"),
        chart(minutes, "chart-errors", "Errors", [float(m.errors) for m in minutes], "errors", bad=True),
        chart(minutes, "chart-latency", "Average latency", [m.latency_avg for m in minutes], "ms"),
    ]


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) or value >= 100 else f"{value:,.1f}"
