"""The ``[[connectors]] type = "mcp"`` keys (docs/upstreams.md), checked once at start-up."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from patchbay.links.options import AuthOptions, Value

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ToolOverride(BaseModel):
    """What a client sees of one upstream tool, replacing what the upstream says."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    title: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=10_000)
    annotations: dict[str, bool] | None = None
    """Any of readOnlyHint, destructiveHint, idempotentHint, openWorldHint."""

    @model_validator(mode="after")
    def _known_hints(self) -> ToolOverride:
        unknown = set(self.annotations or ()) - set(HINTS)
        if unknown:
            raise ValueError(f"unknown annotations {sorted(unknown)}; use {', '.join(HINTS)}")
        return self


HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")


class McpOptions(AuthOptions):
    """One upstream MCP server: a local command (stdio) or a remote URL, and how its definitions are curated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] | None = Field(None, min_length=1)
    """The argv of a local MCP server speaking stdio, e.g. ``["npx", "-y", "@modelcontextprotocol/server-memory"]``."""
    url: str | None = Field(None, pattern=r"^https?://")
    """A remote MCP server: its Streamable HTTP endpoint, or its legacy SSE endpoint with ``transport = "sse"``."""
    transport: Literal["auto", "http", "sse"] = "auto"
    """For ``url``: ``auto`` and ``http`` speak Streamable HTTP (either era, detected); ``sse`` the legacy
    HTTP+SSE transport of 2024-11-05 (``url`` is then its GET stream)."""
    ca_file: str | None = Field(None, min_length=1)
    """For an ``https://`` ``url`` whose certificate an internal CA signed: a PEM file of the CA certificates to trust
    for this upstream, besides the usual public ones (relative to the config file)."""
    protocol: Literal["auto", "2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"] = "auto"
    """The protocol revision to speak upstream; ``auto`` detects it once and caches it."""
    cwd: str | None = None
    """The child's working directory (relative to the config file)."""
    env: dict[str, Value] = {}
    """Variables added to the child's environment: a literal, ``{env = "VAR"}`` or ``{file = "path"}``."""
    start_timeout: float = Field(60.0, gt=0, le=600)
    """Seconds to wait for the upstream to start and answer its handshake (``npx`` cold starts are slow)."""
    idle_shutdown: float | None = Field(300.0, gt=0)
    """Seconds without calls after which a stdio upstream is stopped (restarted on the next call); unset: never."""
    stateful: bool = False
    """One upstream session per downstream session (for servers that keep state per session)."""
    max_sessions: int = Field(64, ge=1, le=10_000)
    """Upstream sessions kept at most (per user with ``user_oauth``, per session with ``stateful``); least recently
    used first out."""
    session_idle_seconds: float = Field(600.0, gt=0)
    """Seconds an unused upstream session is kept."""
    include: list[str] = []
    """Globs on upstream tool and prompt names to publish (empty: all)."""
    exclude: list[str] = []
    """Globs on upstream tool and prompt names to leave out; wins over ``include``."""
    rename: dict[str, str] = {}
    """Upstream tool or prompt name → the name to publish (before the connector prefix)."""
    tools: dict[str, ToolOverride] = {}
    """Upstream tool name → title, description and annotations to publish instead of the upstream's."""
    resource_prefix: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9+.-]*\+$|^$")
    """Put before every upstream resource URI (default ``<name>+``) so two upstreams' URIs cannot collide;
    ``""`` publishes them unchanged."""
    max_in_flight: int = Field(32, ge=1, le=10_000)
    """Calls to this upstream running at once; more wait their turn."""
    relist_seconds: float | None = Field(300.0, gt=0)
    """Re-read the upstream's lists this often, for servers that change them without saying so; unset: never."""
    call_timeout: float = Field(60.0, gt=0, le=86_400)
    """Seconds one upstream request may take before it is cancelled upstream (the gate's timeout may be shorter)."""
    list_with: str | None = Field(None, min_length=1, max_length=200)
    """``auth = "user_oauth"``: the Patchbay username whose linked account reads the upstream's lists (default: the
    account linked to this connector most recently refreshed)."""

    @model_validator(mode="after")
    def _one_target(self) -> McpOptions:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of 'command' (a local stdio server) or 'url' (a remote server)")
        if self.command is not None and self.transport != "auto":
            raise ValueError("'transport' applies to 'url' only; a 'command' always speaks stdio")
        if self.ca_file is not None and (self.url is None or not self.url.startswith("https://")):
            raise ValueError("'ca_file' applies to an https:// 'url' only")
        if self.url is not None and (self.env or self.cwd is not None):
            raise ValueError("'env' and 'cwd' apply to 'command' only; a 'url' upstream is not started by Patchbay")
        if self.list_with is not None and self.auth != "user_oauth":
            raise ValueError("'list_with' applies to auth = \"user_oauth\" only (it names whose linked account lists)")
        for name in self.env:
            if not _ENV_NAME.match(name):
                raise ValueError(f"env: '{name}' is not a variable name (letters, digits and _)")
        return self
