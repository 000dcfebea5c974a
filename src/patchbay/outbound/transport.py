"""The httpx transport every outbound request goes through: it vets the URL, resolves the host once, checks
every address against the policy and connects to the vetted address.

The name stays in the Host header and in TLS (SNI and the certificate check), so the server sees an ordinary
request, while a second DNS answer (DNS rebinding) cannot swap in an internal address between the check and the
connection. Each redirect hop an httpx client follows is a new request through this transport, so each hop is
vetted again.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable

import anyio
import httpx

from patchbay.outbound.policy import AddressPolicy, HostError, IPAddress, literal_address

# host, port -> the addresses it resolves to (injectable: tests answer without DNS).
Resolver = Callable[[str, int], Awaitable[list[str]]]


class FetchError(Exception):
    """An outbound request was refused or failed. The message is safe to show: it names the host and what went
    wrong, never a response body, a header or a credential."""


class Refused(FetchError):
    """The address policy or the URL rules refused the request before any connection was made."""


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def direct_transport() -> httpx.AsyncHTTPTransport:
    # No proxies from the environment (a proxy would connect to a name we did not vet). No keep-alive: a pool
    # keyed by address could carry a request for one name over a TLS connection verified for another.
    return httpx.AsyncHTTPTransport(trust_env=False, retries=0, limits=httpx.Limits(max_keepalive_connections=0))


class GuardedTransport(httpx.AsyncBaseTransport):
    """Vets and pins each request, then hands it to ``inner`` (a real connection pool, or a test double)."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        allow_http: bool = False,
        resolve: Resolver = system_resolver,
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.policy = policy
        self.allow_http = allow_http
        self.resolve = resolve
        self.owns_inner = inner is None
        self.inner = inner or direct_transport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Raises:
        Refused: scheme, credentials, host spelling or address not allowed.
        FetchError: the host does not resolve.
        """
        url = request.url
        if url.scheme != "https" and not (self.allow_http and url.scheme == "http"):
            raise Refused(f"only https:// URLs are fetched (got {url.scheme or 'no'} scheme)")
        if url.userinfo:
            raise Refused("the URL must not carry credentials")
        host = url.raw_host.decode("ascii")  # IDNA-encoded by the URL parser
        if not host or url.port == 0:
            raise Refused("the URL needs a host and a port from 1 to 65535")
        if self.policy.any_address:
            return await self.inner.handle_async_request(request)
        address = await self.vetted_address(host, url.port or (443 if url.scheme == "https" else 80))
        extensions = dict(request.extensions)
        if url.scheme == "https":
            extensions["sni_hostname"] = host.removesuffix(".")
        # The Host header was set from the original URL when the request was built; the copy keeps it.
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=str(address)),
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )
        return await self.inner.handle_async_request(pinned)

    async def vetted_address(self, host: str, port: int) -> IPAddress:
        """The address to connect to: ``host``'s first address, after every address it has passed the policy.

        Raises:
            Refused: a non-canonical numeric host, or any address the policy does not admit.
            FetchError: the name does not resolve.
        """
        try:
            literal = literal_address(host)
        except HostError as exc:
            raise Refused(str(exc)) from None
        if literal is not None:
            kind = self.policy.refusal(literal)
            if kind is not None:
                raise Refused(f"{host} is a {kind} address; only public addresses are fetched")
            return literal
        try:
            answers = await self.resolve(host.removesuffix("."), port)
        except OSError:
            raise FetchError(f"cannot resolve {host}") from None
        if not answers:
            raise FetchError(f"cannot resolve {host}")
        try:
            addresses = [ipaddress.ip_address(answer) for answer in answers]
        except ValueError:
            raise FetchError(f"cannot resolve {host}: the resolver answered something that is not an IP") from None
        for address in addresses:
            # Every answer must pass, not only the first: an attacker's zone may mix public and internal ones.
            kind = self.policy.refusal(address)
            if kind is not None:
                raise Refused(f"{host} resolves to a {kind} address; only public addresses are fetched")
        return addresses[0]

    async def aclose(self) -> None:
        if self.owns_inner:  # an injected transport belongs to whoever made it
            await self.inner.aclose()
