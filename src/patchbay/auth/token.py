"""The token endpoint (RFC 6749 §3.2, §4.1.3, §6; OAuth 2.1 §4.3; RFC 7636 §4.5; RFC 8707 §2.2).

Grants: ``authorization_code`` (PKCE S256 verifier required) and ``refresh_token`` (rotated on every use; a
missing ``scope`` keeps the granted scopes; ``resource`` optional). Responses are JSON with ``no-store``.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from patchbay.auth.authorize import Authorization
from patchbay.auth.client_auth import authenticate_client
from patchbay.auth.core import Core
from patchbay.auth.errors import NO_STORE, OAuthError
from patchbay.auth.metadata import CORS

MAX_FORM = 64 * 1024


@dataclass
class TokenEndpoint:
    core: Core
    authorization: Authorization

    async def handle(self, request: Request) -> Response:
        try:
            if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                raise OAuthError("invalid_request", "send the token request as application/x-www-form-urlencoded")
            form = await request.form(max_fields=50)
            client = await authenticate_client(request, form, self.authorization.find_client)
            grant_type = form.get("grant_type")
            resource = self._resource([str(v) for v in form.getlist("resource")])
            core = self.core
            if grant_type == "authorization_code":
                code, verifier = form.get("code"), form.get("code_verifier")
                if not isinstance(code, str) or not isinstance(verifier, str):
                    raise OAuthError("invalid_request", "authorization_code needs code and code_verifier")
                redirect_uri = form.get("redirect_uri")
                tokens = await core.run(
                    core.grants.redeem_code,
                    code,
                    client.client_id,
                    redirect_uri if isinstance(redirect_uri, str) else None,
                    verifier,
                    resource,
                    refresh="refresh_token" in client.grant_types,
                )
            elif grant_type == "refresh_token":
                refresh = form.get("refresh_token")
                if not isinstance(refresh, str):
                    raise OAuthError("invalid_request", "refresh_token grant needs refresh_token")
                scope = form.get("scope")
                tokens = await core.run(
                    core.grants.refresh, refresh, client.client_id, scope if isinstance(scope, str) else None, resource
                )
            else:
                raise OAuthError("unsupported_grant_type", "use authorization_code or refresh_token")
        except OAuthError as exc:
            return exc.response()
        await core.run(core.clients.touch, client.client_id)
        return JSONResponse(tokens.to_json(), headers={**NO_STORE, **CORS})

    def _resource(self, values: list[str]) -> str | None:
        if not values:
            return None
        if any(not self.core.config.resource_matches(v) for v in values):
            raise OAuthError("invalid_target", f"resource must be this server's MCP URL, {self.core.config.resource}")
        return self.core.config.resource
