"""Fan-out between replicas: two or three Fleet objects in one event loop play the replicas, on a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
from fixtures.fleet_stores import fleets
from tests.support.redis_server import RedisServer
from tests.support.waiting import until

from patchbay.fleet import Fleet
from patchbay.fleet.link import FleetUnavailable

pytestmark = pytest.mark.anyio


def recorder(fleet: Fleet, *kinds: str) -> dict[str, list[dict[str, Any]]]:
    seen: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for kind in kinds:
        fleet.bus.on(kind, seen[kind].append)
    return seen


async def test_a_broadcast_reaches_the_other_replica_and_not_its_sender(redis_url: str, redis_prefix: str) -> None:
    async with fleets(redis_url, redis_prefix, 2) as (a, b):
        at_a, at_b = recorder(a, "note", "marker"), recorder(b, "note")

        await a.bus.broadcast("note", uri="file:///x", n=1)
        # A's own channel is read on the same connection, after the broadcast: once the marker is in, a broadcast
        # coming back to A would be in too.
        await a.bus.send_to(a.replica_id, "marker")

        await until(lambda: at_b["note"] and at_a["marker"], "B to get the note and A its marker")
    assert at_b["note"] == [{"k": "note", "from": a.replica_id, "uri": "file:///x", "n": 1}]
    assert at_a["note"] == []


async def test_send_to_reaches_only_its_target(redis_url: str, redis_prefix: str) -> None:
    async with fleets(redis_url, redis_prefix, 3) as (a, b, c):
        at_a, at_b, at_c = recorder(a, "answer"), recorder(b, "answer"), recorder(c, "answer", "marker")

        await a.bus.send_to(b.replica_id, "answer", id=7)
        await a.bus.broadcast("marker")  # published after the answer: C has seen all it would see before it

        await until(lambda: at_b["answer"] and at_c["marker"], "B to get the answer and C the marker")
    assert [m["id"] for m in at_b["answer"]] == [7]
    assert at_a["answer"] == [] and at_c["answer"] == []


async def test_a_failing_handler_or_a_foreign_message_does_not_stop_the_bus(redis_url: str, redis_prefix: str) -> None:
    async with fleets(redis_url, redis_prefix, 2) as (a, b):
        delivered: list[int] = []

        def handler(message: dict[str, Any]) -> None:
            if message["n"] == 1:
                raise RuntimeError("a subscriber's bug")
            delivered.append(message["n"])

        b.bus.on("note", handler)
        await a.bus.broadcast("note", n=1)
        await a.link.do(lambda client: client.publish(b.bus.everyone, b"not json"))
        await a.bus.broadcast("note", n=2)

        await until(lambda: delivered == [2], "the message after the failures to arrive")


async def test_the_bus_resubscribes_after_a_redis_restart_and_asks_for_a_resync(own_redis: RedisServer) -> None:
    async with fleets(own_redis.url, "pb:", 2) as (a, b):
        resyncs: list[str] = []
        b.bus.on_resync(lambda: resyncs.append("b"))
        at_b = recorder(b, "note")

        own_redis.stop()
        await until(lambda: not b.bus.subscribed.is_set(), "B to notice its subscription dropped")
        with pytest.raises(FleetUnavailable):
            await a.bus.broadcast("note", n=1)
        own_redis.start()

        await until(lambda: resyncs == ["b"] and b.bus.subscribed.is_set(), "B to resubscribe and resync")
        await until(lambda: a.up, "A's link to find Redis up again")
        await a.bus.broadcast("note", n=2)
        await until(lambda: at_b["note"], "the broadcast after the restart to reach B")
    assert [m["n"] for m in at_b["note"]] == [2]
    assert b.bus.resubscriptions == 1
