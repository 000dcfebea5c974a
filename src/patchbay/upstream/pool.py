"""``UpstreamPool``: one long-lived upstream session per credential identity, for one ``mcp`` connector.

No handshake per call: a session is initialised once and reused; at most ``max_sessions`` are kept (least
recently used closed first) and one unused for ``idle_seconds`` is closed, by a timer the pool runs while it holds
sessions (so a quiet upstream's sessions, and the stdio processes behind them, end without traffic). A lost
session (HTTP 404, stream closed, process exited) is dropped and the next call opens a new one; a call the
upstream never saw is retried once on it. The era is detected once per upstream and cached
(``server/discover``, else ``initialize``). A 2026-07-28 upstream's list changes and resource updates come over one
``subscriptions/listen`` stream the pool keeps on a live session (:mod:`patchbay.upstream.listen`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from patchbay.outbound import Fetcher
from patchbay.upstream.errors import SessionLost, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from patchbay.upstream.listen import ACKNOWLEDGED, Listening
from patchbay.upstream.opening import Opener, StdioEndpoint
from patchbay.upstream.session import Handlers, UpstreamSession
from patchbay.upstream.target import NotificationHandler, ProgressHandler, ServerRequestHandler, Target

if TYPE_CHECKING:
    from patchbay.upstream.process import ProcessSpec

log = logging.getLogger("patchbay.upstream")
SWEEP_FLOOR = 1.0


@dataclass(slots=True, eq=False)
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    session: UpstreamSession | None = None
    used: float = 0.0
    headers: Mapping[str, str] | None = None  # what the session last sent (None: not known)


class UpstreamPool:
    """Sessions to one upstream, keyed by credential identity (``""`` = the shared credentials).

    ``on_notification`` gets unsolicited notifications (list changes, ``resources/updated``, logs outside a
    call), also those of a 2026-07-28 upstream's listen stream (``listening``); ``on_request`` answers
    server→client requests no call claims. ``fetcher_factory`` gives the
    :class:`~patchbay.outbound.Fetcher` whose policy vets any URL other than the target's own origin (the
    operator's configured host is trusted and pinned); by default only public addresses. ``process_factory``
    builds the supervisor of a stdio upstream (default ``patchbay.upstream.process.StdioProcess``). ``tls`` is
    the trust for an ``https`` upstream (default: the CA bundle httpx uses).
    """

    def __init__(
        self,
        name: str,
        target: Target,
        *,
        client_info: dict[str, Any],
        capabilities: dict[str, Any],
        on_notification: NotificationHandler,
        fetcher_factory: Callable[[], Fetcher] | None = None,
        on_request: ServerRequestHandler | None = None,
        max_sessions: int = 64,
        idle_seconds: float = 600,
        handshake_timeout: float | None = None,
        process_factory: Callable[[str, ProcessSpec], StdioEndpoint] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self.target = target
        self.max_sessions = max_sessions
        self.idle_seconds = idle_seconds
        self._notify = on_notification
        self.listening = Listening(name, on_notification)
        self._handlers = Handlers(self._notified, on_request, self._lost)
        self._opener = Opener(
            name,
            target,
            client_info=client_info,
            capabilities=capabilities,
            fetcher=(fetcher_factory or Fetcher)(),
            handshake_timeout=handshake_timeout,
            process_factory=process_factory,
            tls=tls,
        )
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._closed = False
        self._sweeper: asyncio.Task[None] | None = None
        self._problem: str | None = None
        self.opened = 0  # sessions opened (initialize or discover-adopt), for health and tests

    async def session(self, identity: str = "", headers: Mapping[str, str] | None = None) -> UpstreamSession:
        """The live session for ``identity``, opened (and initialised) on first use.

        Raises:
            UpstreamUnavailable: the upstream cannot be reached, started or initialised (``str()`` says why).
        """
        slot = self._slots.get(identity)
        now = time.monotonic()
        if slot is not None and slot.session is not None and slot.session.lost is None:
            slot.used = now
            self._slots.move_to_end(identity)
            if headers is not None and headers != slot.headers:  # a refreshed token: the next request sends it
                slot.headers = dict(headers)
                self._opener.update_headers(slot.session, headers)
            return slot.session
        if self._closed:
            raise UpstreamUnavailable(f"the upstream {self.name} is shut down")
        if slot is None:
            slot = self._slots[identity] = _Slot()
        async with slot.lock:
            if slot.session is None or slot.session.lost is not None:
                try:
                    slot.session = await self._opener.open(identity, headers or {}, self._handlers)
                    slot.headers = dict(headers) if headers is not None else None
                except UpstreamUnavailable as exc:
                    self._problem = str(exc)
                    raise
                self._problem = None
                self.opened += 1
                self._start_sweeper()
                self.listening.attach(slot.session)
            slot.used = time.monotonic()
        self._slots.move_to_end(identity)
        self._sweep(slot.used)
        return slot.session

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        identity: str = "",
        headers: Mapping[str, str] | None = None,
        timeout: float,  # noqa: ASYNC109 - the deadline of this one call
        on_progress: ProgressHandler | None = None,
        on_message: NotificationHandler | None = None,
        on_request: ServerRequestHandler | None = None,
        session: UpstreamSession | None = None,
    ) -> dict[str, Any]:
        """``session()`` + ``request()``, retried once on a new session when the session was lost before the
        upstream saw the request. ``session``: the one ``session(identity, headers)`` just gave the caller, used
        while it lives (a proxied call asks for it once, not twice).

        Raises:
            UpstreamError, UpstreamTimeout, UpstreamUnavailable, InputNeeded: as ``UpstreamSession.request``.
        """
        for attempt in (0, 1):
            if session is None or session.lost is not None:
                session = await self.session(identity, headers)
            try:
                return await session.request(
                    method,
                    params,
                    timeout=timeout,
                    on_progress=on_progress,
                    on_message=on_message,
                    on_request=on_request,
                )
            except SessionLost as lost:
                self._drop(identity, session)
                if lost.delivered or attempt:
                    raise
                session = None
                log.info("upstream %s: session lost (%s); retrying on a new session", self.name, lost)
        raise AssertionError("unreachable")  # pragma: no cover

    def health(self) -> tuple[bool, str]:
        """(up?, a person-readable reason), safe to publish: never the child's stderr (see :meth:`stderr_tail`)."""
        ok = self._problem is None
        return ok, self._problem or self._opener.describe(self._live())

    def stderr_tail(self) -> str:
        """A stdio upstream's last stderr (``env`` values masked; "" for HTTP), for operators only: it can hold
        paths, hostnames or secrets the child printed."""
        return self._opener.stderr_tail()

    def protocol_version(self) -> str:
        """The protocol version the live session speaks ("" when none is open)."""
        live = self._live()
        return live.protocol_version if live is not None else ""

    def _live(self) -> UpstreamSession | None:
        for slot in reversed(self._slots.values()):
            if slot.session is not None and slot.session.lost is None:
                return slot.session
        return None

    def watch_resource(self, uri: str) -> None:
        """Have the listen stream of a 2026-07-28 upstream carry ``notifications/resources/updated`` for ``uri``
        (an upstream URI) from now on; a 2025-era upstream is asked with ``resources/subscribe`` instead."""
        self.listening.watch(uri)

    async def close(self) -> None:
        """Close every session (DELETE / stop processes) and the HTTP client."""
        self._closed = True
        await self.listening.close()
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None and sweeper is not asyncio.current_task():
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        sessions = [slot.session for slot in self._slots.values() if slot.session is not None]
        self._slots.clear()
        await asyncio.gather(*(session.close() for session in sessions), return_exceptions=True)
        await self._opener.close()

    # -- bookkeeping ---------------------------------------------------------------------------------------

    async def _notified(self, method: str, params: dict[str, Any]) -> None:
        if method == ACKNOWLEDGED:
            await self.listening.acknowledge(params)
        else:
            await self._notify(method, params)

    def _lost(self, session: UpstreamSession) -> None:
        for identity, slot in list(self._slots.items()):
            if slot.session is session and not slot.lock.locked():
                del self._slots[identity]
        if self.listening.session is session and not self._closed:
            live = self._live()  # the stream moves to another live session, if any
            if live is not None:
                self.listening.attach(live)

    def _drop(self, identity: str, session: UpstreamSession) -> None:
        slot = self._slots.get(identity)
        if slot is not None and slot.session is session and not slot.lock.locked():
            del self._slots[identity]
        if session.lost is None:
            session.lose("dropped after losing the upstream session")

    def _start_sweeper(self) -> None:
        if self._sweeper is None and not self._closed:
            self._sweeper = asyncio.ensure_future(self._sweep_while_holding())

    async def _sweep_while_holding(self) -> None:
        """Wake when the least recently used session would expire; end once no session is left (the next
        opened session starts it again), so an unused pool keeps no timer."""
        floor = min(self.idle_seconds / 4, SWEEP_FLOOR)  # never spin on a session that is in use
        try:
            while self._slots and not self._closed:
                oldest = next(iter(self._slots.values())).used
                await asyncio.sleep(max(oldest + self.idle_seconds - time.monotonic(), floor))
                self._sweep(time.monotonic())
        finally:
            if self._sweeper is asyncio.current_task():
                self._sweeper = None

    def _sweep(self, now: float) -> None:
        """Close the least recently used sessions beyond ``max_sessions`` and those idle too long."""
        for identity, slot in list(self._slots.items()):
            if slot.lock.locked() or (slot.session is not None and slot.session.busy):
                slot.used = now  # being opened, or a call in flight: in use, never closed under it
                self._slots.move_to_end(identity)
                continue
            if len(self._slots) <= self.max_sessions and now - slot.used < self.idle_seconds:
                break
            del self._slots[identity]
            if slot.session is not None:
                slot.session.spawn(_close_quietly(slot.session))


async def _close_quietly(session: UpstreamSession) -> None:
    try:
        await session.close()
    except (UpstreamUnavailable, UpstreamError, UpstreamTimeout, OSError) as exc:
        log.debug("closing an upstream session: %s", exc)
