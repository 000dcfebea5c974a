"""Outbound HTTP for user-supplied URLs (client metadata documents) and IdP endpoints, guarded against SSRF.

The host is resolved first and every address it resolves to must be public (not private, loopback, link-local,
multicast, reserved or unspecified); the request then goes to that vetted address, with the name kept for the
Host header and TLS (SNI and certificate checks), so a second DNS answer cannot swap in an internal address.
No redirects are followed, responses are size-capped and every request has a deadline.
``allow_private`` exists for tests that run an IdP on loopback; it is off unless a setting turns it on.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx

MAX_BYTES = 256 * 1024
TIMEOUT = 5.0


class FetchError(Exception):
    """A guarded request was refused or failed; the message is safe to show (no response body, no secret)."""


@dataclass(frozen=True, slots=True)
class Fetched:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise FetchError("the response is not JSON") from exc


# host, port -> the addresses it resolves to (injectable for tests that cannot use real DNS).
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def _resolve(host: str, port: int) -> list[str]:
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class GuardedFetcher:
    """``transport`` is injectable (httpx ``MockTransport`` in tests)."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = TIMEOUT,
        max_bytes: int = MAX_BYTES,
        resolve: Resolver | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.transport = transport
        self.resolve = resolve or _resolve
        self.timeout = timeout
        self.max_bytes = max_bytes

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Fetched:
        """Raises FetchError: bad URL, private address, timeout, too large, redirect, network failure."""
        parts = urlsplit(url)
        if parts.scheme != "https" and not (self.allow_private and parts.scheme == "http"):
            raise FetchError(f"only https:// URLs are fetched (got {parts.scheme or 'no'} scheme)")
        host = parts.hostname
        if not host or parts.username or parts.password:
            raise FetchError("the URL needs a host and must not carry credentials")
        target = url
        extensions: dict[str, Any] = {}
        if not self.allow_private:
            address = await self._vetted_address(host, parts.port or (443 if parts.scheme == "https" else 80))
            netloc = f"[{address}]" if ":" in address else address
            if parts.port:
                netloc += f":{parts.port}"
            target = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
            extensions["sni_hostname"] = host
        send_headers = {"Host": parts.netloc.rpartition("@")[2], "Accept": "application/json", **(headers or {})}
        try:
            async with httpx.AsyncClient(
                transport=self.transport, timeout=self.timeout, follow_redirects=False, trust_env=False
            ) as client:
                request = client.build_request(method, target, data=data, headers=send_headers, extensions=extensions)
                with anyio.fail_after(self.timeout * 2):
                    response = await client.send(request, stream=True)
                    try:
                        body = await self._read(response)
                    finally:
                        await response.aclose()
        except TimeoutError as exc:
            raise FetchError(f"{host} did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise FetchError(f"could not reach {host}: {type(exc).__name__}") from exc
        if 300 <= response.status_code < 400:
            raise FetchError(f"{host} answered with a redirect; redirects are not followed")
        return Fetched(response.status_code, response.headers, body)

    async def get_json(self, url: str) -> Any:
        fetched = await self.request("GET", url)
        if fetched.status != 200:
            raise FetchError(f"GET {url} answered {fetched.status}")
        return fetched.json()

    async def _vetted_address(self, host: str, port: int) -> str:
        try:
            ipaddress.ip_address(host)
            candidates = [host]
        except ValueError:
            try:
                candidates = await self.resolve(host, port)
            except OSError as exc:
                raise FetchError(f"cannot resolve {host}") from exc
        if not candidates or not all(_public(a) for a in candidates):
            raise FetchError(f"{host} resolves to a private, loopback or otherwise non-public address")
        return candidates[0]

    async def _read(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError(f"the response is larger than {self.max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchError(f"the response is larger than {self.max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
