"""Upstream list results → Patchbay definitions whose handlers proxy to the upstream.

What clients see is the upstream's definition with the config's curation applied (names, title, description,
annotations, URI prefix); what the handler sends upstream is always the upstream's own name or URI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from patchbay.connectors.mcp.curation import (
    Named,
    UriMap,
    annotations_of,
    input_schema_of,
    name_items,
    template_pattern,
    title_of,
)
from patchbay.connectors.mcp.options import McpOptions
from patchbay.connectors.mcp.proxy import Proxy, Unlinked
from patchbay.context import Context
from patchbay.definitions import (
    Completer,
    Prompt,
    PromptArgument,
    PromptResult,
    Resource,
    ResourceTemplate,
    Tool,
    ToolResult,
)
from patchbay.errors import RpcError, ToolError
from patchbay.protocol import jsonrpc
from patchbay.upstream import UpstreamError

# ref, argument name → a completer (None when the upstream does not offer completions).
CompleterFor = Callable[[dict[str, Any], str], Completer | None]


@dataclass(slots=True)
class Lists:
    """What the upstream lists, as it sent it."""

    tools: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    templates: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Definitions:
    tools: list[Tool] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    templates: list[ResourceTemplate] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)


def build(
    lists: Lists, options: McpOptions, prefix: str, proxy: Proxy, uris: UriMap, complete: CompleterFor
) -> Definitions:
    """Definitions for ``lists``.

    Raises:
        NameProblem: a final tool or prompt name would be refused by clients, or two would collide.
    """
    return Definitions(
        tools=[_tool(n, options, proxy) for n in name_items("tool", lists.tools, options, prefix)],
        resources=[r for r in (_resource(w, proxy, uris) for w in lists.resources) if r is not None],
        templates=[t for t in (_template(w, proxy, uris, complete) for w in lists.templates) if t is not None],
        prompts=[_prompt(n, proxy, complete) for n in name_items("prompt", lists.prompts, options, prefix)],
    )


def _tool(named: Named, options: McpOptions, proxy: Proxy) -> Tool:
    wire, upstream = named.wire, named.upstream
    override = options.tools.get(upstream)
    description = wire.get("description")
    output = wire.get("outputSchema")
    icons = wire.get("icons")

    async def call(arguments: dict[str, Any], ctx: Context) -> ToolResult:
        try:
            result = await proxy.request("tools/call", {"name": upstream, "arguments": arguments}, ctx)
        except Unlinked as needed:
            answer = needed.answer
            # MCP 2025-06-18 tools/output schema: a successful result of such a tool must carry structured
            # content (clients refuse it otherwise), so for them the link is given as an error result.
            failed = bool(answer["isError"]) or isinstance(output, dict)
            return ToolResult(answer["content"], is_error=failed, meta=answer["_meta"])
        except UpstreamError as exc:
            if exc.code == jsonrpc.MISSING_CLIENT_CAPABILITY and ctx.era == "modern":
                raise _as_rpc_error(exc) from None  # the client's request lacks a capability: the same error
            return ToolResult.error(f"The upstream server '{proxy.name}' refused the call: {exc.message}")
        return _tool_result(result)

    return Tool(
        name=named.local,
        description=(override.description if override and override.description else None)
        or (description if isinstance(description, str) else ""),
        input_schema=input_schema_of(wire),
        handler=call,
        title=(override.title if override and override.title else None) or title_of(wire),
        output_schema=output if isinstance(output, dict) else None,
        annotations=annotations_of(wire, override.annotations if override else None),
        icons=icons if isinstance(icons, list) else None,
    )


def _tool_result(result: dict[str, Any]) -> ToolResult:
    """The upstream's result unchanged (an upstream ``isError`` stays one)."""
    content = result.get("content")
    outcome = ToolResult(content if isinstance(content, list) else [], is_error=result.get("isError") is True)
    if "structuredContent" in result:
        outcome.structured = result["structuredContent"]
    meta = result.get("_meta")
    if isinstance(meta, dict) and meta:
        outcome.meta = meta
    return outcome


async def _read(proxy: Proxy, uris: UriMap, uri: str, ctx: Context) -> list[dict[str, Any]]:
    inner = uris.inward(uri)
    if inner is None:
        raise ToolError(f"Resource not found: {uri}")
    result = await _upstream(proxy, "resources/read", {"uri": inner}, ctx)
    contents = result.get("contents")
    out: list[dict[str, Any]] = []
    for item in contents if isinstance(contents, list) else []:
        if isinstance(item, dict):
            given = item.get("uri")
            out.append({**item, "uri": uris.outward(given) if isinstance(given, str) else uri})
    return out


async def _upstream(proxy: Proxy, method: str, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """A resource or prompt request: the upstream's errors keep their JSON-RPC code."""
    try:
        return await proxy.request(method, params, ctx)
    except Unlinked as needed:
        raise RpcError(jsonrpc.INVALID_PARAMS, needed.answer["content"][0]["text"]) from None
    except UpstreamError as exc:
        raise _as_rpc_error(exc) from None


def _as_rpc_error(exc: UpstreamError) -> RpcError:
    # MCP 2026-07-28 (HTTP): a missing client capability (-32021) is answered with 400 Bad Request.
    status = 400 if exc.code == jsonrpc.MISSING_CLIENT_CAPABILITY else 200
    return RpcError(exc.code, exc.message, exc.data, status=status)


def _resource(wire: dict[str, Any], proxy: Proxy, uris: UriMap) -> Resource | None:
    uri, name = wire.get("uri"), wire.get("name")
    if not isinstance(uri, str) or not isinstance(name, str):
        return None

    async def read(uri: str, params: dict[str, str], ctx: Context) -> list[dict[str, Any]]:
        return await _read(proxy, uris, uri, ctx)

    size = wire.get("size")
    return Resource(
        uri=uris.outward(uri),
        name=name,
        handler=read,
        title=_text(wire, "title"),
        description=_text(wire, "description"),
        mime_type=_text(wire, "mimeType"),
        size=size if isinstance(size, int) else None,
        icons=_list(wire, "icons"),
        annotations=_dict(wire, "annotations"),
    )


class UpstreamTemplate(ResourceTemplate):
    """A template that matches RFC 6570 operator expressions too (``{+path}``, ``{?q}``), which upstreams use."""

    def __post_init__(self) -> None:
        self._pattern = template_pattern(self.uri_template)


def _template(wire: dict[str, Any], proxy: Proxy, uris: UriMap, complete: CompleterFor) -> ResourceTemplate | None:
    template, name = wire.get("uriTemplate"), wire.get("name")
    if not isinstance(template, str) or not isinstance(name, str):
        return None

    async def read(uri: str, params: dict[str, str], ctx: Context) -> list[dict[str, Any]]:
        return await _read(proxy, uris, uri, ctx)

    ref = {"type": "ref/resource", "uri": template}
    variables = [g for g in template_pattern(template).groupindex]
    completers = {v: c for v in variables if (c := complete(ref, v)) is not None}
    return UpstreamTemplate(
        uri_template=uris.outward(template),
        name=name,
        handler=read,
        title=_text(wire, "title"),
        description=_text(wire, "description"),
        mime_type=_text(wire, "mimeType"),
        icons=_list(wire, "icons"),
        annotations=_dict(wire, "annotations"),
        completions=completers,
    )


def _prompt(named: Named, proxy: Proxy, complete: CompleterFor) -> Prompt:
    wire, upstream = named.wire, named.upstream
    arguments = [
        PromptArgument(a["name"], _text(a, "description"), a.get("required") is True)
        for a in _list(wire, "arguments") or []
        if isinstance(a, dict) and isinstance(a.get("name"), str)
    ]

    async def get(values: dict[str, str], ctx: Context) -> PromptResult:
        result = await _upstream(proxy, "prompts/get", {"name": upstream, "arguments": values}, ctx)
        messages = result.get("messages")
        return PromptResult(messages if isinstance(messages, list) else [], _text(result, "description"))

    ref = {"type": "ref/prompt", "name": upstream}
    completers = {a.name: c for a in arguments if (c := complete(ref, a.name)) is not None}
    return Prompt(
        name=named.local,
        handler=get,
        description=_text(wire, "description") or "",
        title=_text(wire, "title"),
        arguments=arguments,
        icons=_list(wire, "icons"),
        completions=completers,
    )


def _text(wire: dict[str, Any], key: str) -> str | None:
    value = wire.get(key)
    return value if isinstance(value, str) else None


def _list(wire: dict[str, Any], key: str) -> list[Any] | None:
    value = wire.get(key)
    return value if isinstance(value, list) else None


def _dict(wire: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = wire.get(key)
    return value if isinstance(value, dict) else None
