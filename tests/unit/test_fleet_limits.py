"""Rate budgets, sign-in and registration throttles and one-shot MRTR states shared by a fleet: two RedisLinks in one
event loop play two replicas, on a real redis-server."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.redis_server import TIMEOUT_MS, RedisServer
from tests.support.waiting import until
from tests.unit.fixtures.fleet_streams import fleet

from patchbay.errors import RpcError
from patchbay.fleet.limits import RedisRateStore, SharedNonces, SharedRateLimit, SharedThrottle
from patchbay.fleet.link import RedisLink
from patchbay.gate.limits_config import Rate, parse_rate
from patchbay.gate.limits_rate import MemoryRateStore
from patchbay.protocol.mrtr import StateSigner

pytestmark = pytest.mark.anyio

TEN_A_MINUTE = parse_rate("10/minute")


@contextlib.asynccontextmanager
async def links(url: str, prefix: str, count: int = 2) -> AsyncIterator[list[RedisLink]]:
    made = [RedisLink(url, key_prefix=prefix, timeout_ms=TIMEOUT_MS) for _ in range(count)]
    try:
        yield made
    finally:
        for link in made:
            await link.close()


async def admitted(store: RedisRateStore, key: str, rate: Rate, burst: int, tries: int) -> int:
    return sum([await store.take(key, rate, burst, 0.0) is None for _ in range(tries)])


async def test_a_limit_of_n_per_minute_admits_exactly_n_across_two_replicas(redis_url: str, redis_prefix: str) -> None:
    async with links(redis_url, redis_prefix) as (a, b):
        stores = [RedisRateStore(a, lambda: 2), RedisRateStore(b, lambda: 2)]
        decisions = [await stores[i % 2].take("lim\0alice", TEN_A_MINUTE, 10, 0.0) for i in range(30)]

    assert sum(wait is None for wait in decisions) == 10
    assert decisions[:10] == [None] * 10  # a fresh budget's burst is the whole count
    refused = [wait for wait in decisions if wait is not None]
    assert all(0 < wait <= 6.0 for wait in refused)  # the next call is one emission interval (60 s / 10) away


async def test_a_budget_is_per_key_and_a_refund_gives_one_call_back(redis_url: str, redis_prefix: str) -> None:
    async with links(redis_url, redis_prefix) as (a, b):
        one, other = RedisRateStore(a, lambda: 2), RedisRateStore(b, lambda: 2)
        assert await admitted(one, "k1", TEN_A_MINUTE, 10, 12) == 10
        assert await admitted(other, "k2", TEN_A_MINUTE, 10, 12) == 10
        await one.refund("k1", TEN_A_MINUTE)
        assert await admitted(other, "k1", TEN_A_MINUTE, 10, 3) == 1


OPS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),  # key
        st.sampled_from([0.0, 0.001, 0.25, 1.0, 5.999, 6.0, 30.0]),  # seconds since the previous call
        st.booleans(),  # refund the call just admitted
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, count=st.integers(1, 12), burst=st.integers(1, 15), period=st.sampled_from([1.0, 60.0, 3600.0]))
async def test_the_redis_gcra_decides_as_the_memory_store_does(
    redis_url: str, ops: list[tuple[str, float, bool]], count: int, burst: int, period: float
) -> None:
    rate = Rate(count, period, "x")
    prefix = f"prop{secrets.token_hex(6)}:"
    async with links(redis_url, prefix, 1) as (link,):
        shared, memory = RedisRateStore(link, lambda: 1, caller_clock=True), MemoryRateStore()
        now = 1_000.0
        for key, step, refund in ops:
            now += step
            ours, theirs = await shared.take(key, rate, burst, now), await memory.take(key, rate, burst, now)
            assert ours == theirs
            if refund and ours is None:
                await shared.refund(key, rate)
                await memory.refund(key, rate)


async def test_with_redis_down_each_replica_admits_its_share_and_then_the_budget_is_shared_again(
    own_redis: RedisServer, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with links(own_redis.url, redis_prefix) as (a, b):
        stores = [RedisRateStore(a, lambda: 2), RedisRateStore(b, lambda: 2)]
        own_redis.stop()
        counts = [await admitted(store, "down", TEN_A_MINUTE, 10, 20) for store in stores]
        assert counts == [5, 5]  # 10 a minute shared by two live replicas: not unlimited, not nothing
        assert [store.outage.local_checks for store in stores] == [20, 20]
        assert sum("Redis is unreachable" in r.getMessage() for r in caplog.records) == 2  # once per store

        own_redis.start()
        await until(a.probe, "replica A to reach Redis again")
        await until(b.probe, "replica B to reach Redis again")
        decisions = [await stores[i % 2].take("down", TEN_A_MINUTE, 10, 0.0) for i in range(24)]
        assert sum(wait is None for wait in decisions) == 10
        assert not any(store.outage.down for store in stores)
    assert own_redis.answers()
    assert "fleet-Pa55" not in caplog.text


async def test_failed_sign_ins_are_counted_once_for_the_whole_fleet(redis_url: str, redis_prefix: str) -> None:
    async with links(redis_url, redis_prefix) as (a, b):
        replicas = [SharedThrottle(a, lambda: 2, 3, 900), SharedThrottle(b, lambda: 2, 3, 900)]
        assert not await replicas[1].blocked("203.0.113.9")
        blocking = [await replicas[i % 2].failed("203.0.113.9") for i in range(3)]
        assert blocking == [False, False, True]  # the third failure, wherever it lands, is the one that blocks
        assert await replicas[0].blocked("203.0.113.9") and await replicas[1].blocked("203.0.113.9")
        assert not await replicas[0].blocked("203.0.113.10")  # another address is not held by it
        assert not await replicas[1].failed("203.0.113.9")  # past the limit: no second "blocks" for the log


async def test_with_redis_down_sign_in_failures_are_limited_to_each_replicas_share(
    own_redis: RedisServer, redis_prefix: str
) -> None:
    async with links(own_redis.url, redis_prefix, 1) as (a,):
        throttle = SharedThrottle(a, lambda: 2, 10, 900)
        own_redis.stop()
        blocks = [await throttle.failed("198.51.100.7") for _ in range(5)]
        assert blocks == [False] * 4 + [True]
        assert await throttle.blocked("198.51.100.7")
        own_redis.start()


async def test_registrations_per_address_are_limited_across_replicas(redis_url: str, redis_prefix: str) -> None:
    async with links(redis_url, redis_prefix) as (a, b):
        replicas = [SharedRateLimit(a, lambda: 2, 4), SharedRateLimit(b, lambda: 2, 4)]
        allowed = [await replicas[i % 2].allow("192.0.2.1") for i in range(9)]
        assert allowed == [True] * 4 + [False] * 5
        assert await replicas[1].allow("192.0.2.2")


async def test_the_register_endpoint_of_every_replica_draws_on_one_budget(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """`[auth] registration_per_minute` holds for the fleet: /register on either replica counts against it."""
    body = {"redirect_uris": ["http://127.0.0.1:9999/callback"], "token_endpoint_auth_method": "none"}
    auth = {"mode": "oauth", "registration_per_minute": 2}
    async with fleet(tmp_path, redis_url, redis_prefix, auth=auth) as (a, b, http):
        statuses = [(await http.post(f"{r.base}/register", json=body)).status_code for r in (a, b, a, b)]
    assert statuses == [201, 201, 429, 429]


async def test_an_mrtr_state_used_on_one_replica_is_refused_on_the_other(redis_url: str, redis_prefix: str) -> None:
    key = b"k" * 32
    async with links(redis_url, redis_prefix) as (a, b):
        one = StateSigner(key, spent=SharedNonces(a))
        other = StateSigner(key, spent=SharedNonces(b))
        state = one.seal("digest-1", {"confirm": {"action": "accept"}})

        answers, _ = await one.open_once(state, "digest-1")
        assert answers == {"confirm": {"action": "accept"}}
        with pytest.raises(RpcError) as replayed:
            await other.open_once(state, "digest-1")
    assert replayed.value.code == -32602
    assert "already used" in replayed.value.message


async def test_an_mrtr_state_is_refused_while_redis_is_down(own_redis: RedisServer, redis_prefix: str) -> None:
    async with links(own_redis.url, redis_prefix, 1) as (a,):
        signer = StateSigner(b"k" * 32, spent=SharedNonces(a))
        state = signer.seal("d", {})
        own_redis.stop()
        with pytest.raises(RpcError) as refused:
            await signer.open_once(state, "d")
        own_redis.start()
        await until(a.probe, "Redis to answer again")
        assert (await signer.open_once(state, "d"))[0] == {}  # never spent while Redis was down: good once
    assert refused.value.status == 503
    assert "(Redis) is unreachable" in refused.value.message
    assert "fleet-Pa55" not in refused.value.message and "127.0.0.1" not in refused.value.message


async def test_a_state_signed_with_a_previous_secret_is_still_accepted() -> None:
    old = StateSigner(b"o" * 32)
    new = StateSigner(b"n" * 32, previous_keys=[b"o" * 32])
    state = old.seal("d", {"x": {}})
    assert new.open(state, "d") == {"x": {}}
    with pytest.raises(RpcError, match="not signed by this server"):
        StateSigner(b"n" * 32).open(state, "d")
