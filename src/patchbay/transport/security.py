"""DNS-rebinding protection: the Host and Origin a request may carry (MCP 2025-11-25 transports: Origin)."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

log = logging.getLogger("patchbay.transport.security")

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

    def __init__(
        self,
        public_url: str,
        extra_hosts: Iterable[str] = (),
        extra_origins: Iterable[str] = (),
        probe_hosts: Iterable[str] = (),
    ) -> None:
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
        self.probes = ProbeHosts(probe_hosts)
        self.warnings = Warnings(log)

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

    def probe_ok(self, value: bytes | None) -> bool:
        """A health probe's Host: anything host_ok allows, or one of ``server.probe_hosts``."""
        return self.host_ok(value) or self.probes.match(value)

    def host_refused(self, value: bytes | None, *, probe: bool = False) -> str:
        """The message for a refused Host (logged, rate-limited): the value seen and the setting that allows it."""
        shown = shown_value(value)
        self.warnings.warn("refused Host %s (not in server.allowed_hosts or server.public_url)", shown)
        probes = "A health probe's own address or network goes in server.probe_hosts. " if probe else ""
        return (
            f"Misdirected request: Host {shown} is not served here. {probes}If clients reach this server by that "
            "name, add it to server.allowed_hosts or set server.public_url to the URL they use."
        )

    def origin_refused(self, value: bytes | None) -> str:
        """The message for a refused Origin (logged, rate-limited), naming the setting that allows it."""
        shown = shown_value(value)
        self.warnings.warn("refused Origin %s (not in server.allowed_origins)", shown)
        return (
            f"Forbidden: Origin {shown} may not call this server. To let a browser client on that origin connect, "
            "add it to server.allowed_origins."
        )

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


class ProbeHosts:
    """``server.probe_hosts``: Host values health probes send (load balancers and Kubernetes send the target's
    own address). Entries are host names, IP addresses or networks (``10.0.0.0/8``); the port is ignored."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.names: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.names.add(entry.lower())

    def match(self, value: bytes | None) -> bool:
        if not value or not (self.names or self.networks):
            return False
        host, _ = _split_host(value.decode("latin-1"))
        if host in self.names:
            return True
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self.networks)


SHOWN_MAX = 80


def shown_value(value: bytes | None) -> str:
    """A client-sent header value made safe to echo and log: quoted, non-printables escaped, truncated."""
    if value is None:
        return "(none)"
    text = value[:SHOWN_MAX].decode("latin-1")
    safe = "".join(ch if " " <= ch <= "~" and ch not in "'\\" else f"\\x{ord(ch):02x}" for ch in text)
    return f"'{safe}'" + ("…" if len(value) > SHOWN_MAX else "")


class Warnings:
    """At most ``per_minute`` warnings a minute, so a flood of refused requests cannot fill the log; how many
    were held back is logged when the next minute starts."""

    def __init__(
        self, logger: logging.Logger, per_minute: int = 10, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.per_minute = per_minute
        self.clock = clock
        self.window: float | None = None
        self.logged = 0
        self.held = 0

    def warn(self, message: str, *args: object) -> None:
        now = self.clock()
        if self.window is None or now - self.window >= 60:
            if self.held:
                self.logger.warning("%d more refusals were not logged in the last minute", self.held)
            self.window, self.logged, self.held = now, 0, 0
        if self.logged < self.per_minute:
            self.logged += 1
            self.logger.warning(message, *args)
        else:
            self.held += 1
