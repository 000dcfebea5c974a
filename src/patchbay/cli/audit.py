"""``patchbay audit``: read the audit trail (tail, search, export) and check it has not been tampered with (verify).

The commands read the store the config names directly, SQLite or PostgreSQL; the server need not run. Times are
durations back from now (``90s``, ``30m``, ``1h``, ``7d``, ``2w``) or ISO 8601 (``2026-12-01``,
``2026-12-01T09:30:00+01:00``; without an offset, UTC).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import typer
from rich.markup import escape
from sqlalchemy import Engine, Select, inspect, or_, select

from patchbay.cli.common import AdminDemoOpt, admin_config, err, load_settings
from patchbay.cli.users import auth_store
from patchbay.gate import audit_query
from patchbay.gate.audit_query import CSV_COLUMNS, csv_row
from patchbay.gate.calls import OUTCOMES
from patchbay.protocol.scope import Transport

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="patchbay.toml (its \\[store] is read)")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="Records at or after: 1h, 30m, 7d or ISO 8601")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Records before: a duration back or ISO 8601")]
UserOpt = Annotated[str | None, typer.Option("--user", help="Subject (user:ada, key:ci) or local user name")]
ClientOpt = Annotated[str | None, typer.Option("--client", help="OAuth client id or registered name")]
ToolOpt = Annotated[str | None, typer.Option("--tool", help="Tool, prompt or resource name; * matches anything")]
OutcomeOpt = Annotated[str | None, typer.Option("--outcome", help="ok, tool_error, denied, error ...")]
KindOpt = Annotated[Literal["call", "event"] | None, typer.Option("--kind", help="call or event")]
TransportOpt = Annotated[
    Transport | None,
    typer.Option("--transport", help="streamable_http, legacy_sse, stdio or in_process"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON record per line")]
app = typer.Typer(help="The audit trail: read it, export it, verify it.", no_args_is_help=True)

PAGE = 500
KNOWN_OUTCOMES = ("intent", *OUTCOMES)  # a write's intent record, then every outcome a call can have


def parse_time(option: str, text: str, now: float) -> float:
    """``text`` (a duration back from ``now`` or ISO 8601) as epoch seconds.

    Raises:
        typer.BadParameter: naming the option and the accepted forms.
    """
    parsed = audit_query.parse_time(text, now)
    if parsed is None:
        raise typer.BadParameter(
            f"{text!r} is not a time: use a duration back from now (90s, 30m, 1h, 7d, 2w) or ISO 8601 "
            "(2026-12-01, 2026-12-01T09:30:00Z)",
            param_hint=option,
        )
    return parsed


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextlib.contextmanager
def _trail(config: Path | None) -> Iterator[Engine]:
    with auth_store(config) as engine:
        if not inspect(engine).has_table("audit_records"):
            err.print("[bold red]no audit trail[/]: the store has no audit_records table", highlight=False)
            raise typer.Exit(2)
        yield engine


def _query(
    *,
    since: str | None = None,
    until: str | None = None,
    user: str | None = None,
    client: str | None = None,
    tool: str | None = None,
    outcome: str | None = None,
    kind: str | None = None,
    transport: str | None = None,
) -> Select[Any]:
    from patchbay.gate.audit_models import AuditRecord as R

    now = time.time()
    query = select(R)
    if since is not None:
        query = query.where(R.ts >= parse_time("--since", since, now))
    if until is not None:
        query = query.where(R.ts < parse_time("--until", until, now))
    if user is not None:
        query = query.where(R.subject.in_([user, f"user:{user}"]))
    if client is not None:
        query = query.where(or_(R.client_id == client, R.client_name == client))
    if tool is not None:
        query = query.where(_glob(R.name, tool))
    if outcome is not None:
        query = query.where(R.outcome == outcome)
    if kind is not None:
        query = query.where(R.kind == kind)
    if transport is not None:
        query = query.where(R.transport == transport)
    return query


def _glob(column: Any, pattern: str) -> Any:
    if "*" not in pattern:
        return column == pattern
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")
    return column.like(escaped, escape="\\")


def _check_outcome(engine: Engine, outcome: str | None) -> None:
    if outcome is None or outcome in KNOWN_OUTCOMES:
        return
    from patchbay.gate.audit_models import AuditRecord as R

    with engine.connect() as connection:
        stored = {o for o in connection.execute(select(R.outcome).distinct()).scalars() if o}
    if outcome not in stored:
        allowed = ", ".join(sorted({*KNOWN_OUTCOMES, *stored}))
        raise typer.BadParameter(f"{outcome!r} is not an outcome; one of: {allowed}", param_hint="--outcome")


def _rows(engine: Engine, query: Select[Any], *, after: int = 0, limit: int | None = None) -> Iterator[Any]:
    """The records ``query`` selects with ``seq > after``, in order, a page per read (constant memory)."""
    from patchbay.gate.audit_models import AuditRecord as R

    left = limit
    while left is None or left > 0:
        size = PAGE if left is None else min(PAGE, left)
        with engine.connect() as connection:
            page = list(connection.execute(query.where(R.seq > after).order_by(R.seq).limit(size)).all())
        yield from page
        if len(page) < size:
            return
        after = page[-1].seq
        left = None if left is None else left - len(page)


def _line(row: Any) -> str:
    who = row.subject or "-"
    client = row.client_name or row.client_id or "-"
    parts = [_iso(row.ts), f"#{row.seq}", row.kind, row.method, row.name or "-", who, client, row.outcome or "-"]
    if row.transport is not None:  # calls (events and records older than the column have none)
        parts.append(row.transport)
    return "  ".join(parts)


def _print(rows: Iterator[Any], as_json: bool) -> None:
    for row in rows:
        typer.echo(row.body if as_json else _line(row))


@app.command("tail")
def tail(
    count: Annotated[int, typer.Option("-n", "--lines", min=1, max=100_000, help="How many records")] = 20,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new records (Ctrl-C stops)")] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    demo: AdminDemoOpt = False,
) -> None:
    """Print the newest records, oldest first; with -f, keep printing records as they are written."""
    config = admin_config(config, demo)
    from patchbay.gate.audit_models import AuditRecord as R

    with _trail(config) as engine:
        with engine.connect() as connection:
            newest = connection.execute(select(R.seq).order_by(R.seq.desc()).limit(count)).scalars().all()
        after = (min(newest) - 1) if newest else 0
        last = after
        for row in _rows(engine, select(R), after=after):
            typer.echo(row.body if as_json else _line(row))
            last = row.seq
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how -f ends
            while follow:
                time.sleep(0.5)  # polling the store: the CLI and the server share no channel but the database
                for row in _rows(engine, select(R), after=last):
                    typer.echo(row.body if as_json else _line(row))
                    last = row.seq


@app.command("search")
def search(
    user: UserOpt = None,
    client: ClientOpt = None,
    tool: ToolOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    outcome: OutcomeOpt = None,
    kind: KindOpt = None,
    transport: TransportOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1_000_000, help="At most this many")] = 100,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    demo: AdminDemoOpt = False,
) -> None:
    """Print the records matching every filter given, oldest first."""
    config = admin_config(config, demo)
    query = _query(
        since=since, until=until, user=user, client=client, tool=tool, outcome=outcome, kind=kind, transport=transport
    )
    with _trail(config) as engine:
        _check_outcome(engine, outcome)
        _print(_rows(engine, query, limit=limit), as_json)


@app.command("export")
def export(
    fmt: Annotated[Literal["jsonl", "csv"], typer.Option("--format", help="jsonl (the records) or csv")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout)")] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    user: UserOpt = None,
    client: ClientOpt = None,
    tool: ToolOpt = None,
    outcome: OutcomeOpt = None,
    kind: KindOpt = None,
    transport: TransportOpt = None,
    config: ConfigOpt = None,
    demo: AdminDemoOpt = False,
) -> None:
    """Write the records (all, or those matching the filters) for a SIEM, streamed in seq order."""
    config = admin_config(config, demo)
    query = _query(
        since=since, until=until, user=user, client=client, tool=tool, outcome=outcome, kind=kind, transport=transport
    )
    with _trail(config) as engine:
        _check_outcome(engine, outcome)
        with _open_output(output) as stream:
            rows = _rows(engine, query)
            written = _write_csv(stream, rows) if fmt == "csv" else _write_jsonl(stream, rows)
    if output is not None:
        err.print(f"exported {written} records to {escape(str(output))}", highlight=False)


@contextlib.contextmanager
def _open_output(output: Path | None) -> Iterator[TextIO]:
    if output is None:
        yield sys.stdout
        return
    try:
        # 0600: the trail names people and what they did.
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise typer.BadParameter(f"cannot write {output}: {exc.strerror}", param_hint="--output") from None
    with open(fd, "w", encoding="utf-8", newline="") as handle:
        yield handle


def _write_jsonl(stream: TextIO, rows: Iterator[Any]) -> int:
    written = 0
    for row in rows:
        stream.write(row.body + "\n")
        written += 1
    return written


def _write_csv(stream: TextIO, rows: Iterator[Any]) -> int:
    out = csv.writer(stream)
    out.writerow(CSV_COLUMNS)
    written = 0
    for row in rows:
        out.writerow(csv_row(row.body, row.seq, _iso(row.ts), row.hash))
        written += 1
    return written


@app.command("verify")
def verify(
    checkpoints: Annotated[
        Path | None,
        typer.Option("--checkpoints", help="Checkpoint file or a log holding checkpoint lines (default: [audit])"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON")] = False,
    config: ConfigOpt = None,
    demo: AdminDemoOpt = False,
) -> None:
    """Check that no record was edited, inserted, deleted or cut off since it was written.

    Exit status: 0 intact, 1 tampering found, 2 a usage or configuration error.
    """
    config = admin_config(config, demo)
    from patchbay.cli.audit_report import run_verify

    settings = load_settings(config)
    with _trail(config) as engine:
        code = run_verify(engine, settings, checkpoints, as_json)
    raise typer.Exit(code)
