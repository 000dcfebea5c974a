"""Discovery documents: RFC 9728 protected-resource metadata, RFC 8414 authorization-server metadata and its
OpenID Connect Discovery twin. Always JSON, unauthenticated, with CORS, and built from ``public_url`` only (never
from the request's Host), so every URL and the issuer are byte-identical wherever they appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from patchbay.auth.core import AuthConfig

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, MCP-Protocol-Version",
    "Access-Control-Max-Age": "86400",
}
DISCOVERY_CACHE = "public, max-age=3600"


def protected_resource(config: AuthConfig, authorization_servers: list[str], resource_name: str) -> dict[str, Any]:
    # RFC 9728 §2. offline_access stays out (MCP 2026-07-28 authorization: not in PRM or challenges).
    return {
        "resource": config.resource,
        "authorization_servers": authorization_servers,
        "scopes_supported": [s for s in config.scopes_supported if s != "offline_access"],
        "bearer_methods_supported": ["header"],
        "resource_name": resource_name,
    }


def authorization_server(config: AuthConfig, *, registration: bool, cimd: bool) -> dict[str, Any]:
    issuer = config.issuer
    document: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        # offline_access is advertised so clients that want refresh tokens (Claude, ChatGPT) ask for them.
        "scopes_supported": [*(s for s in config.scopes_supported if s != "offline_access"), "offline_access"],
        "authorization_response_iss_parameter_supported": True,  # RFC 9207
        "client_id_metadata_document_supported": cimd,
        "subject_types_supported": ["public"],
    }
    if registration:
        document["registration_endpoint"] = f"{issuer}/register"
    return document


@dataclass
class Discovery:
    prm: dict[str, Any] | None
    server: dict[str, Any] | None

    async def protected_resource(self, request: Request) -> Response:
        return self._json(self.prm)

    async def authorization_server(self, request: Request) -> Response:
        return self._json(self.server)

    def _json(self, document: dict[str, Any] | None) -> Response:
        if document is None:
            # Never HTML and never 401 on a well-known path: clients read 404 as "not here" (B3).
            return JSONResponse({"error": "not_found"}, status_code=404, headers=CORS)
        return JSONResponse(document, headers={**CORS, "Cache-Control": DISCOVERY_CACHE})


def cors_preflight() -> Response:
    return Response(status_code=204, headers=CORS)
