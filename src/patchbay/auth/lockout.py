"""Password guessing on the sign-in page, limited per client address and per account (OWASP Authentication Cheat
Sheet, "Protect against automated attacks"; NIST SP 800-63B §5.2.2 rate limiting).

- **Per address** (:class:`AddressThrottle`, here): an address that made ``login_attempts_per_address`` failed
  sign-ins within ``lockout_seconds`` is refused until its oldest failure in the window ages out, whatever the
  accounts it tries. This is what stops one machine guessing, and spraying one password over many names.
- **Per account** (``Users.verify``): ``login_attempts`` wrong passwords in a row lock the account for
  ``lockout_seconds``. Attempts during the lock neither count nor extend it, and a browser that signed in to the
  account before (its *device cookie*, OWASP "Slow down online guessing attacks with device cookies") is not
  held by the lock, so strangers' guesses cannot keep the owner out.

In a fleet (``[redis] url``) the per-address count lives in Redis (:class:`patchbay.fleet.limits.SharedThrottle`),
so N replicas do not give one address N times the guesses; the per-account lock is a row of the shared store.

Every refusal looks the same to the person signing in (one message, one status, one password hash computed), so
the page does not tell which accounts exist or which are locked. Failures and locks are logged; passwords never.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Protocol

MAX_ADDRESSES = 10_000


class Throttle(Protocol):
    """Failed sign-ins per client address: :class:`AddressThrottle` in one process, a Redis window in a fleet."""

    limit: int
    window: float

    async def blocked(self, address: str) -> bool:
        """Whether ``address`` made ``limit`` failed sign-ins within the last ``window`` seconds."""
        ...

    async def failed(self, address: str) -> bool:
        """Count a failure; True when it is the one that blocks the address (for the log)."""
        ...


class AddressThrottle:
    """At most ``limit`` failed sign-ins per client address in any ``window`` seconds (in-process)."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.failures: dict[str, collections.deque[float]] = {}

    def _recent(self, address: str, now: float) -> collections.deque[float] | None:
        recent = self.failures.get(address)
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if recent is not None and not recent:
            del self.failures[address]
            return None
        return recent

    async def blocked(self, address: str) -> bool:
        recent = self._recent(address, self.clock())
        return recent is not None and len(recent) >= self.limit

    async def failed(self, address: str) -> bool:
        """Count a failure; True when it is the one that blocks the address (for the log)."""
        now = self.clock()
        recent = self._recent(address, now)
        if recent is None:
            if len(self.failures) >= MAX_ADDRESSES:
                self._prune(now)
            recent = self.failures.setdefault(address, collections.deque())
        recent.append(now)
        return len(recent) == self.limit

    def _prune(self, now: float) -> None:
        for address in list(self.failures):
            self._recent(address, now)
        if len(self.failures) >= MAX_ADDRESSES:
            # Bounded memory first: forgetting old failures only lets their addresses guess again.
            oldest = sorted(self.failures, key=lambda a: self.failures[a][-1])[: MAX_ADDRESSES // 2]
            for address in oldest:
                del self.failures[address]
