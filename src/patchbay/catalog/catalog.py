"""Builds the merged, prefixed view of every connector's definitions and answers lookups by public name."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from patchbay.catalog.changes import Item
from patchbay.catalog.digest import Kind, definition_digest, key_of, manifest_digest, visible, wire_digest
from patchbay.catalog.manifest import Key, Manifest
from patchbay.connectors.base import Connector
from patchbay.definitions import Prompt, Resource, ResourceTemplate, Tool
from patchbay.errors import ConfigError

# MCP 2025-11-25 server/tools: 1-128 characters of A-Z a-z 0-9 _ - . ; Claude's API also refuses '.' so
# prefixes join with '_' by default.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True, slots=True)
class Mounted:
    """A connector with the prefix its names get, and the access its config sets for its tools."""

    connector: Connector
    prefix: str
    scopes: Sequence[str] | None = None
    tool_scopes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    public_tools: Sequence[str] = ()

    def access(self, tool: Tool) -> ToolAccess:
        """Config wins over the tool's own declaration; the connector's scopes fill in for tools without any."""
        scopes = self.tool_scopes.get(tool.name)
        if scopes is None:
            scopes = tool.scopes if tool.scopes is not None else self.scopes
        return ToolAccess(tuple(scopes or ()), tool.public or tool.name in self.public_tools)


@dataclass(frozen=True, slots=True)
class ToolAccess:
    """Who may call a tool once sign-in is on: callers holding ``scopes``, or anyone when ``public``."""

    scopes: tuple[str, ...] = ()
    public: bool = False


# Given a tool's access, the ``securitySchemes`` to advertise (None: advertise nothing, as when auth is off).
SecuritySchemes = Callable[[ToolAccess], list[dict[str, Any]] | None]


class Catalog:
    """Public name → definition, plus the wire form of each list, rebuilt whenever a connector changes."""

    def __init__(
        self,
        mounted: Sequence[Mounted],
        security: SecuritySchemes | None = None,
        is_up: Callable[[str], bool] = lambda name: True,
    ) -> None:
        self.mounted = list(mounted)
        self.security = security
        # Connectors that are down (their system unreachable) contribute nothing until they come up.
        self.is_up = is_up
        self.tools: dict[str, Tool] = {}
        self.access: dict[str, ToolAccess] = {}
        self.prompts: dict[str, Prompt] = {}
        self.resources: dict[str, Resource] = {}
        self.templates: list[ResourceTemplate] = []
        self.tools_wire: list[dict[str, Any]] = []
        self.prompts_wire: list[dict[str, Any]] = []
        self.resources_wire: list[dict[str, Any]] = []
        self.templates_wire: list[dict[str, Any]] = []
        # Public tool name → digest of the definition its handler was built from (docs/manifest.md).
        self.digests: dict[str, str] = {}
        # Digest of the served manifest: the sorted (kind, name, digest) of every served definition.
        self.manifest_hash = ""
        # The reviewed manifest (None: serve what the connectors publish, record nothing).
        self.manifest: Manifest | None = None
        # Empty until rebuild(): connectors are asked for their lists only once they are open.

    def rebuild(self) -> None:
        """Recompute every view. Raises ConfigError when two connectors publish the same name."""
        tools: dict[str, Tool] = {}
        access: dict[str, ToolAccess] = {}
        prompts: dict[str, Prompt] = {}
        resources: dict[str, Resource] = {}
        templates: list[ResourceTemplate] = []
        owners: dict[str, str] = {}
        sources: dict[Key, str] = {}  # (kind, key) → connector
        for mount in self.mounted:
            owner = mount.connector.name
            if not self.is_up(owner):
                continue
            for tool in mount.connector.tools():
                name = mount.prefix + tool.name
                if not TOOL_NAME.match(name):
                    raise ConfigError(
                        f"connector '{owner}': tool name '{name}' is not allowed: use 1-128 of A-Z a-z 0-9 _ - ."
                    )
                _claim(owners, f"tool {name}", owner)
                tools[name] = tool
                access[name] = mount.access(tool)
                sources["tool", name] = owner
            for prompt in mount.connector.prompts():
                name = mount.prefix + prompt.name
                _claim(owners, f"prompt {name}", owner)
                prompts[name] = prompt
                sources["prompt", name] = owner
            for res in mount.connector.resources():
                _claim(owners, f"resource {res.uri}", owner)
                resources[res.uri] = res
            for template in mount.connector.resource_templates():
                templates.append(template)
                sources["template", template.uri_template] = owner
        observed = _observed(
            sources,
            ("tool", [tool_wire(n, t, self._schemes(access[n])) for n, t in tools.items()]),
            ("prompt", [prompt_wire(n, p) for n, p in prompts.items()]),
            ("template", [template_wire(t) for t in templates]),
        )
        down = frozenset(m.connector.name for m in self.mounted if not self.is_up(m.connector.name))
        served = self.manifest.review(observed, down) if self.manifest is not None else _as_served(observed)
        self.tools = {n: t for n, t in tools.items() if ("tool", n) in served}
        self.access = {n: a for n, a in access.items() if n in self.tools}
        self.prompts = {n: p for n, p in prompts.items() if ("prompt", n) in served}
        self.resources = resources
        self.templates = [t for t in templates if ("template", t.uri_template) in served]
        self.tools_wire = [wire for (kind, _), wire in served.items() if kind == "tool"]
        self.prompts_wire = [wire for (kind, _), wire in served.items() if kind == "prompt"]
        self.resources_wire = [resource_wire(r) for r in resources.values()]
        self.templates_wire = [wire for (kind, _), wire in served.items() if kind == "template"]
        self.digests = {name: observed["tool", name][0].digest for name in self.tools}
        self.manifest_hash = manifest_digest((k, n, wire_digest(w)) for (k, n), w in served.items())

    def _schemes(self, access: ToolAccess) -> list[dict[str, Any]] | None:
        return self.security(access) if self.security is not None else None

    @property
    def has_public_tools(self) -> bool:
        return any(a.public for a in self.access.values())

    @property
    def tool_scopes(self) -> tuple[str, ...]:
        """Every scope a tool needs, and those the config sets for connectors that are down (their tools will)."""
        configured = (
            s
            for m in self.mounted
            if not self.is_up(m.connector.name)
            for s in (*(m.scopes or ()), *(s for scopes in m.tool_scopes.values() for s in scopes))
        )
        return tuple(dict.fromkeys([*(s for a in self.access.values() for s in a.scopes), *configured]))

    def find_template(self, uri: str) -> tuple[ResourceTemplate, dict[str, str]] | None:
        for template in self.templates:
            params = template.match(uri)
            if params is not None:
                return template, params
        return None


def _observed(
    sources: Mapping[Key, str], *lists: tuple[Kind, list[dict[str, Any]]]
) -> dict[Key, tuple[Item, dict[str, Any]]]:
    """Each published definition with its digest, keyed as the manifest knows it."""
    observed: dict[Key, tuple[Item, dict[str, Any]]] = {}
    for kind, wires in lists:
        for wire in wires:
            key = key_of(kind, wire)
            definition = visible(wire)
            item = Item(kind, key, definition_digest(definition), definition, sources.get((kind, key), ""))
            observed[kind, key] = (item, wire)
    return observed


def _as_served(observed: Mapping[Key, tuple[Item, dict[str, Any]]]) -> dict[Key, Any]:
    return {key: wire for key, (_, wire) in observed.items()}


def _claim(owners: dict[str, str], key: str, owner: str) -> None:
    if key in owners:
        raise ConfigError(
            f"connectors '{owners[key]}' and '{owner}' both publish {key}; give one of them a different 'prefix'"
        )
    owners[key] = owner


def tool_wire(name: str, tool: Tool, schemes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    wire: dict[str, Any] = {"name": name}
    if tool.title:
        wire["title"] = tool.title
    wire["description"] = tool.description
    wire["inputSchema"] = tool.input_schema
    if tool.output_schema is not None:
        wire["outputSchema"] = tool.output_schema
    wire["annotations"] = tool.annotations.to_wire(tool.title)
    if tool.icons:
        wire["icons"] = tool.icons
    meta = tool.meta
    if schemes is not None:
        # OpenAI Apps SDK: per-tool securitySchemes, mirrored in _meta for clients that read only _meta.
        wire["securitySchemes"] = schemes
        meta = {**(meta or {}), "securitySchemes": schemes}
    if meta:
        wire["_meta"] = meta
    return wire


def prompt_wire(name: str, prompt: Prompt) -> dict[str, Any]:
    wire: dict[str, Any] = {"name": name}
    if prompt.title:
        wire["title"] = prompt.title
    wire["description"] = prompt.description
    wire["arguments"] = [a.to_wire() for a in prompt.arguments]
    if prompt.icons:
        wire["icons"] = prompt.icons
    return wire


def resource_wire(res: Resource) -> dict[str, Any]:
    wire: dict[str, Any] = {"uri": res.uri, "name": res.name}
    _common(wire, res.title, res.description, res.mime_type, res.icons, res.annotations)
    if res.size is not None:
        wire["size"] = res.size
    return wire


def template_wire(template: ResourceTemplate) -> dict[str, Any]:
    wire: dict[str, Any] = {"uriTemplate": template.uri_template, "name": template.name}
    _common(wire, template.title, template.description, template.mime_type, template.icons, template.annotations)
    return wire


def _common(
    wire: dict[str, Any],
    title: str | None,
    description: str | None,
    mime_type: str | None,
    icons: list[dict[str, Any]] | None,
    annotations: dict[str, Any] | None,
) -> None:
    if title:
        wire["title"] = title
    if description:
        wire["description"] = description
    if mime_type:
        wire["mimeType"] = mime_type
    if icons:
        wire["icons"] = icons
    if annotations:
        wire["annotations"] = annotations
