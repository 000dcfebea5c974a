"""OpenAPI 3.0 / 3.1 / 3.2 Path Items and Operations → :class:`Operation`, each on its own.

Defaults are applied here once, so later parts never re-derive them: parameter style and explode (OpenAPI 3.1
§4.8.12.4), path-level parameters merged (the operation's win by name and location, §4.8.10.1), the top-level
``security`` substituted when the operation has none (an explicit ``security: []`` stays empty, §4.8.10.1),
server variables replaced by their defaults (§4.8.6), the body's media type and the success response chosen.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from patchbay.connectors.openapi.bodies import required_properties, schema_shape, undefined_style, unsendable_properties
from patchbay.connectors.openapi.models import (
    METHODS,
    Body,
    Encoding,
    Operation,
    Parameter,
    Requirement,
    SecurityScheme,
    Skipped,
    Success,
)
from patchbay.connectors.openapi.refs import Documents, RefError
from patchbay.connectors.openapi.schemas import SchemaConverter, SchemaError

LOCATIONS = ("path", "query", "header", "cookie")
SUCCESS_ORDER = ("200", "201", "202", "203", "204", "2XX", "2xx")
_TEMPLATE = re.compile(r"{([^{}/]+)}")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 §5.6.2: a method is a token
_BODY_ORDER = ("application/x-www-form-urlencoded", "multipart/form-data")


class OperationError(ValueError):
    """An operation that cannot be converted; the message is the reason shown in the skipped list."""


@dataclass(slots=True)
class Context:
    """What every operation of one document shares: its documents, the schema converter and memos."""

    documents: Documents
    schemas: SchemaConverter
    security: tuple[Requirement, ...] | None  # the top-level requirements (None: none declared)
    # Converted once by the $ref'd object's URI, with the def keys its schemas reference.
    parameters: dict[str, tuple[list[Parameter], frozenset[str]]] = field(default_factory=dict)
    successes: dict[str, tuple[Success | None, frozenset[str]]] = field(default_factory=dict)


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def extensions(node: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in node.items() if isinstance(key, str) and key.startswith("x-")}


def servers(value: Any) -> tuple[str, ...]:
    """Server URLs with their variables replaced by their defaults (OpenAPI 3.1 §4.8.6)."""
    if not isinstance(value, list):
        return ()
    urls: list[str] = []
    for server in value:
        if not isinstance(server, dict) or not isinstance(server.get("url"), str):
            continue
        variables = server.get("variables")
        variables = variables if isinstance(variables, dict) else {}

        def default(match: re.Match[str], variables: dict[str, Any] = variables) -> str:
            variable = variables.get(match.group(1))
            value = variable.get("default") if isinstance(variable, dict) else None
            return str(value) if isinstance(value, str | int | float) else match.group(0)

        urls.append(_TEMPLATE.sub(default, server["url"]))
    return tuple(urls)


def requirements(value: Any, where: str) -> tuple[Requirement, ...]:
    """A Security Requirement list (OpenAPI 3.1 §4.8.30). Raises OperationError when it is malformed."""
    if not isinstance(value, list):
        raise OperationError(f"{where} must be a list of security requirements")
    out: list[Requirement] = []
    for item in value:
        if not isinstance(item, dict):
            raise OperationError(f"{where} must be a list of objects")
        out.append({str(k): tuple(str(s) for s in v) if isinstance(v, list) else () for k, v in item.items()})
    return tuple(out)


def security_schemes(value: Any, documents: Documents) -> dict[str, SecurityScheme]:
    """``components.securitySchemes``; a scheme that is malformed or of an unknown type is left out (an
    operation needing it then has no credential to use, which the caller reports at call time)."""
    schemes: dict[str, SecurityScheme] = {}
    if not isinstance(value, dict):
        return schemes
    for key, node in value.items():
        try:
            located = documents.follow(node, documents.root_base)
        except RefError:
            continue
        scheme = scheme_of(str(key), located.node)
        if scheme is not None:
            schemes[str(key)] = scheme
    return schemes


def scheme_of(key: str, node: Any) -> SecurityScheme | None:
    if not isinstance(node, dict):
        return None
    kind = node.get("type")
    if kind == "apiKey":
        where = node.get("in")
        location: Literal["header", "query", "cookie"] = (
            "query" if where == "query" else "cookie" if where == "cookie" else "header"
        )
        return SecurityScheme(key, "apiKey", name=text(node.get("name")), location=location)
    if kind == "http":
        return SecurityScheme(key, "http", scheme=text(node.get("scheme")).lower())
    if kind == "oauth2":
        return oauth2(key, node.get("flows"))
    if kind == "openIdConnect":
        return SecurityScheme(key, "openIdConnect", openid_url=text(node.get("openIdConnectUrl")))
    if kind == "mutualTLS":
        return SecurityScheme(key, "mutualTLS")
    return None


def oauth2(key: str, flows: Any) -> SecurityScheme:
    flows = flows if isinstance(flows, dict) else {}
    scopes: dict[str, None] = {}
    token_url = authorization_url = ""
    for name in ("clientCredentials", "authorizationCode", "password", "implicit", "deviceAuthorization"):
        flow = flows.get(name)
        if not isinstance(flow, dict):
            continue
        token_url = token_url or text(flow.get("tokenUrl"))
        authorization_url = authorization_url or text(flow.get("authorizationUrl"))
        if isinstance(flow.get("scopes"), dict):
            scopes.update(dict.fromkeys(str(scope) for scope in flow["scopes"]))
    return SecurityScheme(key, "oauth2", token_url=token_url, authorization_url=authorization_url, scopes=tuple(scopes))


def path_operations(item: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(METHOD, Operation Object) of a Path Item: the fixed fields, 3.2's ``query`` and ``additionalOperations``
    (whose keys are kept as written, so :func:`method_problem` can tell them apart)."""
    for method in (*METHODS, "query"):
        if method in item:
            yield method.upper(), item[method]
    extra = item.get("additionalOperations")
    if isinstance(extra, dict):
        for method, operation in extra.items():
            yield f"+{method}", operation


def count_operations(paths: Any) -> int:
    """Operations a ``paths`` object declares (unresolved Path Item references count as one)."""
    if not isinstance(paths, dict):
        return 0
    total = 0
    for path, item in paths.items():
        if isinstance(path, str) and path.startswith("x-"):
            continue
        if isinstance(item, dict) and "$ref" in item:
            total += 1
        elif isinstance(item, dict):
            total += sum(1 for _ in path_operations(item))
    return total


def method_problem(method: str) -> str | None:
    """Why an ``additionalOperations`` key (``+NAME``) cannot be an operation, or None."""
    if not method.startswith("+"):
        return None
    name = method[1:]
    if not _TOKEN.match(name):
        return f"additionalOperations key {name!r} is not an HTTP method name"
    if name.lower() in (*METHODS, "query"):
        return f"additionalOperations may not redefine {name.upper()} (OpenAPI 3.2 §4.8.9.1)"
    return None


def operations(ctx: Context, paths: Any) -> tuple[list[Operation], list[Skipped]]:
    """Every operation of ``paths``, each converted on its own: one that fails is skipped with its reason."""
    done: list[Operation] = []
    skipped: list[Skipped] = []
    if not isinstance(paths, dict):
        return done, skipped
    for path, node in paths.items():
        if not isinstance(path, str) or path.startswith("x-"):
            continue
        try:
            item = ctx.documents.follow(node, ctx.documents.root_base)
        except RefError as exc:
            skipped.append(Skipped(f"* {path}", f"the path item cannot be read: {exc}"))
            continue
        if not isinstance(item.node, dict):
            skipped.append(Skipped(f"* {path}", "the path item is not an object"))
            continue
        for method, op in path_operations(item.node):
            one = convert_guarded(ctx, method, path, op, item.node, item.base)
            if isinstance(one, Operation):
                done.append(one)
            else:
                skipped.append(one)
    return done, skipped


def convert_guarded(
    ctx: Context, method: str, path: str, op: Any, item: dict[str, Any], base: str
) -> Operation | Skipped:
    """One operation, or why not; never raises (a bad operation must not fail the spec)."""
    problem = method_problem(method)
    method = method.lstrip("+").upper()
    key = f"{method} {path}"
    try:
        if problem:
            return Skipped(key, problem)
        with ctx.schemas.collect() as refs:
            operation = convert(ctx, method, path, op, item, base)
            ctx.schemas.drain()
        broken = ctx.schemas.broken(refs)
        if broken:
            return Skipped(key, broken)
        return finish(ctx, operation)
    except (OperationError, SchemaError, RefError) as exc:
        return Skipped(key, str(exc))
    except Exception as exc:
        return Skipped(key, f"cannot be converted ({type(exc).__name__}: {str(exc)[:200]})")


def convert(ctx: Context, method: str, path: str, op: Any, item: dict[str, Any], base: str) -> Operation:
    if not path.startswith("/"):
        raise OperationError("the path does not start with /")
    if not isinstance(op, dict):
        raise OperationError("the operation is not an object")
    params = merged_parameters(ctx, item.get("parameters"), op.get("parameters"), base)
    params = with_template_parameters(path, params)
    body_node = op.get("requestBody")
    security = op.get("security")
    tags = op.get("tags")
    op_id = op.get("operationId")
    return Operation(
        method=method,
        path=path,
        operation_id=op_id if isinstance(op_id, str) and op_id else None,
        summary=text(op.get("summary")) or text(item.get("summary")),
        description=text(op.get("description")) or text(item.get("description")),
        tags=tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
        deprecated=op.get("deprecated") is True,
        parameters=tuple(params),
        body=request_body(ctx, body_node, base) if body_node is not None else None,
        success=success(ctx, op.get("responses"), base),
        security=(requirements(security, "security") if security is not None else ctx.security) or (),
        servers=servers(op.get("servers")) or servers(item.get("servers")),
        idempotency_header=next(
            (p.name for p in params if p.location == "header" and p.name.lower() == "idempotency-key"), None
        ),
        extensions=extensions(op),
    )


def merged_parameters(ctx: Context, shared: Any, own: Any, base: str) -> list[Parameter]:
    by_key: dict[tuple[str, str], Parameter] = {}
    for level in (shared, own):
        if level is None:
            continue
        if not isinstance(level, list):
            raise OperationError("parameters must be a list")
        for node in level:
            for param in parameter(ctx, node, base):
                by_key[(param.name, param.location)] = param
    return list(by_key.values())


def with_template_parameters(path: str, params: list[Parameter]) -> list[Parameter]:
    """Path parameters the template names but the spec forgot to declare, as required strings."""
    declared = {p.name for p in params if p.location == "path"}
    missing = [name for name in _TEMPLATE.findall(path) if name not in declared]
    extra = [Parameter(name, "path", {"type": "string"}, required=True) for name in dict.fromkeys(missing)]
    return [*params, *extra]


def parameter(ctx: Context, node: Any, base: str) -> list[Parameter]:
    """A Parameter Object (or a ``$ref`` to one, converted once); ``in: querystring`` gives one per property."""
    ref = node.get("$ref") if isinstance(node, dict) else None
    if isinstance(ref, str):
        located = ctx.documents.follow(node, base)
        cached = ctx.parameters.get(located.uri)
        if cached is None:
            with ctx.schemas.collect() as refs:
                converted = parameter(ctx, located.node, located.base)
            cached = ctx.parameters[located.uri] = (converted, frozenset(refs))
        ctx.schemas.note(cached[1])
        return cached[0]
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


def choose_media(content: dict[str, Any]) -> str:
    """The media type Patchbay sends or reads: JSON (or any +json) first, then form, multipart, text, binary,
    else the first listed."""
    types = [str(media) for media in content]
    lowered = [media.split(";", 1)[0].strip().lower() for media in types]
    for rank in range(5):
        for original, media in zip(types, lowered, strict=True):
            if _media_rank(media) == rank:
                return original
    return types[0]


def _media_rank(media: str) -> int:
    if media == "application/json" or media.endswith("+json"):
        return 0
    if media in _BODY_ORDER:
        return 1 + _BODY_ORDER.index(media)
    if media.startswith("text/"):
        return 3
    return 4 if media == "application/octet-stream" else 5


def request_body(ctx: Context, node: Any, base: str) -> Body | None:
    located = ctx.documents.follow(node, base)
    body, base = located.node, located.base
    if not isinstance(body, dict):
        raise OperationError("the request body is not an object")
    content = body.get("content")
    if not isinstance(content, dict) or not content:
        return None
    media = choose_media(content)
    entry = content[media] if isinstance(content[media], dict) else {}
    raw = entry.get("schema")
    schema = default_schema(media) if raw is None else ctx.schemas.convert(raw, base, "the request body")
    converted = Body(
        media_type=media,
        schema=schema,
        required=body.get("required") is True,
        description=text(body.get("description")),
        encoding=encodings(entry.get("encoding"), media, openapi30=ctx.schemas.openapi30),
    )
    # An optional property the style cannot carry is left out of the tool's arguments (inputs.py); a required one
    # makes the operation uncallable.
    unsendable = unsendable_properties(converted, ctx.schemas.defs)
    for name in sorted(unsendable.keys() & required_properties(schema, ctx.schemas.defs)):
        raise OperationError(f"the request body's required property {name!r} cannot be sent: {unsendable[name]}")
    return converted


def default_schema(media: str) -> dict[str, Any]:
    lowered = media.lower()
    if lowered.startswith("text/"):
        return {"type": "string"}
    if "json" in lowered or lowered in _BODY_ORDER:
        return {}
    return {"type": "string", "contentMediaType": media}


def encodings(value: Any, media: str, *, openapi30: bool) -> dict[str, Encoding]:
    """The body's Encoding Objects by property. ``styled`` says whether ``style``/``explode`` apply: always for a
    form-urlencoded body (with query defaults); for multipart/form-data only in 3.1 and later, when one of
    ``style``, ``explode``, ``allowReserved`` is written (3.1.1 §4.8.15.1; the 3.0.3 Encoding Object: "SHALL be
    ignored if the request body media type is not application/x-www-form-urlencoded")."""
    if not isinstance(value, dict):
        return {}
    essence = media.split(";", 1)[0].strip().lower()
    multipart = essence.startswith("multipart/")
    out: dict[str, Encoding] = {}
    for prop, node in value.items():
        if not isinstance(node, dict):
            continue
        style = text(node.get("style")) or "form"
        explode = node.get("explode")
        written = any(key in node for key in ("style", "explode", "allowReserved"))
        out[str(prop)] = Encoding(
            content_type=text(node.get("contentType")) or None,
            style=style,
            explode=explode if isinstance(explode, bool) else style == "form",
            allow_reserved=node.get("allowReserved") is True,
            styled=not multipart or (written and not openapi30 and essence == "multipart/form-data"),
        )
    return out


def success_status(responses: dict[str, Any]) -> list[str]:
    """The statuses to try in order: 200, 201, 202, 203, 204, 2XX, any other 2xx, then default."""
    keys = [str(key) for key in responses]
    others = sorted(k for k in keys if len(k) == 3 and k.startswith("2") and k not in SUCCESS_ORDER)
    return [k for k in SUCCESS_ORDER if k in responses] + others + (["default"] if "default" in responses else [])


def success(ctx: Context, responses: Any, base: str) -> Success | None:
    if not isinstance(responses, dict):
        return None
    for status in success_status(responses):
        node = responses[status]
        ref = node.get("$ref") if isinstance(node, dict) else None
        if isinstance(ref, str):
            located = ctx.documents.follow(node, base)
            cached = ctx.successes.get(located.uri)
            if cached is None:
                with ctx.schemas.collect() as refs:
                    converted = response(ctx, status, located.node, located.base)
                cached = ctx.successes[located.uri] = (converted, frozenset(refs))
            ctx.schemas.note(cached[1])
            found = replace(cached[0], status=status) if cached[0] is not None else None
        else:
            found = response(ctx, status, node, base)
        if found is not None and (status != "default" or found.media_type is not None):
            return found
    return None


def response(ctx: Context, status: str, node: Any, base: str) -> Success | None:
    if not isinstance(node, dict):
        return None
    content = node.get("content")
    if not isinstance(content, dict) or not content:
        return Success(status, None, None)
    media = choose_media(content)
    entry = content[media]
    raw = entry.get("schema") if isinstance(entry, dict) else None
    schema = ctx.schemas.convert(raw, base, f"the {status} response") if raw is not None else None
    return Success(status, media, schema)


def finish(ctx: Context, operation: Operation) -> Operation:
    """Drop ``readOnly`` properties from the request body and ``writeOnly`` ones from the response, where the
    schema is an object (or a reference to one) that lists them directly: the cheap, common case."""
    body, done = operation.body, operation.success
    if body is not None:
        trimmed = without_flagged(ctx, body.schema, "readOnly")
        if trimmed is not body.schema:
            body = replace(body, schema=trimmed)
    if done is not None and done.schema is not None:
        trimmed = without_flagged(ctx, done.schema, "writeOnly")
        if trimmed is not done.schema:
            done = replace(done, schema=trimmed)
    if body is operation.body and done is operation.success:
        return operation
    return replace(operation, body=body, success=done)


def without_flagged(ctx: Context, schema: dict[str, Any], flag: str) -> dict[str, Any]:
    target = schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and len(schema) == 1 and ref.startswith("#/$defs/"):
        target = ctx.schemas.defs.get(ref[len("#/$defs/") :], schema)
    props = target.get("properties")
    if not isinstance(props, dict):
        return schema
    flagged = {name for name, sub in props.items() if isinstance(sub, dict) and sub.get(flag) is True}
    if not flagged:
        return schema
    out = {**target, "properties": {k: v for k, v in props.items() if k not in flagged}}
    if isinstance(target.get("required"), list):
        out["required"] = [name for name in target["required"] if name not in flagged]
    return out
