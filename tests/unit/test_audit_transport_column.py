"""The audit trail's transport column (migration audit_0003): records written before it still verify after the
upgrade, and an edited transport copy is caught like any other indexed column."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine, text

from patchbay.gate import audit_chain
from patchbay.gate.audit_store import write_now
from patchbay.gate.audit_verify import verify
from patchbay.store import create_engine, upgrade


def _old_record(engine: Engine, seq: int, prev: str) -> str:
    """A call record as the writer stored it before audit_0003: no transport in its body or its columns."""
    record = {"kind": "call", "ts": time.time(), "method": "tools/call", "name": "lookup", "outcome": "ok"}
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


def test_records_from_before_the_transport_column_still_verify_after_the_upgrade(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        upgrade(engine, "audit_0002")
        head = _old_record(engine, 1, audit_chain.GENESIS)
        _old_record(engine, 2, head)
        upgrade(engine, "audit@head")
        write_now(engine, [{"kind": "call", "method": "tools/call", "name": "lookup", "transport": "stdio"}])

        report = verify(engine)
        with engine.connect() as connection:
            copies = connection.execute(text("SELECT transport FROM audit_records ORDER BY seq")).scalars().all()
    finally:
        engine.dispose()
    assert report.intact, report.findings
    assert report.records == 3
    assert copies == [None, None, "stdio"]


def test_an_edited_transport_column_is_reported(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        upgrade(engine, "audit@head")
        write_now(engine, [{"kind": "call", "method": "tools/call", "name": "lookup", "transport": "stdio"}])
        with engine.begin() as connection:
            connection.execute(text("UPDATE audit_records SET transport = 'in_process' WHERE seq = 1"))
        report = verify(engine)
    finally:
        engine.dispose()
    assert [(f.problem, f.seq) for f in report.findings] == [("column_edited", 1)]
    assert "transport" in report.findings[0].detail
