"""A tiny stdio MCP server for fault tests (the official SDK's MCPServer): a tool that crashes the process, one
that never answers, one that counts, and one that reports its process id."""

from __future__ import annotations

import asyncio
import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("faulty")
calls = 0


@server.tool()
def count() -> str:
    """How many calls this process has served."""
    global calls
    calls += 1
    return f"{calls} in {os.getpid()}"


@server.tool()
def crash() -> str:
    """Exits the process in the middle of the call."""
    os._exit(3)


@server.tool()
async def hang() -> str:
    """Never answers."""
    await asyncio.Event().wait()
    return "unreachable"


if __name__ == "__main__":
    server.run("stdio")
