"""2025-era sessions (``Mcp-Session-Id``) behind a small store interface, with idle expiry and caps.

A session holds what the handshake negotiated (version, client capabilities, log level, subscriptions) and the
live plumbing of this process (answers awaited from the client, running requests, resumable streams). The store
interface is async so that a fleet's store (``patchbay.fleet.sessions``, sealed ids plus Redis) can implement it;
the live plumbing always stays with the process holding the stream, and a fleet session's ``shared`` hooks route
what lands on another replica to that process.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from patchbay.auth.principal import Principal
from patchbay.protocol.outstanding import Outstanding
from patchbay.transport.sse import EventLog, frame


def owner_of(principal: Principal | None) -> str | None:
    """Whom a session belongs to: a digest of the principal's kind, subject and OAuth client (None: anonymous).

    MCP security best practices, "Session Hijacking": a session id is not a credential, so a request that names
    a session must come from the principal that opened it; anyone else is told the session does not exist.
    """
    if principal is None:
        return None
    identity = f"{principal.kind}\x00{principal.subject}\x00{principal.client_id or ''}"
    return hashlib.sha256(identity.encode()).hexdigest()


CLIENT_CANCELLED = "cancelled by the client (notifications/cancelled)"  # the reason a task is cancelled with


def _memory_log(session: Session) -> EventLog:
    return EventLog()


EventLogFactory = Callable[["Session"], EventLog]
"""Makes the event log of a session's new SSE stream: in memory by default, shared by a fleet's store."""


class Shared(Protocol):
    """What a fleet adds to a session (None on a single node): its mutable state in the shared store, the
    one-GET-stream lock, and routing of what lands on another replica to the replica that waits for it.

    Methods that need the shared store raise RpcError (HTTP 503) when it is unreachable.
    """

    request_prefix: str  # ids of this replica's requests to the client never collide with another replica's

    async def save(self, session: Session) -> None: ...
    async def claim_stream(self, session: Session) -> bool: ...
    async def keep_stream(self, session: Session) -> None: ...
    async def release_stream(self, session: Session) -> None: ...
    async def asking(self, session: Session, request_id: str) -> None: ...
    async def asked(self, session: Session, request_id: str) -> None: ...
    async def answer(self, session: Session, message: dict[str, Any]) -> bool: ...
    def track(self, session: Session, request_id: Any) -> Callable[[], None]: ...
    async def cancel(self, session: Session, request_id: Any) -> bool: ...


class Session:
    __slots__ = (
        "client_caps",
        "client_info",
        "events",
        "id",
        "inflight",
        "last_seen",
        "log_level",
        "owner",
        "requests",
        "shared",
        "sid",
        "standalone",
        "streams",
        "subscriptions",
        "version",
    )

    def __init__(
        self,
        session_id: str,
        version: str,
        client_caps: dict[str, Any],
        client_info: Any,
        owner: str | None = None,
        *,
        sid: str | None = None,
        shared: Shared | None = None,
    ) -> None:
        self.id = session_id  # as sent to the client in Mcp-Session-Id
        self.sid = session_id if sid is None else sid  # the key of its shared state (a fleet: the sealed random id)
        self.shared = shared
        self.events: EventLogFactory = _memory_log
        self.owner = owner  # owner_of(the principal that sent initialize)
        self.version = version
        self.client_caps = client_caps
        self.client_info = client_info
        self.log_level = "info"  # until the client picks one with logging/setLevel
        self.last_seen = time.monotonic()
        self.subscriptions: set[str] | None = None
        self.requests: Outstanding | None = None  # made on the first request to the client
        self.inflight: dict[Any, asyncio.Task[Any]] | None = None
        self.streams: dict[str, EventLog] | None = None
        self.standalone: asyncio.Queue[bytes] | None = None

    async def set_level(self, level: str) -> None:
        """logging/setLevel. Raises RpcError (and keeps the old level) when a fleet's shared store is down."""
        before, self.log_level = self.log_level, level
        await self._save(lambda: setattr(self, "log_level", before))

    async def subscribe(self, uri: str) -> None:
        """resources/subscribe. Raises RpcError (subscribing nothing) when a fleet's shared store is down."""
        if self.subscriptions is None:
            self.subscriptions = set()
        if uri in self.subscriptions:
            return
        self.subscriptions.add(uri)
        await self._save(lambda: self.subscriptions.discard(uri) if self.subscriptions else None)

    async def unsubscribe(self, uri: str) -> None:
        if self.subscriptions is None or uri not in self.subscriptions:
            return
        self.subscriptions.discard(uri)
        await self._save(lambda: self.subscriptions.add(uri) if self.subscriptions is not None else None)

    async def _save(self, undo: Callable[[], object]) -> None:
        if self.shared is None:
            return
        try:
            await self.shared.save(self)
        except BaseException:
            undo()  # the client is told it failed: nothing changes
            raise

    def outstanding(self) -> Outstanding:
        """The requests this session's client has yet to answer (sampling, elicitation, roots)."""
        if self.requests is None:
            self.requests = Outstanding(self.shared.request_prefix if self.shared is not None else "srv-")
        return self.requests

    def answer(self, message: dict[str, Any]) -> bool:
        """Route a client's JSON-RPC response to the request waiting for it."""
        return self.requests.answer(message) if self.requests is not None else False

    def new_stream(self) -> EventLog:
        log = self.events(self)
        if self.streams is None:
            self.streams = {}
        if len(self.streams) >= 32:  # keep only recent streams' events for replay
            oldest = next(iter(self.streams))
            del self.streams[oldest]
        self.streams[log.id] = log
        return log

    def notify(self, message: dict[str, Any]) -> bool:
        """Queue a server notification on this session's open GET stream; False when no stream is open (or it is
        full): the notification is then dropped, as the client is not listening."""
        queue = self.standalone
        if queue is None or queue.full():
            return False
        queue.put_nowait(frame(orjson.dumps(message)))
        return True

    def close(self) -> None:
        if self.requests is not None:
            self.requests.cancel_all()
        for task in (self.inflight or {}).values():
            task.cancel()
        if self.standalone is not None:
            self.standalone.put_nowait(b"")


class SessionStore(Protocol):
    async def create(
        self, version: str, client_caps: dict[str, Any], client_info: Any, owner: str | None = None
    ) -> Session: ...

    async def get(self, session_id: str) -> Session | None:
        """The live session, or None when unknown, ended, expired or not a valid id. Touches it."""

    async def delete(self, session_id: str) -> bool: ...

    async def save(self, session: Session) -> None:
        """Store the session's mutable state (log level, subscriptions) where every replica reads it."""

    def __len__(self) -> int:
        """Sessions with live plumbing in this process."""

    def close_all(self) -> None: ...


class MemorySessionStore:
    """Sessions in this process, least recently used first; idle ones expire, and two caps evict.

    ``max_per_owner`` caps each principal's sessions (the anonymous callers of a server with public tools are one
    principal): a principal at its cap loses its own least recently used session. When the whole store is full,
    the least recently used session of the principal holding the most is evicted, so a crowd of anonymous or
    other callers cannot push a signed-in user's sessions out.
    """

    def __init__(
        self, *, idle_seconds: float = 1800, max_sessions: int = 10_000, max_per_owner: int | None = None
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self.max_per_owner = max_sessions if max_per_owner is None else max_per_owner
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._owners: dict[str | None, OrderedDict[str, None]] = {}  # owner → its session ids, LRU first

    # The async interface never suspends: a single node pays no more than a coroutine per call.
    async def create(
        self, version: str, client_caps: dict[str, Any], client_info: Any, owner: str | None = None
    ) -> Session:
        return self.open(version, client_caps, client_info, owner)

    async def get(self, session_id: str) -> Session | None:
        return self.lookup(session_id)

    async def delete(self, session_id: str) -> bool:
        return self.discard(session_id)

    async def save(self, session: Session) -> None:
        """Nothing to do: the session object is the state."""

    def open(self, version: str, client_caps: dict[str, Any], client_info: Any, owner: str | None = None) -> Session:
        self._expire()
        mine = self._owners.get(owner)
        while mine and len(mine) >= self.max_per_owner:
            self.discard(next(iter(mine)))
        while len(self._sessions) >= self.max_sessions:
            self.discard(self._victim(owner))
        session = Session(secrets.token_urlsafe(24), version, client_caps, client_info, owner)
        self._sessions[session.id] = session
        self._owners.setdefault(owner, OrderedDict())[session.id] = None
        return session

    def _victim(self, owner: str | None) -> str:
        """The session to evict when the store is full: the least recently used of the principal holding the
        most sessions; among equals ``owner``'s own first, then whoever holds the store's oldest session."""
        most = max(len(ids) for ids in self._owners.values())
        mine = self._owners.get(owner)
        if mine is not None and len(mine) == most:
            return next(iter(mine))
        oldest = next(iter(self._sessions.values()))
        if len(self._owners[oldest.owner]) == most:
            return oldest.id
        return next(iter(next(ids for ids in self._owners.values() if len(ids) == most)))

    def lookup(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_seen > self.idle_seconds:
            self.discard(session_id)
            return None
        session.last_seen = now
        self._sessions.move_to_end(session_id)
        self._owners[session.owner].move_to_end(session_id)
        return session

    def discard(self, session_id: str) -> bool:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        mine = self._owners[session.owner]
        del mine[session_id]
        if not mine:
            del self._owners[session.owner]
        session.close()
        return True

    def count(self, owner: str | None) -> int:
        """How many live sessions ``owner`` holds (None: the anonymous callers)."""
        return len(self._owners.get(owner, ()))

    def _expire(self) -> None:
        horizon = time.monotonic() - self.idle_seconds
        while self._sessions:
            session = next(iter(self._sessions.values()))
            if session.last_seen >= horizon:
                break
            self.discard(session.id)

    def __len__(self) -> int:
        return len(self._sessions)

    def close_all(self) -> None:
        for session_id in list(self._sessions):
            self.discard(session_id)
