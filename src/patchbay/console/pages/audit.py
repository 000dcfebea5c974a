"""Audit: the trail filtered by person, client, tool, outcome and time, a page of 50 at a time, newest first; one
record in full; a live tail (``/admin/audit/live``, server-sent events); CSV and JSONL exports of the filter.

Reading is ``patchbay.console.audit_data``'s, in a worker thread. The live tail polls the store for records after
the last one sent (one indexed query a second): the recorder may be in another process (a replica, the CLI), and
the store is what they share. A tail closes after ``[console] live_minutes``; the browser's EventSource then
reconnects, which signs the person in again and resumes after the last record it got (``Last-Event-ID``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from patchbay.console.core import Admin, Console, Page, PageResult
from patchbay.gate.calls import OUTCOMES

# The trail's queries (audit_data: SQLAlchemy and the audit tables) load with the first request for this page:
# a server with [audit] enabled = false never needs them, and one with it on has SQLAlchemy loaded already.
if TYPE_CHECKING:
    from sqlalchemy import Engine

    from patchbay.console.audit_data import AuditFilter, Bounds, Row

OUTCOME_CHOICES = ("intent", *OUTCOMES)
POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
# How often a live tail checks that its person is still signed in (signed out, disabled, session expired).
RECHECK_SECONDS = 30.0
OFF = "The audit trail is off ([audit] enabled = false): there is nothing to show."


def cells(row: Row) -> list[Any]:
    """A record's cells in the table's column order (the page and the live tail show the same)."""
    from patchbay.console import audit_data

    client = row.client_name or row.client_id
    return [row.seq, audit_data.iso(row.ts), row.method, row.name, row.subject, client, row.outcome]


HEADERS = ["Seq", "Time (UTC)", "What", "Tool", "Who", "Client", "Outcome"]


def _engine(console: Console) -> Engine | None:
    recorder = console.runtime.dispatcher.audit
    return None if recorder is None else recorder.engine


def _cursor(request: Request, name: str) -> int | None:
    value = request.query_params.get(name, "")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None


def _filter(request: Request) -> tuple[AuditFilter, Bounds | None, str | None]:
    from patchbay.console import audit_data

    try:
        chosen, bounds = audit_data.parse_filter(request.query_params, time.time())
    except audit_data.FilterError as exc:
        given = {k: (request.query_params.get(k) or "")[:200] for k in ("user", "client", "tool", "outcome")}
        return audit_data.AuditFilter(**given), None, str(exc)
    return chosen, bounds, None


def register(console: Console) -> None:
    @console.page("/audit")
    async def audit_page(request: Request, who: Admin) -> PageResult:
        from patchbay.console import audit_data

        chosen, bounds, problem = _filter(request)
        context: dict[str, Any] = {
            "title": "Audit",
            "filter": chosen,
            "headers": HEADERS,
            "outcomes": _choices(chosen.outcome),
            "problem": problem,
            "off": None,
            "rows": [],
            "prev": None,
            "next": None,
            "gone": False,
            "live": None,
            "max_rows": console.settings.console.export_max_rows,
        }
        engine = _engine(console)
        if engine is None:
            return Page("audit.html", {**context, "off": OFF})
        if bounds is None:
            return Page("audit.html", context, 400)
        found = await anyio.to_thread.run_sync(
            lambda: audit_data.page(engine, bounds, before=_cursor(request, "before"), after=_cursor(request, "after"))
        )
        newest = found.rows[0].seq if found.rows and found.newer is None else None
        if newest is None and found.newer is None:
            newest = await anyio.to_thread.run_sync(audit_data.newest_seq, engine)
        return Page(
            "audit.html",
            {
                **context,
                "rows": [cells(row) for row in found.rows],
                "prev": f"/admin/audit?{chosen.params(after=found.newer)}" if found.newer else None,
                "next": f"/admin/audit?{chosen.params(before=found.older)}" if found.older else None,
                "gone": found.gone,
                # Live rows go on top of the newest page only; they start after its newest record.
                "live": f"/admin/audit/live?{chosen.params(after=newest)}" if found.newer is None else None,
            },
        )

    @console.page("/audit/{seq:int}")
    async def audit_record(request: Request, who: Admin) -> PageResult:
        from patchbay.console import audit_data

        engine = _engine(console)
        if engine is None:
            return Page("audit.html", {"title": "Audit", "off": OFF}, 404)
        seq = int(request.path_params["seq"])
        found = await anyio.to_thread.run_sync(audit_data.record, engine, seq)
        if found is None:
            return Page("audit_record.html", {"title": f"Audit record {seq}", "seq": seq, "row": None}, 404)
        row, body, digest = found
        pretty = orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
        context = {"title": f"Audit record {seq}", "seq": seq, "row": row, "body": pretty, "hash": digest}
        return Page("audit_record.html", context)

    @console.page("/audit/live")
    async def audit_live(request: Request, who: Admin) -> PageResult:
        from patchbay.console import audit_data

        engine = _engine(console)
        _, bounds, problem = _filter(request)
        if engine is None or bounds is None:
            return Response(problem or OFF, status_code=400 if problem else 404, media_type="text/plain")
        start = _cursor(request, "after")
        resumed = request.headers.get("last-event-id", "")
        if resumed.isascii() and resumed.isdigit() and len(resumed) < 19:
            start = int(resumed)
        if start is None:
            start = await anyio.to_thread.run_sync(audit_data.newest_seq, engine)
        events = _tail(console, request, engine, bounds, start)
        return StreamingResponse(events, media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

    @console.page("/audit/export.{fmt:str}")
    async def audit_export(request: Request, who: Admin) -> PageResult:
        from patchbay.console import audit_data

        fmt = request.path_params["fmt"]
        engine = _engine(console)
        chosen, bounds, problem = _filter(request)
        if fmt not in ("csv", "jsonl"):
            return Response("The export formats are csv and jsonl.", status_code=404, media_type="text/plain")
        if engine is None or bounds is None:
            return Response(problem or OFF, status_code=400 if problem else 404, media_type="text/plain")
        limit = console.settings.console.export_max_rows
        truncated = await anyio.to_thread.run_sync(audit_data.is_truncated, engine, bounds, limit)
        # Who took the trail away, and which part of it: an export is itself an action worth recording.
        console.audit("console.audit.export", by=who.username, format=fmt, filter=chosen.params(), outcome="ok")
        rows = audit_data.export_rows(engine, bounds, limit)
        lines = audit_data.csv_lines(rows) if fmt == "csv" else audit_data.jsonl_lines(rows)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = {"Content-Disposition": f'attachment; filename="patchbay-audit-{stamp}.{fmt}"'}
        if truncated:
            headers["X-Patchbay-Export-Truncated"] = f"only the newest {limit} records ([console] export_max_rows)"
        kind = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
        return StreamingResponse(_in_thread(lines), media_type=kind, headers=headers)


def _choices(current: str) -> list[tuple[str, str]]:
    known = [("", "any"), *((o, o) for o in OUTCOME_CHOICES)]
    return known if not current or current in OUTCOME_CHOICES else [*known, (current, current)]


async def _in_thread(lines: Iterator[str]) -> AsyncIterator[str]:
    """``lines`` read in a worker thread, a batch at a time: the event loop never waits on the store."""
    from patchbay.console import audit_data

    take: Callable[[], list[str]] = lambda: list(itertools.islice(lines, audit_data.EXPORT_BATCH))  # noqa: E731
    while True:
        batch = await anyio.to_thread.run_sync(take)
        if not batch:
            return
        yield "".join(batch)


async def _tail(console: Console, request: Request, engine: Engine, bounds: Bounds, start: int) -> AsyncIterator[str]:
    from patchbay.console import audit_data

    minutes = console.settings.console.live_minutes
    deadline = time.monotonic() + minutes * 60
    beat = checked = time.monotonic()
    last = start
    yield "retry: 5000\n\n"  # reconnect after 5 s when the tail closes
    while time.monotonic() < deadline and console.runtime.ready:
        rows = await anyio.to_thread.run_sync(audit_data.newer_than, engine, bounds, last)
        for row in rows:
            message = {"cells": cells(row), "href": f"/admin/audit/{row.seq}"}
            yield f"id: {row.seq}\ndata: {orjson.dumps(message).decode()}\n\n"
            last = row.seq
        now = time.monotonic()
        if rows:
            beat = now
        elif now - beat >= HEARTBEAT_SECONDS:
            yield ": keep-alive\n\n"  # a comment: proxies see traffic, the EventSource ignores it
            beat = now
        if now - checked >= RECHECK_SECONDS:
            checked = now
            if console.signin is not None and await console.signin.user(request) is None:
                break
        if len(rows) < audit_data.PAGE_ROWS:
            await anyio.sleep(POLL_SECONDS)
    yield f"event: end\ndata: the live tail closes after {minutes} minutes\n\n"
