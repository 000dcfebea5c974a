"""A file share: read and write."""

from __future__ import annotations

from patchbay import tool


@tool(read_only=True, open_world=False)
async def read_file(path: str) -> str:
    """Read a file."""
    return f"contents of {path}"


@tool(open_world=False)
async def write_file(path: str, text: str) -> str:
    """Write a file."""
    return f"wrote {len(text)} characters to {path}"
