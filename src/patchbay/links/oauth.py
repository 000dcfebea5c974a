"""Patchbay as an OAuth client of an upstream: discovery, registration and token requests.

* RFC 9728 protected-resource metadata: the path-aware well-known URL first (§3.1), then the origin's, then the
  ``resource_metadata`` parameter of the upstream's 401 challenge (§5.1).
* RFC 8414 authorization-server metadata, with OpenID Connect Discovery as fallback (§3.1 path insertion).
* RFC 7591 dynamic client registration, when the server has an endpoint and no client id is configured.
* RFC 6749 token requests (§4.1.3 code, §4.4 client credentials, §6 refresh) with RFC 8707 ``resource``.

Every request goes through ``patchbay.outbound``: URLs on the operator-configured upstream's own origin through a
fetcher that trusts that host (whatever it resolves to, pinned), every other URL through the normal guard.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
import httpx
import orjson

from patchbay.links.credentials import LinkUnavailable
from patchbay.links.store import Registration, Tokens
from patchbay.outbound import Fetcher, FetchError
from patchbay.outbound.fetcher import trusting_origin

_CHALLENGE_PARAM = re.compile(r'resource_metadata="([^"]+)"')
MAX_REGISTRATION_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    """What Patchbay needs from an authorization server's RFC 8414 document."""

    issuer: str
    authorization_endpoint: str | None
    token_endpoint: str
    registration_endpoint: str | None = None
    cimd: bool = False
    scopes_supported: tuple[str, ...] = ()
    auth_methods: tuple[str, ...] = ("client_secret_basic",)


@dataclass(frozen=True, slots=True)
class Discovered:
    resource: str
    server: ServerMetadata
    scopes: tuple[str, ...] = ()


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def well_known(url: str, name: str) -> list[str]:
    """RFC 8414 §3.1 / RFC 9728 §3.1: the well-known name inserted between host and path, then at the root."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}/.well-known/{name}"
    path = parts.path.rstrip("/")
    return [base + path, base] if path else [base]


@dataclass
class OAuthClient:
    """OAuth requests for one connector whose upstream lives at ``upstream_url``."""

    fetcher: Fetcher
    upstream_url: str
    _trusted: Fetcher | None = field(default=None, init=False)

    async def _fetcher_for(self, url: str) -> Fetcher:
        if origin(url) != origin(self.upstream_url):
            return self.fetcher
        if self._trusted is None:
            self._trusted = await trusting_origin(self.fetcher, self.upstream_url)
        return self._trusted

    async def get_json(self, url: str) -> Any:
        """Raises FetchError: unreachable, refused, not 200 or not JSON."""
        return await (await self._fetcher_for(url)).get_json(url)

    async def post_form(self, url: str, data: dict[str, str], auth: tuple[str, str] | None = None) -> tuple[int, Any]:
        """POST a form; the status and JSON body. Raises FetchError: unreachable, refused or not JSON."""
        headers = {}
        if auth is not None:
            # RFC 6749 §2.3.1: client_secret_basic, each part form-urlencoded first.
            pair = f"{quote(auth[0], safe='')}:{quote(auth[1], safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        fetched = await (await self._fetcher_for(url)).request("POST", url, data=data, headers=headers)
        return fetched.status, fetched.json()

    async def post_json(self, url: str, body: dict[str, Any]) -> tuple[int, Any]:
        """POST JSON (RFC 7591 registration). Raises FetchError as :meth:`post_form`."""
        fetcher = await self._fetcher_for(url)
        host = urlsplit(url).hostname or url[:100]
        try:
            with anyio.fail_after(fetcher.deadline):
                async with fetcher.client() as client:
                    request = client.build_request("POST", url, content=orjson.dumps(body), headers=_JSON)
                    response = await client.send(request, stream=True)
                    try:
                        raw = b""
                        async for chunk in response.aiter_bytes():
                            raw += chunk
                            if len(raw) > MAX_REGISTRATION_BYTES:
                                raise FetchError(f"the answer from {host} is larger than {MAX_REGISTRATION_BYTES}")
                    finally:
                        await response.aclose()
        except TimeoutError:
            raise FetchError(f"{host} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"could not reach {host}: {type(exc).__name__}") from None
        try:
            return response.status_code, orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise FetchError(f"{host} answered registration with something that is not JSON") from None

    # -- discovery ----------------------------------------------------------------------------------------------

    async def discover(self, *, issuer: str | None = None) -> Discovered:
        """The upstream's resource identifier, its authorization server's metadata and the scopes it lists.

        Raises:
            LinkUnavailable: no metadata found, or the documents are inconsistent.
        """
        prm = await self._protected_resource()
        resource = self.upstream_url
        scopes: tuple[str, ...] = ()
        servers: list[str] = []
        if prm is not None:
            # RFC 9728 §3.3: the document's resource must be the URL it was fetched for (or its origin's).
            resource = str(prm.get("resource") or self.upstream_url)
            servers = [s for s in prm.get("authorization_servers") or [] if isinstance(s, str)]
            scopes = tuple(s for s in prm.get("scopes_supported") or [] if isinstance(s, str))
        chosen = issuer or (servers[0] if servers else None)
        if chosen is None:
            raise LinkUnavailable(
                f"{origin(self.upstream_url)} publishes no protected-resource metadata naming an authorization "
                "server (RFC 9728); set authorization_server or token_url in the connector's table"
            )
        return Discovered(resource, await self.server_metadata(chosen), scopes)

    async def _protected_resource(self) -> dict[str, Any] | None:
        for url in well_known(self.upstream_url, "oauth-protected-resource"):
            try:
                document = await self.get_json(url)
            except FetchError:
                continue
            if isinstance(document, dict):
                return document
        pointed = await self._challenge_metadata_url()
        if pointed is None:
            return None
        try:
            document = await self.get_json(pointed)
        except FetchError:
            return None
        return document if isinstance(document, dict) else None

    async def _challenge_metadata_url(self) -> str | None:
        """RFC 9728 §5.1: the ``resource_metadata`` of the 401 an unauthenticated request gets."""
        try:
            fetcher = await self._fetcher_for(self.upstream_url)
            fetched = await fetcher.request("GET", self.upstream_url, headers={"Accept": "text/event-stream"})
        except FetchError:
            return None
        match = _CHALLENGE_PARAM.search(fetched.headers.get("www-authenticate", ""))
        return match.group(1) if fetched.status == 401 and match else None

    async def server_metadata(self, issuer: str) -> ServerMetadata:
        """RFC 8414 metadata of ``issuer`` (OIDC discovery as fallback). Raises LinkUnavailable."""
        last = "no metadata document"
        for name in ("oauth-authorization-server", "openid-configuration"):
            for url in well_known(issuer, name):
                try:
                    document = await self.get_json(url)
                except FetchError as exc:
                    last = str(exc)
                    continue
                if isinstance(document, dict) and isinstance(document.get("token_endpoint"), str):
                    return _server(issuer, document)
        raise LinkUnavailable(f"cannot read the authorization server metadata of {issuer}: {last}")

    # -- registration and tokens --------------------------------------------------------------------------------

    async def register(self, server: ServerMetadata, redirect_uri: str, client_name: str) -> Registration:
        """RFC 7591 §3.1: a public client (PKCE) for ``redirect_uri``. Raises LinkUnavailable."""
        if server.registration_endpoint is None:
            raise LinkUnavailable(
                f"{server.issuer} offers neither client ID metadata documents for this server's URL nor dynamic "
                "registration; register Patchbay there and set client_id (and client_secret_env) in the connector"
            )
        body = {
            "client_name": client_name,
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }
        try:
            status, answer = await self.post_json(server.registration_endpoint, body)
        except FetchError as exc:
            raise LinkUnavailable(f"registration at {server.issuer} failed: {exc}") from None
        if status not in (200, 201) or not isinstance(answer, dict) or not isinstance(answer.get("client_id"), str):
            raise LinkUnavailable(f"{server.issuer} refused Patchbay's registration: {_oauth_error(status, answer)}")
        secret = answer.get("client_secret")
        return Registration(answer["client_id"], secret if isinstance(secret, str) else None, "dcr")

    async def token(
        self, server: ServerMetadata, data: dict[str, str], client: Registration
    ) -> tuple[Tokens | None, str]:
        """A token request; ``(tokens, "")`` or ``(None, error)`` where error is the RFC 6749 §5.2 code and text.

        Raises:
            LinkUnavailable: the token endpoint cannot be reached or answers something that is not OAuth.
        """
        form = dict(data)
        auth = None
        if (
            client.client_secret is not None
            and "client_secret_post" in server.auth_methods
            and ("client_secret_basic" not in server.auth_methods)
        ):
            form |= {"client_id": client.client_id, "client_secret": client.client_secret}
        elif client.client_secret is not None:
            auth = (client.client_id, client.client_secret)
        else:
            form["client_id"] = client.client_id
        started = time.time()
        try:
            status, answer = await self.post_form(server.token_endpoint, form, auth)
        except FetchError as exc:
            raise LinkUnavailable(f"the token endpoint of {server.issuer} failed: {exc}") from None
        if not isinstance(answer, dict):
            raise LinkUnavailable(f"the token endpoint of {server.issuer} answered {status} without a JSON object")
        if status == 200 and isinstance(answer.get("access_token"), str):
            return _tokens(answer, started), ""
        return None, _oauth_error(status, answer)


_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


def _server(issuer: str, document: dict[str, Any]) -> ServerMetadata:
    def text(key: str) -> str | None:
        value = document.get(key)
        return value if isinstance(value, str) else None

    def texts(key: str) -> tuple[str, ...]:
        value = document.get(key)
        return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()

    return ServerMetadata(
        issuer=text("issuer") or issuer,
        authorization_endpoint=text("authorization_endpoint"),
        token_endpoint=str(document["token_endpoint"]),
        registration_endpoint=text("registration_endpoint"),
        cimd=document.get("client_id_metadata_document_supported") is True,
        scopes_supported=texts("scopes_supported"),
        auth_methods=texts("token_endpoint_auth_methods_supported") or ("client_secret_basic",),
    )


def _tokens(answer: dict[str, Any], started: float) -> Tokens:
    expires_in = answer.get("expires_in")
    expires_at = started + float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else None
    refresh = answer.get("refresh_token")
    scope = answer.get("scope")
    kind = answer.get("token_type")
    return Tokens(
        access_token=answer["access_token"],
        refresh_token=refresh if isinstance(refresh, str) else None,
        expires_at=expires_at,
        scopes=scope if isinstance(scope, str) else "",
        token_type="Bearer" if not isinstance(kind, str) or kind.lower() == "bearer" else kind,
    )


def _oauth_error(status: int, answer: Any) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        text = answer["error"][:100]
        description = answer.get("error_description")
        return f"{text}: {description[:300]}" if isinstance(description, str) else text
    return f"HTTP {status}"
