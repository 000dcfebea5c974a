"""The console's reading of the audit trail on a real SQLite store: filters, keyset pages in both directions, the
query plans on a million records, and the exports' contents and escaping."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from patchbay.console import audit_data
from patchbay.console.audit_data import AuditFilter, FilterError, parse_filter
from patchbay.gate.audit_query import csv_cell
from patchbay.store import create_engine, upgrade

NOW = 1_800_000_000.0
INSERT = (
    "INSERT INTO audit_records (seq, ts, kind, request_ref, method, name, subject, client_id, client_name, outcome,"
    " transport, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
OUTCOMES = ("ok", "denied", "tool_error")


def _row(seq: int, ts: float, body: dict[str, Any] | None = None) -> tuple[Any, ...]:
    subject, name = f"user:u{seq % 7}", f"tool{seq % 5}"
    client, outcome = f"client{seq % 3}", OUTCOMES[seq % 3 if seq % 11 else 1]
    record = body or {"kind": "call", "name": name, "subject": subject, "client_id": client, "outcome": outcome}
    return (seq, ts, "call", None, "tools/call", name, subject, client, None, outcome, None, json.dumps(record), "", "")


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    upgrade(engine, "audit@head")
    try:
        yield engine
    finally:
        engine.dispose()


def _insert(path: Path, rows: Any) -> None:
    db = sqlite3.connect(path)
    try:
        db.executemany(INSERT, rows)
        db.commit()
    finally:
        db.close()


def _small_trail(engine: Engine, tmp_path: Path) -> list[tuple[Any, ...]]:
    # 237 records; every fourth shares its ts with the one before, so ties at a page boundary are exercised.
    rows = [_row(seq, NOW - 10_000 + seq - (seq % 4 == 0)) for seq in range(1, 238)]
    _insert(tmp_path / "audit.db", rows)
    return rows


def _walk(engine: Engine, bounds: Any) -> tuple[list[int], list[list[int]]]:
    seen: list[int] = []
    pages: list[list[int]] = []
    before = None
    while True:
        found = audit_data.page(engine, bounds, before=before)
        assert len(found.rows) <= audit_data.PAGE_ROWS
        pages.append([r.seq for r in found.rows])
        seen += pages[-1]
        if found.older is None:
            return seen, pages
        before = found.older


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ({}, {}),
        ({"user": "u3"}, {6: "user:u3"}),
        ({"user": "user:u3", "outcome": "denied"}, {6: "user:u3", 9: "denied"}),
        ({"client": "client1"}, {7: "client1"}),
        ({"tool": "tool2", "outcome": "ok"}, {5: "tool2", 9: "ok"}),
    ],
)
def test_pages_walk_every_matching_record_newest_first_once(
    trail: Engine, tmp_path: Path, query: dict[str, str], where: dict[int, Any]
) -> None:
    rows = _small_trail(trail, tmp_path)
    _, bounds = parse_filter(query, NOW)
    seen, pages = _walk(trail, bounds)
    assert seen == _by_index(rows, where)
    assert all(len(p) == audit_data.PAGE_ROWS for p in pages[:-1])


def _by_index(rows: list[tuple[Any, ...]], where: dict[int, Any]) -> list[int]:
    keep = [r for r in rows if all(r[i] == v for i, v in where.items())]
    return [r[0] for r in sorted(keep, key=lambda r: (r[1], r[0]), reverse=True)]


def test_the_previous_page_link_returns_exactly_the_page_before(trail: Engine, tmp_path: Path) -> None:
    _small_trail(trail, tmp_path)
    _, bounds = parse_filter({}, NOW)
    first = audit_data.page(trail, bounds)
    second = audit_data.page(trail, bounds, before=first.older)
    third = audit_data.page(trail, bounds, before=second.older)
    assert first.newer is None and second.newer == second.rows[0].seq
    back = audit_data.page(trail, bounds, after=third.newer)
    assert [r.seq for r in back.rows] == [r.seq for r in second.rows]
    assert audit_data.page(trail, bounds, after=back.newer).rows == first.rows
    assert audit_data.page(trail, bounds, after=back.newer).newer is None


def test_a_time_range_keeps_records_at_or_after_since_and_before_until(trail: Engine, tmp_path: Path) -> None:
    rows = _small_trail(trail, tmp_path)
    since = audit_data.iso(NOW - 10_000 + 100).removesuffix("Z")  # ISO 8601 without an offset: UTC
    until = audit_data.iso(NOW - 10_000 + 160)
    _, bounds = parse_filter({"since": since, "until": until}, NOW)
    seen, _ = _walk(trail, bounds)
    low, high = bounds.since, bounds.until
    assert low is not None and high is not None
    assert seen == [r[0] for r in sorted(rows, key=lambda r: (r[1], r[0]), reverse=True) if low <= r[1] < high]
    assert seen  # the range is inside the trail


def test_a_cursor_whose_record_was_pruned_shows_the_newest_page_and_says_so(trail: Engine, tmp_path: Path) -> None:
    _small_trail(trail, tmp_path)
    _, bounds = parse_filter({}, NOW)
    found = audit_data.page(trail, bounds, before=100_000)
    assert found.gone and found.rows[0].seq == 237


@pytest.mark.parametrize(
    ("query", "field", "says"),
    [
        ({"since": "yesterday"}, "since", "not a time"),
        ({"until": "2026-13-01"}, "until", "not a time"),
        ({"since": "1h", "until": "2h"}, "until", "later than since"),
        ({"tool": "x" * 3000}, "tool", "at most 2048"),
    ],
)
def test_a_bad_filter_names_its_field_and_what_it_accepts(query: dict[str, str], field: str, says: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(query, NOW)
    assert caught.value.field == field and says in caught.value.message


def test_durations_count_back_from_now_and_bare_names_are_people() -> None:
    chosen, bounds = parse_filter({"since": "30m", "user": "ada", "client": " c1 "}, NOW)
    assert bounds.since == NOW - 1800 and bounds.subject == "user:ada" and bounds.client == "c1"
    assert parse_filter({"user": "key:ci"}, NOW)[1].subject == "key:ci"
    assert chosen.params(before=5) == "user=ada&client=c1&since=30m&before=5"
    assert AuditFilter().empty and not chosen.empty


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("plain", "plain"),
        (None, ""),
        (12, "12"),
        ({"a": "=1"}, '{"a":"=1"}'),
        (["=cmd"], '["=cmd"]'),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_quoted_as_text(value: Any, cell: str) -> None:
    assert csv_cell(value) == cell


def test_exports_hold_the_filtered_records_newest_first_up_to_the_bound(trail: Engine, tmp_path: Path) -> None:
    hostile = {"kind": "call", "name": "=cmd|' /C calc'!A0", "subject": "user:u1", "outcome": "ok", "detail": "-1"}
    _insert(tmp_path / "audit.db", [_row(seq, NOW - 5000 + seq) for seq in range(1, 1198)])
    _insert(tmp_path / "audit.db", [_row(1198, NOW, hostile)])  # seq 1198: a record of user:u1
    _, bounds = parse_filter({"user": "u1"}, NOW)
    wanted = [s for s in range(1198, 0, -1) if s % 7 == 1]
    lines = list(audit_data.jsonl_lines(audit_data.export_rows(trail, bounds, 10_000)))
    assert [json.loads(line).get("name") for line in lines[:1]] == [hostile["name"]]
    assert len(lines) == len(wanted)
    table = list(csv.reader(io.StringIO("".join(audit_data.csv_lines(audit_data.export_rows(trail, bounds, 100))))))
    assert table[0] == list(audit_data.CSV_COLUMNS) and len(table) == 101
    first = dict(zip(table[0], table[1], strict=True))
    assert first["seq"] == "1198" and first["name"] == "'=cmd|' /C calc'!A0" and first["detail"] == "'-1"
    assert [int(r[0]) for r in table[1:]] == wanted[:100]
    assert audit_data.is_truncated(trail, bounds, 100) and not audit_data.is_truncated(trail, bounds, len(wanted))


def test_the_live_tail_reads_only_filtered_records_after_a_seq(trail: Engine, tmp_path: Path) -> None:
    _small_trail(trail, tmp_path)
    _, bounds = parse_filter({"tool": "tool1"}, NOW)
    assert [r.seq for r in audit_data.newer_than(trail, bounds, 220)] == [221, 226, 231, 236]
    assert audit_data.newest_seq(trail) == 237


# -- a million records: every filter's page is an index range walk (the plan, not the time, is checked) ----------

MILLION = 1_000_000


def _million(path: Path) -> None:
    subjects = [f"user:u{i}" for i in range(500)]
    tools = [f"crm_tool_{i}" for i in range(200)]
    clients = [f"client-{i}" for i in range(40)]

    def rows() -> Iterator[tuple[Any, ...]]:
        for seq in range(1, MILLION + 1):
            yield (
                seq,
                NOW - MILLION + seq,
                "call",
                None,
                "tools/call",
                tools[seq % 200],
                subjects[seq % 500],
                clients[seq % 40],
                None,
                OUTCOMES[seq % 3],
                "streamable_http",
                "{}",
                "",
                "",
            )

    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode = OFF")  # a test fixture: nothing to recover after a crash
        db.execute("PRAGMA synchronous = OFF")
        # The migrated schema's own indexes, built once after the load: sorting a million keys is several times
        # faster than inserting them one by one in random order.
        indexes = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_records' AND sql NOT NULL"
        ).fetchall()
        assert {name for name, _ in indexes} >= {"ix_audit_records_ts", "ix_audit_records_client_ts"}
        for name, _ in indexes:
            db.execute(f"DROP INDEX {name}")
        db.executemany(INSERT, rows())
        for _, sql in indexes:
            db.execute(sql)
        db.commit()
    finally:
        db.close()


def _plan(engine: Engine, statement: Any) -> list[str]:
    compiled = statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    with engine.connect() as connection:
        return [str(row[3]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()]


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ({}, "ix_audit_records_ts"),
        ({"since": "2h", "until": "1h"}, "ix_audit_records_ts"),
        ({"user": "u7"}, "ix_audit_records_subject_ts"),
        ({"tool": "crm_tool_3"}, "ix_audit_records_name_ts"),
        ({"outcome": "denied"}, "ix_audit_records_outcome_ts"),
        ({"client": "client-4"}, "ix_audit_records_client_ts"),
        ({"user": "u7", "since": "7d"}, "ix_audit_records_subject_ts"),
    ],
)
def test_each_filter_on_a_million_records_walks_one_index_range_without_sorting(
    million: tuple[Engine, list[Any]], query: dict[str, str], index: str
) -> None:
    engine, _ = million
    _, bounds = parse_filter(query, NOW)
    first = audit_data.page(engine, bounds)
    assert len(first.rows) == audit_data.PAGE_ROWS and first.older is not None
    cursor = (first.rows[-1].ts, first.older)
    statements = [audit_data.older_query(bounds, cursor), audit_data.newer_query(bounds, cursor)]
    if query:  # unfiltered, the newest page reads the ts index from its end: a SCAN that stops after one page
        statements.append(audit_data.older_query(bounds))
    for statement in statements:
        plan = _plan(engine, statement)
        assert any(f"INDEX {index} (" in step and step.startswith("SEARCH") for step in plan), plan
        assert not any("TEMP B-TREE" in step or step.startswith("SCAN") for step in plan), plan
    assert _plan(engine, audit_data.older_query(bounds))[0].endswith(f"INDEX {index}") or query
    second = audit_data.page(engine, bounds, before=first.older)
    assert second.rows[0].seq < first.rows[-1].seq and second.newer == second.rows[0].seq


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, list[Any]]]:
    path = tmp_path_factory.mktemp("million") / "audit.db"
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine, "audit@head")
    engine.dispose()  # its pooled connection would hold the file while the records go in
    _million(path)
    try:
        yield engine, []
    finally:
        engine.dispose()
