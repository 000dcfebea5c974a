"""The audit trail's duration column (migration audit_0005): the writer fills it from a call's latency_ms, records
written before it keep NULL and still verify, and an edited duration is caught like any other copied column."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine, text

from patchbay.gate import audit_chain
from patchbay.gate.audit_store import write_now
from patchbay.gate.audit_verify import verify
from patchbay.store import create_engine, upgrade


def _old_call(engine: Engine, seq: int, prev: str) -> str:
    """A call record as the writer stored it before audit_0005: latency_ms in its body, no duration column."""
    record = {"kind": "call", "ts": time.time(), "method": "tools/call", "name": "lookup", "outcome": "ok"}
    record["latency_ms"] = 12.5
    body = audit_chain.canonical(record)
    digest = audit_chain.link(prev, seq, body)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_records (seq, ts, kind, method, name, outcome, body, prev_hash, hash) "
                "VALUES (:seq, :ts, 'call', 'tools/call', 'lookup', 'ok', :body, :prev, :hash)"
            ),
            {"seq": seq, "ts": record["ts"], "body": body, "prev": prev, "hash": digest},
        )
        connection.execute(text("UPDATE audit_chain_head SET seq = :seq, hash = :hash"), {"seq": seq, "hash": digest})
    return digest


def _durations(engine: Engine) -> list[float | None]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT duration_ms FROM audit_records ORDER BY seq")).scalars())


def test_records_from_before_the_duration_column_keep_null_and_still_verify(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        upgrade(engine, "audit_0004")
        _old_call(engine, 1, audit_chain.GENESIS)
        upgrade(engine, "audit@head")
        write_now(engine, [{"kind": "call", "method": "tools/call", "name": "lookup", "latency_ms": 7.25}])
        report = verify(engine)
        durations = _durations(engine)
    finally:
        engine.dispose()
    assert report.intact, report.findings
    assert durations == [None, 7.25]


def test_the_writer_copies_only_a_final_call_records_latency(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        upgrade(engine, "audit@head")
        write_now(
            engine,
            [
                {"kind": "call", "method": "tools/call", "name": "w", "outcome": "intent"},  # no latency yet
                {"kind": "call", "method": "tools/call", "name": "w", "outcome": "ok", "latency_ms": 3},
                {"kind": "event", "method": "auth.sign_in", "latency_ms": 9.0},  # an event is not a call
                {"kind": "call", "method": "tools/call", "name": "w", "latency_ms": "slow"},  # not a number
            ],
        )
        durations = _durations(engine)
        report = verify(engine)
    finally:
        engine.dispose()
    assert durations == [None, 3.0, None, None]
    assert report.intact, report.findings


def test_an_edited_duration_column_is_reported(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        upgrade(engine, "audit@head")
        write_now(engine, [{"kind": "call", "method": "tools/call", "name": "lookup", "latency_ms": 40.0}])
        with engine.begin() as connection:
            connection.execute(text("UPDATE audit_records SET duration_ms = 4 WHERE seq = 1"))
        report = verify(engine)
    finally:
        engine.dispose()
    assert [(f.problem, f.seq) for f in report.findings] == [("column_edited", 1)]
    assert "duration_ms" in report.findings[0].detail
