"""Patchbay: a self-hosted MCP connector server.

The public API is for people writing their own tools and connectors::

    from patchbay import tool, Context

    @tool(read_only=True, open_world=False)
    async def lookup_customer(email: str, ctx: Context) -> dict[str, str]:
        \"\"\"Find a customer by email.\"\"\"
        ...
"""

from __future__ import annotations

__version__ = "0.1.0"

from patchbay.connectors.base import Connector, ConnectorEnv, ConnectorOptions, Health
from patchbay.content import Audio, EmbeddedResource, Image, ResourceLink, Text
from patchbay.context import Context
from patchbay.decorators import prompt, resource, tool
from patchbay.definitions import (
    Prompt,
    PromptResult,
    Resource,
    ResourceTemplate,
    Tool,
    ToolAnnotations,
    ToolResult,
)
from patchbay.errors import ConfigError, ConnectorError, PatchbayError, RpcError, ToolError

__all__ = [
    "Audio",
    "ConfigError",
    "Connector",
    "ConnectorEnv",
    "ConnectorError",
    "ConnectorOptions",
    "Context",
    "EmbeddedResource",
    "Health",
    "Image",
    "PatchbayError",
    "Prompt",
    "PromptResult",
    "Resource",
    "ResourceLink",
    "ResourceTemplate",
    "RpcError",
    "Text",
    "Tool",
    "ToolAnnotations",
    "ToolError",
    "ToolResult",
    "__version__",
    "prompt",
    "resource",
    "tool",
]
