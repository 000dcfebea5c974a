"""The console Overview's per-minute query on PostgreSQL: the same answer as on SQLite, from the same records."""

from __future__ import annotations

from pathlib import Path

from patchbay.console.traffic import last_hour
from patchbay.gate.audit_store import write_now
from patchbay.store import create_engine, upgrade
from tests.support.postgres import PostgresServer
from tests.unit.test_console_overview_config import HOUR_START, NOW, _call

RECORDS = [
    _call(HOUR_START - 1, "ok"),
    _call(HOUR_START + 5, "ok", 10.0),
    _call(HOUR_START + 59.9, "tool_error", 30.0),  # the last instant of the first minute: FLOOR, not rounding
    _call(HOUR_START + 60, "denied", 2.0),
    _call(HOUR_START + 90, "intent", None),
    _call(HOUR_START + 59 * 60 + 59, "timed_out", 5000.0),
]


def test_the_last_hour_is_the_same_on_postgresql_and_sqlite(pg: PostgresServer, tmp_path: Path) -> None:
    answers = []
    for url in (pg.url(), f"sqlite:///{tmp_path / 'audit.db'}"):
        engine = create_engine(url)
        try:
            upgrade(engine, "audit@head")
            write_now(engine, RECORDS)
            answers.append(last_hour(engine, now=NOW))
        finally:
            engine.dispose()
    on_postgres, on_sqlite = answers
    assert on_postgres == on_sqlite
    assert (on_postgres[0].calls, on_postgres[0].errors, on_postgres[0].latency_max) == (2, 1, 30.0)
    assert (on_postgres[1].calls, on_postgres[1].refused) == (1, 1)
    assert on_postgres[59].latency_avg == 5000.0
