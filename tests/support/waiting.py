"""Waiting on a condition with a deadline, never for a fixed time (STYLE.md: no sleeps to wait for things)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import anyio

# Generous: the deadline only bounds a wait that is failing anyway, on a 2-core machine shared with other work.
DEADLINE = 20.0


async def until(condition: Callable[[], object], what: str, within: float = DEADLINE, every: float = 0.01) -> None:
    """Return once ``condition()`` is true (awaited when it returns an awaitable), checking every ``every`` seconds;
    fail naming ``what`` after ``within`` seconds."""
    try:
        with anyio.fail_after(within):
            while True:
                outcome = condition()
                if inspect.isawaitable(outcome):
                    outcome = await outcome
                if outcome:
                    return
                await anyio.sleep(every)
    except TimeoutError:
        raise AssertionError(f"not within {within} s: {what}") from None
