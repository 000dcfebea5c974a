"""Sealed session ids and the fleet's session store: two stores on one real Redis play replicas A and B."""

from __future__ import annotations

import base64
import contextlib
import re
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis
from fixtures.fleet_stores import fleets, session_stores
from tests.support.redis_server import TIMEOUT_MS, RedisServer
from tests.support.waiting import until

from patchbay.auth.principal import Principal
from patchbay.errors import RpcError
from patchbay.fleet.events import fleet_events
from patchbay.fleet.sessions import FleetSessionStore, Sealed, SealedIds, fleet_store
from patchbay.settings import from_dict
from patchbay.transport.sessions import owner_of

SECRET, OLD, OTHER = b"the-current-secret", b"the-previous-secret", b"another-fleets-secret"
CAPS = {"sampling": {}, "elicitation": {"form": {}}}
INFO = {"name": "unit-client", "version": "2.1"}


def sealed(exp: int = 2_000_000_000, owner: str | None = "alice") -> Sealed:
    return Sealed("ab" * 16, owner, "2025-11-25", CAPS, INFO, 1_700_000_000, exp)


def test_a_sealed_id_opens_to_what_was_sealed_and_is_visible_ascii() -> None:
    ids = SealedIds([SECRET])
    session_id = ids.seal(sealed())
    assert session_id.startswith("pb1.")
    assert all(0x21 <= ord(ch) <= 0x7E for ch in session_id)  # MCP: session ids are visible ASCII
    assert ids.unseal(session_id) == sealed()
    assert len(session_id) < 300


def test_every_altered_character_makes_the_id_unknown() -> None:
    ids = SealedIds([SECRET])
    session_id = ids.seal(sealed())
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for position in range(len("pb1."), len(session_id)):
        swap = alphabet[(alphabet.index(session_id[position]) + 1) % len(alphabet)]
        altered = session_id[:position] + swap + session_id[position + 1 :]
        assert ids.unseal(altered) is None, f"altered at {position} still opens"


def test_an_expired_id_is_unknown() -> None:
    now = [1_800_000_000.0]
    ids = SealedIds([SECRET], clock=lambda: now[0])
    session_id = ids.seal(sealed(exp=1_800_000_100))
    assert ids.unseal(session_id) is not None
    now[0] = 1_800_000_100.0
    assert ids.unseal(session_id) is None


def test_malformed_ids_are_unknown_never_an_exception() -> None:
    ids = SealedIds([SECRET])
    good = ids.seal(sealed())
    short = "pb1." + base64.urlsafe_b64encode(b"\x00" * 20).decode().rstrip("=")
    for bad in ["", "pb1.", "pb1.!!!!", "pb2." + good[4:], good[4:], good + "A", short, "pb1." + "A" * 5000, "é" * 9]:
        assert ids.unseal(bad) is None, bad


def test_a_rotated_secret_still_opens_ids_and_a_removed_one_does_not() -> None:
    before = SealedIds([OLD]).seal(sealed())
    rotated = SealedIds([SECRET, OLD])
    assert rotated.unseal(before) == sealed()
    assert SealedIds([OLD]).unseal(rotated.seal(sealed())) is None  # the first secret seals
    assert SealedIds([SECRET]).unseal(before) is None
    assert SealedIds([OTHER]).unseal(before) is None


def replicas(url: str, prefix: str) -> contextlib.AbstractAsyncContextManager[list[FleetSessionStore]]:
    """Replicas A and B: each its own Redis link and bus, one secret, one Redis."""
    return session_stores(url, prefix, SECRET, stream_lock_seconds=2)


ALICE = owner_of(Principal(kind="user", subject="alice", client_id="chatgpt"))
BOB = owner_of(Principal(kind="user", subject="bob", client_id="chatgpt"))


@pytest.mark.anyio
async def test_a_session_opened_on_a_is_served_by_b_for_its_owner_only(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b):
        opened = await a.create("2025-06-18", CAPS, INFO, ALICE)
        assert re.fullmatch("[0-9a-f]{32}", opened.sid)  # 128 random bits name its state in Redis
        found = await b.get(opened.id)
        assert found is not None and found is not opened
        assert (found.version, found.client_caps, found.client_info) == ("2025-06-18", CAPS, INFO)
        assert found.owner == ALICE != BOB  # the transport answers Bob's request like an unknown session
        assert await b.get(opened.id + "x") is None
        assert await b.get("not-a-session") is None


@pytest.mark.anyio
async def test_a_session_deleted_on_a_is_unknown_on_b(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b):
        opened = await a.create("2025-11-25", CAPS, INFO, ALICE)
        on_b = await b.get(opened.id)
        assert on_b is not None
        assert await a.delete(opened.id) is True
        assert await a.get(opened.id) is None

        async def refused_on_b() -> bool:
            return await b.get(opened.id) is None

        await until(refused_on_b, "B to refuse the session deleted on A")
        assert await b.delete(opened.id) is False  # deleted once only


@pytest.mark.anyio
async def test_log_level_and_subscriptions_set_on_a_are_seen_on_b(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b):
        opened = await a.create("2025-11-25", CAPS, INFO, None)
        on_b = await b.get(opened.id)
        assert on_b is not None and on_b.log_level == "info" and not on_b.subscriptions
        await opened.set_level("debug")
        await opened.subscribe("kanban://board")
        await opened.subscribe("kanban://card/1")
        await opened.unsubscribe("kanban://card/1")

        async def changed_on_b() -> bool:
            on_b = await b.get(opened.id)
            assert on_b is not None
            return on_b.log_level == "debug" and on_b.subscriptions == {"kanban://board"}

        await until(changed_on_b, "B to see the level and subscriptions set on A")


@pytest.mark.anyio
async def test_large_client_capabilities_stay_out_of_the_id_and_come_back_from_redis(
    redis_url: str, redis_prefix: str
) -> None:
    big = {**CAPS, "experimental": {f"feature{i}": {"x": "y" * 20} for i in range(100)}}
    async with replicas(redis_url, redis_prefix) as (a, b):
        opened = await a.create("2025-11-25", big, INFO, None)
        assert len(opened.id) < 400
        on_b = await b.get(opened.id)
        assert on_b is not None and on_b.client_caps == big


@pytest.mark.anyio
async def test_the_get_stream_lock_is_one_per_session_across_replicas(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b):
        opened = await a.create("2025-11-25", CAPS, INFO, None)
        on_b = await b.get(opened.id)
        assert on_b is not None
        assert await a.claim_stream(opened) is True
        assert await b.claim_stream(on_b) is False
        await b.release_stream(on_b)  # not B's lock: A keeps it
        assert await b.claim_stream(on_b) is False
        await a.release_stream(opened)
        assert await b.claim_stream(on_b) is True
        await b.release_stream(on_b)


@pytest.mark.anyio
async def test_with_redis_down_sealed_sessions_still_open_and_state_changes_fail_fast(
    own_redis: RedisServer, redis_prefix: str
) -> None:
    async with replicas(own_redis.url, redis_prefix) as (a, b):
        opened = await a.create("2025-11-25", CAPS, INFO, ALICE)
        await opened.set_level("warning")
        own_redis.stop()
        with anyio.fail_after(5):  # bounded: an outage must never hang a request
            on_b = await b.get(opened.id)
            assert on_b is not None and on_b.owner == ALICE and on_b.log_level == "info"
            fresh = await b.create("2025-11-25", CAPS, INFO, None)  # initialize needs no Redis
            assert await a.get(fresh.id) is not None
            with pytest.raises(RpcError) as refused:
                await on_b.set_level("debug")
            assert await a.get(opened.id) is opened and opened.log_level == "warning"  # the last known here
            with pytest.raises(RpcError):
                await b.delete(opened.id)
            with pytest.raises(RpcError):
                await b.claim_stream(on_b)
        assert on_b.log_level == "info"  # refused, so unchanged
        assert refused.value.status == 503
        assert "shared store (Redis) is unreachable" in refused.value.message
        assert "fleet-Pa55" not in refused.value.message and str(own_redis.port) not in refused.value.message


@pytest.mark.anyio
async def test_with_redis_down_a_refused_subscription_change_leaves_the_subscriptions_as_they_were(
    own_redis: RedisServer, redis_prefix: str
) -> None:
    async with replicas(own_redis.url, redis_prefix) as (a, _):
        opened = await a.create("2025-11-25", CAPS, INFO, ALICE)
        await opened.subscribe("kanban://board")
        own_redis.stop()
        with anyio.fail_after(5):  # bounded: an outage must never hang a request
            with pytest.raises(RpcError):
                await opened.subscribe("kanban://card/1")
            assert opened.subscriptions == {"kanban://board"}  # the client was told it failed: not subscribed
            with pytest.raises(RpcError):
                await opened.unsubscribe("kanban://board")
            assert opened.subscriptions == {"kanban://board"}  # still subscribed, as the refusal said
            with pytest.raises(RpcError):
                await opened.set_level("error")
            assert opened.log_level == "info"


@pytest.mark.anyio
async def test_a_replicas_store_follows_the_servers_secrets_keepalive_and_event_log(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    server = {"secret": SECRET.decode(), "previous_secrets": [OLD.decode()], "sse_keepalive_seconds": 5}
    redis_table = {"url": redis_url, "key_prefix": redis_prefix, "timeout_ms": TIMEOUT_MS}
    settings = from_dict({"server": server, "redis": redis_table}, base_dir=tmp_path)
    redis = aioredis.Redis.from_url(redis_url)
    async with fleets(redis_url, redis_prefix, count=1) as (fleet,):
        events = fleet_events(settings, fleet)
        store = fleet_store(settings, fleet, events)
        try:
            opened = await store.create("2025-11-25", CAPS, INFO, ALICE)
            assert SealedIds([SECRET]).unseal(opened.id) is not None  # sealed with the current secret
            assert await store.get(SealedIds([OLD]).seal(sealed())) is not None  # a previous one still opens
            assert opened.events is events  # its streams resumable on any replica
            assert store.stream_lock_ms == 10_000
            assert await store.claim_stream(opened) is True
            # The lock lasts two keep-alives: one missed keep-alive write never loses it.
            assert 1000 < await redis.pttl(f"{redis_prefix}get:{opened.sid}") <= 10_000
            await store.release_stream(opened)
        finally:
            store.close_all()
            await events.close()
            await redis.aclose()
