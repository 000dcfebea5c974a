"""The audit trail on a real PostgreSQL: the server's writer and CLI writers in other connections append to one
unbroken chain (the chain head row is locked in each commit), with the same schema as on SQLite."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import orjson
import pytest
from sqlalchemy import Engine, text

from patchbay.auth.principal import Principal
from patchbay.gate import audit_chain
from patchbay.gate.audit import AuditRecorder
from patchbay.gate.audit_store import write_now
from patchbay.gate.calls import Call
from patchbay.protocol.scope import CallScope
from patchbay.settings import AuditSettings
from patchbay.store import create_engine, upgrade, write_path
from tests.support.postgres import PostgresServer


def _audit_database(pg: PostgresServer, name: str) -> Iterator[Engine]:
    """A new database ``name`` holding the audit trail's tables, and an engine for it."""
    pg.execute(f'CREATE DATABASE "{name}"')
    made = create_engine(pg.url(name))
    upgrade(made, "audit@head")
    try:
        yield made
    finally:
        made.dispose()


@pytest.fixture
def engine(pg: PostgresServer) -> Iterator[Engine]:
    yield from _audit_database(pg, "audit_chain")


def _call(index: int, write: bool) -> Call:
    scope = CallScope("modern", "2026-07-28", index, "tools/call", {}, principal=Principal("key:ci", "api_key"))
    return Call("tools/call", "crm_update", scope, {"n": index}, time.perf_counter(), time.time(), write=write)


def test_server_and_cli_writers_share_one_unbroken_chain_on_postgresql(engine: Engine, pg: PostgresServer) -> None:
    recorder = AuditRecorder(engine, AuditSettings(read_window_ms=0, timeout_ms=20_000))

    def cli(worker: int) -> None:  # another process's connection: its own engine
        other = create_engine(pg.url("audit_chain"))
        try:
            for n in range(10):
                write_now(other, [{"kind": "event", "method": "keys.create", "key_name": f"k{worker}-{n}"}])
        finally:
            other.dispose()

    async def server() -> None:
        calls = [_call(i, write=i % 4 == 0) for i in range(80)]
        intents = await asyncio.gather(*(recorder.intent(c) for c in calls if c.write))
        assert intents == [None] * 20
        assert await asyncio.gather(*(recorder.finish(c) for c in calls)) == [None] * 80

    threads = [threading.Thread(target=cli, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    asyncio.run(server())
    for thread in threads:
        thread.join(60)
    asyncio.run(recorder.aclose())

    with engine.connect() as connection:
        rows = list(connection.execute(text("SELECT seq, body, prev_hash, hash, kind FROM audit_records ORDER BY seq")))
        head = connection.execute(text("SELECT seq, hash FROM audit_chain_head")).one()
    assert [r.seq for r in rows] == list(range(1, 80 + 20 + 40 + 1))
    prev = audit_chain.GENESIS
    for row in rows:
        assert row.prev_hash == prev and row.hash == audit_chain.link(prev, row.seq, row.body)
        prev = row.hash
    assert tuple(head) == (rows[-1].seq, prev)
    assert sum(1 for r in rows if r.kind == "event") == 40
    assert {orjson.loads(r.body)["phase"] for r in rows if r.kind == "call"} == {"intent", "done"}


def test_synchronous_full_turns_synchronous_commit_on_for_the_recorders_sessions(pg: PostgresServer) -> None:
    pg.execute('CREATE DATABASE "audit_sync"')
    # Every session of this URL starts with synchronous_commit off, as a server configured for speed would.
    url = pg.url("audit_sync") + "?options=-csynchronous_commit%3Doff"

    def level(synchronous: str) -> str:
        engine = create_engine(url)
        try:
            upgrade(engine, "audit@head")
            recorder = AuditRecorder(engine, AuditSettings(synchronous=synchronous))  # type: ignore[arg-type]
            with write_path(engine).engine.connect() as connection:  # the recorder's writes go this way
                value = str(connection.execute(text("SHOW synchronous_commit")).scalar_one())
            asyncio.run(recorder.aclose())
            return value
        finally:
            engine.dispose()

    assert level("normal") == "off"
    assert level("full") == "on"


@pytest.fixture
def restarted_engine(pg: PostgresServer) -> Iterator[Engine]:
    yield from _audit_database(pg, "audit_restart")


def test_the_writer_comes_back_after_postgresql_restarts_and_the_chain_stays_whole(
    restarted_engine: Engine, pg: PostgresServer
) -> None:
    """The writer keeps its connection between batches: after PostgreSQL restarts (every connection dropped), a
    write whose intent cannot be stored is refused (audit before effect), never run unrecorded, and recording
    resumes on a new connection by itself, continuing one chain."""
    engine = restarted_engine
    recorder = AuditRecorder(engine, AuditSettings(read_window_ms=0, timeout_ms=2_000))

    async def serve(first: int, count: int) -> list[dict[str, object] | None]:
        calls = [_call(first + i, write=True) for i in range(count)]
        answers = []
        for call in calls:
            refused = await recorder.intent(call)
            answers.append(refused)
            if refused is None:
                assert await recorder.finish(call) is None
        return answers

    async def scenario() -> None:
        assert await serve(0, 5) == [None] * 5  # the writer now holds a connection
        pg.stop()
        try:
            down = await serve(100, 1)
            assert down[0] is not None and down[0]["isError"] is True  # refused, not run unrecorded
            assert recorder.health()["ok"] is False
        finally:
            pg.start()
        # Back: within a few attempts (the first may still meet the dead connection) intents are stored again.
        deadline = time.monotonic() + 30
        while (await serve(200, 1))[0] is not None:
            assert time.monotonic() < deadline, recorder.health()
            await asyncio.sleep(0.2)
        assert await serve(300, 5) == [None] * 5
        assert recorder.health()["ok"] is True

    asyncio.run(scenario())
    asyncio.run(recorder.aclose())

    with engine.connect() as connection:
        rows = list(connection.execute(text("SELECT seq, body, prev_hash, hash FROM audit_records ORDER BY seq")))
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    prev = audit_chain.GENESIS
    for row in rows:
        assert row.prev_hash == prev and row.hash == audit_chain.link(prev, row.seq, row.body)
        prev = row.hash
    stored = [orjson.loads(r.body) for r in rows]
    # Every write that ran has its intent and its completion; the refused one has at most a best-effort record.
    for first, count in ((0, 5), (300, 5)):
        for n in range(first, first + count):
            phases = {b["phase"] for b in stored if b.get("kind") == "call" and b.get("jsonrpc_id") == n}
            assert phases == {"intent", "done"}, (n, phases)
