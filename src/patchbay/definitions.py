"""What connectors source: tools, resources, resource templates and prompts, each carrying its own handler.

A connector only *sources* these definitions; naming (prefixes), visibility and policy are applied outside it,
by the catalog and the gate. Handlers receive validated-enough input and a :class:`~patchbay.context.Context`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from patchbay.context import Context

ToolHandler = Callable[[dict[str, Any], "Context"], Awaitable["ToolResult"]]
ResourceHandler = Callable[[str, dict[str, str], "Context"], Awaitable[list[dict[str, Any]]]]
PromptHandler = Callable[[dict[str, str], "Context"], Awaitable["PromptResult"]]
Completer = Callable[[str, dict[str, str]], Awaitable[list[str]]]

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class ToolAnnotations:
    """Behaviour hints (MCP ToolAnnotations). Every tool carries all four explicitly (R-050).

    The defaults are the safe side: a tool that says nothing is treated as one that may write, destroy and
    reach outside systems, so clients ask before calling it.
    """

    read_only: bool = False
    destructive: bool = True
    idempotent: bool = False
    open_world: bool = True

    def to_wire(self, title: str | None) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "readOnlyHint": self.read_only,
            # MCP: destructive/idempotent are meaningful only for non-read-only tools; stated anyway, consistently.
            "destructiveHint": False if self.read_only else self.destructive,
            "idempotentHint": True if self.read_only else self.idempotent,
            "openWorldHint": self.open_world,
        }
        if title:
            wire["title"] = title
        return wire


@dataclass(slots=True)
class ToolResult:
    """A tool call's outcome. ``structured`` is sent as ``structuredContent`` when set."""

    content: list[dict[str, Any]]
    structured: Any = _MISSING
    is_error: bool = False
    meta: dict[str, Any] | None = None

    @classmethod
    def error(cls, message: str, meta: dict[str, Any] | None = None) -> ToolResult:
        return cls([{"type": "text", "text": message}], is_error=True, meta=meta)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"content": self.content}
        if self.structured is not _MISSING:
            wire["structuredContent"] = self.structured
        wire["isError"] = self.is_error
        if self.meta:
            wire["_meta"] = self.meta
        return wire


@dataclass(slots=True)
class Tool:
    """A tool as sourced by a connector; ``name`` is the connector-local name before any prefix."""

    name: str
    description: str
    input_schema: dict[str, Any]
    handler: ToolHandler
    title: str | None = None
    output_schema: dict[str, Any] | None = None
    annotations: ToolAnnotations = field(default_factory=ToolAnnotations)
    icons: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None
    # Capabilities the tool needs from the client, e.g. {"sampling": {}} (MCP 2026-07-28: -32021 if missing).
    requires: dict[str, Any] | None = None
    # OAuth scopes a caller needs (None: the connector's or server's default). Enforced only when sign-in is on.
    scopes: list[str] | None = None
    # Callable without signing in (ChatGPT "noauth" security scheme) when sign-in is on.
    public: bool = False
    # MCP 2026-07-28 x-mcp-header: header suffix -> argument name, derived from input_schema.
    header_params: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        properties = self.input_schema.get("properties") or {}
        for arg, schema in properties.items():
            if isinstance(schema, Mapping) and isinstance(schema.get("x-mcp-header"), str):
                self.header_params[schema["x-mcp-header"]] = arg


@dataclass(slots=True)
class Resource:
    """A fixed resource. The handler gets the URI, no parameters, and the context."""

    uri: str
    name: str
    handler: ResourceHandler
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None
    size: int | None = None
    icons: list[dict[str, Any]] | None = None
    annotations: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None


@dataclass(slots=True)
class ResourceTemplate:
    """An RFC 6570 level-1 URI template (``{name}`` segments) and the handler that reads matching URIs."""

    uri_template: str
    name: str
    handler: ResourceHandler
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None
    icons: list[dict[str, Any]] | None = None
    annotations: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    completions: dict[str, Completer] = field(default_factory=dict)
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        parts = re.split(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", self.uri_template)
        regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
        self._pattern = re.compile(f"^{regex}$")

    def match(self, uri: str) -> dict[str, str] | None:
        found = self._pattern.match(uri)
        return found.groupdict() if found else None


@dataclass(frozen=True, slots=True)
class PromptArgument:
    name: str
    description: str | None = None
    required: bool = True

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"name": self.name, "required": self.required}
        if self.description:
            wire["description"] = self.description
        return wire


@dataclass(slots=True)
class PromptResult:
    messages: list[dict[str, Any]]
    description: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"messages": self.messages}
        if self.description:
            wire["description"] = self.description
        return wire


@dataclass(slots=True)
class Prompt:
    name: str
    handler: PromptHandler
    description: str
    title: str | None = None
    arguments: Sequence[PromptArgument] = ()
    icons: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None
    completions: dict[str, Completer] = field(default_factory=dict)
