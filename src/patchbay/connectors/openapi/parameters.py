"""OpenAPI 3.x Parameter Objects → :class:`Parameter`, with their defaults applied once.

Parameter style and explode (OpenAPI 3.1 §4.8.12.4), path-level parameters merged (the operation's win by name and
location, §4.8.10.1), path parameters the template names but the spec forgot added, and 3.2's ``in: querystring``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from typing import Any

from patchbay.connectors.openapi.bodies import schema_shape, undefined_style
from patchbay.connectors.openapi.content import choose_media
from patchbay.connectors.openapi.context import Context, OperationError, is_ref, text
from patchbay.connectors.openapi.models import Parameter

LOCATIONS = ("path", "query", "header", "cookie")
TEMPLATE = re.compile(r"{([^{}/]+)}")


def declared(shared: Any, own: Any) -> Iterator[Any]:
    """The Path Item's parameters, then the operation's (which win by name and location, OpenAPI 3.1 §4.8.10.1;
    Swagger 2.0 "Path Item Object": the same)."""
    for level in (shared, own):
        if level is None:
            continue
        if not isinstance(level, list):
            raise OperationError("parameters must be a list")
        yield from level


def merged_parameters(ctx: Context, shared: Any, own: Any, base: str) -> list[Parameter]:
    by_key: dict[tuple[str, str], Parameter] = {}
    for node in declared(shared, own):
        for param in parameter(ctx, node, base):
            by_key[(param.name, param.location)] = param
    return list(by_key.values())


def with_template_parameters(path: str, params: list[Parameter]) -> list[Parameter]:
    """Path parameters the template names but the spec forgot to declare, as required strings."""
    declared = {p.name for p in params if p.location == "path"}
    missing = [name for name in TEMPLATE.findall(path) if name not in declared]
    extra = [Parameter(name, "path", {"type": "string"}, required=True) for name in dict.fromkeys(missing)]
    return [*params, *extra]


def parameter(ctx: Context, node: Any, base: str) -> list[Parameter]:
    """A Parameter Object (or a ``$ref`` to one, converted once); ``in: querystring`` gives one per property."""
    if is_ref(node):
        return ctx.converted_once(ctx.parameters, node, base, partial(parameter, ctx))
    if not isinstance(node, dict):
        raise OperationError("a parameter is not an object")
    if not isinstance(node.get("name"), str) or not node["name"]:
        raise OperationError(f"a parameter (in: {str(node.get('in'))[:20]}) has no name")
    name, where = node["name"], node.get("in")
    if where == "querystring":
        return querystring(ctx, node, base)
    if where not in LOCATIONS:
        raise OperationError(f"parameter {name!r} has an unknown location {where!r}")
    schema, content_type = parameter_schema(ctx, node, base, name)
    style = text(node.get("style")) or ("form" if where in ("query", "cookie") else "simple")
    explode = node.get("explode")
    explode = explode if isinstance(explode, bool) else style == "form"
    shape = schema_shape(schema, ctx.schemas.defs) if where == "query" and content_type is None else None
    problem = undefined_style(style, explode, shape) if shape is not None else None
    if problem is not None and node.get("required") is True:
        # An optional one is left out of the tool's arguments (inputs.py); a required one cannot be sent at all.
        raise OperationError(f"the required query parameter {name!r} cannot be sent: {problem}")
    return [
        Parameter(
            name=name,
            location=where,
            schema=schema,
            required=where == "path" or node.get("required") is True,
            description=text(node.get("description")),
            style=style,
            explode=explode,
            allow_reserved=node.get("allowReserved") is True,
            content_type=content_type,
            deprecated=node.get("deprecated") is True,
            allow_empty=where == "query" and node.get("allowEmptyValue") is True,
        )
    ]


def parameter_schema(ctx: Context, node: dict[str, Any], base: str, name: str) -> tuple[dict[str, Any], str | None]:
    content = node.get("content")
    if isinstance(content, dict) and content:
        media = choose_media(content)
        entry = content[media]
        schema = entry.get("schema") if isinstance(entry, dict) else None
        return ctx.schemas.convert(schema, base, f"parameter {name!r}"), media
    return ctx.schemas.convert(node.get("schema"), base, f"parameter {name!r}"), None


def querystring(ctx: Context, node: dict[str, Any], base: str) -> list[Parameter]:
    """OpenAPI 3.2 ``in: querystring``: the whole query string from one value. Form-encoded content maps onto
    one ``form``/explode query parameter per property (§4.8.12.2.3); other content types do not map."""
    content = node.get("content")
    media = next(iter(content), "") if isinstance(content, dict) else ""
    if media != "application/x-www-form-urlencoded":
        raise OperationError(f"a querystring parameter in {media or 'no'} content is not supported")
    entry = content[media] if isinstance(content, dict) else None
    raw = entry.get("schema") if isinstance(entry, dict) else None
    schema = ctx.documents.follow(raw, base).node if isinstance(raw, dict) else None
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        raise OperationError("a querystring parameter's schema must be an object with properties")
    required = schema.get("required") if isinstance(schema, dict) else None
    wanted = set(required) if isinstance(required, list) else set()
    return [
        Parameter(
            str(prop),
            "query",
            ctx.schemas.convert(sub, base, f"querystring property {prop!r}"),
            required=prop in wanted,
            style="form",
            explode=True,
        )
        for prop, sub in props.items()
    ]
