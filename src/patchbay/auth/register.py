"""RFC 7591 dynamic client registration (``POST /register``).

Public clients (``none``) and confidential ones (``client_secret_basic`` / ``client_secret_post``) are accepted,
and the method asked for is the method registered and echoed back (H2: clients that get another method fail at
the token endpoint). Registration is rate-limited per address; registrations that never obtain a token are
pruned after ``auth.unused_client_days``.
"""

from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from patchbay.auth.body import JSON, read_body
from patchbay.auth.clients import AUTH_METHODS, Client
from patchbay.auth.core import Core
from patchbay.auth.crypto import SECRET_PREFIX, digest, new_secret
from patchbay.auth.errors import NO_STORE, OAuthError
from patchbay.auth.metadata import CORS
from patchbay.auth.redirects import check_redirect_uri

__all__ = ["RateLimit", "Registration", "check_redirect_uri", "parse_json", "parse_registration"]

MAX_REDIRECTS = 20
GRANT_TYPES = {"authorization_code", "refresh_token"}


class RateLimit:
    """At most ``per_minute`` events per key in any sliding minute, in this process (a fleet shares one window per
    key in Redis instead: :class:`patchbay.fleet.limits.SharedRateLimit`)."""

    def __init__(self, per_minute: int, clock: Any = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.events: dict[str, collections.deque[float]] = {}

    async def allow(self, key: str) -> bool:
        now = self.clock()
        if len(self.events) > 10_000:
            self.events.clear()
        window = self.events.setdefault(key, collections.deque())
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= self.per_minute:
            return False
        window.append(now)
        return True


class Limiter(Protocol):
    async def allow(self, key: str) -> bool:
        """Count one event of ``key``; False (and nothing counted) when its budget is spent."""
        ...


def _strings(metadata: dict[str, Any], key: str, default: list[str]) -> list[str]:
    value = metadata.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise OAuthError("invalid_client_metadata", f"{key} must be an array of strings")
    return value


def parse_registration(metadata: Any, supported_scopes: tuple[str, ...]) -> tuple[Client, dict[str, Any]]:
    """Validate RFC 7591 §2 client metadata. Returns the client (without id/secret) and the fields to echo."""
    if not isinstance(metadata, dict):
        raise OAuthError("invalid_client_metadata", "the body must be a JSON object of client metadata")
    uris = _strings(metadata, "redirect_uris", [])
    if not uris or len(uris) > MAX_REDIRECTS:
        raise OAuthError("invalid_redirect_uri", f"redirect_uris must list 1 to {MAX_REDIRECTS} URIs")
    uris = [check_redirect_uri(u) for u in uris]
    method = metadata.get("token_endpoint_auth_method", "client_secret_basic")  # RFC 7591 §2 default
    if method not in AUTH_METHODS:
        raise OAuthError(
            "invalid_client_metadata",
            f"token_endpoint_auth_method {method!r} is not supported; use one of {', '.join(AUTH_METHODS)}",
        )
    grants = _strings(metadata, "grant_types", ["authorization_code"])
    if not set(grants) <= GRANT_TYPES or "authorization_code" not in grants:
        raise OAuthError("invalid_client_metadata", "grant_types must include authorization_code, plus refresh_token")
    if not set(_strings(metadata, "response_types", ["code"])) <= {"code"}:
        raise OAuthError("invalid_client_metadata", "response_types may only contain code")
    name = metadata.get("client_name") or "Unnamed client"
    if not isinstance(name, str):
        raise OAuthError("invalid_client_metadata", "client_name must be a string")
    scope = metadata.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise OAuthError("invalid_client_metadata", "scope must be a space-separated string")
    echo = {k: v for k, v in metadata.items() if k not in ("client_id", "client_secret") and _plain(v)}
    echo.update(redirect_uris=uris, token_endpoint_auth_method=method, grant_types=grants, client_name=name)
    echo.setdefault("response_types", ["code"])
    if scope is not None:
        # Echo only what the client can be granted (RFC 7591 §3.2.1: the server may replace what was asked for).
        usable = [s for s in dict.fromkeys(scope.split()) if s in supported_scopes or s == "offline_access"]
        echo.pop("scope", None)
        if usable:
            echo["scope"] = " ".join(usable)
    client = Client(
        client_id="",
        kind="dcr",
        name=name[:200],
        redirect_uris=tuple(uris),
        auth_method=method,
        grant_types=tuple(grants),
        metadata={k: echo[k] for k in ("client_uri", "logo_uri", "software_id", "software_version") if k in echo},
    )
    return client, echo


def parse_json(body: bytes) -> Any:
    """The registration document. Raises OAuthError(invalid_client_metadata) for anything but plain JSON."""
    try:
        return json.loads(body, object_pairs_hook=_unique, parse_constant=_no_constant)
    except RecursionError:
        raise OAuthError("invalid_client_metadata", "the JSON body is nested too deeply") from None
    except ValueError as exc:
        raise OAuthError("invalid_client_metadata", f"the body is not valid JSON: {exc}") from None


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 8259 §4: names SHOULD be unique; a repeated one would mean whichever the parser keeps.
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        repeated = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"the member {repeated[:40]!r} appears more than once")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _plain(value: Any) -> bool:
    return len(json.dumps(value)) < 4096


@dataclass
class Registration:
    core: Core
    # A fleet's shared throttle (patchbay.fleet.limits.SharedRateLimit); None: this process's own RateLimit.
    shared: Limiter | None = None
    limiter: Limiter = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = self.shared or RateLimit(self.core.config.settings.registration_per_minute)

    async def handle(self, request: Request) -> Response:
        if not await self.limiter.allow(request.client.host if request.client else "?"):
            return JSONResponse(
                {"error": "invalid_request", "error_description": "too many registrations; try again in a minute"},
                status_code=429,
                headers={**CORS, "Retry-After": "60"},
            )
        try:
            body = await read_body(request, self.core.config.settings.max_registration_bytes, JSON)
            client, echo = parse_registration(parse_json(body), self.core.config.scopes_supported)
        except OAuthError as exc:
            return JSONResponse(exc.body(), status_code=exc.status, headers={**CORS, **NO_STORE})
        core = self.core
        client_id = new_secret("pb_client_")[:40]
        secret = new_secret(SECRET_PREFIX) if client.auth_method != "none" else None
        saved = await core.run(
            core.clients.save,
            Client(
                client_id=client_id,
                kind="dcr",
                name=client.name,
                redirect_uris=client.redirect_uris,
                auth_method=client.auth_method,
                secret_hash=digest(secret) if secret else None,
                grant_types=client.grant_types,
                metadata=client.metadata,
            ),
        )
        await core.run(core.clients.prune_unused, core.config.settings.unused_client_days * 86_400)
        core.audit("auth.client_registered", client_id=saved.client_id, client_name=saved.name, outcome="ok")
        response: dict[str, Any] = {**echo, "client_id": saved.client_id, "client_id_issued_at": int(saved.created_at)}
        if secret is not None:
            # RFC 7591 §3.2.1: client_secret_expires_at is required with a secret; 0 = never.
            response.update(client_secret=secret, client_secret_expires_at=0)
        return JSONResponse(response, status_code=201, headers={**CORS, **NO_STORE})
