"""The benchmark's tools for Patchbay (loaded by bench/patchbay.toml); the SDK peer defines the same two."""

from __future__ import annotations

from patchbay import Context, tool


@tool(read_only=True)
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(read_only=True)
async def add_with_progress(a: int, b: int, ctx: Context) -> int:
    """Add two integers, reporting one progress step first (forces an SSE answer)."""
    await ctx.report_progress(1, 1)
    return a + b
