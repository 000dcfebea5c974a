"""The fleet's Redis link against a real redis-server: bounded commands, fail-fast while Redis is down, one probe
a second, recovery callbacks, Lua scripts, and a password that never shows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from tests.support.redis_server import PASSWORD, TIMEOUT_MS, RedisServer
from tests.support.waiting import until

from patchbay.fleet import Fleet
from patchbay.fleet.bus import Bus
from patchbay.fleet.link import FleetBusy, FleetUnavailable, RedisLink, redact
from patchbay.settings import RedisSettings

pytestmark = pytest.mark.anyio

NOT_A_HANG = 10.0  # seconds: bounds a call that must fail within about the timeout, on a busy 2-core machine


@pytest.fixture
async def link(own_redis: RedisServer) -> AsyncIterator[RedisLink]:
    link = RedisLink(own_redis.url, key_prefix="t:", timeout_ms=TIMEOUT_MS)
    try:
        yield link
    finally:
        await link.close()


class Counting:
    """A command that counts how often it reached the client (so, the socket)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, client: Any) -> Any:
        self.calls += 1
        return await client.ping()


async def test_a_command_runs_against_redis_and_keys_carry_the_prefix(link: RedisLink) -> None:
    await link.do(lambda client: client.set(link.key("a", "b"), b"1", ex=60))

    assert link.key("a", "b") == "t:a:b"
    assert await link.do(lambda client: client.get("t:a:b")) == b"1"
    assert link.up


async def test_a_command_while_redis_is_stopped_fails_fast_and_the_next_one_never_reaches_the_socket(
    own_redis: RedisServer, link: RedisLink
) -> None:
    ping = Counting()
    await link.do(ping)
    own_redis.stop()

    with anyio.fail_after(NOT_A_HANG), pytest.raises(FleetUnavailable):
        await link.do(ping)
    assert not link.up
    assert ping.calls == 2

    with pytest.raises(FleetUnavailable):
        await link.do(ping)
    assert ping.calls == 2  # failed at once: no probe is due within the second after the outage


async def test_while_down_one_probe_a_second_goes_to_redis(own_redis: RedisServer, link: RedisLink) -> None:
    own_redis.stop()
    with pytest.raises(FleetUnavailable):
        await link.do(Counting())
    ping = Counting()

    async def probe_went_out() -> bool:
        with pytest.raises(FleetUnavailable):
            await link.do(ping)
        return ping.calls == 1

    await until(probe_went_out, "a probe a second after the outage")
    with pytest.raises(FleetUnavailable):
        await link.do(ping)
    assert ping.calls == 1  # the probe failed: the next waits for the next second


async def test_redis_coming_back_marks_the_link_up_and_fires_on_up(own_redis: RedisServer, link: RedisLink) -> None:
    fired: list[str] = []
    link.on_up(lambda: fired.append("sync"))

    async def coroutine_callback() -> None:
        fired.append("async")

    link.on_up(coroutine_callback)
    await link.start()
    own_redis.stop()
    with pytest.raises(FleetUnavailable):
        await link.do(Counting())

    own_redis.start()

    await until(lambda: link.up and len(fired) == 2, "the prober to find Redis up and run both callbacks")
    assert sorted(fired) == ["async", "sync"]
    assert await link.do(lambda client: client.ping()) is True


async def test_an_address_nothing_listens_on_fails_within_the_timeout(own_redis: RedisServer) -> None:
    own_redis.stop()
    link = RedisLink(own_redis.url, timeout_ms=TIMEOUT_MS)
    try:
        with anyio.fail_after(NOT_A_HANG), pytest.raises(FleetUnavailable) as raised:
            await link.do(lambda client: client.ping())
    finally:
        await link.close()
    assert "unreachable" in str(raised.value)
    assert not link.up


async def test_a_lua_script_runs_and_runs_again_after_redis_lost_its_script_cache(
    own_redis: RedisServer, link: RedisLink
) -> None:
    add = link.script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert await add([link.key("n")], [2]) == 2
    own_redis.stop()
    own_redis.start()  # an empty Redis: the script's SHA is unknown there (NOSCRIPT)
    with pytest.raises(FleetUnavailable):
        await add([link.key("n")], [3])  # the pooled connection died with the old server

    async def ran() -> bool:
        try:
            return bool(await add([link.key("n")], [3]) == 3)
        except FleetUnavailable:
            return False

    await until(ran, "the script to run on the restarted Redis")


async def test_the_password_never_shows_in_logs_health_or_errors(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fleet = Fleet(RedisSettings.model_validate({"url": own_redis.url, "timeout_ms": TIMEOUT_MS}))
    await fleet.start()
    try:
        healthy = fleet.health()
        own_redis.stop()
        with pytest.raises(FleetUnavailable) as raised:
            await fleet.bus.broadcast("x")
        down = fleet.health()
    finally:
        await fleet.stop()

    assert healthy["ok"] and not down["ok"]
    assert f"127.0.0.1:{own_redis.port}" in down["detail"]  # names the server it cannot reach ...
    shown = [str(raised.value), str(healthy), str(down), caplog.text]
    assert "is unreachable" in caplog.text
    assert all(PASSWORD not in text for text in shown)  # ... never its password


async def test_more_concurrent_commands_than_connections_wait_their_turn_and_all_succeed(
    own_redis: RedisServer,
) -> None:
    link = RedisLink(own_redis.url, key_prefix="t:", timeout_ms=TIMEOUT_MS, max_connections=4)
    running, most = 0, 0

    async def incr(client: Any) -> Any:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            return await client.incr("t:n")
        finally:
            running -= 1

    try:
        results = await asyncio.gather(*(link.do(incr) for _ in range(200)))
        assert link.up
        assert sorted(results) == list(range(1, 201))
        assert most == 4  # the pool was full all along, and never more than full
        clients = await link.do(lambda client: client.client_list())
    finally:
        await link.close()
    assert sum(1 for c in clients if c["cmd"] == "incr") <= 4  # the link opened no connection beyond its bound


async def test_a_command_that_waits_in_vain_for_a_connection_is_busy_not_an_outage(own_redis: RedisServer) -> None:
    link = RedisLink(own_redis.url, key_prefix="t:", timeout_ms=TIMEOUT_MS, max_connections=1)
    release, holding = asyncio.Event(), asyncio.Event()

    async def hold(client: Any) -> Any:
        await client.ping()
        holding.set()
        await release.wait()

    try:
        held = asyncio.ensure_future(link.do(hold))
        await until(holding.is_set, "the only connection to be taken")
        with anyio.fail_after(NOT_A_HANG), pytest.raises(FleetBusy) as raised:
            await link.do(lambda client: client.ping())
        assert link.up and link.last_error == ""
        release.set()
        await held
        assert await link.do(lambda client: client.ping()) is True
    finally:
        await link.close()
    assert isinstance(raised.value, FleetUnavailable)  # callers that catch an outage catch this too
    assert "busy" in str(raised.value) and PASSWORD not in str(raised.value)


async def test_the_bus_keeps_hearing_while_every_command_connection_is_busy(own_redis: RedisServer) -> None:
    busy = RedisLink(own_redis.url, key_prefix="t:", timeout_ms=TIMEOUT_MS, max_connections=1)
    sender = RedisLink(own_redis.url, key_prefix="t:", timeout_ms=TIMEOUT_MS)
    bus = Bus(busy, "r-listening")
    heard: list[dict[str, Any]] = []
    bus.on("hello", heard.append)
    release, holding = asyncio.Event(), asyncio.Event()

    async def hold(client: Any) -> Any:
        await client.ping()
        holding.set()
        await release.wait()

    held = asyncio.ensure_future(busy.do(hold))
    try:
        await until(holding.is_set, "the only command connection to be taken")
        await bus.start()
        await until(bus.subscribed.is_set, "the bus to subscribe on its own connection")
        await Bus(sender, "r-talking").broadcast("hello", n=1)
        await until(lambda: len(heard) == 1, "the broadcast to arrive")
    finally:
        release.set()
        await held
        await bus.stop()
        await busy.close()
        await sender.close()
    assert heard[0]["n"] == 1 and busy.up


def test_redact_hides_the_password_in_every_url_form() -> None:
    assert redact("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redact("rediss://user:pw@h/1") == "rediss://user:***@h/1"
    assert redact("unix:///run/redis.sock?password=pw&db=2") == "unix:///run/redis.sock?password=***&db=2"
    assert redact("redis://h:6379") == "redis://h:6379"
