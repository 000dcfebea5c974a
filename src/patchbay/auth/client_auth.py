"""Client authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3.1).

A confidential client may use either ``client_secret_basic`` or ``client_secret_post`` whatever it registered
(ChatGPT's choice for predefined clients is undocumented); a public client sends only ``client_id``. An unknown
or removed client gets 401 ``invalid_client``, which tells Claude to register again.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from urllib.parse import unquote_plus

from starlette.requests import Request

from patchbay.auth.body import Form
from patchbay.auth.clients import Client
from patchbay.auth.crypto import digest, same
from patchbay.auth.errors import OAuthError, invalid_client

FindClient = Callable[[str], Awaitable[Client | None]]


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid_client("malformed HTTP Basic credentials", basic=True) from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise invalid_client("malformed HTTP Basic credentials", basic=True)
    # RFC 6749 §2.3.1: client_id and secret are form-urlencoded before Basic encoding.
    return unquote_plus(user), unquote_plus(password)


async def authenticate_client(request: Request, form: Form, find: FindClient) -> Client:
    """Raises OAuthError: invalid_client (401) or invalid_request (two methods at once)."""
    basic = _basic(request)
    secret: str | None
    posted_id = form.get("client_id")
    posted_secret = form.get("client_secret")
    if basic is not None and posted_secret is not None:
        raise OAuthError("invalid_request", "use one client authentication method, not two")
    if basic is not None:
        client_id, secret = basic
        if posted_id is not None and posted_id != client_id:
            raise OAuthError("invalid_request", "client_id in the body differs from the Basic credentials")
    else:
        if not posted_id:
            raise invalid_client("send client_id (and client_secret for a confidential client)")
        client_id, secret = posted_id, posted_secret
    try:
        client = await find(client_id)
    except OAuthError as exc:  # a client metadata document that cannot be fetched or is invalid
        raise invalid_client(exc.description, basic=basic is not None) from None
    if client is None or client.revoked:
        raise invalid_client("unknown client: register again", basic=basic is not None)
    if client.secret_hash is not None:
        if not secret or not same(digest(secret), client.secret_hash):
            raise invalid_client("client authentication failed", basic=basic is not None)
    elif secret:
        raise invalid_client("this client is public and has no secret", basic=basic is not None)
    return client
