"""DNS-rebinding protection: the Host and Origin a request may carry (MCP 2025-11-25 transports: Origin)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# Hosted clients whose requests may carry their web origin (field-problems A4: an allowlist without them turns
# ChatGPT's registration or calls into 403s). Allowed by default once the server has a public URL.
HOSTED_CLIENT_ORIGINS = ("https://chatgpt.com", "https://claude.ai", "https://claude.com")


def _split_host(value: str) -> tuple[str, str | None]:
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value.partition("]")
        if not rest:
            return host + "]", None
        if rest.startswith(":") and rest[1:].isdigit():
            return host + "]", rest[1:]
        return value, None  # "[::1]evil.example" is not [::1]
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        return value, None
    return host, port


class HostGuard:
    """Allows the public URL's host, loopback on any port, and any extra hosts the operator names.

    ``"*"`` among the extra hosts turns the Host check off (for deployments behind a proxy that rewrites Host);
    Origin is still checked against the allowed hosts and the extra origins.
    """

    def __init__(self, public_url: str, extra_hosts: Iterable[str] = (), extra_origins: Iterable[str] = ()) -> None:
        public = urlsplit(public_url)
        self.any_host = False
        self.hosts: set[str] = set()  # "host" (any port) or "host:port"
        self.hosts.update(LOOPBACK_HOSTS)
        if public.hostname:
            host = f"[{public.hostname}]" if ":" in public.hostname else public.hostname
            self.hosts.add(host.lower())
        for entry in extra_hosts:
            if entry == "*":
                self.any_host = True
            else:
                self.hosts.add(entry.lower())
        self.origins = {o.rstrip("/").lower() for o in extra_origins}
        if public.hostname and not _is_loopback(public.hostname):
            self.origins.update(HOSTED_CLIENT_ORIGINS)
        self._seen: dict[bytes, bool] = {}

    def host_ok(self, value: bytes | None) -> bool:
        if self.any_host:
            return True
        if not value:
            return False
        known = self._seen.get(value)
        if known is None:
            known = self._host_ok(value)
            if len(self._seen) < 256:  # a client sends the same Host every time; strangers are not remembered
                self._seen[value] = known
        return known

    def _host_ok(self, value: bytes) -> bool:
        text = value.decode("latin-1")
        host, port = _split_host(text)
        return host in self.hosts or (port is not None and f"{host}:{port}" in self.hosts)

    def origin_ok(self, value: bytes | None) -> bool:
        if value is None:  # server-to-server callers (ChatGPT, Claude) send no Origin
            return True
        text = value.decode("latin-1").strip().lower()
        if text in self.origins:
            return True
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return host in self.hosts or (parts.port is not None and f"{host}:{parts.port}" in self.hosts)


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False
