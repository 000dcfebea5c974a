"""The console's audit pages on a real PostgreSQL: with a million records, each filter's page is read from its
(column, ts) index and never sorts the matching rows (the plan is checked, not the time)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from patchbay.console import audit_data
from patchbay.console.audit_data import parse_filter
from patchbay.store import create_engine, upgrade
from tests.support.postgres import PostgresServer

NOW = 1_800_000_000.0
MILLION = 1_000_000
SORT = re.compile(r"(?<!Incremental )Sort  \(cost=[0-9.]+ rows=(\d+)")


@pytest.fixture(scope="module")
def trail(pg: PostgresServer) -> Iterator[Engine]:
    pg.execute('CREATE DATABASE "console_audit"')
    engine = create_engine(pg.url("console_audit"))
    upgrade(engine, "audit@head")
    with engine.begin() as connection:
        # generate_series builds the rows in the server: a million inserts in a few seconds.
        connection.exec_driver_sql(
            "INSERT INTO audit_records (seq, ts, kind, method, name, subject, client_id, outcome, body, prev_hash, "
            "hash) SELECT n, %(now)s - %(count)s + n, 'call', 'tools/call', 'crm_tool_' || (n %% 200), "
            "'user:u' || (n %% 500), 'client-' || (n %% 40), (ARRAY['ok', 'denied', 'tool_error'])[1 + n %% 3], "
            "'{}', '', '' FROM generate_series(1, %(count)s) AS n",
            {"now": NOW, "count": MILLION},
        )
        connection.exec_driver_sql("ANALYZE audit_records")  # autovacuum would, soon after a bulk load
    try:
        yield engine
    finally:
        engine.dispose()


def _plan(engine: Engine, statement: Any) -> str:
    compiled = statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    with engine.connect() as connection:
        return "\n".join(str(row[0]) for row in connection.exec_driver_sql(f"EXPLAIN {compiled}").all())


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ({}, "ix_audit_records_ts"),
        ({"user": "u7"}, "ix_audit_records_subject_ts"),
        ({"tool": "crm_tool_3"}, "ix_audit_records_name_ts"),
        # A third of the trail is denied: walking ts reads about three records per match, which the planner
        # rightly prefers to the outcome index.
        ({"outcome": "denied"}, "ix_audit_records_outcome_ts|ix_audit_records_ts"),
        ({"client": "client-4"}, "ix_audit_records_client_ts"),
        ({"since": "2h", "until": "1h"}, "ix_audit_records_ts"),
    ],
)
def test_each_filter_on_a_million_records_reads_its_index_on_postgresql(
    trail: Engine, query: dict[str, str], index: str
) -> None:
    _, bounds = parse_filter(query, NOW)
    first = audit_data.page(trail, bounds)
    assert len(first.rows) == audit_data.PAGE_ROWS and first.older is not None
    cursor = (first.rows[-1].ts, first.older)
    for statement in (
        audit_data.older_query(bounds),
        audit_data.older_query(bounds, cursor),
        audit_data.newer_query(bounds, cursor),
    ):
        plan = _plan(trail, statement)
        # An ordered walk of the filter's index; for a range the cursor bounds to a few rows, a bitmap of it.
        ways = ("Scan Backward using", "Scan using", "Index Scan on")
        assert any(f"{how} {name} " in plan for how in ways for name in index.split("|")), plan
        assert "Seq Scan" not in plan, plan
        # Ties on ts are put in seq order by an incremental sort over a page; a full sort only over a range the
        # index bounds to a few rows (a page newer than the cursor near the top), never over a filter's matches.
        sorted_rows = [int(n) for n in SORT.findall(plan)]
        assert all(rows <= 1000 for rows in sorted_rows), plan
    second = audit_data.page(trail, bounds, before=first.older)
    assert second.rows[0].seq < first.rows[-1].seq
