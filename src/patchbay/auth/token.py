"""The token endpoint (RFC 6749 §3.2, §4.1.3, §6; OAuth 2.1 §4.3; RFC 7636 §4.5; RFC 8707 §2.2).

Grants: ``authorization_code`` (PKCE S256 verifier required) and ``refresh_token`` (rotated on every use; a
missing ``scope`` keeps the granted scopes; ``resource`` optional). Responses are JSON with ``no-store``.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from patchbay.auth.authorize import Authorization
from patchbay.auth.body import read_form
from patchbay.auth.client_auth import authenticate_client
from patchbay.auth.core import Core
from patchbay.auth.errors import NO_STORE, OAuthError
from patchbay.auth.metadata import CORS

# RFC 8707 §2: several resource parameters may be sent; every other parameter at most once (RFC 6749 §3.1).
REPEATABLE = frozenset({"resource"})


@dataclass
class TokenEndpoint:
    core: Core
    authorization: Authorization

    async def handle(self, request: Request) -> Response:
        try:
            form = await read_form(request, self.core.config.settings.max_form_bytes, repeatable=REPEATABLE)
            client = await authenticate_client(request, form, self.authorization.find_client)
            grant_type = form.get("grant_type")
            resource = self._resource(form.getlist("resource"))
            core = self.core
            if grant_type == "authorization_code":
                code, verifier = form.get("code"), form.get("code_verifier")
                if code is None or verifier is None:
                    raise OAuthError("invalid_request", "authorization_code needs code and code_verifier")
                tokens = await core.run(
                    core.grants.redeem_code,
                    code,
                    client.client_id,
                    form.get("redirect_uri"),
                    verifier,
                    resource,
                    refresh="refresh_token" in client.grant_types,
                )
            elif grant_type == "refresh_token":
                refresh = form.get("refresh_token")
                if refresh is None:
                    raise OAuthError("invalid_request", "refresh_token grant needs refresh_token")
                tokens = await core.run(core.grants.refresh, refresh, client.client_id, form.get("scope"), resource)
            else:
                raise OAuthError("unsupported_grant_type", "use authorization_code or refresh_token")
        except OAuthError as exc:
            return exc.response()
        await core.run(core.clients.touch, client.client_id)
        issued = "auth.token_issued" if grant_type == "authorization_code" else "auth.token_refreshed"
        core.audit(issued, client_id=client.client_id, outcome="ok")  # never the token itself
        return JSONResponse(tokens.to_json(), headers={**NO_STORE, **CORS})

    def _resource(self, values: list[str]) -> str | None:
        if not values:
            return None
        if any(not self.core.config.resource_matches(v) for v in values):
            raise OAuthError("invalid_target", f"resource must be this server's MCP URL, {self.core.config.resource}")
        return self.core.config.resource
