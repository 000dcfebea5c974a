"""A replica's copy of a fleet session's shared state: served without Redis, dropped by every change broadcast on
the bus, by a bus resync and by Redis coming back, and never trusted longer than its short lifetime.

Replicas A and B are two session stores on one real redis-server. Where a test waits for B to see a change, B's
copy is made to live an hour, so that only the broadcast (or the resync) can be what B saw.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import redis.asyncio as aioredis
from fixtures.fleet_stores import session_stores
from fixtures.wire import JSON_POST, TOOLS_FILE, initialize_body, live_server, request
from tests.support.redis_server import TIMEOUT_MS, RedisServer
from tests.support.waiting import until

from patchbay.fleet.link import RedisLink
from patchbay.fleet.sealed import SealedIds
from patchbay.fleet.sessions import STATE, FleetSessionStore
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio
SECRET = b"session-cache-secret"
CAPS = {"sampling": {}}
INFO = {"name": "unit-client", "version": "2.1"}
AN_HOUR = 3600.0


class Commands:
    """Counts the commands a replica's link sends to Redis (each ``do`` is one round trip)."""

    def __init__(self, link: RedisLink) -> None:
        self.count = 0
        self._do = link.do

        async def counted(fn: Callable[[Any], Awaitable[Any]]) -> Any:
            self.count += 1
            return await self._do(fn)

        link.do = counted  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def replicas(url: str, prefix: str) -> AsyncIterator[tuple[FleetSessionStore, FleetSessionStore]]:
    async with session_stores(url, prefix, SECRET, stream_lock_seconds=2) as (a, b):
        yield a, b


async def level_on(store: FleetSessionStore, session_id: str) -> str | None:
    session = await store.get(session_id)
    return None if session is None else session.log_level


async def test_a_session_read_once_is_served_again_without_redis(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b):
        opened = await a.create("2025-11-25", CAPS, INFO)
        on_a, on_b = Commands(a.link), Commands(b.link)
        assert await a.get(opened.id) is opened
        assert on_a.count == 0  # the replica that opened it knows its state
        first = await b.get(opened.id)
        assert on_b.count == 1  # one round trip: ended? and the state
        for _ in range(5):
            assert await b.get(opened.id) is first
        assert on_b.count == 1


async def test_a_level_set_on_a_is_seen_by_the_next_request_on_b(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b):
        b.cache_seconds = AN_HOUR
        opened = await a.create("2025-11-25", CAPS, INFO)
        assert await level_on(b, opened.id) == "info"
        await opened.set_level("debug")
        await opened.subscribe("kanban://board")

        async def seen() -> bool:
            on_b = await b.get(opened.id)
            return on_b is not None and on_b.log_level == "debug" and on_b.subscriptions == {"kanban://board"}

        await until(seen, "B to drop its copy on A's broadcast and read the new state")


async def test_a_session_deleted_on_a_is_refused_on_b_from_then_on_without_redis(
    redis_url: str, redis_prefix: str
) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b):
        b.cache_seconds = AN_HOUR
        opened = await a.create("2025-11-25", CAPS, INFO)
        on_b = await b.get(opened.id)
        assert on_b is not None
        assert await a.delete(opened.id) is True

        async def refused() -> bool:
            return await b.get(opened.id) is None

        await until(refused, "B to refuse the session once A's broadcast arrived")
        assert b.find(opened.sid) is None
        commands = Commands(b.link)
        assert await b.get(opened.id) is None
        assert commands.count == 0  # ended for good: no need to ask Redis again


async def test_a_change_the_bus_missed_is_read_after_the_bus_resubscribes(
    own_redis: RedisServer, redis_prefix: str
) -> None:
    redis_url = own_redis.url  # its own server: the test cuts every subscription on it
    async with replicas(redis_url, redis_prefix) as (a, b), aioredis.Redis.from_url(redis_url) as redis:
        b.cache_seconds = AN_HOUR
        opened = await a.create("2025-11-25", CAPS, INFO)
        assert await level_on(b, opened.id) == "info"
        await redis.hset(f"{redis_prefix}s:{opened.sid}", "level", b"error")  # a change whose message was lost
        assert await level_on(b, opened.id) == "info"  # B trusts its copy: nothing told it otherwise
        resubscribed = b.bus.resubscriptions
        await redis.client_kill_filter(_type="pubsub")  # every subscription drops: messages may have been missed
        await until(lambda: b.bus.resubscriptions > resubscribed, "B's bus to resubscribe")

        async def reread() -> bool:
            return await level_on(b, opened.id) == "error"

        await until(reread, "B to read the state again after its resync")


async def test_copies_are_dropped_when_redis_comes_back(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b), aioredis.Redis.from_url(redis_url) as redis:
        b.cache_seconds = AN_HOUR
        opened = await a.create("2025-11-25", CAPS, INFO)
        assert await level_on(b, opened.id) == "info"
        b.link.mark_down(ConnectionError("as if Redis went away"))
        await redis.hset(f"{redis_prefix}s:{opened.sid}", "level", b"warning")  # changed while B was cut off
        await until(lambda: b.link.up, "B's link to probe Redis and come back up")

        async def reread() -> bool:
            return await level_on(b, opened.id) == "warning"

        await until(reread, "B to read the state again once Redis is back")


async def test_a_copy_is_trusted_only_for_its_short_lifetime(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b), aioredis.Redis.from_url(redis_url) as redis:
        b.cache_seconds = 0.05
        opened = await a.create("2025-11-25", CAPS, INFO)
        assert await level_on(b, opened.id) == "info"
        await redis.hset(f"{redis_prefix}s:{opened.sid}", "level", b"critical")  # no broadcast at all

        async def reread() -> bool:
            return await level_on(b, opened.id) == "critical"

        await until(reread, "B's copy to expire and the state to be read again")


@contextlib.contextmanager
def two_replicas(base: Path, url: str, prefix: str) -> Iterator[tuple[Any, Any]]:
    data: dict[str, Any] = {
        "server": {"name": "patchbay-cache-unit", "secret": SECRET.decode()},
        "store": {"url": "sqlite:///:memory:"},
        "redis": {"url": url, "key_prefix": prefix, "timeout_ms": TIMEOUT_MS},
        "connectors": [{"name": "fx", "type": "python", "path": str(TOOLS_FILE), "prefix": ""}],
    }
    with live_server(from_dict(data, base_dir=base)) as a, live_server(from_dict(data, base_dir=base)) as b:
        yield a, b


async def test_over_http_a_delete_on_a_answers_404_on_b_and_a_level_set_on_a_reaches_b(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    with two_replicas(tmp_path, redis_url, prefix=redis_prefix) as (a, b):
        for replica in (a, b):
            await until(replica.app.runtime.fleet.bus.subscribed.is_set, "the replica to join the bus")
        b.app.sessions.cache_seconds = AN_HOUR
        async with httpx.AsyncClient(timeout=20) as http:
            opened = await http.post(a.url, json=initialize_body(), headers=JSON_POST)
            assert opened.status_code == 200, opened.text
            headers = {**JSON_POST, "mcp-session-id": opened.headers["mcp-session-id"]}
            headers["mcp-protocol-version"] = "2025-11-25"
            ping = request("ping", {}, 2)
            assert (await http.post(b.url, json=ping, headers=headers)).status_code == 200  # B holds a copy now
            level = request("logging/setLevel", {"level": "error"}, 3)
            assert (await http.post(a.url, json=level, headers=headers)).status_code == 200

            sealed = SealedIds([SECRET]).unseal(headers["mcp-session-id"])
            assert sealed is not None

            async def level_reached_b() -> bool:
                assert (await http.post(b.url, json=ping, headers=headers)).status_code == 200
                session = b.app.sessions.find(sealed.sid)  # B's copy, as its last request left it
                return session is not None and session.log_level == "error"

            await until(level_reached_b, "the next request on B to see the level set on A")
            assert (await http.delete(a.url, headers=headers)).status_code == 200

            async def gone_on_b() -> bool:
                response = await http.post(b.url, json=ping, headers=headers)
                assert response.status_code in (200, 404), response.text
                return response.status_code == 404 and response.json()["error"]["code"] == -32001

            await until(gone_on_b, "a request on B to be refused once A's DELETE was broadcast")


async def test_every_drop_of_the_copies_is_obeyed_not_only_the_first(redis_url: str, redis_prefix: str) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b), aioredis.Redis.from_url(redis_url) as redis:
        b.cache_seconds = AN_HOUR
        opened = await a.create("2025-11-25", CAPS, INFO)
        key = f"{redis_prefix}s:{opened.sid}"
        assert await level_on(b, opened.id) == "info"
        for level in ("error", "warning", "debug"):
            await redis.hset(key, "level", level.encode())  # changes whose messages were lost
            b.drop_cached()  # as after a resync of the bus or Redis coming back
            assert await level_on(b, opened.id) == level


async def test_a_change_heard_while_the_state_is_read_leaves_that_copy_untrusted_each_time(
    redis_url: str, redis_prefix: str
) -> None:
    async with replicas(redis_url, redis_prefix) as (a, b):
        b.cache_seconds = AN_HOUR
        opened = await a.create("2025-11-25", CAPS, INFO)
        heard: list[dict[str, Any]] = []
        b.bus.on(STATE, heard.append)  # runs after the store's own handler, registered first
        read = b.link.do
        changes = iter(["debug", "error"])

        async def changed_while_reading(fn: Callable[[Any], Awaitable[Any]]) -> Any:
            result = await read(fn)
            before = len(heard)
            await opened.set_level(next(changes))
            await until(lambda: len(heard) > before, "B to hear A's change")
            return result

        b.link.do = changed_while_reading  # type: ignore[method-assign]
        assert await level_on(b, opened.id) == "info"  # read before the change to "debug"
        assert await level_on(b, opened.id) == "debug"  # read before the change to "error"
        b.link.do = read  # type: ignore[method-assign]
        assert await level_on(b, opened.id) == "error"
