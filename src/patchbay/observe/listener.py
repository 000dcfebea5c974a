"""The separate /metrics listener (``[metrics] listen``): a few lines of HTTP/1.1 on an asyncio server.

It answers ``GET /metrics`` and nothing else, one request per connection (Prometheus opens few, and closes them
if asked), so it needs no web framework and shares nothing with the MCP port. On a loopback address it answers
only a loopback ``Host`` (DNS rebinding: a web page must not read it through a name that points at 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from patchbay.errors import ConfigError
from patchbay.observe.prom import CONTENT_TYPE

log = logging.getLogger("patchbay.observe")
Scrape = Callable[[], Awaitable[bytes]]
MAX_HEAD = 8192  # bytes of request line and headers read at most
READ_SECONDS = 5.0
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


@dataclass
class MetricsListener:
    host: str
    port: int
    server: asyncio.Server | None = field(default=None, init=False)
    _scrape: Scrape | None = field(default=None, init=False)

    @classmethod
    def parse(cls, listen: str) -> MetricsListener:
        host, _, port = listen.rpartition(":")
        return cls(host.strip("[]"), int(port))

    @property
    def bound_port(self) -> int:
        """The port actually bound (``listen = "127.0.0.1:0"`` picks a free one: tests)."""
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self, scrape: Scrape, source: str = "<config>") -> None:
        """Raises:
        ConfigError: the address cannot be listened on (in use, not this machine's), naming the key."""
        self._scrape = scrape
        try:
            self.server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as exc:
            raise ConfigError(
                f"{source}: metrics.listen: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}; "
                "pick a free port on an address of this machine",
                file=source,
                key="metrics.listen",
            ) from None
        log.info("metrics at http://%s:%d/metrics", self.host, self.bound_port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), READ_SECONDS)

    def _loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_SECONDS)
            status, body, kind = await self._answer(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            status, body, kind = "400 Bad Request", b"Bad request\n", "text/plain; charset=utf-8"
        with contextlib.suppress(ConnectionError):
            headers = (
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(headers.encode() + body)
            await writer.drain()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    async def _answer(self, head: bytes) -> tuple[str, bytes, str]:
        text = "text/plain; charset=utf-8"
        if len(head) > MAX_HEAD:
            return "431 Request Header Fields Too Large", b"Request headers too large\n", text
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        host = next((line[5:].strip() for line in lines[1:] if line[:5].lower() == "host:"), "")
        if self._loopback() and _host_name(host) not in LOOPBACK_NAMES:
            return "421 Misdirected Request", b"This listener answers only to a loopback Host\n", text
        if path != "/metrics":
            return "404 Not Found", b"Only /metrics is served here\n", text
        if method != "GET":
            return "405 Method Not Allowed", b"Use GET\n", text
        assert self._scrape is not None
        return "200 OK", await self._scrape(), CONTENT_TYPE


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host
