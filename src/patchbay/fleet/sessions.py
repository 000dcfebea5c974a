"""2025-era sessions across a fleet: sealed, self-describing session ids, with Redis only for what cannot be sealed.

``Mcp-Session-Id`` is ``pb1.`` + base64url(key id ‖ nonce ‖ AES-256-GCM ciphertext) of a compact JSON payload:
the random session id (``sid``), its owner digest, the negotiated version, the client's capabilities and name,
when it was issued and when it expires. Any replica opens it without a lookup, so a killed replica or a Redis
restart never answers "session not found" (clients do not re-initialise after a 404). Redis holds the mutable
state (log level, subscriptions), the DELETE denylist, the one-GET-stream lock and the routing of answers and
cancellations (``patchbay.fleet.routing``). docs/deploy.md, "Sessions across replicas", says why.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from patchbay.fleet.bus import Bus
from patchbay.fleet.link import FleetUnavailable, RedisLink
from patchbay.fleet.routing import Router, unavailable
from patchbay.transport.sessions import EventLogFactory, Session

if TYPE_CHECKING:
    from patchbay.fleet import Fleet
    from patchbay.settings import Settings

log = logging.getLogger("patchbay.fleet")

PREFIX = "pb1."
AAD = b"patchbay-session-v1"
KEY_ID_BYTES = 2
NONCE_BYTES = 12  # NIST SP 800-38D §8.2: 96-bit random nonces
TAG_BYTES = 16
MAX_ID_CHARS = 4096  # a sealed id stays far below this; longer ones are refused before decoding
SEAL_BUDGET = 1024  # payload bytes; past this the full capabilities live in Redis (see _fit)
KNOWN_CAPS = ("elicitation", "experimental", "extensions", "roots", "sampling", "tasks")
LOCAL_MAX = 1024


@dataclass(frozen=True, slots=True)
class Sealed:
    """What a session id carries."""

    sid: str
    owner: str | None
    version: str
    caps: dict[str, Any]
    client_info: dict[str, Any] | None
    iat: int
    exp: int
    spilled: bool = False  # the full capabilities did not fit and are kept in Redis (field "x")


class SealedIds:
    """Seals session payloads under a key ring: the first secret seals, every secret unseals (rotation)."""

    def __init__(self, secrets_: Sequence[bytes], *, clock: Callable[[], float] = time.time) -> None:
        """Raises:
        ValueError: no secret.
        """
        if not secrets_:
            raise ValueError("sealed session ids need at least one secret (server.secret)")
        self.clock = clock
        keys = [_derive(secret) for secret in secrets_]
        self._primary = (_key_id(keys[0]), AESGCM(keys[0]))
        self._ring: dict[bytes, list[AESGCM]] = {}
        for key in keys:  # two ids may collide in 2 bytes: try each key under it
            self._ring.setdefault(_key_id(key), []).append(AESGCM(key))

    def seal(self, sealed: Sealed) -> str:
        payload = {"s": sealed.sid, "o": sealed.owner, "v": sealed.version, "c": sealed.caps, "t": sealed.iat}
        payload["e"] = sealed.exp
        if sealed.client_info is not None:
            payload["i"] = sealed.client_info
        if sealed.spilled:
            payload["x"] = 1
        key_id, aead = self._primary
        nonce = secrets.token_bytes(NONCE_BYTES)
        return PREFIX + _b64(key_id + nonce + aead.encrypt(nonce, orjson.dumps(payload), AAD))

    def unseal(self, session_id: str) -> Sealed | None:
        """The payload of ``session_id``, or None: malformed, tampered, sealed under a key not in the ring, or
        expired. Never raises: whatever a client sends is at worst an unknown session."""
        if not session_id.startswith(PREFIX) or len(session_id) > MAX_ID_CHARS:
            return None
        text = session_id[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return None
        # One id, one spelling: the last character's unused bits must be zero (RFC 4648 §3.5, canonical encoding).
        if len(raw) < KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES or _b64(raw) != text:
            return None
        nonce, sealed = raw[KEY_ID_BYTES : KEY_ID_BYTES + NONCE_BYTES], raw[KEY_ID_BYTES + NONCE_BYTES :]
        for aead in self._ring.get(raw[:KEY_ID_BYTES], ()):
            try:
                plain = aead.decrypt(nonce, sealed, AAD)
            except InvalidTag:
                continue
            return self._parse(plain)
        return None

    def _parse(self, plain: bytes) -> Sealed | None:
        try:
            data = orjson.loads(plain)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        sid, owner, version, caps, iat, exp = (data.get(k) for k in ("s", "o", "v", "c", "t", "e"))
        info = data.get("i")
        if not (isinstance(sid, str) and isinstance(version, str) and isinstance(caps, dict)):
            return None
        if not (isinstance(iat, int) and isinstance(exp, int)) or (owner is not None and not isinstance(owner, str)):
            return None
        if exp <= self.clock():
            return None
        return Sealed(sid, owner, version, caps, info if isinstance(info, dict) else None, iat, exp, "x" in data)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _derive(secret: bytes) -> bytes:
    # RFC 5869: one AES-256 key per configured secret, bound to this use by HKDF's info.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"patchbay session ids v1").derive(secret)


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"patchbay key id\x00" + key).digest()[:KEY_ID_BYTES]


def _fit(caps: dict[str, Any], info: Any) -> tuple[dict[str, Any], dict[str, Any] | None, bool]:
    """What goes into the seal: all of it when small; otherwise which known capabilities the client has (their
    settings go to Redis) and a shortened name, so the id stays short and works while Redis is down."""
    client = {k: str(info[k])[:64] for k in ("name", "version") if k in info} if isinstance(info, dict) else None
    if len(orjson.dumps(caps)) + len(orjson.dumps(client)) <= SEAL_BUDGET:
        return caps, client, False
    return {k: {} for k in KNOWN_CAPS if k in caps}, client, True


@dataclass(slots=True)
class _Local:
    session: Session
    exp: int
    spilled: bool


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
        self.router = Router(link, bus, replica_id, self.find)
        self.request_prefix = self.router.request_prefix
        self._keep = link.script(_KEEP_IF_MINE)
        self._release = link.script(_DELETE_IF_MINE)

    # -- SessionStore --------------------------------------------------------------------------------------

    async def create(
        self, version: str, client_caps: dict[str, Any], client_info: Any, owner: str | None = None
    ) -> Session:
        now = int(self.ids.clock())
        caps, info, spilled = _fit(client_caps, client_info)
        sealed = Sealed(secrets.token_hex(16), owner, version, caps, info, now, now + self.lifetime, spilled)
        session_id = self.ids.seal(sealed)
        entry = self._remember(session_id, sealed)
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
            if sealed is None:
                return None
            entry = self._by_sid.get(sealed.sid) or self._remember(session_id, sealed)
        elif entry.exp <= self.ids.clock():
            self._forget(entry)
            return None
        else:
            self._local.move_to_end(session_id)
        session = entry.session
        key_del, key_state = self.link.key("sdel", session.sid), self._state(session.sid)
        try:  # one round trip: ended elsewhere? and the state another replica may have changed
            ended, state = await self.link.do(lambda c: _read(c, key_del, key_state))
        except FleetUnavailable:
            return session  # the seal is proof enough; its state is the last known here
        if ended:
            self._forget(entry)
            return None
        _apply(session, state)
        return session

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
        entry = self._by_sid.get(sealed.sid)
        if entry is not None:
            self._forget(entry)
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

    def __len__(self) -> int:
        return sum(1 for entry in self._local.values() if _live(entry.session))

    def close_all(self) -> None:
        for entry in list(self._local.values()):
            self._forget(entry)
        for task in self._keepers.values():
            task.cancel()
        self._keepers.clear()

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
