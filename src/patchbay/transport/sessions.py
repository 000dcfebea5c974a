"""2025-era sessions (``Mcp-Session-Id``) behind a small store interface, with idle expiry and caps.

A session holds what the handshake negotiated (version, client capabilities, log level, subscriptions) and the
live plumbing of this process (answers awaited from the client, running requests, resumable streams). The store
interface is what a fleet-wide (Redis) store will implement; the live plumbing always stays with the process
holding the stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict
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


class Session:
    __slots__ = (
        "client_caps",
        "client_info",
        "id",
        "inflight",
        "last_seen",
        "log_level",
        "owner",
        "requests",
        "standalone",
        "streams",
        "subscriptions",
        "version",
    )

    def __init__(
        self, session_id: str, version: str, client_caps: dict[str, Any], client_info: Any, owner: str | None = None
    ) -> None:
        self.id = session_id
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

    def subscribe(self, uri: str) -> None:
        if self.subscriptions is None:
            self.subscriptions = set()
        self.subscriptions.add(uri)

    def unsubscribe(self, uri: str) -> None:
        if self.subscriptions is not None:
            self.subscriptions.discard(uri)

    def outstanding(self) -> Outstanding:
        """The requests this session's client has yet to answer (sampling, elicitation, roots)."""
        if self.requests is None:
            self.requests = Outstanding()
        return self.requests

    def answer(self, message: dict[str, Any]) -> bool:
        """Route a client's JSON-RPC response to the request waiting for it."""
        return self.requests.answer(message) if self.requests is not None else False

    def new_stream(self) -> EventLog:
        log = EventLog()
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
    def create(
        self, version: str, client_caps: dict[str, Any], client_info: Any, owner: str | None = None
    ) -> Session: ...

    def get(self, session_id: str) -> Session | None:
        """The live session, or None when unknown, ended or expired. Touches it."""

    def delete(self, session_id: str) -> bool: ...

    def __len__(self) -> int: ...


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

    def create(self, version: str, client_caps: dict[str, Any], client_info: Any, owner: str | None = None) -> Session:
        self._expire()
        mine = self._owners.get(owner)
        while mine and len(mine) >= self.max_per_owner:
            self.delete(next(iter(mine)))
        while len(self._sessions) >= self.max_sessions:
            self.delete(self._victim(owner))
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

    def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_seen > self.idle_seconds:
            self.delete(session_id)
            return None
        session.last_seen = now
        self._sessions.move_to_end(session_id)
        self._owners[session.owner].move_to_end(session_id)
        return session

    def delete(self, session_id: str) -> bool:
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
            self.delete(session.id)

    def __len__(self) -> int:
        return len(self._sessions)

    def close_all(self) -> None:
        for session_id in list(self._sessions):
            self.delete(session_id)
