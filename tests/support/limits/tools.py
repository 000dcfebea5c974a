"""Tools whose calls the limits tests count: every call that runs is counted in RAN, so a refused call that ran
anyway would show."""

from __future__ import annotations

import asyncio
from collections import Counter

from pydantic import BaseModel

from patchbay import tool

READ = {"read_only": True, "open_world": False}
RAN: Counter[str] = Counter()
# hold() waits for this; the tests set it to let held calls finish.
RELEASE = asyncio.Event()
HOLDING: list[str] = []
# wait_forever() notes here that it was cancelled (its timeout), so the test sees the work really stopped.
CANCELLED: list[str] = []


@tool(**READ)
async def lookup(q: str = "") -> str:
    """Look a customer up."""
    RAN["lookup"] += 1
    return f"found {q}"


@tool(open_world=False, destructive=False)
async def update(id: int) -> str:
    """Update a customer."""
    RAN["update"] += 1
    return f"updated {id}"


@tool(**READ)
async def search(query: str) -> str:
    """Search the documents."""
    RAN["search"] += 1
    return f"results for {query}"


@tool(**READ)
async def hold(label: str) -> str:
    """Wait until the test releases it."""
    RAN["hold"] += 1
    HOLDING.append(label)
    try:
        await RELEASE.wait()
    finally:
        HOLDING.remove(label)
    return f"released {label}"


@tool(**READ)
async def wait_forever() -> str:
    """Never finishes on its own."""
    RAN["wait_forever"] += 1
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        CANCELLED.append("wait_forever")
        raise
    return "unreachable"


@tool(**READ)
async def big(size: int) -> str:
    """A long text."""
    return "x" * size


class Rows(BaseModel):
    rows: list[str]


@tool(**READ)
async def big_rows(count: int) -> Rows:
    """Many rows, as structured content."""
    return Rows(rows=[f"row {i:06d} " + "r" * 90 for i in range(count)])
