"""A keep-alive client for one host the operator configured (an upstream MCP server's URL).

The operator named that host, so whatever it resolves to is allowed (loopback and private addresses included),
but it is resolved once and the answer pinned (:class:`patchbay.outbound.pin.PinnedAddress`): looked up again
after ``ttl`` seconds or when a connection to the pinned address fails. Because
every request on the keep-alive pool goes to that one name, a pooled TLS connection is never reused for another
name (the reason :func:`patchbay.outbound.transport.direct_transport` keeps no connections). A request to any
other origin (a URL learned from upstream data) goes through :class:`GuardedTransport` and is vetted as usual.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable

import httpx

from patchbay.outbound.fetcher import Fetcher
from patchbay.outbound.pin import DNS_TTL, PinnedAddress
from patchbay.outbound.transport import GuardedTransport, Refused, Resolver, system_resolver


class PinnedTransport(httpx.AsyncBaseTransport):
    """Requests to ``url``'s origin go to its pinned address over ``inner`` (a keep-alive pool); others to
    ``fallback``."""

    def __init__(
        self,
        url: str,
        *,
        fallback: httpx.AsyncBaseTransport,
        resolve: Resolver = system_resolver,
        inner: httpx.AsyncBaseTransport | None = None,
        ttl: float = DNS_TTL,
        clock: Callable[[], float] = time.monotonic,
        max_connections: int = 100,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise Refused(f"an upstream URL must be http:// or https:// with a host (got {url[:100]!r})")
        if parsed.userinfo:
            raise Refused("the URL must not carry credentials")
        self.scheme = parsed.scheme
        self.host = parsed.raw_host.decode("ascii")
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.pin = PinnedAddress(self.host, self.port, resolve=resolve, ttl=ttl, clock=clock)
        self.fallback = fallback
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.owns_inner = inner is None
        verify: ssl.SSLContext | bool = tls if tls is not None else True
        self.inner = inner or httpx.AsyncHTTPTransport(trust_env=False, retries=0, limits=limits, verify=verify)

    def _same_origin(self, url: httpx.URL) -> bool:
        port = url.port or (443 if url.scheme == "https" else 80)
        return url.scheme == self.scheme and url.raw_host.decode("ascii") == self.host and port == self.port

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Raises:
        FetchError: the configured host does not resolve.
        httpx.ConnectError: the pinned address refused the connection twice (re-resolved in between).
        """
        if not self._same_origin(request.url):
            return await self.fallback.handle_async_request(request)
        if self.pin.literal is not None:
            return await self.inner.handle_async_request(request)
        for attempt in (0, 1):
            address = await self.pin.get(fresh=attempt == 1)
            extensions = dict(request.extensions)
            if self.scheme == "https":
                extensions["sni_hostname"] = self.host.removesuffix(".")
            pinned = httpx.Request(
                request.method,
                request.url.copy_with(host=address),
                headers=request.headers,
                stream=request.stream,
                extensions=extensions,
            )
            try:
                return await self.inner.handle_async_request(pinned)
            except httpx.ConnectError:
                if attempt:
                    raise
                self.pin.forget()  # connection refused or unreachable: the host may have moved
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        if self.owns_inner:  # an injected transport belongs to whoever made it
            await self.inner.aclose()
        await self.fallback.aclose()


def pinned_client(
    url: str,
    fetcher: Fetcher,
    *,
    headers: dict[str, str] | None = None,
    ttl: float = DNS_TTL,
    max_connections: int = 100,
    tls: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """One pooled client for the operator-configured ``url`` (its origin trusted and pinned); other origins are
    vetted by ``fetcher``'s policy. No redirects (an upstream endpoint does not move), no overall read timeout
    (calls bound themselves; event streams stay open), and no proxy from the environment. ``tls`` replaces the
    default trust for the configured origin (``ca_file``).

    Raises:
        Refused: ``url`` is not an http(s) URL with a valid host.
    """
    guard = GuardedTransport(fetcher.policy, allow_http=fetcher.allow_http, resolve=fetcher.resolve)
    transport = PinnedTransport(
        url,
        fallback=guard,
        resolve=fetcher.resolve,
        inner=fetcher.transport,
        ttl=ttl,
        max_connections=max_connections,
        tls=tls,
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(10.0, read=None),
        follow_redirects=False,
        trust_env=False,
        headers=headers,
    )
