"""Control-plane notices between replicas, and the wiring that makes a runtime's limits and throttles the fleet's.

Notices (bus kinds, reference/governance-and-fleet.md C7 "control-plane fan-out"):

- ``manifest`` ``{version}``: a replica loaded a newly approved (or reverted) manifest version; every other replica
  runs its keeper's check now instead of at its next poll, so clients everywhere see it within a round trip.
- ``approval`` ``{id}``: a held call was decided on a replica's approval page; the replica holding the 2025-era
  session that got its URL elicitation sends ``notifications/elicitation/complete`` now.

A notice is a shortcut, never the only way: each replica keeps its poll (approvals by the CLI or by SQL announce
nothing, and pub/sub drops what is sent while a replica is disconnected; after a reconnection each replica checks
once). Token revocation needs no notice: every request reads the store's revocation generation
(patchbay.auth.epoch), which PostgreSQL shares.

The console's Connect page keeps its doctor report in Redis (:class:`DoctorReports`), so the redirect after the
button shows the report on whichever replica it lands.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from patchbay.console.connect_doctor import DoctorOutcome
    from patchbay.fleet import Fleet

log = logging.getLogger("patchbay.fleet")
# How long the Connect page's doctor report stays readable from any replica: the person who pressed the button
# reads it at once; an hour also covers coming back to the tab.
DOCTOR_REPORT_SECONDS = 3600
# Reports kept per console in memory (one per person, newest first out when full): enough for a team of operators.
KEPT_REPORTS = 32


def share_auth(fleet: Fleet, auth: Any) -> None:
    """Make the sign-in throttle per address and the registration throttle of ``auth`` (an AuthServer) the
    fleet's. Runs before the pages that sign people in are built: they take the throttle from ``auth``."""
    from patchbay.fleet.limits import SharedRateLimit, SharedThrottle

    login = auth.settings.auth
    live = fleet.replicas.live
    auth.authorization.throttle = SharedThrottle(
        fleet.link, live, login.login_attempts_per_address, login.lockout_seconds
    )
    auth.registrations = SharedRateLimit(fleet.link, live, login.registration_per_minute)


def share_runtime(fleet: Fleet, runtime: Any) -> None:
    """One-shot MRTR states, manifest notices and approval notices for ``runtime``, once its approvals exist."""
    from patchbay.fleet.limits import SharedNonces

    runtime.dispatcher.signer.spent = SharedNonces(fleet.link)
    tasks = _Tasks()
    keeper = runtime.keeper
    if keeper is not None:
        keeper.announce = lambda version: _broadcast(fleet, "manifest", version=version)
        # The check reads the store in a worker thread: a task, so the bus's reader is never held up.
        fleet.bus.on("manifest", lambda message: tasks.spawn(keeper.check(announce=False)))
        fleet.bus.on_resync(lambda: tasks.spawn(keeper.check(announce=False)))
    approvals = runtime.dispatcher.approvals
    if approvals is not None:
        waits = approvals.elicitations
        waits.announce = lambda approval_id: tasks.spawn(_broadcast(fleet, "approval", id=approval_id))
        fleet.bus.on("approval", lambda message: _complete(waits, message))


def _complete(waits: Any, message: dict[str, Any]) -> None:
    approval_id = message.get("id")
    if isinstance(approval_id, str):
        waits.complete(approval_id)


async def _broadcast(fleet: Fleet, kind: str, **fields: Any) -> None:
    """Send a notice; when Redis is down the others find the change at their next poll."""
    from patchbay.fleet.link import FleetUnavailable

    try:
        await fleet.bus.broadcast(kind, **fields)
    except FleetUnavailable:
        log.info("fleet notice %r not sent (Redis is unreachable); the other replicas' polls will find it", kind)


class _Tasks:
    """Notice work started from sync callbacks, held until done (the event loop keeps only weak references)."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a fleet notice failed: %s", task.exception())


class DoctorReports:
    """The Connect page's doctor report per person: in Redis (``{p}doctor:{digest of subject}``) on a fleet, kept
    ``DOCTOR_REPORT_SECONDS``; in this process otherwise, and while Redis is down. Nothing here loads the redis
    package on a single node."""

    def __init__(self, fleet: Fleet | None) -> None:
        self.fleet = fleet
        self.local: OrderedDict[str, DoctorOutcome] = OrderedDict()

    async def get(self, subject: str) -> DoctorOutcome | None:
        if self.fleet is not None:
            from patchbay.fleet.link import FleetUnavailable

            key = self._key(subject)
            try:
                raw = await self.fleet.link.do(lambda client: client.get(key))
            except FleetUnavailable:
                return self.local.get(subject)
            return _outcome(orjson.loads(raw)) if raw is not None else None
        return self.local.get(subject)

    async def put(self, subject: str, outcome: DoctorOutcome) -> None:
        self.local.pop(subject, None)
        self.local[subject] = outcome
        while len(self.local) > KEPT_REPORTS:
            self.local.popitem(last=False)
        if self.fleet is not None:
            from patchbay.fleet.link import FleetUnavailable

            key, body = self._key(subject), orjson.dumps(outcome)
            try:
                await self.fleet.link.do(lambda client: client.set(key, body, ex=DOCTOR_REPORT_SECONDS))
            except FleetUnavailable:
                log.info("the Connect page's doctor report is kept on this replica only (Redis is unreachable)")

    def _key(self, subject: str) -> str:
        assert self.fleet is not None
        return self.fleet.link.key("doctor", hashlib.sha256(subject.encode()).hexdigest()[:32])


def _outcome(data: dict[str, Any]) -> DoctorOutcome:
    # Imported only when a stored report is read: the doctor's module brings httpx (console/pages/connect.py).
    from patchbay.console.connect_doctor import CheckRow, ClientVerdict, DoctorOutcome

    clients = tuple(
        ClientVerdict(c["title"], bool(c["ready"]), tuple(CheckRow(**row) for row in c["rows"]))
        for c in data.get("clients", ())
    )
    return DoctorOutcome(data["url"], clients, data.get("error", ""), dict(data.get("counts", {})))
