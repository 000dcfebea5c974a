"""Upstream requests to the client (sampling, elicitation, roots) for 2026-07-28 clients, which have no back channel.

The upstream call keeps running in a task; when the upstream asks the client something, the call is *parked* here
under a random id and the downstream request ends with ``input_required`` (MCP 2026-07-28 basic/patterns/mrtr),
its input request keyed ``upstream-<id>-<n>``. The client answers by retrying; the dispatcher checks the signed
``requestState`` (bound to the tool, its arguments and the caller), and the retry delivers the answer to the
parked call, which goes on. A parked call is bound to the principal that started it, expires, and the table is
bounded: an expired or evicted call is cancelled upstream.

In a fleet the parked call stays in the replica that started it, and the id begins with that replica's id, so a
retry that the load balancer sends to another replica is refused saying so (docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from patchbay.errors import ToolError

KEY = re.compile(r"^upstream-([A-Za-z0-9_-]{16,64})-(\d+)$")
REPLICA = re.compile(r"^r-[0-9a-f]{10}")  # patchbay.fleet.new_replica_id
# A question the upstream asked: (method, params, where the client's answer goes).
Question = tuple[str, dict[str, Any], "asyncio.Future[dict[str, Any]]"]


@dataclass(slots=True)
class Parked:
    """One upstream call waiting for the client's answer to ``key``."""

    id: str
    principal: str
    task: asyncio.Task[dict[str, Any]]
    questions: asyncio.Queue[Question]
    expires_at: float
    key: str = ""
    answer: asyncio.Future[dict[str, Any]] | None = None
    asked: int = 0
    # Progress and log callbacks follow the round the client is waiting on (each round is a new HTTP request).
    sink: dict[str, Any] = field(default_factory=dict)
    # Set while next_step waits: wakes it when the upstream asks something.
    wake: Callable[[], None] | None = None


class Bridge:
    """The bounded, expiring table of parked upstream calls of one connector."""

    def __init__(self, *, max_parked: int = 256, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.max_parked = max_parked
        self.ttl = ttl
        self.clock = clock
        self._parked: OrderedDict[str, Parked] = OrderedDict()
        # This process's fleet replica id (patchbay.fleet), "" on a single node: the first part of every id.
        self.replica = ""

    def __len__(self) -> int:
        return len(self._parked)

    def start(
        self, principal: str, run: Callable[[Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]], Any]
    ) -> Parked:
        """Start ``run(on_request)`` in a task whose upstream questions are queued for the client."""
        questions: asyncio.Queue[Question] = asyncio.Queue()
        parked: list[Parked] = []

        async def on_request(method: str, params: dict[str, Any]) -> dict[str, Any]:
            answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            questions.put_nowait((method, params, answer))  # unbounded: never waits
            if parked and parked[0].wake is not None:
                parked[0].wake()
            return await answer

        task: asyncio.Task[dict[str, Any]] = asyncio.create_task(run(on_request), name="patchbay-upstream-call")
        # The id is drawn when the call is first parked: most calls end without asking anything.
        parked.append(Parked("", principal, task, questions, self.clock() + self.ttl))
        return parked[0]

    async def next_step(self, entry: Parked) -> dict[str, Any] | tuple[str, dict[str, Any]]:
        """Wait until the call ends (its result) or asks the client something: ``(key, request)``, entry parked."""
        if entry.questions.empty() and not entry.task.done():
            # One future woken by either event: every 2026-07-28 call to a 2025-era upstream comes through here,
            # and a getter task plus asyncio.wait cost ~5x more CPU than this.
            woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def wake(_: object = None) -> None:
                if not woken.done():
                    woken.set_result(None)

            entry.wake = wake
            entry.task.add_done_callback(wake)
            try:
                await woken
            except asyncio.CancelledError:
                self.drop(entry)
                raise
            finally:
                entry.wake = None
                entry.task.remove_done_callback(wake)
        if entry.questions.empty():
            self._parked.pop(entry.id, None)
            return entry.task.result()
        method, params, answer = entry.questions.get_nowait()
        entry.id = entry.id or self.replica + secrets.token_urlsafe(18)
        entry.asked += 1
        entry.key, entry.answer = f"upstream-{entry.id}-{entry.asked}", answer
        entry.expires_at = self.clock() + self.ttl
        self._park(entry)
        return entry.key, {"method": method, "params": params}

    def resume(self, answers: dict[str, Any], principal: str) -> Parked | None:
        """The parked call that ``answers`` answer, with the answer delivered; None when they answer none.

        Raises:
            ToolError: the answer is for a call that expired, was evicted, or belongs to someone else.
        """
        self._expire()
        for key in sorted(answers, reverse=True):
            found = KEY.match(key)
            if found is None:
                continue
            entry = self._parked.get(found.group(1))
            if entry is None or entry.principal != principal or entry.key != key:
                continue
            answer = answers[key]
            if entry.answer is not None and not entry.answer.done():
                entry.answer.set_result(answer if isinstance(answer, dict) else {})
            self._parked.pop(entry.id, None)
            return entry
        if any(self._elsewhere(k) for k in answers):
            raise ToolError(
                "This answer reached another replica of the fleet than the one holding the upstream server's "
                "question (an upstream MCP server's questions to a 2026-07-28 client are answered on the replica "
                "that asked them); call the tool again."
            )
        if any(KEY.match(k) for k in answers):
            raise ToolError(
                "The upstream server's question for this call is no longer waiting (it expired or the server "
                "restarted); call the tool again."
            )
        return None

    def _elsewhere(self, key: str) -> bool:
        """``key`` names a question parked by another replica of this fleet."""
        found = KEY.match(key)
        replica = REPLICA.match(found.group(1)) if found is not None and self.replica else None
        return replica is not None and replica.group(0) != self.replica

    def drop(self, entry: Parked) -> None:
        self._parked.pop(entry.id, None)
        entry.task.cancel()  # the upstream session sends notifications/cancelled for it

    def close(self) -> None:
        for entry in list(self._parked.values()):
            self.drop(entry)

    def _park(self, entry: Parked) -> None:
        self._expire()
        while len(self._parked) >= self.max_parked:
            _, oldest = self._parked.popitem(last=False)
            oldest.task.cancel()
        self._parked[entry.id] = entry

    def _expire(self) -> None:
        now = self.clock()
        for entry in [e for e in self._parked.values() if e.expires_at <= now]:
            self.drop(entry)


def tag_replica(connectors: Iterable[object], replica: str) -> None:
    """Make every upstream MCP connector's parked ids begin with this fleet replica's id."""
    for connector in connectors:
        bridge = getattr(connector, "bridge", None)
        if isinstance(bridge, Bridge):
            bridge.replica = replica


async def settle(task: asyncio.Task[Any]) -> None:
    """Wait for a cancelled task to finish, whatever it raised."""
    with contextlib.suppress(BaseException):
        await task
