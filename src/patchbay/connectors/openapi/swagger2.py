"""Swagger 2.0 operations → the same :class:`Operation` model as OpenAPI 3.

What differs (Swagger 2.0 spec, "Parameter Object", "Operation Object", "Swagger Object"): the body is an
``in: body`` parameter or a set of ``in: formData`` ones, its media type comes from ``consumes``; responses carry a
bare ``schema`` whose media type comes from ``produces``; non-body parameters describe their value with schema
keywords directly and arrays with ``collectionFormat``; ``securityDefinitions``; the server is
``schemes`` + ``host`` + ``basePath``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from patchbay.connectors.openapi.content import success_status
from patchbay.connectors.openapi.context import Context, OperationError, text
from patchbay.connectors.openapi.models import (
    METHODS,
    Body,
    Encoding,
    Operation,
    Parameter,
    SecurityScheme,
    Skipped,
    Success,
)
from patchbay.connectors.openapi.parameters import LOCATIONS, declared, with_template_parameters
from patchbay.connectors.openapi.paths import operation
from patchbay.connectors.openapi.paths import operations as walk
from patchbay.connectors.openapi.refs import Located

# collectionFormat -> (style, explode) for query / formData, and for path / header (OpenAPI 3.0 migration).
_QUERY_FORMATS = {
    "csv": ("form", False),
    "multi": ("form", True),
    "ssv": ("spaceDelimited", False),
    "pipes": ("pipeDelimited", False),
}
_NOT_SCHEMA = frozenset({"name", "in", "required", "description", "collectionFormat", "allowEmptyValue"})
JSON = "application/json"


def servers(document: dict[str, Any], source: str) -> tuple[str, ...]:
    """``schemes`` + ``host`` + ``basePath``; https first. Without ``host`` the base path stays relative to
    where the spec was read; without ``schemes``, the spec's own scheme (https when read from a file)."""
    base_path = text(document.get("basePath")) or "/"
    host = document.get("host")
    if not isinstance(host, str) or not host:
        return (base_path,)
    listed = document.get("schemes")
    schemes = [s for s in listed if s in ("https", "http")] if isinstance(listed, list) else []
    if not schemes:
        schemes = ["http" if source.startswith("http://") else "https"]
    schemes.sort(key=lambda scheme: scheme != "https")
    return tuple(f"{scheme}://{host}{base_path.rstrip('/')}" for scheme in schemes)


def security_schemes(value: Any) -> dict[str, SecurityScheme]:
    schemes: dict[str, SecurityScheme] = {}
    if not isinstance(value, dict):
        return schemes
    for key, node in value.items():
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if kind == "basic":
            schemes[str(key)] = SecurityScheme(str(key), "http", scheme="basic")
        elif kind == "apiKey":
            where = node.get("in")
            location: Literal["query", "header"] = "query" if where == "query" else "header"
            schemes[str(key)] = SecurityScheme(str(key), "apiKey", name=text(node.get("name")), location=location)
        elif kind == "oauth2":
            scopes = node.get("scopes")
            schemes[str(key)] = SecurityScheme(
                str(key),
                "oauth2",
                token_url=text(node.get("tokenUrl")),
                authorization_url=text(node.get("authorizationUrl")),
                scopes=tuple(str(s) for s in scopes) if isinstance(scopes, dict) else (),
            )
    return schemes


def path_operations(item: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for method in METHODS:
        if method in item:
            yield method.upper(), item[method]


def operations(ctx: Context, document: dict[str, Any]) -> tuple[list[Operation], list[Skipped]]:
    return walk(ctx, document.get("paths"), path_operations, convert)


def _media_list(value: Any) -> list[str]:
    return [m for m in value if isinstance(m, str)] if isinstance(value, list) else []


def convert(ctx: Context, method: str, path: str, op: dict[str, Any], item: Located) -> Operation:
    root = ctx.documents.root  # Swagger Object consumes / produces: the defaults of every operation
    consumes = _media_list(op.get("consumes")) or _media_list(root.get("consumes"))
    produces = _media_list(op.get("produces")) or _media_list(root.get("produces"))
    nodes = _merged(ctx, item.node.get("parameters"), op.get("parameters"), item.base)
    params = [_parameter(ctx, node, node_base) for node, node_base in nodes if node.get("in") in LOCATIONS]
    params = with_template_parameters(path, params)
    content = (_body(ctx, nodes, consumes), _success(ctx, op.get("responses"), item.base, produces))
    return operation(ctx, method, path, op, item.node, params, content)


def _merged(ctx: Context, shared: Any, own: Any, base: str) -> list[tuple[dict[str, Any], str]]:
    """Path-level then operation-level parameters, resolved; the operation's win by (name, in)."""
    by_key: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
    for node in declared(shared, own):
        located = ctx.documents.follow(node, base)
        param = located.node
        if not isinstance(param, dict):
            raise OperationError("a parameter is not an object")
        if not isinstance(param.get("name"), str) or not param["name"]:
            raise OperationError(f"a parameter (in: {str(param.get('in'))[:20]}) has no name")
        where = param.get("in")
        if where not in (*LOCATIONS, "body", "formData"):
            raise OperationError(f"parameter {param['name']!r} has an unknown location {where!r}")
        by_key[(param["name"], str(where))] = (param, located.base)
    return list(by_key.values())


def _value_schema(ctx: Context, node: dict[str, Any], base: str) -> dict[str, Any]:
    raw = {key: value for key, value in node.items() if key not in _NOT_SCHEMA}
    return ctx.schemas.convert(raw, base, f"parameter {node['name']!r}")


def _style(node: dict[str, Any], location: str) -> tuple[str, bool]:
    fmt = node.get("collectionFormat", "csv") if node.get("type") == "array" else "csv"
    if fmt == "tsv":
        raise OperationError(f"parameter {node['name']!r}: collectionFormat tsv has no OpenAPI 3 equivalent")
    if location in ("path", "header"):
        if fmt != "csv":
            raise OperationError(f"parameter {node['name']!r}: collectionFormat {fmt} is not allowed in {location}")
        return "simple", False
    if fmt not in _QUERY_FORMATS:
        raise OperationError(f"parameter {node['name']!r}: unknown collectionFormat {fmt!r}")
    return _QUERY_FORMATS[fmt]


def _parameter(ctx: Context, node: dict[str, Any], base: str) -> Parameter:
    location = node["in"]
    style, explode = _style(node, location)
    return Parameter(
        name=node["name"],
        location=location,
        schema=_value_schema(ctx, node, base),
        required=location == "path" or node.get("required") is True,
        description=text(node.get("description")),
        style=style,
        explode=explode,
        allow_empty=location == "query" and node.get("allowEmptyValue") is True,
    )


def _body(ctx: Context, nodes: list[tuple[dict[str, Any], str]], consumes: list[str]) -> Body | None:
    body = [(node, base) for node, base in nodes if node.get("in") == "body"]
    form = [(node, base) for node, base in nodes if node.get("in") == "formData"]
    if body and form:
        raise OperationError("an operation cannot have both body and formData parameters")
    if body:
        node, base = body[0]
        media = _prefer_json(consumes)
        schema = ctx.schemas.convert(node.get("schema"), base, "the request body")
        return Body(media, schema, node.get("required") is True, text(node.get("description")))
    if not form:
        return None
    files = any(node.get("type") == "file" for node, _ in form)
    media = "multipart/form-data" if files or "multipart/form-data" in consumes else "application/x-www-form-urlencoded"
    props: dict[str, Any] = {}
    required: list[str] = []
    encoding: dict[str, Encoding] = {}
    for node, base in form:
        name = node["name"]
        props[name] = {
            **_value_schema(ctx, node, base),
            **({"description": node["description"]} if isinstance(node.get("description"), str) else {}),
        }
        if node.get("required") is True:
            required.append(name)
        if node.get("type") == "array":
            style, explode = _style(node, "query")
            encoding[name] = Encoding(style=style, explode=explode)
    form_schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        form_schema["required"] = required
    return Body(media, form_schema, bool(required), encoding=encoding)


def _prefer_json(types: list[str]) -> str:
    for media in types:
        lowered = media.split(";", 1)[0].strip().lower()
        if lowered == JSON or lowered.endswith("+json"):
            return media
    return types[0] if types else JSON


def _success(ctx: Context, responses: Any, base: str, produces: list[str]) -> Success | None:
    if not isinstance(responses, dict):
        return None
    for status in success_status(responses):
        located = ctx.documents.follow(responses[status], base)
        node = located.node
        if not isinstance(node, dict):
            continue
        raw = node.get("schema")
        if raw is None:
            if status != "default":
                return Success(status, None, None)
            continue
        schema = ctx.schemas.convert(raw, located.base, f"the {status} response")
        return Success(status, _prefer_json(produces), schema)
    return None
