"""Fan-out between replicas over Redis pub/sub: one channel every replica hears, one channel per replica.

A message is an orjson object ``{"k": kind, "from": replica_id, ...fields}``. Pub/sub is fire-and-forget: a
replica that was disconnected misses what was sent meanwhile, so after every resubscription the bus calls its
``on_resync`` handlers, and whoever caches shared state re-reads it then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from patchbay.fleet.link import RedisLink

log = logging.getLogger("patchbay.fleet")

Handler = Callable[[dict[str, Any]], "Awaitable[None] | None"]
Resync = Callable[[], "Awaitable[None] | None"]
BACKOFF_FIRST = 0.05
BACKOFF_CAP = 2.0
POLL_SECONDS = 1.0


class Bus:
    """Broadcast to every other replica, or send to one; handlers run in the reader task, one message at a time,
    so they must be quick (start a task for slow work)."""

    def __init__(self, link: RedisLink, replica_id: str) -> None:
        self.link = link
        self.replica_id = replica_id
        self.everyone = link.key("bus")
        self.mine = link.key("to", replica_id)
        self.subscribed = asyncio.Event()  # set while the reader holds both subscriptions
        self.resubscriptions = 0
        self._handlers: dict[str, list[Handler]] = {}
        self._resync: list[Resync] = []
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False

    def on(self, kind: str, handler: Handler) -> None:
        """Run ``handler(message)`` for every message of ``kind`` another replica sends here."""
        self._handlers.setdefault(kind, []).append(handler)

    def on_resync(self, handler: Resync) -> None:
        """Run ``handler()`` after the bus resubscribed following a drop: messages may have been missed."""
        self._resync.append(handler)

    async def broadcast(self, kind: str, **fields: Any) -> None:
        """Send to every replica but this one.

        Raises:
            FleetUnavailable: Redis is down.
        """
        await self._publish(self.everyone, kind, fields)

    async def send_to(self, replica_id: str, kind: str, **fields: Any) -> None:
        """Send to one replica (this one included, when it is the target).

        Raises:
            FleetUnavailable: Redis is down.
        """
        await self._publish(self.link.key("to", replica_id), kind, fields)

    async def start(self) -> None:
        if self._reader is None:
            self._stopping = False
            self._reader = asyncio.create_task(self._read(), name="patchbay-fleet-bus")

    async def stop(self) -> None:
        if self._reader is not None:
            # The flag too: a cancellation that lands inside redis-py's read can be absorbed there; the reader
            # then sees the flag at its next poll.
            self._stopping = True
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        self.subscribed.clear()

    async def _publish(self, channel: str, kind: str, fields: dict[str, Any]) -> None:
        data = orjson.dumps({**fields, "k": kind, "from": self.replica_id})
        await self.link.do(lambda client: client.publish(channel, data))

    async def _read(self) -> None:
        delay, missed = BACKOFF_FIRST, False
        while not self._stopping:
            pubsub = self.link.subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.everyone, self.mine)
                self.subscribed.set()
                if missed:
                    self.resubscriptions += 1
                    log.info("fleet bus resubscribed; re-reading shared state")
                    await self._run_resync()
                delay, missed = BACKOFF_FIRST, False
                while not self._stopping:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_SECONDS)
                    if message is not None and message.get("type") == "message":
                        await self._deliver(message["channel"], message["data"])
            except self.link.outage as exc:
                self.subscribed.clear()
                if not missed:
                    log.warning("fleet bus lost its subscription (%s); resubscribing", exc)
                self.link.mark_down(exc)
                missed = True
            finally:
                with contextlib.suppress(*self.link.outage):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_CAP)

    async def _deliver(self, channel: bytes, data: bytes) -> None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("fleet bus: dropped a message that is not JSON on %s", channel.decode(errors="replace"))
            return
        if not isinstance(message, dict):
            return
        if message.get("from") == self.replica_id and channel.decode(errors="replace") == self.everyone:
            return  # a broadcast comes back to its sender on the shared channel
        for handler in self._handlers.get(str(message.get("k")), ()):
            try:
                result = handler(message)
                if result is not None:
                    await result
            except Exception:  # one handler's bug must not stop the fleet's fan-out
                log.exception("fleet bus handler for %r failed", message.get("k"))

    async def _run_resync(self) -> None:
        for handler in self._resync:
            try:
                result = handler()
                if result is not None:
                    await result
            except Exception:
                log.exception("fleet bus resync handler failed")
