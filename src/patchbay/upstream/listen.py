"""One ``subscriptions/listen`` stream per pool to a 2026-07-28 upstream (MCP 2026-07-28
basic/patterns/subscriptions, basic/transports/stdio).

A 2026-07-28 upstream has no GET stream and no ``resources/subscribe``: it tells of list changes and resource
updates only on a ``subscriptions/listen`` request whose answer stays open (an SSE response over HTTP; notifications
tagged with the request's id on stdio). The pool keeps one such request open on one of its live sessions, asking
only for what the upstream's capabilities say it can send, plus the resources clients subscribed to; what arrives
goes to the pool's ``on_notification`` like any unsolicited notification.

* It never opens a session or starts a process: it listens on a session that calls opened and ends with it, and the
  next session the pool opens (or another live one) listens again. A stdio child stopped as idle is not woken to
  listen, and a listen stream alone does not keep a session or a child in use.
* A stream that ends while its session lives (a dropped connection, the upstream restarting, an error answer) is
  opened again after a backoff that starts at 0.5 s and doubles up to 30 s; an acknowledged stream resets it.
* "The server holds no subscription state across reconnections" (spec): what changed while no stream was open is
  not replayed, so when a stream is acknowledged after an earlier one ended, every list it covers is re-read and
  every watched resource it covers is announced as updated (a client re-reads it; an update that did not happen
  costs one read, a missed one would leave the client with stale content).
* An upstream that answers ``-32601`` has no subscriptions: it is not asked again by this pool.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from patchbay.upstream.errors import InputNeeded, SessionLost, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from patchbay.upstream.target import NotificationHandler

if TYPE_CHECKING:
    from patchbay.upstream.session import UpstreamSession

log = logging.getLogger("patchbay.upstream")

ACKNOWLEDGED = "notifications/subscriptions/acknowledged"
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
METHOD_NOT_FOUND = -32601
# capability → (filter flag, the notification it turns on)
LISTS = {
    "tools": ("toolsListChanged", "notifications/tools/list_changed"),
    "prompts": ("promptsListChanged", "notifications/prompts/list_changed"),
    "resources": ("resourcesListChanged", "notifications/resources/list_changed"),
}


class Listening:
    """The pool's listen stream. ``notify`` is the pool's ``on_notification`` (re-reads after a gap go there too).

    ``acknowledged`` counts acknowledged streams; ``unsupported`` says why the upstream is not asked (or None).
    """

    def __init__(self, name: str, notify: NotificationHandler, *, first_backoff: float = FIRST_BACKOFF) -> None:
        self.name = name
        self.notify = notify
        self.first_backoff = first_backoff
        self.uris: set[str] = set()
        self.session: UpstreamSession | None = None
        self.acknowledged = 0
        self.unsupported: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._delay: float | None = None  # None: the next wait is first_backoff
        self._current_acked = False  # the running stream was acknowledged
        self._gap = False  # an acknowledged stream ended: the next acknowledgement re-reads the lists
        self._closed = False

    @property
    def streaming(self) -> bool:
        """A listen request is open, or waiting for its backoff, on a live session."""
        return (
            self._task is not None and not self._task.done() and self.session is not None and self.session.lost is None
        )

    def attach(self, session: UpstreamSession) -> None:
        """Listen on ``session`` (a 2026-07-28 one) unless a stream already runs on a live session."""
        if self._closed or self.unsupported is not None or not session.modern or session.lost is not None:
            return
        if not self.streaming:
            self._start(session)

    def watch(self, uri: str) -> None:
        """Ask for ``notifications/resources/updated`` of ``uri`` (an upstream URI) too: the running stream is
        replaced by one whose filter has it."""
        if uri in self.uris:
            return
        self.uris.add(uri)
        if self.streaming and self.session is not None:
            self._start(self.session)

    def _start(self, session: UpstreamSession) -> None:
        old = self._task
        self.session = session
        self._current_acked = False
        # Spawned on the session, so closing the session (idle sweep, pool close) ends its stream too.
        self._task = session.spawn(self._run(session))
        if old is not None and not old.done():
            old.cancel()  # replaced on purpose: not a gap (see _ended)

    async def _run(self, session: UpstreamSession) -> None:
        try:
            while not self._closed and session.lost is None:
                wanted = self.wanted(session)
                if not wanted:
                    return  # the upstream announces nothing we could listen for
                if not await self._listen_once(session, wanted):
                    return
                self._ended()
                delay = self.first_backoff if self._delay is None else self._delay
                await asyncio.sleep(delay)
                self._delay = min(delay * 2, MAX_BACKOFF)
        finally:
            if self._task is asyncio.current_task():
                self._ended()

    async def _listen_once(self, session: UpstreamSession, wanted: dict[str, Any]) -> bool:
        """One listen request, until it ends; False when it must not be sent again on this session."""
        try:
            await session.request("subscriptions/listen", {"notifications": wanted}, timeout=None, background=True)
            log.info("upstream %s ended its subscriptions/listen stream; listening again", self.name)
        except SessionLost:
            return False
        except UpstreamError as exc:
            if exc.code == METHOD_NOT_FOUND:
                self.unsupported = f"the upstream has no subscriptions/listen: {exc.message}"
                log.info("upstream %s: %s; relying on relist_seconds", self.name, self.unsupported)
                return False
            log.warning("upstream %s refused subscriptions/listen: %s", self.name, exc.message)
        except (UpstreamUnavailable, UpstreamTimeout, InputNeeded) as exc:
            log.info("upstream %s: the subscriptions/listen stream ended: %s", self.name, exc)
        return True

    def _ended(self) -> None:
        if self._current_acked:
            self._gap = True
        self._current_acked = False

    def wanted(self, session: UpstreamSession) -> dict[str, Any]:
        """The filter to ask for: each list whose capability says ``listChanged``, and the watched URIs when the
        upstream declares ``resources.subscribe`` (it MUST NOT be sent what it did not ask for, nor we ask what it
        cannot send)."""
        caps = session.capabilities
        wanted: dict[str, Any] = {}
        for capability, (flag, _) in LISTS.items():
            section = caps.get(capability)
            if isinstance(section, dict) and section.get("listChanged"):
                wanted[flag] = True
        resources = caps.get("resources")
        if self.uris and isinstance(resources, dict) and resources.get("subscribe"):
            wanted["resourceSubscriptions"] = sorted(self.uris)
        return wanted

    async def acknowledge(self, params: dict[str, Any]) -> None:
        """The upstream acknowledged a stream: reset the backoff and, after a gap, re-read what it covers."""
        self.acknowledged += 1
        self._delay = None
        self._current_acked = True
        if not self._gap:
            return
        self._gap = False
        honored = params.get("notifications")
        honored = honored if isinstance(honored, dict) else {}
        for flag, method in LISTS.values():
            if honored.get(flag):
                await self.notify(method, {})
        uris = honored.get("resourceSubscriptions")
        for uri in uris if isinstance(uris, list) else ():
            if isinstance(uri, str) and uri in self.uris:
                await self.notify("notifications/resources/updated", {"uri": uri})

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
