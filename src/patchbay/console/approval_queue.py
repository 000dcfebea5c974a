"""The calls waiting for a person, for the console: what ``patchbay approvals list`` shows, 50 at a time, newest
first (keyset on creation time and id). Deciding goes through the approval page's own path
(``patchbay.gate.approval_pages.decide``), so the approver roles, self-approval and two-approver rules are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from patchbay.catalog.hidden import escaped
from patchbay.gate.approval_store import ApprovalView, hidden_note

PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class Held:
    """One held call as the queue shows it; ``arguments`` is the redacted copy an approver sees, as JSON text."""

    view: ApprovalView
    arguments: str
    hidden: str
    own: bool
    """The person looking made this call (they may not approve it unless self-approval is allowed)."""


@dataclass(frozen=True, slots=True)
class Queue:
    rows: list[Held]
    next_before: str | None
    """The cursor of the next (older) page; None on the last page."""


def cursor(view: ApprovalView) -> str:
    return f"{view.created_at!r}_{view.id}"


def parse_cursor(text: str) -> tuple[float, str] | None:
    """``(created_at, id)`` from a cursor, or None for none or a malformed one (the first page is shown)."""
    at, _, approval_id = text.partition("_")
    try:
        return (float(at), approval_id) if approval_id else None
    except ValueError:
        return None


async def pending(approvals: Any, who: str, before: str = "", size: int = PAGE_SIZE) -> Queue:
    """The pending, unexpired held calls older than the cursor ``before``; ``who`` is the username looking."""
    from patchbay.gate.approval_pages import is_own_call

    after = parse_cursor(before)
    views: list[ApprovalView] = await approvals.run(lambda: approvals.store.list(limit=size + 1, before=after))
    rows = [
        Held(
            view,
            escaped(orjson.dumps(view.shown, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()),
            hidden_note(view.hidden) if view.hidden else "",
            is_own_call(view, _Named(who)),
        )
        for view in views[:size]
    ]
    return Queue(rows, cursor(views[size - 1]) if len(views) > size else None)


@dataclass(frozen=True, slots=True)
class _Named:
    username: str
    roles: frozenset[str] = frozenset()
