"""Operations to MCP tools: one per selected operation, or three search tools when the list would flood a context.

Each tool carries a title, all four annotation hints derived from the HTTP method (RFC 9110 §9.2: GET, HEAD and
OPTIONS are safe, so read-only; PUT and DELETE are idempotent and destructive; POST, PATCH and the rarely published
TRACE are destructive, not idempotent), a capped description, a flat input schema and, for JSON object responses,
a loosened output schema. What a client sees can be changed per operation in config (``operations``) or in the spec (the
``x-patchbay`` or ``x-mcp`` operation extension: name, title, description, annotations, hidden); config wins.

Handlers check the arguments against the tool's input schema (a validator compiled on first use, then cached) and
pass them, with the operation's :class:`Plan`, to the ``invoke`` the connector gives.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from patchbay.catalog.catalog import tool_wire
from patchbay.connectors.openapi.checks import ArgumentCheck
from patchbay.connectors.openapi.inputs import Schemas, build_inputs, output_schema
from patchbay.connectors.openapi.models import READ_METHODS, ApiSpec, Operation, Plan
from patchbay.connectors.openapi.naming import CLIENT_NAME, MAX_NAME, assign_names, title_of
from patchbay.connectors.openapi.options import OpenApiOptions, OperationOverride
from patchbay.connectors.openapi.select import extension, select
from patchbay.connectors.openapi.tokens import estimate_tokens
from patchbay.definitions import Tool, ToolAnnotations, ToolResult

if TYPE_CHECKING:
    from patchbay.context import Context

log = logging.getLogger("patchbay.connectors.openapi")

Invoke = Callable[[Plan, dict[str, Any], "Context"], Awaitable[ToolResult]]
MAX_DESCRIPTION = 1000
SAFE_METHODS = READ_METHODS  # RFC 9110 §9.2.1, as the connector's retries read them
IDEMPOTENT_METHODS = frozenset({"PUT", "DELETE"}) | SAFE_METHODS  # RFC 9110 §9.2.2
_HINT_FIELDS = {
    "readOnlyHint": "read_only",
    "destructiveHint": "destructive",
    "idempotentHint": "idempotent",
    "openWorldHint": "open_world",
}


@dataclass(slots=True)
class Built:
    """What :func:`build_tools` made: the tools to publish and every selected operation's plan by its name."""

    tools: list[Tool]
    plans: dict[str, Plan]  # connector-local operation (tool) name -> Plan, in both modes
    mode: Literal["tools", "search"]
    estimated_tokens: int  # of the one-tool-per-operation list, whatever the mode
    selected: int
    # The one-tool-per-operation tools (the published ones in tools mode): what describe_operation shows.
    operation_tools: list[Tool] | None = None


def tool_handler(plan: Plan, check: ArgumentCheck, invoke: Invoke) -> Callable[..., Awaitable[ToolResult]]:
    """The handler of one operation's tool: check the arguments, then invoke."""

    async def handle(arguments: dict[str, Any], ctx: Context) -> ToolResult:
        problem = check.problem(arguments)
        if problem is not None:
            return ToolResult.error(problem)
        return await invoke(plan, arguments, ctx)

    return handle


def annotations_of(operation: Operation, open_world: bool, *layers: dict[str, Any] | None) -> ToolAnnotations:
    """The hints from the method, each layer's (spec extension, then config) over them; other keys ignored."""
    method = operation.method
    hints: dict[str, bool] = {
        "read_only": method in SAFE_METHODS,
        "destructive": method not in SAFE_METHODS,
        "idempotent": method in IDEMPOTENT_METHODS,
        "open_world": open_world,
    }
    for layer in layers:
        for key, value in (layer or {}).items():
            if key in _HINT_FIELDS and isinstance(value, bool):
                hints[_HINT_FIELDS[key]] = value
    return ToolAnnotations(**hints)


def description_of(operation: Operation, limit: int = MAX_DESCRIPTION) -> str:
    """Summary and description (Markdown kept), deprecation noted, capped at ``limit`` characters."""
    summary, text = operation.summary.strip(), operation.description.strip()
    parts = [summary] if summary and not text.startswith(summary) else []
    if text:
        parts.append(text)
    joined = "\n\n".join(parts) or operation.key
    if operation.deprecated:
        joined = f"Deprecated. {joined}"
    if len(joined) <= limit:
        return joined
    cut = joined[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + "…"


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _chosen_names(
    operations: tuple[Operation, ...], overrides: dict[str, tuple[str, OperationOverride]], prefix: str, label: str
) -> dict[str, tuple[str, str]]:
    """Names given in config (checked by assign_names) and usable names from the spec's extension."""
    chosen = {key: (o.name, config_key) for key, (config_key, o) in overrides.items() if o.name}
    used = {name for name, _ in chosen.values()}
    for operation in sorted(operations, key=lambda op: op.key):
        name = extension(operation).get("name")
        if operation.key in chosen or name is None:
            continue
        if not isinstance(name, str) or not CLIENT_NAME.match(prefix + name) or name in used:
            log.warning(
                "connector '%s': %s: the spec's x-mcp name %r is unusable (taken, or not 1-%d of A-Z a-z 0-9 _ - "
                "with the prefix); the name is derived instead",
                label,
                operation.key,
                name,
                MAX_NAME,
            )
            continue
        chosen[operation.key] = (name, "spec")
        used.add(name)
    return chosen


def operation_tool(
    operation: Operation,
    name: str,
    override: OperationOverride | None,
    options: OpenApiOptions,
    schemas: Schemas,
    invoke: Invoke,
) -> tuple[Tool, Plan, ArgumentCheck]:
    """The tool of one operation, its plan and its argument check."""
    ext = extension(operation)
    args, input_schema = build_inputs(operation, schemas.defs, schemas=schemas)
    ext_hints = ext.get("annotations") if isinstance(ext.get("annotations"), dict) else None
    annotations = annotations_of(operation, options.open_world, ext_hints, override.annotations if override else None)
    title = (override and override.title) or _text(ext.get("title")) or title_of(operation)
    description = (override and override.description) or _text(ext.get("description")) or description_of(operation)
    output = output_schema(operation.success, schemas) if options.output_schema else None
    plan = Plan(operation, args, name)
    check = ArgumentCheck(input_schema)
    tool = Tool(
        name=name,
        description=description,
        input_schema=input_schema,
        handler=tool_handler(plan, check, invoke),
        title=title,
        output_schema=output,
        annotations=annotations,
    )
    return tool, plan, check


def build_tools(
    spec: ApiSpec, options: OpenApiOptions, invoke: Invoke, *, prefix: str = "", label: str = "openapi"
) -> Built:
    """Tools for ``spec``'s selected operations, or the search tools when ``mode`` (or ``auto``'s budget) says so.

    ``prefix`` is the catalog's prefix for
    this connector (final names must fit 64 characters with it); ``label`` names the connector in log lines.

    Raises:
        ConfigError: an override names no operation, or a name given in config is taken, too long with the
            prefix, or has characters clients refuse (key ``operations.<key>``); the prefix is too long.
    """
    selected = select(spec.operations, options, label=label)
    chosen = _chosen_names(selected.operations, selected.overrides, prefix, label)
    names = assign_names(selected.operations, prefix, chosen)
    schemas = Schemas(spec.defs)
    tools: list[Tool] = []
    plans: dict[str, Plan] = {}
    checks: dict[str, ArgumentCheck] = {}
    for operation in selected.operations:
        override = selected.overrides.get(operation.key)
        tool, plan, check = operation_tool(
            operation, names[operation.key], override and override[1], options, schemas, invoke
        )
        tools.append(tool)
        plans[tool.name] = plan
        checks[tool.name] = check
    estimated = estimate_tokens([tool_wire(prefix + tool.name, tool) for tool in tools])
    search = options.mode == "search" or (options.mode == "auto" and estimated > options.token_budget)
    if not search:
        return Built(tools, plans, "tools", estimated, len(tools), tools)
    from patchbay.connectors.openapi.search import search_tools

    published = search_tools(spec.title, tools, plans, checks, invoke, open_world=options.open_world)
    return Built(published, plans, "search", estimated, len(tools), tools)


__all__ = ["ArgumentCheck", "Built", "Invoke", "build_tools"]
