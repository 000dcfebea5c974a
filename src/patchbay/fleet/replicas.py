"""Which replicas are alive: each one refreshes a heartbeat key, and counts the live ones as it does.

The heartbeat ``{prefix}replica:{id}`` (JSON ``{pid, host, started}``, TTL 10 s) says one replica is alive; the
sorted set ``{prefix}replicas`` (member: replica id, score: when its heartbeat expires, by Redis's clock) lets a
replica count the live ones in one round trip instead of scanning the keyspace. ``live()`` is what limits divide
by while Redis is down, so it keeps the last count seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import TYPE_CHECKING

import orjson

from patchbay.fleet.link import FleetUnavailable, RedisLink

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger("patchbay.fleet")

TTL_SECONDS = 10
BEAT_SECONDS = 3.0

# KEYS: heartbeat, index · ARGV: replica id, heartbeat value, ttl. Redis's own clock, so replicas' clocks never
# disagree about who expired.
_BEAT = """
local now = tonumber(redis.call('TIME')[1])
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('EXPIRE', KEYS[2], ttl)
return redis.call('ZCARD', KEYS[2])
"""


class Replicas:
    """This replica's heartbeat and the fleet's size."""

    def __init__(self, link: RedisLink, replica_id: str) -> None:
        self.link = link
        self.replica_id = replica_id
        self.heartbeat_key = link.key("replica", replica_id)
        self.index_key = link.key("replicas")
        self._value = orjson.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": int(time.time())})
        self._beat = link.script(_BEAT)
        self._live = 1
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def live(self) -> int:
        """How many replicas were alive at the last heartbeat (at least this one; kept while Redis is down)."""
        return self._live

    async def beat(self) -> int:
        """Refresh this replica's heartbeat and recount the fleet.

        Raises:
            FleetUnavailable: Redis is down.
        """
        count = await self._beat([self.heartbeat_key, self.index_key], [self.replica_id, self._value, TTL_SECONDS])
        self._live = max(1, int(count))
        return self._live

    async def is_alive(self, replica_id: str) -> bool:
        """Whether ``replica_id``'s heartbeat is current.

        Raises:
            FleetUnavailable: Redis is down.
        """
        return bool(await self.link.do(lambda client: client.exists(self.link.key("replica", replica_id))))

    async def start(self) -> None:
        with contextlib.suppress(FleetUnavailable):  # a replica may start while Redis is down; readiness says so
            await self.beat()
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="patchbay-fleet-heartbeat")

    async def stop(self) -> None:
        """Stop beating and leave the fleet at once (the others see it at their next beat, not after the TTL)."""
        if self._task is not None:
            self._stopping = True  # as for the bus: redis-py can absorb a cancellation that lands in a command
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(FleetUnavailable):
            await self.link.do(self._leave)

    async def _leave(self, client: aioredis.Redis) -> None:
        pipe = client.pipeline(transaction=True)
        pipe.delete(self.heartbeat_key)
        pipe.zrem(self.index_key, self.replica_id)
        await pipe.execute()

    async def _run(self) -> None:
        while not self._stopping:
            await asyncio.sleep(BEAT_SECONDS)
            with contextlib.suppress(FleetUnavailable):
                await self.beat()
