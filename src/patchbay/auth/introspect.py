"""RFC 7662 token introspection (``POST /introspect``) for resource servers and operators.

The caller authenticates as a confidential client (and learns only about tokens issued to it) or with an API
key (and learns about any token). An unknown, expired or revoked token is ``{"active": false}`` and nothing else
(§2.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from patchbay.auth.authorize import Authorization
from patchbay.auth.body import Form, read_form
from patchbay.auth.client_auth import authenticate_client
from patchbay.auth.core import Core
from patchbay.auth.crypto import KEY_PREFIX
from patchbay.auth.errors import NO_STORE, OAuthError, invalid_client
from patchbay.auth.metadata import CORS


@dataclass
class Introspection:
    core: Core
    authorization: Authorization

    async def handle(self, request: Request) -> Response:
        core = self.core
        try:
            form = await read_form(request, core.config.settings.max_form_bytes, max_fields=20)
            caller = await self._caller(request, form)
            token = form.get("token")
            if not token:
                raise OAuthError("invalid_request", "send the token to introspect in the token parameter")
        except OAuthError as exc:
            return exc.response()
        body: dict[str, Any] = {"active": False}
        if token.startswith(KEY_PREFIX):
            key = await core.run(core.keys.lookup, token)
            if key is not None and caller is None:
                body = {"active": True, "token_type": "api_key", "sub": key.subject, "scope": " ".join(key.scopes)}
        else:
            found = await core.run(core.grants.describe, token)
            if found is not None and found[1] and (caller is None or caller == found[0].client_id):
                info = found[0]
                body = {
                    "active": True,
                    "scope": info.scope,
                    "client_id": info.client_id,
                    "username": info.username,
                    "sub": f"user:{info.username}",
                    "token_type": "Bearer" if info.kind == "access" else "refresh_token",
                    "aud": info.resource,
                    "iss": core.config.issuer,
                    "iat": int(info.created_at),
                    "exp": int(info.expires_at),
                }
        return JSONResponse(body, headers={**NO_STORE, **CORS})

    async def _caller(self, request: Request, form: Form) -> str | None:
        """The client id the caller authenticated as, or None for an API key holder (may see every token)."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            key = await self.core.run(self.core.keys.lookup, header[7:].strip())
            if key is None:
                raise invalid_client("unknown or revoked API key")
            return None
        client = await authenticate_client(request, form, self.authorization.find_client)
        if not client.confidential:
            raise invalid_client("introspection needs a confidential client or an API key")
        return client.client_id
