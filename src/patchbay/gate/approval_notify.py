"""``notifications/elicitation/complete`` for held calls (MCP 2025-11-25 client/elicitation, URL mode: "the server
MAY send a notifications/elicitation/complete notification when the out-of-band interaction ... completes").

A 2025-11-25 session that was answered with -32042 is remembered here by approval id until the approval is decided
(approved, denied, voided or expired). Then the notification goes over that session's open GET stream, and nowhere
else: when the stream is gone, nothing is sent. Decisions on this process's page complete at once; decisions made
elsewhere (``patchbay approvals approve``, another replica's page) are found by a poll of the waiting ids, which runs
only while some session here is waiting. In a fleet a decision made here is also announced on the fleet's bus
(``announce``, an ``approval`` notice, patchbay.fleet.notices), so the replica holding the session completes it at
once; the poll stays for decisions nobody announced (the CLI, Redis down).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("patchbay.gate")
COMPLETE = "notifications/elicitation/complete"
MAX_WAITING = 10_000  # sessions remembered at once; past it the oldest is forgotten (it gets no notification)
# Reads the statuses of approval ids from the store, in a worker thread: {id: status} (patchbay.gate.approval_store).
StatusReader = Callable[[list[str]], Any]


@dataclass
class ElicitationWaits:
    read_statuses: StatusReader
    poll_seconds: float = 1.0
    # approval id -> the patchbay.transport.sessions.Session that got its URL elicitation
    _waiting: dict[str, Any] = field(default_factory=dict)
    _poller: asyncio.Task[None] | None = None
    # Tells the other replicas that ``approval_id`` was decided here (None on a single node); never raises.
    announce: Callable[[str], None] | None = None

    def add(self, approval_id: str, session: Any) -> None:
        """Remember that ``session`` got the URL elicitation of ``approval_id`` (the newest session wins)."""
        self._waiting.pop(approval_id, None)
        if len(self._waiting) >= MAX_WAITING:
            self._waiting.pop(next(iter(self._waiting)))
        self._waiting[approval_id] = session
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    def decided(self, approval_id: str) -> bool:
        """An approval was decided in this process: complete it here and tell the other replicas."""
        if self.announce is not None:
            self.announce(approval_id)
        return self.complete(approval_id)

    def complete(self, approval_id: str) -> bool:
        """Send the notification for a decided approval; whether a waiting session's open stream took it."""
        session = self._waiting.pop(approval_id, None)
        if session is None:
            return False
        sent: bool = session.notify({"jsonrpc": "2.0", "method": COMPLETE, "params": {"elicitationId": approval_id}})
        log.debug("approval %s decided: elicitation complete %s", approval_id, "sent" if sent else "not sent (gone)")
        return sent

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def _poll(self) -> None:
        while self._waiting:
            await asyncio.sleep(self.poll_seconds)
            ids = list(self._waiting)
            try:
                statuses = await self.read_statuses(ids)
            except Exception:  # a store hiccup: try again at the next poll, never end the server's task
                log.warning("cannot read approval statuses for elicitation notifications", exc_info=True)
                continue
            for approval_id in ids:
                if statuses.get(approval_id) != "pending":  # decided, expired, or no longer stored
                    self.complete(approval_id)

    def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        self._waiting.clear()
