"""Concurrency caps: how many calls hold a slot of each key, and the calls waiting for one (first come, first
served). A key with no holder and no waiter is forgotten, so memory follows the calls in flight."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Gauge:
    held: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)


class Gauges:
    def __init__(self) -> None:
        self._gauges: dict[str, _Gauge] = {}

    def __len__(self) -> int:
        return len(self._gauges)

    def held(self, key: str) -> int:
        gauge = self._gauges.get(key)
        return gauge.held if gauge is not None else 0

    async def acquire(self, key: str, cap: int) -> None:
        """Take one of ``cap`` slots of ``key``, waiting in line when all are held.

        Raises:
            CancelledError: the wait was cancelled; no slot is held.
        """
        gauge = self._gauges.get(key)
        if gauge is None:
            gauge = self._gauges[key] = _Gauge()
        if gauge.held < cap and not gauge.waiters:
            gauge.held += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gauge.waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(key)  # handed a slot just as the wait was cancelled: pass it on
            else:
                gauge.waiters.remove(waiter)
                self._forget_idle(key, gauge)
            raise

    def release(self, key: str) -> None:
        """Give back a slot: to the first caller still waiting, else to the pool."""
        gauge = self._gauges[key]
        while gauge.waiters:
            waiter = gauge.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter: ``held`` stays the same
                return
        gauge.held -= 1
        self._forget_idle(key, gauge)

    def _forget_idle(self, key: str, gauge: _Gauge) -> None:
        if gauge.held == 0 and not gauge.waiters:
            del self._gauges[key]
