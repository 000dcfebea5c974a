"""The audit writer's batches: rows go in as multi-row INSERTs of a few fixed sizes, in order, NULLs kept NULL,
and the recorder's own thread drives the driver connection of an in-memory store."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from patchbay.gate import audit_chain
from patchbay.gate.audit import AuditRecorder
from patchbay.gate.audit_store import write_now
from patchbay.gate.audit_verify import verify
from patchbay.gate.calls import Call
from patchbay.protocol.scope import CallScope
from patchbay.settings import AuditSettings
from patchbay.store import create_engine, upgrade


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = create_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    upgrade(made, "audit@head")
    yield made
    made.dispose()


@pytest.mark.parametrize("count", [1, 63, 64, 65, 127, 200])
def test_a_batch_of_any_size_is_stored_in_order_on_an_unbroken_chain(engine: Engine, count: int) -> None:
    write_now(engine, [{"kind": "event", "method": "keys.create", "n": n, "subject": None} for n in range(count)])
    with engine.connect() as connection:
        rows = list(connection.execute(text("SELECT seq, body, prev_hash, hash, subject FROM audit_records")))
    assert [row.seq for row in rows] == list(range(1, count + 1))
    assert [json.loads(row.body)["n"] for row in rows] == list(range(count))
    assert all(row.subject is None for row in rows)  # bound as SQL NULL, not a text
    prev = audit_chain.GENESIS
    for row in rows:
        assert row.prev_hash == prev and row.hash == audit_chain.link(prev, row.seq, row.body)
        prev = row.hash
    assert verify(engine).intact


def test_a_batch_after_a_head_that_is_not_a_hash_is_refused_whole(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_chain_head"))
        connection.execute(text("INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, 0, 'not-a-hash')"))
    with pytest.raises(ValueError, match="prev_hash must be 64 lowercase hex digits"):
        write_now(engine, [{"kind": "event", "method": "keys.create"}])
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM audit_records")).scalar_one() == 0


def test_a_batch_that_would_pass_the_last_seq_is_refused_whole(engine: Engine) -> None:
    # The head is checked once per batch: the last record's seq too, not only the first's.
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_chain_head SET seq = :seq"), {"seq": 2**63 - 3})
    batch = [{"kind": "event", "method": "keys.create", "n": n} for n in range(3)]
    with pytest.raises(ValueError, match=r"seq must be between 1 and 2\*\*63-1, got 9223372036854775808"):
        write_now(engine, batch)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM audit_records")).scalar_one() == 0
    assert [seq for seq, _ in write_now(engine, batch[:2])] == [2**63 - 2, 2**63 - 1]


def test_a_batch_after_a_head_below_zero_is_refused_whole(engine: Engine) -> None:
    # The first record's seq is checked too: a head moved to -1 by hand would give it seq 0.
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_chain_head SET seq = -1"))
    with pytest.raises(ValueError, match=r"seq must be between 1 and 2\*\*63-1, got 0$"):
        write_now(engine, [{"kind": "event", "method": "keys.create", "n": n} for n in range(2)])
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM audit_records")).scalar_one() == 0


def test_a_head_deleted_by_hand_starts_again_at_nothing_even_for_an_empty_batch(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_chain_head"))
    assert write_now(engine, []) == []
    with engine.connect() as connection:
        head = connection.execute(text("SELECT seq, hash FROM audit_chain_head")).one()
    assert tuple(head) == (0, audit_chain.GENESIS)
    assert [seq for seq, _ in write_now(engine, [{"kind": "event", "method": "keys.create"}])] == [1]
    assert verify(engine).intact


@pytest.mark.anyio
async def test_an_in_memory_trail_takes_consecutive_batches_on_its_writer_thread() -> None:
    engine = create_engine("sqlite://")
    recorder = AuditRecorder(engine, AuditSettings(read_window_ms=0))
    await recorder.open()
    try:
        scope = CallScope("modern", "2026-07-28", 1, "tools/call", {})
        calls = [Call("tools/call", "add", scope, {"a": n}, time.perf_counter(), time.time()) for n in range(300)]
        assert await asyncio.gather(*(recorder.finish(call) for call in calls)) == [None] * 300
        assert recorder.health() == {"ok": True, "written": 300, "lost": 0, "late": 0, "queued": 0}

        def rows() -> list[int]:
            with engine.connect() as connection:
                return [row.seq for row in connection.execute(text("SELECT seq FROM audit_records ORDER BY seq"))]

        assert await asyncio.to_thread(rows) == list(range(1, 301))
    finally:
        await recorder.aclose()
