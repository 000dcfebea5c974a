"""Notifications and legacy SSE messages across replicas.

:class:`HubBridge` makes the Hub fleet-wide: what one replica publishes (a resource updated by a write, a Python
tool's notification) is broadcast on the bus, and every other replica publishes it to its own open streams
(2025 GET streams, ``subscriptions/listen``, legacy SSE). What each replica produces by itself, the list changes
after its own catalog rebuild, is published ``local=True`` and never crosses, so a client hears it once.

:class:`LegacyRelay` serves legacy HTTP+SSE (MCP 2024-11-05) without sticky sessions: the replica holding a
``GET /sse`` stream records ``{prefix}sse:{session_id}`` (its replica id and the stream owner's digest), and a
``POST /messages`` landing on another replica is checked there and forwarded to the holder over the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from patchbay.auth.principal import Principal
from patchbay.errors import RpcError
from patchbay.fleet.bus import Bus
from patchbay.fleet.link import FleetUnavailable, RedisLink
from patchbay.protocol import jsonrpc
from patchbay.protocol.hub import Hub

log = logging.getLogger("patchbay.fleet")

HUB: Final = "hub"
LEGACY_POST: Final = "legacy_post"
QUEUE_MAX: Final = 1000  # notifications waiting for the bus; beyond it the oldest are dropped


class HubBridge:
    """Carries this replica's notifications to the others, in order, and theirs to this replica's streams."""

    def __init__(self, hub: Hub, bus: Bus) -> None:
        self.hub = hub
        self.bus = bus
        self._queue: deque[tuple[str, dict[str, Any]]] = deque(maxlen=QUEUE_MAX)
        self._task: asyncio.Task[None] | None = None
        self._dropping = False
        hub.bridge = self.forward
        bus.on(HUB, self._receive)
        bus.on_resync(self._resynced)

    def forward(self, method: str, params: dict[str, Any]) -> None:
        """Queue ``method`` for the other replicas (publish is synchronous; the bus is not)."""
        if method.startswith("$"):  # the shutdown sentinel and other in-process signals never cross
            return
        self._queue.append((method, params))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="patchbay-hub-bridge")

    async def idle(self) -> None:
        """Return once everything queued so far was sent (or dropped)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        try:
            while self._queue:
                method, params = self._queue.popleft()
                try:
                    await self.bus.broadcast(HUB, method=method, params=params)
                except FleetUnavailable:
                    if not self._dropping:
                        self._dropping = True
                        log.warning("Redis is unreachable: notifications reach this replica's streams only")
                else:
                    self._dropping = False
        finally:
            self._task = None

    def _receive(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params")
        if isinstance(method, str) and not method.startswith("$") and isinstance(params, dict):
            self.hub.publish(method, params, local=True)

    def _resynced(self) -> None:
        if self._dropping:
            self._dropping = False
            log.info("Redis answers again: notifications reach every replica")


@dataclass(frozen=True, slots=True)
class Holder:
    """The replica holding a legacy SSE stream, and the digest of the principal that opened it."""

    replica: str
    owner: str | None


# The owner replica gets the session id, the caller's owner digest, the principal (authenticated on the replica
# the POST reached) and the JSON-RPC message; it checks the owner again and serves the message on its stream.
Deliver = Callable[[str, str | None, dict[str, Any], Principal | None], None]


class LegacyRelay:
    """Where each legacy SSE stream lives, and the forwarding of ``POST /messages`` to it."""

    def __init__(self, link: RedisLink, bus: Bus, replica_id: str, deliver: Deliver, ttl_seconds: float) -> None:
        self.link = link
        self.bus = bus
        self.replica_id = replica_id
        self.ttl_ms = max(1000, int(ttl_seconds * 1000))
        self._deliver = deliver
        self._pending: set[asyncio.Task[None]] = set()
        bus.on(LEGACY_POST, self._receive)

    def _key(self, session_id: str) -> str:
        return self.link.key("sse", session_id)

    async def hold(self, session_id: str, owner: str | None) -> None:
        """Record (or refresh) that this replica holds the stream; without Redis it is reachable here only."""
        value = orjson.dumps({"r": self.replica_id, "o": owner})
        try:
            await self.link.do(lambda c: c.set(self._key(session_id), value, px=self.ttl_ms))
        except FleetUnavailable:
            log.debug("legacy SSE stream %s is reachable on this replica only until Redis answers", session_id[:8])

    def release(self, session_id: str) -> None:
        """Forget the stream (in a task: the stream's generator may be cancelled, and the key expires anyway)."""

        async def forget() -> None:
            with contextlib.suppress(FleetUnavailable):
                await self.link.do(lambda c: c.delete(self._key(session_id)))

        task = asyncio.ensure_future(forget())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def holder(self, session_id: str) -> Holder | None:
        """The replica holding ``session_id``'s stream, or None when no replica does.

        Raises:
            RpcError: 503 when Redis is unreachable.
        """
        try:
            raw = await self.link.do(lambda c: c.get(self._key(session_id)))
        except FleetUnavailable:
            raise RpcError(
                jsonrpc.INTERNAL_ERROR, str(FleetUnavailable("reaching this SSE session's stream")), status=503
            ) from None
        if raw is None:
            return None
        record = orjson.loads(raw)
        return Holder(str(record["r"]), record.get("o"))

    async def forward(
        self, holder: Holder, session_id: str, owner: str | None, principal: Principal | None, message: Any
    ) -> None:
        """Send the message to the replica holding the stream.

        Raises:
            RpcError: 503 when Redis is unreachable.
        """
        try:
            await self.bus.send_to(
                holder.replica,
                LEGACY_POST,
                sid=session_id,
                owner=owner,
                principal=principal_fields(principal),
                message=message,
            )
        except FleetUnavailable:
            raise RpcError(
                jsonrpc.INTERNAL_ERROR, str(FleetUnavailable("reaching this SSE session's stream")), status=503
            ) from None

    def _receive(self, message: dict[str, Any]) -> None:
        session_id, body, owner = message.get("sid"), message.get("message"), message.get("owner")
        if (
            not isinstance(session_id, str)
            or not isinstance(body, dict)
            or not (owner is None or isinstance(owner, str))
        ):
            log.warning("fleet bus: dropped a malformed legacy_post message")
            return
        self._deliver(session_id, owner, body, principal_from(message.get("principal")))


def principal_fields(principal: Principal | None) -> dict[str, Any] | None:
    """A principal as JSON for the bus (no token: the replica the request reached has verified it)."""
    if principal is None:
        return None
    return {
        "subject": principal.subject,
        "kind": principal.kind,
        "scopes": sorted(principal.scopes),
        "roles": sorted(principal.roles),
        "username": principal.username,
        "client_id": principal.client_id,
        "expires_at": principal.expires_at,
        "client_name": principal.client_name,
        "claims": principal.claims,
    }


def principal_from(fields: Any) -> Principal | None:
    if not isinstance(fields, dict):
        return None
    return Principal(
        subject=str(fields["subject"]),
        kind=fields["kind"],
        scopes=frozenset(fields.get("scopes") or ()),
        roles=frozenset(fields.get("roles") or ()),
        username=fields.get("username"),
        client_id=fields.get("client_id"),
        expires_at=fields.get("expires_at"),
        client_name=fields.get("client_name"),
        claims=dict(fields.get("claims") or {}),
    )
