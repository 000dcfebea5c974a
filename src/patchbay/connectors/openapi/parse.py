"""OpenAPI 3.0 / 3.1 / 3.2 documents: servers, security schemes, and each operation as an :class:`Operation`.

Defaults are applied once, so later parts never re-derive them: server variables replaced by their defaults
(§4.8.6), the top-level ``security`` substituted when the operation has none (:mod:`.paths`), parameter style and
explode and path-level parameters merged (:mod:`.parameters`), the body's media type and the success response
chosen (:mod:`.content`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from patchbay.connectors.openapi.content import request_body, success
from patchbay.connectors.openapi.context import Context, text
from patchbay.connectors.openapi.models import Operation, SecurityScheme, Skipped
from patchbay.connectors.openapi.parameters import TEMPLATE, merged_parameters, with_template_parameters
from patchbay.connectors.openapi.paths import operation, path_operations
from patchbay.connectors.openapi.paths import operations as walk
from patchbay.connectors.openapi.refs import Documents, Located, RefError


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

        urls.append(TEMPLATE.sub(default, server["url"]))
    return tuple(urls)


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


def operations(ctx: Context, paths: Any) -> tuple[list[Operation], list[Skipped]]:
    """Every operation of ``paths``, each converted on its own: one that fails is skipped with its reason."""
    return walk(ctx, paths, path_operations, convert)


def convert(ctx: Context, method: str, path: str, op: dict[str, Any], item: Located) -> Operation:
    node, base = item.node, item.base
    params = merged_parameters(ctx, node.get("parameters"), op.get("parameters"), base)
    params = with_template_parameters(path, params)
    body_node = op.get("requestBody")
    body = request_body(ctx, body_node, base) if body_node is not None else None
    content = (body, success(ctx, op.get("responses"), base))
    return operation(
        ctx, method, path, op, node, params, content, servers(op.get("servers")) or servers(node.get("servers"))
    )
