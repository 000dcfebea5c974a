"""2025-era sessions across a fleet: sealed, self-describing session ids, with Redis only for what cannot be sealed.

``Mcp-Session-Id`` is a sealed payload (``patchbay.fleet.sealed``): the random session id (``sid``), its owner
digest, the negotiated version, the client's capabilities and name, when it was issued and when it expires. Any
replica opens it without a lookup, so a killed replica or a Redis
restart never answers "session not found" (clients do not re-initialise after a 404). Redis holds the mutable
state (log level, subscriptions), the DELETE denylist, the one-GET-stream lock and the routing of answers and
cancellations (``patchbay.fleet.routing``). docs/deploy.md, "Sessions across replicas", says why.

A replica keeps what it read of a session's shared state and serves that session's next requests without Redis
for up to ``CACHE_SECONDS``: every change (log level, subscriptions, DELETE) is broadcast on the bus, and a replica
drops its copy when one arrives, when the bus resubscribes (messages may have been missed) or Redis comes back.
The short lifetime bounds how long a lost message can leave a copy stale. A DELETE'd session is remembered as
ended for good (its id can never become valid again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from patchbay.fleet.bus import Bus
from patchbay.fleet.link import FleetUnavailable, RedisLink
from patchbay.fleet.routing import ENDED, Router, unavailable
from patchbay.fleet.sealed import Sealed, SealedIds, fit
from patchbay.transport.sessions import EventLogFactory, Session

if TYPE_CHECKING:
    from patchbay.fleet import Fleet
    from patchbay.settings import Settings

log = logging.getLogger("patchbay.fleet")

LOCAL_MAX = 1024
# How long a replica trusts its copy of a session's shared state without asking Redis. Changes are broadcast and drop
# the copies at once; this only bounds a copy's staleness when a bus message is lost without the bus noticing.
CACHE_SECONDS = 2.0
ENDED_MAX = 4096  # DELETE'd sessions remembered here (the most recent); older ones are asked of Redis again
STATE = "session_state"  # bus kind: a session's log level or subscriptions changed; drop your copy

__all__ = ["FleetSessionStore", "Sealed", "SealedIds", "fleet_store"]


@dataclass(slots=True)
class _Local:
    session: Session
    exp: int
    spilled: bool
    fresh_until: float = 0.0  # monotonic: until then the session's shared state here is the cached copy
    epoch: int = 0  # the store's epoch when the copy was read; a resync moves the epoch on
    changes: int = 0  # change notices received: a read that overlapped one may be older than the change


class FleetSessionStore:
    """The SessionStore of a replica: sealed ids, shared state in Redis, and the sessions this replica has
    recently served (kept while they have live plumbing here: streams, requests to the client, running calls)."""

    def __init__(
        self,
        link: RedisLink,
        bus: Bus,
        replica_id: str,
        ids: SealedIds,
        lifetime: float,
        *,
        stream_lock_seconds: float = 30.0,
        events: EventLogFactory | None = None,
        local_max: int = LOCAL_MAX,
    ) -> None:
        self.link = link
        self.replica_id = replica_id
        self.ids = ids
        self.lifetime = int(lifetime)
        self.stream_lock_ms = max(1000, int(stream_lock_seconds * 1000))
        self.events = events
        self.local_max = local_max
        self._local: OrderedDict[str, _Local] = OrderedDict()  # by session id as sent, least recently used first
        self._by_sid: dict[str, _Local] = {}
        self._keepers: dict[str, asyncio.Task[None]] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()  # sids DELETE'd (here or elsewhere), newest last
        self.bus = bus
        self.cache_seconds = CACHE_SECONDS
        self._epoch = 0
        self.router = Router(link, bus, replica_id, self.find)
        bus.on(ENDED, self._on_ended)
        bus.on(STATE, self._on_state)
        bus.on_resync(self.drop_cached)
        link.on_up(self.drop_cached)
        self.request_prefix = self.router.request_prefix
        self._keep = link.script(_KEEP_IF_MINE)
        self._release = link.script(_DELETE_IF_MINE)

    # -- SessionStore --------------------------------------------------------------------------------------

    async def create(
        self, version: str, client_caps: dict[str, Any], client_info: Any, owner: str | None = None
    ) -> Session:
        now = int(self.ids.clock())
        caps, info, spilled = fit(client_caps, client_info)
        sealed = Sealed(secrets.token_hex(16), owner, version, caps, info, now, now + self.lifetime, spilled)
        session_id = self.ids.seal(sealed)
        entry = self._remember(session_id, sealed)
        self._cached(entry, self._epoch, 0)  # nothing shared yet but what this replica writes below
        if spilled:  # best effort: without it the session still works, knowing only which capabilities exist
            entry.session.client_caps, entry.session.client_info = client_caps, client_info
            full = orjson.dumps({"c": client_caps, "i": client_info})
            try:
                await self.link.do(lambda c: c.hset(self._state(sealed.sid), "x", full))
                await self.link.do(lambda c: c.pexpireat(self._state(sealed.sid), sealed.exp * 1000))
            except FleetUnavailable:
                log.warning("session %s: its large client capabilities stay on this replica only", sealed.sid[:8])
        return entry.session

    async def get(self, session_id: str) -> Session | None:
        entry = self._local.get(session_id)
        if entry is None:
            sealed = self.ids.unseal(session_id)
            if sealed is None or sealed.sid in self._ended:
                return None
            entry = self._by_sid.get(sealed.sid) or self._remember(session_id, sealed)
        elif entry.exp <= self.ids.clock():
            self._forget(entry)
            return None
        else:
            self._local.move_to_end(session_id)
        if self._fresh(entry):
            return entry.session
        return await self._refresh(entry)

    async def _refresh(self, entry: _Local) -> Session | None:
        """Read whether the session ended elsewhere and the state another replica may have changed (one round
        trip), and keep the copy unless a change notice or a resync overlapped the read."""
        session, epoch, changes = entry.session, self._epoch, entry.changes
        key_del, key_state = self.link.key("sdel", session.sid), self._state(session.sid)
        try:
            ended, state = await self.link.do(lambda c: _read(c, key_del, key_state))
        except FleetUnavailable:
            return session  # the seal is proof enough; its state is the last known here
        if ended:
            self._end(session.sid)
            return None
        _apply(session, state)
        self._cached(entry, epoch, changes)
        return session

    def _fresh(self, entry: _Local) -> bool:
        # Only while the bus listens: a copy is trusted because changes would have been heard.
        return (
            entry.fresh_until > time.monotonic()
            and entry.epoch == self._epoch
            and self.link.up
            and self.bus.subscribed.is_set()
        )

    def _cached(self, entry: _Local, epoch: int, changes: int) -> None:
        if epoch == self._epoch and changes == entry.changes:
            entry.epoch, entry.fresh_until = epoch, time.monotonic() + self.cache_seconds

    def drop_cached(self) -> None:
        """Stop trusting every copy of shared state (the bus may have missed changes); the next request of each
        session reads Redis again."""
        self._epoch += 1

    async def delete(self, session_id: str) -> bool:
        sealed = self.ids.unseal(session_id)
        if sealed is None:
            return False
        ttl_ms = max(1, sealed.exp * 1000 - int(self.ids.clock() * 1000))
        key_del, key_state = self.link.key("sdel", sealed.sid), self._state(sealed.sid)
        try:
            first = await self.link.do(lambda c: _deny(c, key_del, key_state, ttl_ms))
        except FleetUnavailable:
            raise unavailable("ending a session (DELETE)") from None
        self._end(sealed.sid)
        await self.router.ended(sealed.sid)
        return bool(first)

    async def save(self, session: Session) -> None:
        subs = sorted(session.subscriptions or ())
        fields = {"level": session.log_level, "subs": orjson.dumps(subs)}
        key, entry = self._state(session.sid), self._by_sid.get(session.sid)
        exp_ms = (entry.exp if entry is not None else int(self.ids.clock()) + self.lifetime) * 1000
        try:
            await self.link.do(lambda c: _write(c, key, fields, exp_ms))
        except FleetUnavailable:
            raise unavailable("changing the session's log level or subscriptions") from None
        with contextlib.suppress(FleetUnavailable):  # saved: other replicas' copies go stale in CACHE_SECONDS
            await self.bus.broadcast(STATE, sid=session.sid)

    def __len__(self) -> int:
        return sum(1 for entry in self._local.values() if _live(entry.session))

    def close_all(self) -> None:
        for entry in list(self._local.values()):
            self._forget(entry)
        for task in self._keepers.values():
            task.cancel()
        self._keepers.clear()

    def _on_state(self, message: dict[str, Any]) -> None:
        entry = self._by_sid.get(str(message.get("sid")))
        if entry is not None:
            entry.changes += 1
            entry.fresh_until = 0.0

    def _on_ended(self, message: dict[str, Any]) -> None:
        self._end(str(message.get("sid")))

    def _end(self, sid: str) -> None:
        """The session was DELETE'd: close its plumbing here and refuse its id from now on without asking Redis."""
        self._ended[sid] = None
        self._ended.move_to_end(sid)
        if len(self._ended) > ENDED_MAX:
            self._ended.popitem(last=False)
        entry = self._by_sid.get(sid)
        if entry is not None:
            self._forget(entry)

    def find(self, sid: str) -> Session | None:
        """The session with this random id if this replica holds it (for answers routed here)."""
        entry = self._by_sid.get(sid)
        return entry.session if entry is not None else None

    # -- Shared (the hooks a fleet session gives the transport) -------------------------------------------

    async def claim_stream(self, session: Session) -> bool:
        key = self.link.key("get", session.sid)
        try:
            claimed = await self.link.do(
                lambda c: c.set(key, self.replica_id.encode(), nx=True, px=self.stream_lock_ms)
            )
        except FleetUnavailable:
            raise unavailable("the session's GET stream") from None
        if claimed:
            self._keepers[session.sid] = asyncio.ensure_future(self._keep_stream(key))
        return bool(claimed)

    async def _keep_stream(self, key: str) -> None:
        # Refreshed at a third of its lifetime, busy or idle, so one missed refresh (a slow Redis) keeps the lock.
        while True:
            await asyncio.sleep(self.stream_lock_ms / 3000)
            with contextlib.suppress(FleetUnavailable):
                await self._keep([key], [self.replica_id, self.stream_lock_ms])

    async def keep_stream(self, session: Session) -> None:
        """Refresh the GET stream's lock now (its keeper task also does, every third of its lifetime).

        Raises:
            RpcError: Redis is down (503).
        """
        try:
            await self._keep([self.link.key("get", session.sid)], [self.replica_id, self.stream_lock_ms])
        except FleetUnavailable:
            raise unavailable("the session's GET stream") from None

    async def release_stream(self, session: Session) -> None:
        keeper = self._keepers.pop(session.sid, None)
        if keeper is not None:
            keeper.cancel()
        with contextlib.suppress(FleetUnavailable):  # else the lock expires by itself
            await self._release([self.link.key("get", session.sid)], [self.replica_id])

    async def asking(self, session: Session, request_id: str) -> None:
        await self.router.asking(session, request_id)

    async def asked(self, session: Session, request_id: str) -> None:
        await self.router.asked(session, request_id)

    async def answer(self, session: Session, message: dict[str, Any]) -> bool:
        return await self.router.answer(session, message)

    def track(self, session: Session, request_id: Any) -> Callable[[], None]:
        return self.router.track(session, request_id)

    async def cancel(self, session: Session, request_id: Any) -> bool:
        return await self.router.cancel(session, request_id)

    # -- this replica's sessions ---------------------------------------------------------------------------

    def _state(self, sid: str) -> str:
        return self.link.key("s", sid)

    def _remember(self, session_id: str, sealed: Sealed) -> _Local:
        session = Session(
            session_id, sealed.version, sealed.caps, sealed.client_info, sealed.owner, sid=sealed.sid, shared=self
        )
        if self.events is not None:
            session.events = self.events
        entry = _Local(session, sealed.exp, sealed.spilled)
        self._local[session_id] = entry
        self._by_sid[sealed.sid] = entry
        if len(self._local) > self.local_max:
            self._evict()
        return entry

    def _evict(self) -> None:
        """Drop the least recently used sessions without live plumbing here; they come back from their id."""
        for session_id, entry in list(self._local.items()):
            if len(self._local) <= self.local_max:
                return
            if not _live(entry.session):
                del self._local[session_id]
                self._by_sid.pop(entry.session.sid, None)

    def _forget(self, entry: _Local) -> None:
        self._local.pop(entry.session.id, None)
        self._by_sid.pop(entry.session.sid, None)
        entry.session.close()


def _live(session: Session) -> bool:
    return bool(session.standalone is not None or session.inflight or (session.requests and len(session.requests)))


async def _read(client: Any, key_del: str, key_state: str) -> tuple[bool, dict[bytes, bytes]]:
    async with client.pipeline(transaction=False) as pipe:
        pipe.exists(key_del)
        pipe.hgetall(key_state)
        ended, state = await pipe.execute()
    return bool(ended), state


async def _deny(client: Any, key_del: str, key_state: str, ttl_ms: int) -> bool:
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(key_del, b"1", nx=True, px=ttl_ms)
        pipe.delete(key_state)
        first, _ = await pipe.execute()
    return bool(first)


async def _write(client: Any, key: str, fields: dict[str, Any], exp_ms: int) -> None:
    async with client.pipeline(transaction=False) as pipe:
        pipe.hset(key, mapping=fields)
        pipe.pexpireat(key, exp_ms)
        await pipe.execute()


def _apply(session: Session, state: dict[bytes, bytes]) -> None:
    """Take the shared state into the local session object (another replica may have changed it)."""
    level = state.get(b"level")
    session.log_level = level.decode() if level else "info"
    subs = state.get(b"subs")
    try:
        uris = orjson.loads(subs) if subs else None
    except orjson.JSONDecodeError:
        uris = None
    session.subscriptions = {u for u in uris if isinstance(u, str)} if isinstance(uris, list) else None
    spilled = state.get(b"x")
    if spilled:
        try:
            full = orjson.loads(spilled)
        except orjson.JSONDecodeError:
            return
        if isinstance(full, dict) and isinstance(full.get("c"), dict):
            session.client_caps, session.client_info = full["c"], full.get("i")


_KEEP_IF_MINE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_DELETE_IF_MINE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def fleet_store(settings: Settings, fleet: Fleet, events: EventLogFactory | None = None) -> FleetSessionStore:
    """This replica's session store: ids sealed under ``server.secret``, opened under it and
    ``server.previous_secrets`` (the settings already refused a fleet without ``server.secret``)."""
    server = settings.server
    ring = [s.get_secret_value().encode() for s in ([server.secret] if server.secret else [])]
    ring += [s.get_secret_value().encode() for s in server.previous_secrets]
    return FleetSessionStore(
        fleet.link,
        fleet.bus,
        fleet.replica_id,
        SealedIds(ring),
        settings.redis.session_lifetime_seconds,
        stream_lock_seconds=2 * server.sse_keepalive_seconds,
        events=events,
    )
