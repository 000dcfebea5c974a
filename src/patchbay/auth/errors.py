"""OAuth errors, named after the RFC that defines each code, with the HTTP status each endpoint answers.

RFC 6749 §5.2 (token endpoint), §4.1.2.1 (authorization endpoint), RFC 7591 §3.2.2 (registration), RFC 8707 §2
(``invalid_target``), RFC 6750 §3.1 (bearer tokens). An :class:`OAuthError` never carries a secret: descriptions
name what was wrong, not the value sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from starlette.responses import JSONResponse

ErrorCode = Literal[
    # RFC 6749 §4.1.2.1 and §5.2
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "unsupported_response_type",
    "invalid_scope",
    "access_denied",
    "server_error",
    "temporarily_unavailable",
    # RFC 8707 §2
    "invalid_target",
    # RFC 7591 §3.2.2
    "invalid_redirect_uri",
    "invalid_client_metadata",
    # RFC 6750 §3.1
    "invalid_token",
    "insufficient_scope",
]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True)
class OAuthError(Exception):
    error: ErrorCode
    description: str
    status: int = 400
    headers: dict[str, str] | None = None

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers={**NO_STORE, **(self.headers or {})})


def invalid_client(description: str, *, basic: bool = False) -> OAuthError:
    # RFC 6749 §5.2: 401, with WWW-Authenticate when the client tried HTTP Basic. Claude re-registers on this.
    headers = {"WWW-Authenticate": 'Basic realm="patchbay"'} if basic else None
    return OAuthError("invalid_client", description, 401, headers)
