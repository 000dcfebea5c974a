"""What a client sends for one replica but posts to another: answers to requests the server sent it, and
``notifications/cancelled`` for a request running elsewhere.

A request to the client (sampling, elicitation, roots) is registered in ``{p}pend:{sid}`` (request id → replica)
before the client can see it; its answer, POSTed to any replica, is looked up there and sent over the bus to the
replica that waits (bus kind ``answer``). A client request that runs longer than ``TRACK_AFTER_SECONDS`` is
registered in ``{p}infl:{sid}`` so that a cancellation landing elsewhere reaches it (bus kind ``cancel``); quick
requests never pay a Redis round trip, and a cancellation for one not registered (yet) is broadcast instead.
Registrations and their removals are written in the background, all those due at once in one pipeline: under load,
when many requests pass the mark together, they cost one round trip, not one each.
Progress notifications need nothing here: they ride the request's own response stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from patchbay.errors import RpcError
from patchbay.fleet.bus import Bus
from patchbay.fleet.link import FleetUnavailable, RedisLink
from patchbay.protocol import jsonrpc
from patchbay.transport.sessions import CLIENT_CANCELLED

if TYPE_CHECKING:
    from patchbay.transport.sessions import Session

log = logging.getLogger("patchbay.fleet")

TRACK_AFTER_SECONDS = 0.05  # as streamable_http.WATCH_AFTER_SECONDS: a quick call is over before anyone cancels
REGISTRY_TTL_MS = 3_600_000  # registries of a session outlive any one request; each write refreshes it
ANSWER, CANCEL, ENDED = "answer", "cancel", "session_ended"


def unavailable(what: str) -> RpcError:
    """The clear error a request gets when it needs Redis and Redis is down (HTTP 503 where the transport answers)."""
    return RpcError(jsonrpc.INTERNAL_ERROR, str(FleetUnavailable(what)), status=503)


class Router:
    """Routes answers and cancellations to the replica that waits; ``find(sid)`` is this replica's session."""

    def __init__(self, link: RedisLink, bus: Bus, replica_id: str, find: Callable[[str], Session | None]) -> None:
        self.link = link
        self.bus = bus
        self.replica_id = replica_id
        self.find = find
        self.request_prefix = f"srv-{replica_id}-"  # ids of requests to a client never collide across replicas
        self.running = Registry(link)
        bus.on(ANSWER, self._on_answer)
        bus.on(CANCEL, self._on_cancel)

    # -- requests to the client ---------------------------------------------------------------------------

    async def asking(self, session: Session, request_id: str) -> None:
        """Register that this replica waits for the answer to ``request_id``.

        Raises:
            RpcError: Redis is down (503): the answer could land where nobody knows who waits.
        """
        key = self.link.key("pend", session.sid)
        try:
            await self.link.do(lambda c: _hset(c, key, request_id.encode(), self.replica_id.encode()))
        except FleetUnavailable:
            raise unavailable("asking the client (sampling, elicitation, roots)") from None

    async def asked(self, session: Session, request_id: str) -> None:
        """The answer came (or the wait ended): forget the registration. Best effort: the key expires anyway."""
        key = self.link.key("pend", session.sid)
        with contextlib.suppress(FleetUnavailable):
            await self.link.do(lambda c: c.hdel(key, request_id.encode()))

    async def answer(self, session: Session, message: dict[str, Any]) -> bool:
        """Send a client's answer to the replica waiting for it; False when nobody waits for that id.

        Raises:
            RpcError: Redis is down (503).
        """
        key, request_id = self.link.key("pend", session.sid), str(message.get("id"))
        try:
            owner = _text(await self.link.do(lambda c: c.hget(key, request_id.encode())))
            if owner is None:
                return False
            if owner == self.replica_id:
                return session.answer(message)
            await self.bus.send_to(owner, ANSWER, sid=session.sid, message=message)
        except FleetUnavailable:
            raise unavailable("answering a request from the server") from None
        return True

    def _on_answer(self, message: dict[str, Any]) -> None:
        session = self.find(str(message.get("sid")))
        answer = message.get("message")
        if session is not None and isinstance(answer, dict) and not session.answer(answer):
            log.info("fleet: an answer routed here found no request waiting for it (already answered?)")

    # -- cancellation -------------------------------------------------------------------------------------

    def track(self, session: Session, request_id: Any) -> Callable[[], None]:
        """Make the running request ``request_id`` cancellable from other replicas once it has run for a while;
        returns what to call when it ends."""
        field = orjson.dumps(request_id)
        key = self.link.key("infl", session.sid)
        registered = False

        def register() -> None:
            nonlocal registered
            registered = True
            self.running.put(key, field, self.replica_id.encode())

        handle = asyncio.get_running_loop().call_later(TRACK_AFTER_SECONDS, register)

        def untrack() -> None:
            handle.cancel()
            if registered:
                self.running.put(key, field, None)

        return untrack

    async def cancel(self, session: Session, request_id: Any) -> bool:
        """Send ``notifications/cancelled`` for ``request_id`` to the replica running it (or to all, when it has
        not registered yet).

        Raises:
            RpcError: Redis is down (503).
        """
        key, field = self.link.key("infl", session.sid), orjson.dumps(request_id)
        try:
            owner = _text(await self.link.do(lambda c: c.hget(key, field)))
            if owner is None:
                await self.bus.broadcast(CANCEL, sid=session.sid, id=request_id)
                return False
            await self.bus.send_to(owner, CANCEL, sid=session.sid, id=request_id)
        except FleetUnavailable:
            raise unavailable("cancelling a request running on another replica") from None
        return True

    def _on_cancel(self, message: dict[str, Any]) -> None:
        session = self.find(str(message.get("sid")))
        task = session.inflight.get(message.get("id")) if session is not None and session.inflight else None
        if task is not None:
            task.cancel(CLIENT_CANCELLED)

    # -- DELETE -------------------------------------------------------------------------------------------

    async def ended(self, sid: str) -> None:
        """Tell the other replicas a session was deleted, so they end its streams and running requests and refuse
        its id (the session store handles the message)."""
        with contextlib.suppress(FleetUnavailable):  # else the denylist refuses it everywhere within CACHE_SECONDS
            await self.bus.broadcast(ENDED, sid=sid)


class Registry:
    """Writes to the registries of running requests, in order, in the background: every write queued while the
    previous pipeline was out goes in the next one. Best effort: while Redis is down they are dropped (a
    cancellation for an unregistered request is broadcast; a stale entry names a replica that ignores it)."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.queued: list[tuple[str, bytes, bytes | None]] = []  # (key, field, replica or None to remove)
        self.writer: asyncio.Task[None] | None = None
        self.pipelines = 0  # round trips sent

    def put(self, key: str, field: bytes, value: bytes | None) -> None:
        self.queued.append((key, field, value))
        if self.writer is None:
            self.writer = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        try:
            while self.queued:
                batch, self.queued = self.queued, []
                self.pipelines += 1
                with contextlib.suppress(FleetUnavailable):
                    await self.link.do(functools.partial(_apply_writes, batch=batch))
        finally:
            self.writer = None


async def _apply_writes(client: Any, batch: list[tuple[str, bytes, bytes | None]]) -> None:
    async with client.pipeline(transaction=False) as pipe:
        for key, field, value in batch:
            if value is None:
                pipe.hdel(key, field)
            else:
                pipe.hset(key, field, value)
                pipe.pexpire(key, REGISTRY_TTL_MS)
        await pipe.execute()


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


async def _hset(client: Any, key: str, field: bytes, value: bytes) -> None:
    async with client.pipeline(transaction=False) as pipe:
        pipe.hset(key, field, value)
        pipe.pexpire(key, REGISTRY_TTL_MS)
        await pipe.execute()
