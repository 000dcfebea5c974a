"""Step 1, the URL's shape: HTTPS, port 443, no credentials, public addresses (field-problems A1, A2, A5, M2, O3)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

import anyio

from patchbay.doctor.context import Context
from patchbay.doctor.model import Result

__all__ = ["CHECKS", "Resolver", "classify_addresses"]

Resolver = Callable[[str], Awaitable[list[str]]]
_SECRET_WORDS = ("token", "key", "secret", "password", "passwd", "auth", "sig", "credential", "session")
_LOCAL_SKIP = "--local: a development URL stands in for the public one"


async def system_resolver(host: str) -> list[str]:
    infos = await anyio.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def classify_addresses(addresses: list[str]) -> str | None:
    """Why these addresses are unusable for a hosted client (A2), or None when they are all public IPv4."""
    v4 = [ipaddress.ip_address(a) for a in addresses if ":" not in a]
    if not v4:
        return "no IPv4 (A) address; hosted connectors connect over IPv4 only"
    bad = [str(a) for a in v4 if not a.is_global or a in ipaddress.ip_network("100.64.0.0/10")]
    if bad:
        return f"non-public address(es) {', '.join(bad)} (private, CGNAT, loopback or link-local)"
    return None


async def check_https(ctx: Context) -> list[Result]:
    if ctx.options.local:
        return [ctx.skip("url.https", _LOCAL_SKIP)]
    if ctx.target.parts.scheme == "https":
        return [ctx.ok("url.https", "the URL is https")]
    return [ctx.fail("url.https", f"{ctx.profile.title} needs a public https:// URL; this one is {ctx.target.url}")]


async def check_port(ctx: Context) -> list[Result]:
    if ctx.options.local:
        return [ctx.skip("url.port", _LOCAL_SKIP)]
    port = ctx.target.parts.port
    if port in (None, 443):
        return [ctx.ok("url.port", "default HTTPS port")]
    why = (
        f"port {port}: {ctx.profile.title} connects to port 443 only"
        if ctx.profile.port_443 == "fail"
        else (f"port {port}: Claude's hosted connectors refuse non-443 ports; {ctx.profile.title} may too")
    )
    if ctx.profile.port_443 == "fail":
        return [ctx.fail("url.port", why)]
    return [ctx.warn("url.port", why)] if ctx.profile.port_443 == "warn" else [ctx.ok("url.port", why)]


async def check_credentials(ctx: Context) -> list[Result]:
    parts = ctx.target.parts
    found = [k for k, _ in parse_qsl(parts.query, keep_blank_values=True) if any(w in k.lower() for w in _SECRET_WORDS)]
    if parts.username or parts.password:
        found.append("user:password@")
    if found:
        why = (
            f"the URL carries credentials ({', '.join(found)}); Claude refuses such URLs and ChatGPT may call the "
            "connector unsafe"
        )
        return [ctx.fail("url.credentials", why)]
    return [ctx.ok("url.credentials", "no credentials in the URL")]


async def check_public(ctx: Context) -> list[Result]:
    if ctx.options.local:
        return [ctx.skip("url.public", _LOCAL_SKIP)]
    host = ctx.target.parts.hostname or ""
    resolver: Resolver = ctx.facts.get("resolver", system_resolver)
    try:
        addresses = [host] if _is_ip(host) else await resolver(host)
    except OSError as exc:
        return [ctx.fail("url.public", f"{host} does not resolve ({exc})", "Publish a public A record for the host.")]
    problem = classify_addresses(addresses)
    if problem:
        return [ctx.fail("url.public", f"{host}: {problem}", details={"addresses": addresses})]
    return [ctx.ok("url.public", f"{host} → {', '.join(addresses)}")]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


CHECKS = (check_https, check_port, check_credentials, check_public)
