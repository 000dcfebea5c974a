"""Which upstream definitions are published, under which names, and what clients see of them.

Pure functions over the upstream's list results: the connector turns what they keep into definitions with
proxying handlers. Names are checked against what clients enforce on the *final* name, prefix included: 1-64 of
``A-Z a-z 0-9 _ -`` (MCP allows 128 and '.', but Claude's API and ChatGPT refuse longer names or dots).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from patchbay.connectors.mcp.options import McpOptions
from patchbay.definitions import ToolAnnotations

CLIENT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_NAME = 64


class NameProblem(ValueError):
    """An upstream name cannot be published as it is; the message says why and what to set."""

    def __init__(self, message: str, upstream: str) -> None:
        super().__init__(message)
        self.upstream = upstream


@dataclass(frozen=True, slots=True)
class Named:
    """One upstream item kept for publishing: its upstream name and the connector-local name it gets."""

    upstream: str
    local: str
    wire: dict[str, Any]


def wanted(name: str, options: McpOptions) -> bool:
    """Whether ``include``/``exclude`` keep the upstream ``name`` (exclude wins)."""
    if options.include and not any(fnmatch.fnmatchcase(name, g) for g in options.include):
        return False
    return not any(fnmatch.fnmatchcase(name, g) for g in options.exclude)


def name_items(kind: str, items: Iterable[dict[str, Any]], options: McpOptions, prefix: str) -> list[Named]:
    """The items ``include``/``exclude`` keep, renamed, each final name checked.

    Raises:
        NameProblem: a final name is too long, has characters clients refuse, or two items get one name.
    """
    kept: list[Named] = []
    taken: dict[str, str] = {}
    for wire in items:
        upstream = wire.get("name")
        if not isinstance(upstream, str) or not wanted(upstream, options):
            continue
        local = options.rename.get(upstream, upstream)
        final = prefix + local
        if len(final) > MAX_NAME or not CLIENT_NAME.match(final):
            why = f"is {len(final)} characters, over {MAX_NAME}" if len(final) > MAX_NAME else "has characters"
            raise NameProblem(
                f"{kind} '{upstream}' would be published as '{final}', which {why} clients refuse "
                f"(1-{MAX_NAME} of A-Z a-z 0-9 _ -); give it a shorter name with rename = {{ {_toml_key(upstream)} "
                f'= "..." }} or exclude it',
                upstream,
            )
        if local in taken:
            raise NameProblem(
                f"{kind}s '{taken[local]}' and '{upstream}' would both be published as '{final}'; rename one of them",
                upstream,
            )
        taken[local] = upstream
        kept.append(Named(upstream, local, wire))
    return kept


def _toml_key(name: str) -> str:
    return name if re.match(r"^[A-Za-z0-9_-]+$", name) else f'"{name}"'


def annotations_of(wire: dict[str, Any], override: dict[str, bool] | None) -> ToolAnnotations:
    """The upstream's hints where it gives them, the safe defaults where it does not, the config's over both."""
    given = wire.get("annotations")
    hints: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
    hints.update(override or {})
    defaults = ToolAnnotations()

    def flag(key: str, default: bool) -> bool:
        value = hints.get(key)
        return value if isinstance(value, bool) else default

    return ToolAnnotations(
        read_only=flag("readOnlyHint", defaults.read_only),
        destructive=flag("destructiveHint", defaults.destructive),
        idempotent=flag("idempotentHint", defaults.idempotent),
        open_world=flag("openWorldHint", defaults.open_world),
    )


def title_of(wire: dict[str, Any]) -> str | None:
    """MCP 2025-06-18 tools: ``title`` wins over ``annotations.title``."""
    title = wire.get("title")
    if isinstance(title, str) and title:
        return title
    annotations = wire.get("annotations")
    inner = annotations.get("title") if isinstance(annotations, dict) else None
    return inner if isinstance(inner, str) and inner else None


def input_schema_of(wire: dict[str, Any]) -> dict[str, Any]:
    """The upstream's input schema; clients refuse a tool without an object schema, so a missing one is empty."""
    schema = wire.get("inputSchema")
    if isinstance(schema, dict) and schema.get("type") == "object":
        return schema
    return {"type": "object", "properties": {}}


class UriMap:
    """Upstream resource URIs under a prefix (``files+file:///a``), and back."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def outward(self, uri: str) -> str:
        return self.prefix + uri

    def inward(self, uri: str) -> str | None:
        """The upstream URI for a published one; None when ``uri`` is not under the prefix."""
        if not uri.startswith(self.prefix):
            return None
        return uri[len(self.prefix) :]


# RFC 6570 expressions: {var}, {+var}, {#var}, {/var}, {?a,b} ... Operators other than simple string expansion
# may expand to '/' or more, so they match any run of characters.
_EXPRESSION = re.compile(r"\{([+#./;?&]?)([A-Za-z0-9_.,*:%]+)\}")


def template_pattern(template: str) -> re.Pattern[str]:
    """A regex that matches the URIs ``template`` expands to (RFC 6570 levels 1-4, loosely for operators)."""
    parts: list[str] = []
    last = 0
    for found in _EXPRESSION.finditer(template):
        parts.append(re.escape(template[last : found.start()]))
        operator, names = found.group(1), found.group(2)
        first = re.sub(r"[^A-Za-z0-9_]", "_", names.split(",")[0].split(":")[0].rstrip("*"))
        group = f"(?P<{first}>" if first and f"(?P<{first}>" not in "".join(parts) else "("
        parts.append(group + ("[^/?#]+)" if operator == "" else ".*)"))
        last = found.end()
    parts.append(re.escape(template[last:]))
    return re.compile("^" + "".join(parts) + "$")
