"""A stdio MCP server (the official SDK's MCPServer) whose one tool writes a last word to stderr and exits: calling
it again and again makes a crash-looping upstream."""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("crashing")


@server.tool()
def crash() -> str:
    """Writes a last word to stderr and exits in the middle of the call."""
    sys.stderr.write(f"fatal: process {os.getpid()} lost its database connection\n")
    sys.stderr.flush()
    os._exit(3)


if __name__ == "__main__":
    server.run("stdio")
