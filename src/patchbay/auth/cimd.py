"""OAuth Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP 2025-11-25
client registration): a ``client_id`` that is an HTTPS URL names a JSON document describing the client.

The document is fetched through the SSRF guard, must name itself (``client_id`` equal to the URL, byte for
byte) and list ``redirect_uris``; it is cached for its ``Cache-Control: max-age`` (bounded) and recorded in the
clients table so grants and consents can refer to it. A URL-identified client is public: PKCE protects it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from patchbay.auth.clients import Client
from patchbay.auth.errors import OAuthError
from patchbay.auth.register import check_redirect_uri

if TYPE_CHECKING:
    from patchbay.outbound import Fetched

MIN_CACHE = 60.0
MAX_CACHE = 86_400.0
DEFAULT_CACHE = 300.0
_MAX_AGE = re.compile(r"max-age=(\d+)")


def is_metadata_url(client_id: str) -> bool:
    try:
        parts = urlsplit(client_id)
    except ValueError:  # an unclosed or invalid bracketed host: not a URL we could fetch
        return False
    return parts.scheme == "https" and bool(parts.hostname) and parts.path not in ("", "/")


def parse_document(url: str, document: object) -> Client:
    """Raises OAuthError(invalid_client) naming what is wrong with the document."""
    if not isinstance(document, dict):
        raise OAuthError("invalid_client", "the client metadata document is not a JSON object")
    if document.get("client_id") != url:
        raise OAuthError("invalid_client", "the client metadata document's client_id is not its own URL")
    uris = document.get("redirect_uris")
    if not isinstance(uris, list) or not uris:
        raise OAuthError("invalid_client", "the client metadata document lists no redirect_uris")
    try:
        redirects = tuple(check_redirect_uri(u) for u in uris[:20])
    except OAuthError as exc:
        raise OAuthError("invalid_client", f"client metadata document: {exc.description}") from None
    name = document.get("client_name")
    host = urlsplit(url).hostname or url
    grants = document.get("grant_types") or ["authorization_code", "refresh_token"]
    return Client(
        client_id=url,
        kind="cimd",
        name=(name if isinstance(name, str) and name.strip() else host)[:200],
        redirect_uris=redirects,
        auth_method="none",
        grant_types=tuple(g for g in grants if g in ("authorization_code", "refresh_token")),
        metadata={k: document[k] for k in ("client_uri", "logo_uri") if isinstance(document.get(k), str)},
    )


class DocumentFetcher(Protocol):
    """What fetching a document needs: ``patchbay.outbound.Fetcher``, or one built on first use (the server's,
    so that httpx is imported only once a client presents a document URL)."""

    async def request(self, method: str, url: str) -> Fetched: ...


@dataclass
class MetadataDocuments:
    fetcher: DocumentFetcher
    cache: dict[str, tuple[Client, float]] = field(default_factory=dict)

    async def resolve(self, url: str) -> Client:
        """Raises OAuthError(invalid_client) when the document cannot be fetched or is not valid."""
        from patchbay.outbound import FetchError  # loaded with the fetcher; not before a document is needed

        now = time.monotonic()
        hit = self.cache.get(url)
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            fetched = await self.fetcher.request("GET", url)
        except FetchError as exc:
            raise OAuthError("invalid_client", f"cannot fetch the client metadata document: {exc}") from None
        if fetched.status != 200:
            raise OAuthError("invalid_client", f"the client metadata document URL answered {fetched.status}")
        try:
            document = fetched.json()
        except FetchError:
            raise OAuthError("invalid_client", "the client metadata document is not JSON") from None
        client = parse_document(url, document)
        match = _MAX_AGE.search(fetched.headers.get("cache-control", ""))
        ttl = min(max(float(match.group(1)), MIN_CACHE), MAX_CACHE) if match else DEFAULT_CACHE
        if len(self.cache) > 1000:
            self.cache.clear()
        self.cache[url] = (client, now + ttl)
        return client
