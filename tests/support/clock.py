"""A clock the test moves by hand, for code that takes one (a callable returning seconds) or has one patched in."""

from __future__ import annotations


class Clock:
    """Reads ``now``, which only the test changes (``clock.now += 61``)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
