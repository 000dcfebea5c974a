"""The fleet's session store and router without HTTP: two stores on one real redis-server play replicas A and B.

Covers what the HTTP tests (test_fleet_routing.py) reach only slowly or not at all: where each answer and
cancellation goes, what Redis holds and for how long, expiry and eviction of this replica's sessions, and the
GET stream lock's lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from fixtures.fleet_stores import session_stores
from tests.support.redis_server import RedisServer
from tests.support.waiting import until

from patchbay.errors import RpcError
from patchbay.fleet import sessions as fleet_sessions
from patchbay.fleet.link import FleetUnavailable
from patchbay.fleet.routing import REGISTRY_TTL_MS
from patchbay.fleet.sessions import LOCAL_MAX, FleetSessionStore
from patchbay.transport.sessions import CLIENT_CANCELLED, Session

pytestmark = pytest.mark.anyio
SECRET = b"store-routing-secret"
CAPS = {"sampling": {}}
INFO = {"name": "unit-client", "version": "2.1"}
LIFETIME = 3600
# Bounds a wait for one Redis round trip on loopback; only a failing wait reaches it (short, so mutants die fast).
WAIT = 5.0


@contextlib.asynccontextmanager
async def replicas(
    url: str, prefix: str, *, clock: Callable[[], float] = time.time, local_max: int = LOCAL_MAX
) -> AsyncIterator[tuple[FleetSessionStore, FleetSessionStore, aioredis.Redis]]:
    """Replicas A and B joined to the bus, and a plain client to look into Redis."""
    stores = session_stores(
        url, prefix, SECRET, stream_lock_seconds=0.2, lifetime=LIFETIME, clock=clock, local_max=local_max
    )
    redis = aioredis.Redis.from_url(url)
    try:
        async with stores as (a, b):
            yield a, b, redis
    finally:
        await redis.aclose()


async def ask(session: Session) -> tuple[str, asyncio.Task[dict[str, Any]]]:
    """Ask the client something the way a tool call does; the request's id and the task awaiting its answer."""
    sent: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    shared = session.shared
    assert shared is not None

    async def send(message: dict[str, Any]) -> None:
        await shared.asking(session, message["id"])
        sent.set_result(message["id"])

    waiting = asyncio.ensure_future(session.outstanding().ask(send, "sampling/createMessage", {}))
    # A send that fails leaves ``sent`` unset for ever: wait for either, with a deadline.
    await asyncio.wait({sent, waiting}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    if waiting.done():
        waiting.result()  # raises what sending raised
    assert sent.done(), "the request to the client was never sent"
    return sent.result(), waiting


def answer_to(request_id: str, text: str = "yes") -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": {"text": text}}


async def test_an_answer_posted_to_b_reaches_the_request_waiting_on_a(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b, redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        on_b = await b.get(session.id)
        assert on_b is not None
        request_id, waiting = await ask(session)
        assert request_id.startswith(f"srv-{a.replica_id}-")
        key = f"{redis_prefix}pend:{session.sid}"
        assert await redis.hget(key, request_id) == a.replica_id.encode()
        assert 0 < await redis.pttl(key) <= REGISTRY_TTL_MS
        assert on_b.answer(answer_to(request_id)) is False  # B's own copy of the session waits for nothing
        assert await b.answer(on_b, answer_to(request_id, "via B")) is True
        assert await asyncio.wait_for(waiting, WAIT) == {"text": "via B"}
        await a.asked(session, request_id)
        assert await redis.hget(key, request_id) is None
        assert await b.answer(on_b, answer_to(request_id)) is False  # nobody waits any more


async def test_an_answer_for_this_replica_is_handed_over_at_once(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, _, _redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        request_id, waiting = await ask(session)
        assert await a.answer(session, answer_to(request_id, "here")) is True
        assert session.answer(answer_to(request_id, "late")) is False  # answered already, not via the bus
        assert await asyncio.wait_for(waiting, WAIT) == {"text": "here"}


async def test_an_answer_routed_to_a_replica_nobody_waits_on_is_logged(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b, _redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        on_b = await b.get(session.id)
        assert on_b is not None
        request_id, waiting = await ask(session)
        assert await b.answer(on_b, answer_to(request_id, "first")) is True
        assert await asyncio.wait_for(waiting, WAIT) == {"text": "first"}
        with caplog.at_level(logging.INFO, logger="patchbay.fleet"):
            assert await b.answer(on_b, answer_to(request_id, "again")) is True  # still registered: A is asked
            await until(lambda: "found no request waiting for it" in caplog.text, "A to log the late answer", WAIT)
        assert "fleet: an answer routed here found no request waiting for it (already answered?)" in caplog.messages


async def test_two_replicas_number_their_requests_to_one_client_apart(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b, _redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        on_b = await b.get(session.id)
        assert on_b is not None
        on_a_id, _ = await ask(session)
        on_b_id, _ = await ask(on_b)
        assert on_a_id == f"srv-{a.replica_id}-1" and on_b_id == f"srv-{b.replica_id}-1"
        assert a.replica_id != b.replica_id


async def hang() -> None:
    await asyncio.Event().wait()


async def run_tracked(store: FleetSessionStore, session: Session, request_id: Any) -> asyncio.Task[None]:
    task = asyncio.ensure_future(hang())
    session.inflight = {request_id: task}
    untrack = store.track(session, request_id)
    task.add_done_callback(lambda _: untrack())
    return task


async def test_a_cancellation_sent_to_b_cancels_the_registered_call_on_a(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b, redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        on_b = await b.get(session.id)
        assert on_b is not None
        task = await run_tracked(a, session, "slow-1")
        key = f"{redis_prefix}infl:{session.sid}"
        await until(lambda: redis.hget(key, b'"slow-1"'), "A to register the running call", WAIT)
        assert await redis.hget(key, b'"slow-1"') == a.replica_id.encode()
        assert 0 < await redis.pttl(key) <= REGISTRY_TTL_MS
        assert await b.cancel(on_b, "slow-1") is True
        await until(task.done, "the call on A to be cancelled", WAIT)
        with pytest.raises(asyncio.CancelledError, match=re.escape(CLIENT_CANCELLED)):
            task.result()
        await until(lambda: _gone(redis, key), "A to unregister the cancelled call", WAIT)


async def _gone(redis: aioredis.Redis, key: str) -> bool:
    return not await redis.exists(key)


async def test_running_calls_registered_together_cost_one_round_trip_and_their_removal_one_more(
    redis_url: str, redis_prefix: str
) -> None:
    async with replicas(redis_url, redis_prefix) as (a, _, redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        registry, key = a.router.running, f"{redis_prefix}infl:{session.sid}"
        before = registry.pipelines
        for n in range(20):  # as when 20 calls pass the mark in one turn of a busy event loop
            registry.put(key, str(n).encode(), a.replica_id.encode())
        await until(lambda: registry.writer is None, "the registrations to be written", WAIT)
        assert await redis.hlen(key) == 20
        assert 0 < await redis.pttl(key) <= REGISTRY_TTL_MS
        for n in range(20):
            registry.put(key, str(n).encode(), None)
        await until(lambda: registry.writer is None, "the removals to be written", WAIT)
        assert await redis.exists(key) == 0
        assert registry.pipelines - before == 2


async def test_a_call_that_ends_before_the_mark_costs_no_round_trip(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, _, _redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        registry = a.router.running
        before = registry.pipelines
        untrack = a.track(session, 1)
        untrack()  # over before TRACK_AFTER_SECONDS: it was never registered, so there is nothing to remove
        assert (registry.queued, registry.writer, registry.pipelines) == ([], None, before)


async def test_a_cancellation_for_a_call_not_registered_yet_is_broadcast(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b, _redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        on_b = await b.get(session.id)
        assert on_b is not None
        task = asyncio.ensure_future(hang())
        session.inflight = {7: task, 8: asyncio.ensure_future(hang())}
        assert await b.cancel(on_b, 7) is False
        await until(task.done, "the broadcast cancellation to reach A", WAIT)
        with pytest.raises(asyncio.CancelledError, match=re.escape(CLIENT_CANCELLED)):
            task.result()
        assert not session.inflight[8].done()
        session.inflight[8].cancel()


async def test_a_session_deleted_on_a_ends_its_plumbing_on_both_replicas(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b, redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        await session.set_level("debug")
        on_b = await b.get(session.id)
        assert on_b is not None
        on_a_stream, on_b_stream = asyncio.Queue[bytes](), asyncio.Queue[bytes]()
        session.standalone, on_b.standalone = on_a_stream, on_b_stream
        assert await a.delete(session.id) is True
        assert on_a_stream.get_nowait() == b""  # closed at once on A
        await until(lambda: not on_b_stream.empty(), "B to end its stream of the deleted session", WAIT)
        assert on_b_stream.get_nowait() == b""
        assert await redis.exists(f"{redis_prefix}s:{session.sid}") == 0  # its state goes with it
        assert a.find(session.sid) is None


async def test_the_denylist_and_the_state_last_as_long_as_the_session(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, _, redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        sealed = a.ids.unseal(session.id)
        assert sealed is not None and sealed.exp - sealed.iat == LIFETIME
        await session.subscribe("kanban://board")
        assert await redis.pexpiretime(f"{redis_prefix}s:{session.sid}") == sealed.exp * 1000
        assert await a.delete(session.id) is True
        expires = await redis.pexpiretime(f"{redis_prefix}sdel:{session.sid}")
        # Within a minute of the session's own end: the run between sealing and deleting takes far less.
        assert abs(expires - sealed.exp * 1000) < 60_000


async def test_state_saved_for_a_session_this_replica_forgot_lasts_a_full_lifetime(
    redis_url: str, redis_prefix: str
) -> None:
    now = [time.time()]
    async with replicas(redis_url, redis_prefix, clock=lambda: now[0]) as (a, _, redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        now[0] += 100
        await session.set_level("debug")  # held here: the session's own end
        key = f"{redis_prefix}s:{session.sid}"
        assert await redis.pexpiretime(key) == (int(now[0] - 100) + LIFETIME) * 1000
        a.close_all()
        await a.save(session)  # no longer held here: a lifetime from now
        assert await redis.pexpiretime(key) == (int(now[0]) + LIFETIME) * 1000


async def test_a_session_held_here_past_its_end_is_unknown_and_closed(redis_url: str, redis_prefix: str) -> None:
    now = [time.time()]
    async with replicas(redis_url, redis_prefix, clock=lambda: now[0]) as (a, _, _redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        assert await a.get(session.id) is session
        session.standalone = asyncio.Queue()
        sealed = a.ids.unseal(session.id)
        assert sealed is not None
        now[0] = float(sealed.exp)  # its last second is over: as the seal, which opens only before exp
        assert await a.get(session.id) is None
        assert session.standalone.get_nowait() == b""
        assert a.find(session.sid) is None


async def test_idle_sessions_beyond_the_local_cap_are_dropped_least_recent_first_and_come_back_from_their_id(
    redis_url: str, redis_prefix: str
) -> None:
    async with replicas(redis_url, redis_prefix, local_max=2) as (a, _, _redis):
        first = await a.create("2025-11-25", CAPS, INFO)
        second = await a.create("2025-11-25", CAPS, INFO)
        assert await a.get(first.id) is first  # now the most recent
        third = await a.create("2025-11-25", CAPS, INFO)
        assert a.find(second.sid) is None
        assert a.find(first.sid) is first and a.find(third.sid) is third
        back = await a.get(second.id)
        assert back is not None and back is not second and back.sid == second.sid


async def test_sessions_with_live_plumbing_are_kept_and_counted(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix, local_max=2) as (a, _, _redis):
        streaming = await a.create("2025-11-25", CAPS, INFO)
        streaming.standalone = asyncio.Queue()
        asking = await a.create("2025-11-25", CAPS, INFO)
        _, waiting = await ask(asking)
        idle = await a.create("2025-11-25", CAPS, INFO)
        assert a.find(streaming.sid) is streaming and a.find(asking.sid) is asking
        assert a.find(idle.sid) is None  # over the cap: the idle one makes room, however new
        assert len(a) == 2
        back = await a.get(idle.id)
        assert back is not None and back.sid == idle.sid
        waiting.cancel()


async def test_corrupt_state_in_redis_falls_back_to_the_defaults(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b, redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        key = f"{redis_prefix}s:{session.sid}"
        await redis.hset(key, mapping={"subs": b'[1, "kanban://board", null]', "x": b'{"c": ["not", "caps"]}'})
        on_b = await b.get(session.id)
        assert on_b is not None and on_b.subscriptions == {"kanban://board"} and on_b.log_level == "info"
        assert on_b.client_caps == CAPS
        await redis.hset(key, mapping={"subs": b"not json", "x": b"not json", "level": b"error"})
        b.drop_cached()  # written behind the fleet's back: as after a resync, B reads Redis again
        on_b = await b.get(session.id)
        assert on_b is not None and on_b.subscriptions is None and on_b.client_caps == CAPS
        assert on_b.log_level == "error"
        await redis.hset(key, mapping={"subs": b'{"kanban://board": 1}'})
        b.drop_cached()
        on_b = await b.get(session.id)
        assert on_b is not None and on_b.subscriptions is None


async def test_large_capabilities_leave_only_their_names_and_a_short_client_name_in_the_id(
    redis_url: str, redis_prefix: str
) -> None:
    experimental = {f"f{i}": {"x": "y" * 20} for i in range(60)}
    big = {"sampling": {}, "roots": {"listChanged": True}, "experimental": experimental}
    info = {"name": "n" * 100, "version": 3, "title": "dropped"}
    async with replicas(redis_url, redis_prefix) as (a, b, redis):
        session = await a.create("2025-11-25", big, info)
        assert (session.client_caps, session.client_info) == (big, info)  # this replica keeps all of it
        sealed = a.ids.unseal(session.id)
        assert sealed is not None and sealed.spilled
        assert await redis.pexpiretime(f"{redis_prefix}s:{session.sid}") == sealed.exp * 1000  # what spilled, too
        assert sealed.caps == {"experimental": {}, "roots": {}, "sampling": {}}
        assert sealed.client_info == {"name": "n" * 64, "version": "3"}
        on_b = await b.get(session.id)
        assert on_b is not None and (on_b.client_caps, on_b.client_info) == (big, info)


async def test_capabilities_that_just_fit_stay_in_the_id(redis_url: str, redis_prefix: str) -> None:
    info = {"name": "c"}
    room = 1024 - len(b'{"name":"c"}') - len(b'{"experimental":{"pad":""}}')
    async with replicas(redis_url, redis_prefix) as (a, _, _redis):
        fits = await a.create("2025-11-25", {"experimental": {"pad": "p" * room}}, info)
        over = await a.create("2025-11-25", {"experimental": {"pad": "p" * (room + 1)}}, info)
        assert (sealed := a.ids.unseal(fits.id)) is not None and not sealed.spilled
        assert sealed.caps == {"experimental": {"pad": "p" * room}}
        assert (sealed := a.ids.unseal(over.id)) is not None and sealed.spilled
        assert sealed.caps == {"experimental": {}}


async def test_the_get_stream_lock_expires_by_itself_and_is_kept_alive_while_held(
    redis_url: str, redis_prefix: str
) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b, redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        on_b = await b.get(session.id)
        assert on_b is not None
        key = f"{redis_prefix}get:{session.sid}"
        assert await a.claim_stream(session) is True
        assert await redis.get(key) == a.replica_id.encode()
        assert 0 < await redis.pttl(key) <= 1000  # never under a second, whatever the keepalive
        assert a.stream_lock_ms == 1000  # 0.2 s asked for: raised to one second exactly
        await redis.pexpire(key, 300)
        await b.keep_stream(on_b)  # not B's: unchanged
        assert await redis.pttl(key) <= 300
        await a.keep_stream(session)
        assert await redis.pttl(key) > 300
        await redis.pexpire(key, 500)
        await until(lambda: _ttl_above(redis, key, 500), "A's keeper to refresh the lock", WAIT)
        await a.release_stream(session)
        assert await redis.exists(key) == 0


async def _ttl_above(redis: aioredis.Redis, key: str, floor: int) -> bool:
    return bool(await redis.pttl(key) > floor)


async def test_a_released_get_stream_lock_is_no_longer_kept_alive(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, _, _redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        before = asyncio.all_tasks()
        assert await a.claim_stream(session) is True
        keepers = {task for task in asyncio.all_tasks() - before if not task.done()}
        assert keepers, "claiming the lock started no keeper"
        await a.release_stream(session)
        # A keeper left running would refresh a lock nobody holds every third of its lifetime, for good.
        await until(lambda: all(task.done() for task in keepers), "the released lock's keeper to stop", WAIT)


async def test_the_get_stream_lock_keeper_outlives_a_redis_outage(
    own_redis: RedisServer, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with replicas(own_redis.url, redis_prefix) as (a, _, _redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        refused = asyncio.Event()  # a refresh of the lock failed: Redis was down
        keep = a._keep

        async def watched(keys: list[str], args: list[Any]) -> Any:
            try:
                return await keep(keys, args)
            except FleetUnavailable:
                refused.set()
                raise

        monkeypatch.setattr(a, "_keep", watched)
        assert await a.claim_stream(session) is True
        own_redis.stop()
        await asyncio.wait_for(refused.wait(), WAIT)
        own_redis.start()
        await until(lambda: a.link.up, "A to see Redis answer again", WAIT)
        # The restarted Redis is empty: put A's lock back as an outage that keeps the data would have left it,
        # without a lifetime, so only a refresh gives it one.
        redis = aioredis.Redis.from_url(own_redis.url)
        try:
            key = f"{redis_prefix}get:{session.sid}"
            await redis.set(key, a.replica_id)
            await until(lambda: _ttl_above(redis, key, 0), "A's keeper to refresh the lock after the outage", WAIT)
        finally:
            await redis.aclose()


async def test_with_redis_down_routing_fails_fast_with_503_and_forgetting_is_quiet(
    own_redis: RedisServer, redis_prefix: str
) -> None:
    async with replicas(own_redis.url, redis_prefix) as (a, _, _redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        own_redis.stop()
        checks: list[tuple[str, Any]] = [
            ("asking the client (sampling, elicitation, roots)", a.asking(session, "srv-1")),
            ("answering a request from the server", a.answer(session, answer_to("srv-1"))),
            ("cancelling a request running on another replica", a.cancel(session, 1)),
            ("the session's GET stream", a.keep_stream(session)),
            ("the session's GET stream", a.claim_stream(session)),
            ("ending a session (DELETE)", a.delete(session.id)),
            ("changing the session's log level or subscriptions", a.save(session)),
        ]
        for what, call in checks:
            with pytest.raises(RpcError) as refused:
                await asyncio.wait_for(call, 5)
            assert refused.value.status == 503
            assert refused.value.message == (
                f"The fleet's shared store (Redis) is unreachable: {what} is unavailable; try again shortly"
            )
        await asyncio.wait_for(a.asked(session, "srv-1"), 5)
        await asyncio.wait_for(a.release_stream(session), 5)
        await asyncio.wait_for(a.router.ended(session.sid), 5)


async def test_with_redis_down_subscription_changes_are_refused_and_undone_and_no_ops_still_succeed(
    own_redis: RedisServer, redis_prefix: str
) -> None:
    async with replicas(own_redis.url, redis_prefix) as (a, _, _redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        await session.subscribe("kanban://board")
        own_redis.stop()
        with pytest.raises(RpcError):
            await asyncio.wait_for(session.subscribe("kanban://card/1"), WAIT)
        assert session.subscriptions == {"kanban://board"}
        with pytest.raises(RpcError):
            await asyncio.wait_for(session.unsubscribe("kanban://board"), WAIT)
        assert session.subscriptions == {"kanban://board"}
        await session.subscribe("kanban://board")  # nothing changes, so nothing to store
        await session.unsubscribe("kanban://card/1")
        assert session.subscriptions == {"kanban://board"}
        fresh = await a.create("2025-11-25", CAPS, INFO)
        with pytest.raises(RpcError):
            await asyncio.wait_for(fresh.subscribe("kanban://board"), WAIT)
        assert fresh.subscriptions == set()
        await fresh.unsubscribe("kanban://board")


async def test_with_redis_down_large_capabilities_stay_on_the_replica_that_opened_the_session_and_it_says_so(
    own_redis: RedisServer, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    big = {**CAPS, "experimental": {f"f{i}": {"x": "y" * 20} for i in range(60)}}
    async with replicas(own_redis.url, redis_prefix) as (a, _, _redis):
        own_redis.stop()
        with caplog.at_level(logging.WARNING, logger="patchbay.fleet"):
            session = await asyncio.wait_for(a.create("2025-11-25", big, INFO), WAIT)
        assert session.client_caps == big
        assert f"session {session.sid[:8]}: its large client capabilities stay on this replica only" in caplog.messages


async def test_a_session_found_deleted_in_redis_stays_refused_here_while_redis_is_down(
    own_redis: RedisServer, redis_prefix: str
) -> None:
    async with replicas(own_redis.url, redis_prefix) as (a, b, redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        on_b = await b.get(session.id)
        assert on_b is not None
        on_b.standalone = asyncio.Queue()
        # Deleted on A while B missed the broadcast: B learns it from the denylist at its next read.
        await redis.set(f"{redis_prefix}sdel:{session.sid}", b"1")
        b.drop_cached()
        assert await b.get(session.id) is None
        assert on_b.standalone.get_nowait() == b""  # its stream here ends
        own_redis.stop()
        assert await asyncio.wait_for(b.get(session.id), WAIT) is None  # not opened again from its seal


@pytest.mark.parametrize("info", [None, "unit-client", ["name"]], ids=["missing", "string", "list"])
async def test_client_info_that_is_no_object_opens_a_session_with_no_client_info_on_the_other_replica(
    redis_url: str, redis_prefix: str, info: Any
) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b, _redis):
        session = await a.create("2025-11-25", CAPS, info)
        sealed = a.ids.unseal(session.id)
        assert sealed is not None and sealed.client_info is None and not sealed.spilled
        on_b = await b.get(session.id)
        assert on_b is not None and on_b.client_info is None and on_b.client_caps == CAPS


async def test_a_broadcast_cancellation_for_a_session_held_elsewhere_or_running_nothing_is_ignored_quietly(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b, _redis):
        only_on_b = await b.create("2025-11-25", CAPS, INFO)
        idle = await a.create("2025-11-25", CAPS, INFO)
        running = await a.create("2025-11-25", CAPS, INFO)
        idle_on_b, running_on_b = await b.get(idle.id), await b.get(running.id)
        assert idle_on_b is not None and running_on_b is not None and idle.inflight is None
        task = asyncio.ensure_future(hang())
        running.inflight = {7: task}
        with caplog.at_level(logging.INFO, logger="patchbay.fleet"):
            assert await b.cancel(only_on_b, 7) is False
            assert await b.cancel(idle_on_b, 7) is False
            assert await b.cancel(running_on_b, 7) is False
            # A reads the bus's broadcasts in the order they were sent: the last one done, the others are too.
            await until(task.done, "the broadcast cancellation to reach A", WAIT)
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_with_redis_down_registrations_of_running_calls_are_dropped_quietly(
    own_redis: RedisServer, redis_prefix: str
) -> None:
    async with replicas(own_redis.url, redis_prefix) as (a, _, _redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        own_redis.stop()
        registry = a.router.running
        registry.put(f"{redis_prefix}infl:{session.sid}", b"1", a.replica_id.encode())
        writer = registry.writer
        assert writer is not None
        await asyncio.wait_for(asyncio.wait({writer}), WAIT)
        assert writer.exception() is None  # a failed background task would be logged as never retrieved
        assert registry.queued == [] and registry.writer is None


async def test_a_replica_remembers_the_most_recent_deleted_sessions_and_asks_redis_about_older_ones(
    redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleet_sessions, "ENDED_MAX", 2)
    async with replicas(redis_url, redis_prefix) as (a, _, _redis):
        opened = [await a.create("2025-11-25", CAPS, INFO) for _ in range(3)]
        for session in opened:
            assert await a.delete(session.id) is True
        asked: list[Any] = []
        read = a.link.do

        async def counted(fn: Callable[[Any], Any]) -> Any:
            asked.append(fn)
            return await read(fn)

        a.link.do = counted  # type: ignore[method-assign]
        for session in reversed(opened[1:]):
            assert await a.get(session.id) is None
        assert asked == []  # the two most recent: refused from memory
        assert await a.get(opened[0].id) is None
        assert len(asked) == 1  # the oldest: Redis's denylist still refuses it


async def test_deleting_an_id_that_does_not_open_deletes_nothing(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, _, _redis):
        session = await a.create("2025-11-25", CAPS, INFO)
        assert await a.delete(session.id[:-2]) is False
        assert await a.get(session.id) is session


async def test_a_state_change_saved_stands_when_only_its_broadcast_fails(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b, _redis):
        session = await a.create("2025-11-25", CAPS, INFO)

        async def cut_off(kind: str, **fields: Any) -> None:
            raise FleetUnavailable("as if Redis went away between the write and the broadcast")

        a.bus.broadcast = cut_off  # type: ignore[method-assign]
        await session.set_level("debug")
        assert session.log_level == "debug"
        on_b = await b.get(session.id)
        assert on_b is not None and on_b.log_level == "debug"
