"""Protocol revisions Patchbay speaks, and how a request picks its era (MCP 2026-07-28 basic/versioning)."""

from __future__ import annotations

from typing import Final

MODERN: Final = "2026-07-28"
# Versions that open with the `initialize` handshake, newest first. 2024-11-05 stays for stdio, legacy SSE and
# clients such as Claude Code that still ask for it; we echo any of these when asked (R-0xx, lifecycle).
HANDSHAKE_VERSIONS: Final = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
LATEST_HANDSHAKE: Final = HANDSHAKE_VERSIONS[0]
ALL_VERSIONS: Final = (MODERN, *HANDSHAKE_VERSIONS)
# Advertised in server/discover: what a 2026-07-28 client may fall back to on this endpoint.
DISCOVER_VERSIONS: Final = ALL_VERSIONS
# MCP 2025-06-18 transports: a request without MCP-Protocol-Version is taken as 2025-03-26.
DEFAULT_HEADERLESS: Final = "2025-03-26"

META_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPS: Final = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO: Final = "io.modelcontextprotocol/clientInfo"
META_LOG_LEVEL: Final = "io.modelcontextprotocol/logLevel"
META_SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"
META_SUBSCRIPTION_ID: Final = "io.modelcontextprotocol/subscriptionId"


def at_least(version: str, floor: str) -> bool:
    """Dated versions compare as strings."""
    return version >= floor
