"""The event writer's queue is bounded: when Redis is slower than a replica produces events, the stream whose event
does not fit is lost (its queued entries dropped, a ``lost`` entry written, a warning logged once) while the live
client is never held up and the other streams keep being written. Real redis-server, replicas on loopback."""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest
import redis.asyncio as aioredis
from fixtures.fleet_streams import Event, call, fleet, open_session
from fixtures.fleet_streams import events as sse_events
from fixtures.wire import parse_sse
from tests.support.redis_server import TIMEOUT_MS, RedisServer
from tests.support.waiting import until

from patchbay.errors import RpcError
from patchbay.fleet import Fleet
from patchbay.fleet.events import ENTRY_COST, LOST, LOST_REASON, TRIMMED_REASON, FleetEvents, RedisEventLog
from patchbay.settings import RedisSettings
from patchbay.transport.sessions import Session

pytestmark = pytest.mark.anyio

BOUND = 64 * 1024  # the smallest [redis] event_queue_bytes allowed


@contextlib.asynccontextmanager
async def events_of(
    url: str, prefix: str, *, timeout_ms: int = TIMEOUT_MS, max_events: int = 1000
) -> AsyncIterator[FleetEvents]:
    """One replica's FleetEvents with a queue of BOUND bytes, on a started fleet link."""
    settings = RedisSettings.model_validate({"url": url, "key_prefix": prefix, "timeout_ms": timeout_ms})
    fleet = Fleet(settings)
    await fleet.start()
    events = FleetEvents(
        fleet.link, fleet.replica_id, url, ttl_seconds=60, max_events=max_events, keepalive=0.3, queue_bytes=BOUND
    )
    try:
        yield events
    finally:
        await events.close()
        await fleet.stop()


def a_session() -> Session:
    # FleetEvents only reads the session's random id (the key of its streams).
    return cast(Session, SimpleNamespace(sid=secrets.token_hex(16)))


def event(n: int, size: int = 0) -> bytes:
    return f"id: x\nevent: message\ndata: {n} {'x' * size}\n\n".encode()


async def replayed(events: FleetEvents, session: Session, last_event: str) -> list[bytes]:
    """The chunks a resume from ``last_event`` sends (keep-alives left out)."""
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        body = message.get("body", b"")
        if body and not body.startswith(b":"):
            chunks.append(body)

    with anyio.fail_after(10):
        await events.replay(session, last_event, send)
    return chunks


async def refusal(events: FleetEvents, session: Session, last_event: str) -> RpcError:
    with pytest.raises(RpcError) as refused:
        await replayed(events, session, last_event)
    return refused.value


async def test_a_stream_producing_past_the_bound_before_the_writer_runs_is_lost_alone(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with events_of(redis_url, redis_prefix) as events:
        session = a_session()
        calm, hog = events(session), events(session)
        assert isinstance(calm, RedisEventLog) and isinstance(hog, RedisEventLog)
        for n in range(3):
            calm.append(event(n))
        with caplog.at_level(logging.WARNING, logger="patchbay.fleet"):
            for n in range(200):  # 200 x 2 KiB, all before the writer gets a turn: three times the bound
                hog.append(event(n, 2048))
                assert events.writer.queued_bytes <= BOUND
        assert hog.broken and not calm.broken
        assert hog.next_id() == f"{hog.id}_200"  # every event was taken (the live client had each at once)
        # The hog's queued entries were dropped: only the calm stream's are left.
        assert events.writer.queued_bytes == sum(ENTRY_COST + len(event(n)) for n in range(3))
        assert BOUND - ENTRY_COST - len(event(0, 2048)) < events.writer.peak_bytes <= BOUND
        for n in range(3, 6):
            calm.append(event(n))
        calm.finish()
        hog.finish()
        await events.writer.idle()
        assert events.writer.queued_bytes == 0

        refused = await refusal(events, session, f"{hog.id}_5")
        assert refused.status == 404 and LOST_REASON in refused.message
        assert await replayed(events, session, f"{calm.id}_2") == [event(n) for n in range(3, 6)]
    warnings = [r.getMessage() for r in caplog.records if "could not be stored" in r.getMessage()]
    assert len(warnings) == 1 and "event_queue_bytes" in warnings[0]
    assert "@" not in warnings[0] and redis_url not in warnings[0]


async def test_a_get_stream_that_never_ends_is_marked_lost_and_a_new_one_resumes(
    redis_url: str, redis_prefix: str
) -> None:
    async with events_of(redis_url, redis_prefix) as events:
        session = a_session()
        get, missed = await events.open_get(session, None)
        assert missed == [] and isinstance(get, RedisEventLog)
        for n in range(3):
            get.append(event(n))
        await events.writer.idle()
        for n in range(3, 100):  # never finished, as a GET stream is not
            get.append(event(n, 2048))
        assert get.broken
        await events.writer.idle()

        key = events.key(session, "get")
        client: aioredis.Redis = events.link.client
        last = await client.xrevrange(key, "+", "-", count=1)
        assert LOST in last[0][1]  # marked although it never ended
        for after in (1, 2, 50, 99):
            with pytest.raises(RpcError) as refused:
                await events.open_get(session, after)
            assert refused.value.status == 404 and LOST_REASON in refused.value.message

        fresh, missed = await events.open_get(session, None)  # a new GET stream, without Last-Event-ID
        priming = int(fresh.next_id().rpartition("_")[2]) - 1  # the id its priming event carries
        assert priming > 99  # above every id the lost stream handed out: a client never sees one twice
        await events.writer.idle()
        _, missed = await events.open_get(session, priming)  # dropped before any event: resumes
        assert missed == []
        fresh.append(event(100))
        await events.writer.idle()
        again, missed = await events.open_get(session, priming)
        assert missed == [event(100)] and not again.broken


async def test_a_paused_redis_keeps_the_queue_within_the_bound_and_the_other_streams_whole(
    own_redis: RedisServer, redis_prefix: str
) -> None:
    # Slow, not down: the link's timeout outlasts the pause, so only the bound can lose a stream.
    async with events_of(own_redis.url, redis_prefix, timeout_ms=30_000) as events:
        session = a_session()
        calm, hog = events(session), events(session)
        assert isinstance(calm, RedisEventLog) and isinstance(hog, RedisEventLog)
        calm.append(event(0))
        await events.writer.idle()
        own_redis.command("CLIENT", "PAUSE", "60000", "WRITE")
        try:
            calm.append(event(1))
            await until(lambda: calm.queued == 0, "the writer to take a batch and wait for Redis")
            for n in range(2000):  # bounded: the hog fills the queue long before this ends
                if BOUND - events.writer.queued_bytes > 4096:  # the calm stream's events always fit
                    calm.append(event(int(calm.next_id().rpartition("_")[2])))
                hog.append(event(n, 1024))
                await anyio.lowlevel.checkpoint()  # the writer runs, but its pipeline waits for Redis
                assert events.writer.queued_bytes <= BOUND
                if hog.broken:
                    break
            assert hog.broken and not calm.broken
            assert events.writer.peak_bytes <= BOUND
            sent = int(calm.next_id().rpartition("_")[2])
        finally:
            own_redis.command("CLIENT", "UNPAUSE")
        calm.finish()
        hog.finish()
        with anyio.fail_after(20):
            await events.writer.idle()
        assert events.writer.queued_bytes == 0
        assert await replayed(events, session, f"{calm.id}_0") == [event(n) for n in range(1, sent)]
        refused = await refusal(events, session, f"{hog.id}_0")
        assert refused.status == 404 and LOST_REASON in refused.message


def test_the_queue_bound_is_a_validated_redis_setting() -> None:
    assert RedisSettings().event_queue_bytes == 64 * 1024 * 1024
    for wrong in (0, 1024, 5 * 1024**3):
        with pytest.raises(ValueError, match="event_queue_bytes"):
            RedisSettings.model_validate({"event_queue_bytes": wrong})


FLOOD = '''
from patchbay import Context, tool


@tool(read_only=True, open_world=False)
async def flood(ctx: Context, count: int, size: int) -> str:
    """Logs count messages of size bytes, as fast as the stream takes them."""
    for i in range(count):
        await ctx.info(f"{i} " + "x" * size)
    return "flooded"
'''


async def test_a_live_client_gets_every_event_while_redis_is_paused_and_its_stream_is_lost(
    tmp_path: Path, own_redis: RedisServer, redis_prefix: str
) -> None:
    tools = tmp_path / "flood_tools.py"
    tools.write_text(FLOOD)
    redis = {"url": own_redis.url, "key_prefix": redis_prefix, "timeout_ms": 30_000, "event_queue_bytes": BOUND}
    async with fleet(tmp_path, own_redis.url, redis_prefix, tools=tools, redis=redis) as (a, b, http):
        session = await open_session(http, a.mcp)
        done = await http.post(a.mcp, json=call("flood", 1, count=3, size=10), headers=session)
        calm = parse_sse(done.text)  # a stream written before the pause
        assert calm[0].id is not None
        writer = a.app.sessions.events.writer
        await writer.idle()
        own_redis.command("CLIENT", "PAUSE", "60000", "WRITE")
        try:
            seen: list[Event] = []
            flood = call("flood", 2, count=200, size=2048)  # six times the bound
            with anyio.fail_after(20):
                async with http.stream("POST", a.mcp, json=flood, headers=session) as streamed:
                    seen = [each async for each in sse_events(streamed.aiter_lines())]
            assert writer.peak_bytes <= BOUND
        finally:
            own_redis.command("CLIENT", "UNPAUSE")
        messages = [json.loads(e.data) for e in seen if e.data]
        logged = [m["params"]["data"].partition(" ")[0] for m in messages if m.get("method") == "notifications/message"]
        assert logged == [str(i) for i in range(200)]  # live: every event, in order, Redis paused or not
        assert messages[-1]["result"]["content"][0]["text"] == "flooded"
        with anyio.fail_after(20):
            await writer.idle()

        get = {**session, "accept": "text/event-stream"}
        lost = await http.get(b.mcp, headers={**get, "last-event-id": seen[10].id or ""})
        assert lost.status_code == 404 and LOST_REASON in lost.json()["error"]["message"]
        whole = await http.get(b.mcp, headers={**get, "last-event-id": calm[0].id})
        assert whole.status_code == 200
        assert [e.data for e in parse_sse(whole.text) if e.data] == [e.data for e in calm[1:] if e.data]


async def test_a_get_reconnect_past_what_event_max_keeps_is_refused_and_a_kept_one_gets_every_event(
    redis_url: str, redis_prefix: str
) -> None:
    async with events_of(redis_url, redis_prefix, max_events=10) as events:
        session = a_session()
        get, _ = await events.open_get(session, None)
        for n in range(1, 301):
            get.append(event(n))
            if n % 50 == 0:
                await events.writer.idle()  # trimmed as it goes, as a long-lived stream is
        await events.writer.idle()
        client: aioredis.Redis = events.link.client
        kept = await client.xrange(events.key(session, "get"), "-", "+")
        first = int(kept[0][0].partition(b"-")[2])
        assert first > 1 and int(kept[-1][0].partition(b"-")[2]) == 300  # trimmed: the first events are gone

        # Events after 1 were trimmed: replaying what is left would skip them without a word.
        for after in (1, first - 2):
            with pytest.raises(RpcError) as refused:
                await events.open_get(session, after)
            assert refused.value.status == 404 and TRIMMED_REASON in refused.value.message
            assert f"get_{after}" in refused.value.message

        # Everything after a kept id is replayed, all of it: trimming is approximate, so Redis may keep more than
        # event_max entries, and none of them may be cut off.
        _, missed = await events.open_get(session, first - 1)
        assert missed == [fields[b"d"] for _, fields in kept]
        assert missed[0] == event(first) and missed[-1] == event(300)
        _, missed = await events.open_get(session, 297)
        assert missed == [event(298), event(299), event(300)]
