"""RFC 7009 token revocation (``POST /revoke``): always 200 for a token that is unknown or not the caller's
(§2.2), so the endpoint cannot be used to probe tokens."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from patchbay.auth.authorize import Authorization
from patchbay.auth.body import read_form
from patchbay.auth.client_auth import authenticate_client
from patchbay.auth.core import Core
from patchbay.auth.errors import NO_STORE, OAuthError
from patchbay.auth.metadata import CORS


@dataclass
class Revocation:
    core: Core
    authorization: Authorization

    async def handle(self, request: Request) -> Response:
        try:
            form = await read_form(request, self.core.config.settings.max_form_bytes, max_fields=20)
            client = await authenticate_client(request, form, self.authorization.find_client)
            token = form.get("token")
            if not token:
                raise OAuthError("invalid_request", "send the token to revoke in the token parameter")
        except OAuthError as exc:
            return exc.response()
        core = self.core
        # The store's triggers raise the revocation generation: every cache (ours, other replicas') drops the token.
        await core.run(core.grants.revoke, token, client.client_id)
        core.audit("auth.token_revoked", client_id=client.client_id, outcome="ok")  # never the token itself
        return Response(status_code=200, headers={**NO_STORE, **CORS})
