"""``Fetcher``: the one way server code reads from another host (client metadata documents, an IdP's discovery,
JWKS, token and UserInfo endpoints, and the REST and upstream-MCP connectors to come).

Every request goes through :class:`GuardedTransport` (address policy, pinning), has a deadline for the whole
exchange (resolution, connection, headers and body: a server that trickles bytes cannot hold a task forever),
reads at most ``max_bytes`` of body (declared or chunked) and follows no redirect unless the call allows some,
each hop vetted again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import httpx

from patchbay.outbound.policy import ANY_ADDRESS, PUBLIC_ONLY, AddressPolicy
from patchbay.outbound.transport import FetchError, GuardedTransport, Resolver, system_resolver

if TYPE_CHECKING:
    from patchbay.settings import OutboundSettings

MAX_BYTES = 256 * 1024
TIMEOUT = 5.0
DEADLINE = 10.0


@dataclass(frozen=True, slots=True)
class Fetched:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        """Raises FetchError: the body is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise FetchError("the response is not JSON") from exc


@dataclass(slots=True)
class Streamed:
    """A response whose body has not been read yet; :meth:`chunks` enforces the size cap as bytes arrive."""

    status: int
    headers: httpx.Headers
    host: str
    max_bytes: int
    response: httpx.Response

    async def chunks(self) -> AsyncIterator[bytes]:
        """Raises FetchError: the body is (or says it is) larger than ``max_bytes``."""
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError(f"the response from {self.host} is larger than {self.max_bytes} bytes")
        size = 0
        async for chunk in self.response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchError(f"the response from {self.host} is larger than {self.max_bytes} bytes")
            yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])


class Fetcher:
    """Outbound HTTP under one address policy. ``transport`` (the connection layer under the guard) and
    ``resolve`` are injectable for tests; by default they are a direct connection pool and the system resolver.
    """

    def __init__(
        self,
        *,
        policy: AddressPolicy = PUBLIC_ONLY,
        allow_http: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        resolve: Resolver = system_resolver,
        timeout: float = TIMEOUT,
        deadline: float = DEADLINE,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.policy = policy
        self.allow_http = allow_http
        self.transport = transport
        self.resolve = resolve
        self.timeout = timeout
        self.deadline = deadline
        self.max_bytes = max_bytes

    def client(self, *, max_redirects: int = 0, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        """An httpx client whose every request and redirect hop goes through the guard, for libraries that take
        a client (the MCP SDK's ``httpx_client_factory``). It has the timeouts but not the deadline or the size
        cap of :meth:`stream`; callers bound those themselves. Close it after use."""
        guard = GuardedTransport(self.policy, allow_http=self.allow_http, resolve=self.resolve, inner=self.transport)
        return httpx.AsyncClient(
            transport=guard,
            timeout=self.timeout,
            follow_redirects=max_redirects > 0,
            max_redirects=max_redirects,
            trust_env=False,
            headers=headers,
        )

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        max_redirects: int = 0,
        max_bytes: int | None = None,
        deadline: float | None = None,
    ) -> AsyncIterator[Streamed]:
        """The response, its body unread; the deadline covers the whole ``async with`` block.

        Raises:
            Refused: the URL or an address it resolves to is not allowed.
            FetchError: unreachable, deadline passed, a redirect not allowed, or a body over the cap.
        """
        host = _host(url)
        try:
            with anyio.fail_after(self.deadline if deadline is None else deadline):
                async with self.client(max_redirects=max_redirects) as client:
                    request = client.build_request(
                        method, url, data=data, headers={"Accept": "application/json", **(headers or {})}
                    )
                    response = await client.send(request, stream=True)
                    try:
                        if response.is_redirect:
                            raise FetchError(f"{host} answered with a redirect; redirects are not followed")
                        yield Streamed(
                            response.status_code, response.headers, host, max_bytes or self.max_bytes, response
                        )
                    finally:
                        await response.aclose()
        except TimeoutError:
            raise FetchError(f"{host} did not answer in time") from None
        except httpx.TooManyRedirects:
            raise FetchError(f"{host} redirected more than {max_redirects} times") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"could not reach {host}: {type(exc).__name__}") from None

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        max_redirects: int = 0,
    ) -> Fetched:
        """The whole response, at most ``max_bytes`` of body. Raises FetchError (or Refused) as :meth:`stream`."""
        async with self.stream(method, url, data=data, headers=headers, max_redirects=max_redirects) as streamed:
            return Fetched(streamed.status, streamed.headers, await streamed.read())

    async def get_json(self, url: str) -> Any:
        """Raises FetchError: as :meth:`request`, or a status other than 200, or a body that is not JSON."""
        fetched = await self.request("GET", url)
        if fetched.status != 200:
            raise FetchError(f"GET {url} answered {fetched.status}")
        return fetched.json()


def fetcher_for(
    settings: OutboundSettings,
    *,
    allow_private_network: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Fetcher:
    """The fetcher ``[outbound]`` describes. ``allow_private_network`` is the older per-feature switch
    (``[auth]``, ``[auth.upstream]``, ``[auth.external]``), which widens only the fetcher it is given to."""
    if settings.allow_private_network or allow_private_network:
        return Fetcher(policy=ANY_ADDRESS, allow_http=True, transport=transport)
    networks = tuple(ip_network(cidr) for cidr in settings.allowed_networks)
    return Fetcher(policy=AddressPolicy(networks), transport=transport)


async def trusting_origin(base: Fetcher, url: str) -> Fetcher:
    """A fetcher like ``base`` that also admits the addresses ``url``'s host resolves to now, whatever they are.

    For a host the operator configured (an upstream's URL, an OpenAPI spec's URL): naming it in the config is the
    permission, as for the mcp connector's ``url``. Every other host stays under ``base``'s policy.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        addresses = [ip_address(host)]
    except ValueError:
        try:
            answers = await base.resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
            addresses = [ip_address(a) for a in answers]
        except (OSError, ValueError):
            addresses = []  # the guard reports the failure to resolve when the request is made
    networks = (*base.policy.allowed_networks, *(ip_network(a) for a in addresses))
    return Fetcher(
        policy=AddressPolicy(networks, base.policy.any_address),
        allow_http=base.allow_http or parts.scheme == "http",
        transport=base.transport,
        resolve=base.resolve,
        timeout=base.timeout,
        deadline=base.deadline,
        max_bytes=base.max_bytes,
    )


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host or url[:100]
    except httpx.InvalidURL:
        return url[:100]
