"""Rate budgets: GCRA over a small store protocol, and the in-memory store a single process uses.

GCRA (the generic cell rate algorithm, ITU-T I.371) keeps one number per key, the *theoretical arrival time*
(TAT): when the key's budget would be fully refilled. A call at ``now`` is allowed iff, after adding one emission
interval ``T = period / count``, the TAT is at most ``burst * T`` ahead of ``now``; otherwise the caller may retry
when it would be. So ``burst`` calls can come at once, and the long-run rate never exceeds ``count/period``.

A fleet needs one budget across replicas: a Redis or PostgreSQL store implements :class:`RateStore` with the same
arithmetic in one atomic step (a Lua script reading Redis ``TIME``, or ``UPDATE … RETURNING``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from patchbay.gate.limits_config import Rate

# ~100 bytes a key: 100,000 keys is ~10 MB, far more callers and limits than one process serves at once.
MAX_KEYS = 100_000


class RateStore(Protocol):
    """Where the budgets live. ``now`` is given by the caller (a monotonic clock in one process)."""

    async def take(self, key: str, rate: Rate, burst: int, now: float) -> float | None:
        """Spend one call of ``key``'s budget: None when allowed, else the seconds until a call would be."""
        ...

    async def refund(self, key: str, rate: Rate) -> None:
        """Give back one call taken by :meth:`take` (a later limit refused the call, so it never ran)."""
        ...


def gcra(tat: float, rate: Rate, burst: int, now: float) -> tuple[float, float | None]:
    """One GCRA step from the stored ``tat``: (the new TAT, None) when allowed, else (``tat``, seconds to wait)."""
    interval = rate.interval
    start = max(tat, now)
    # (start + interval) - now - burst * interval, arranged so that a fresh budget (start == now) waits exactly 0:
    # written the direct way, float rounding of now + 3600 could refuse a first call "for 0.0000001 s".
    wait = (start - now) - (burst - 1) * interval
    if wait > 0:
        return tat, wait
    return start + interval, None


class MemoryRateStore:
    """Budgets in this process's memory, at most ``max_keys`` of them.

    A key whose TAT has passed holds no information (a fresh key behaves the same), so dropping it loses nothing;
    when there are more than ``max_keys``, every such key goes. Only when most keys are mid-budget are live keys
    dropped too (least recently used first), which gives those callers a fresh budget: the price of bounded
    memory, counted in ``evicted``.
    """

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self.evicted = 0
        self._tat: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tat)

    async def take(self, key: str, rate: Rate, burst: int, now: float) -> float | None:
        tat = self._tat.get(key, now)
        new_tat, wait = gcra(tat, rate, burst, now)
        if wait is not None:
            return wait
        self._tat[key] = new_tat
        self._tat.move_to_end(key)
        if len(self._tat) > self.max_keys:
            self._shed(now)
        return None

    async def refund(self, key: str, rate: Rate) -> None:
        tat = self._tat.get(key)
        if tat is not None:
            self._tat[key] = tat - rate.interval

    def _shed(self, now: float) -> None:
        # One sweep drops every key that holds nothing, then live keys least recently used first, down to 90%:
        # a sweep runs at most once per max_keys/10 new keys, so its cost per call stays constant.
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]
        target = self.max_keys - self.max_keys // 10
        while len(self._tat) > target:
            self._tat.popitem(last=False)
            self.evicted += 1
