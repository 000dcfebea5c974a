"""The checks, grouped by step. Each is ``async def check(ctx) -> list[Result]``; ``ALL`` runs in report order."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from patchbay.doctor.checks import auth, edge, registration, signin, timing, tools, transport, url
from patchbay.doctor.context import Context
from patchbay.doctor.model import Result

__all__ = ["ALL", "CheckFn"]

CheckFn = Callable[[Context], Awaitable[list[Result]]]

ALL: tuple[CheckFn, ...] = (
    *url.CHECKS,
    *edge.CHECKS,
    *transport.CHECKS,
    *auth.CHECKS,
    *registration.CHECKS,
    *signin.CHECKS,
    *tools.CHECKS,
    *timing.CHECKS,
)
