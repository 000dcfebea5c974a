"""The audit benchmark's tools: a read and a write that do nothing else, so the audit trail is what is measured."""

from __future__ import annotations

from patchbay import tool


@tool(read_only=True)
async def look(q: str) -> str:
    """A read."""
    return q


@tool
async def note(text: str, secret: str = "") -> str:
    """A write (no readOnlyHint): its intent is recorded before it runs."""
    return text
