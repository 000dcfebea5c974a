"""The heartbeat: each replica keeps a key with a TTL and counts the live replicas, by Redis's clock."""

from __future__ import annotations

import orjson
import pytest
from tests.support.redis_server import TIMEOUT_MS, RedisServer

from patchbay.fleet import Fleet
from patchbay.fleet.link import FleetUnavailable
from patchbay.fleet.replicas import TTL_SECONDS
from patchbay.settings import RedisSettings

pytestmark = pytest.mark.anyio


def settings(url: str, prefix: str = "pb:") -> RedisSettings:
    return RedisSettings.model_validate({"url": url, "key_prefix": prefix, "timeout_ms": TIMEOUT_MS})


async def test_two_replicas_count_two_and_one_after_the_other_leaves(redis_url: str, redis_prefix: str) -> None:
    a, b = Fleet(settings(redis_url, redis_prefix)), Fleet(settings(redis_url, redis_prefix))
    await a.start()
    assert a.replicas.live() == 1
    await b.start()
    try:
        assert await a.replicas.beat() == 2
        assert a.replicas.live() == 2 and a.health()["replicas"] == 2
        assert await a.replicas.is_alive(b.replica_id)
        await b.stop()
        assert await a.replicas.beat() == 1
        assert not await a.replicas.is_alive(b.replica_id)
    finally:
        await a.stop()
        await b.stop()


async def test_the_heartbeat_key_expires_on_its_own_and_says_which_process(redis_url: str, redis_prefix: str) -> None:
    fleet = Fleet(settings(redis_url, redis_prefix))
    await fleet.start()
    try:
        key = f"{redis_prefix}replica:{fleet.replica_id}"
        ttl = await fleet.link.do(lambda client: client.ttl(key))
        value = orjson.loads(await fleet.link.do(lambda client: client.get(key)))
        index_ttl = await fleet.link.do(lambda client: client.ttl(f"{redis_prefix}replicas"))
    finally:
        await fleet.stop()
    assert 0 < ttl <= TTL_SECONDS and 0 < index_ttl <= TTL_SECONDS
    assert set(value) == {"pid", "host", "started"}


async def test_the_last_count_is_kept_while_redis_is_down(own_redis: RedisServer) -> None:
    a, b = Fleet(settings(own_redis.url)), Fleet(settings(own_redis.url))
    await a.start()
    await b.start()
    try:
        assert await a.replicas.beat() == 2
        own_redis.stop()
        with pytest.raises(FleetUnavailable):
            await a.replicas.beat()
        assert a.replicas.live() == 2
        assert a.health() == {"ok": False, "detail": a.health()["detail"], "replicas": 2}
    finally:
        await a.stop()
        await b.stop()


def test_replica_ids_are_random_and_shaped_r_and_ten_hex_digits() -> None:
    ids = {Fleet(settings("redis://127.0.0.1:1/0")).replica_id for _ in range(20)}
    assert len(ids) == 20
    assert all(len(i) == 12 and i.startswith("r-") and int(i[2:], 16) >= 0 for i in ids)
