"""``type = "mcp"``: other MCP servers behind Patchbay (docs/upstreams.md)."""

from patchbay.connectors.mcp.connector import McpConnector
from patchbay.connectors.mcp.options import McpOptions

__all__ = ["McpConnector", "McpOptions"]
