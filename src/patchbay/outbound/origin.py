"""``OriginClient``: a lean HTTP/1.1 keep-alive client for the one endpoint the operator configured (an upstream
MCP server's URL), on the hot path of every proxied call.

Like :class:`patchbay.outbound.pinned.PinnedTransport`, it trusts the configured host (the operator named it) and pins
what it resolves to (:class:`patchbay.outbound.pin.PinnedAddress`): resolved once, again after ``ttl`` seconds or when a
connection to the pinned address fails. TLS checks the certificate against the configured name (SNI included) with the
same trust store httpx uses by default. Connections are kept alive (at most ``max_idle`` idle, ``max_connections`` in
all, one request at a time each); an idle connection the server closed is never written to, and one idle longer than
``IDLE_EXPIRY`` is closed rather than reused. Nothing here follows redirects or talks to any other origin: URLs learned
from upstream data go through the guarded :class:`~patchbay.outbound.Fetcher`.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from patchbay.outbound.http1 import ConnectionFailed, Http1Connection, Response, TooLarge
from patchbay.outbound.pin import DNS_TTL, PinnedAddress
from patchbay.outbound.transport import Refused, Resolver, system_resolver

CONNECT_TIMEOUT = 10.0
# Below the 5 s keep-alive timeout of uvicorn, Node and others, so a reused connection is not one the server is
# closing at that very moment (the request would be lost in flight, with no way to know whether it was seen).
IDLE_EXPIRY = 4.0
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2 token (a field name)
_BAD_VALUE = re.compile(r"[\r\n\0]")
# RFC 9112 §3.2.1 origin-form: "/" then visible ASCII without '"' or a fragment; anything else is encoded first.
_TARGET = re.compile(r"/[!$-~]*")

__all__ = ["ConnectionFailed", "HeaderBlock", "OriginClient", "Response", "TooLarge"]


class HeaderBlock:
    """Header lines checked and encoded once (the client's fixed headers merged in) by
    :meth:`OriginClient.prepare`, for a caller that sends the same headers on many requests."""

    __slots__ = ("lines",)

    def __init__(self, lines: bytes) -> None:
        self.lines = lines


class OriginClient:
    """Requests to ``url`` (its path and query), over pooled connections to its pinned address.

    ``headers`` go on every request (static upstream headers; never logged). ``tls`` replaces the default trust
    (tests use a throwaway CA).
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        resolve: Resolver = system_resolver,
        tls: ssl.SSLContext | None = None,
        max_connections: int = 100,
        max_idle: int = 16,
        ttl: float = DNS_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Refused(f"an upstream URL must be http:// or https:// with a host (got {url[:100]!r})")
        if parts.username is not None or parts.password is not None:
            raise Refused("the URL must not carry credentials")
        try:
            port = parts.port
        except ValueError:
            raise Refused(f"the port of {url[:100]!r} is not a number from 1 to 65535") from None
        self.scheme = parts.scheme
        self.host = parts.hostname.encode("idna").decode("ascii") if not parts.hostname.isascii() else parts.hostname
        self.port = port or (443 if self.scheme == "https" else 80)
        self.pin = PinnedAddress(self.host, self.port, resolve=resolve, ttl=ttl, clock=clock)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        shown = f"[{self.host}]" if ":" in self.host else self.host
        default_port = self.port == (443 if self.scheme == "https" else 80)
        self.host_header = shown if default_port else f"{shown}:{self.port}"
        self._fixed_headers = {"Accept-Encoding": "identity", **(headers or {})}
        self._fixed_names = {name.lower() for name in self._fixed_headers}
        self._fixed = _encode_headers(self._fixed_headers)
        self.clock = clock
        self.max_idle = max_idle
        self.connections_opened = 0
        self._tls = tls
        self._idle: list[Http1Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    # -- requests ---------------------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        headers: Mapping[str, str] | HeaderBlock,
        body: bytes = b"",
        *,
        target: str | None = None,
    ) -> Response:
        """Send ``method`` to the URL and return once the response head is in; end it with ``aclose()``.

        ``target`` (an origin-form path and query, already percent-encoded) replaces the configured URL's, so one
        pooled client serves every path of its origin (the REST connector's operations).

        Raises:
            Refused: a header name or value, or a target, that cannot be sent.
            FetchError: the host does not resolve, or no connection could be made (refused twice, re-resolved in
                between), or the connection broke before the response head (``ConnectionFailed``).
        """
        if target is None:
            target = self.target
        elif not _TARGET.fullmatch(target):
            raise Refused("a request target must be an origin-form path (RFC 9112 §3.2.1), percent-encoded")
        head = self._head(method, headers, body, target)
        await self._slots.acquire()
        try:
            conn = await self._connection()
        except BaseException:
            self._slots.release()
            raise
        return await conn.send(head, body)  # from here on the connection gives the slot back

    async def fetch(
        self,
        method: str,
        headers: Mapping[str, str] | HeaderBlock,
        body: bytes,
        cap: int,
        *,
        target: str | None = None,
    ) -> tuple[Response, bytes]:
        """:meth:`request` plus the whole body (at most ``cap`` bytes); the response is already closed.

        Raises:
            FetchError: as :meth:`request`; ``TooLarge`` over the cap.
        """
        response = await self.request(method, headers, body, target=target)
        try:
            return response, await response.read(cap)
        finally:
            await response.aclose()

    def prepare(self, headers: Mapping[str, str]) -> HeaderBlock:
        """``headers`` with the fixed ones, checked and encoded once for many :meth:`request` calls.

        Raises:
            Refused: a header name or value that cannot be sent.
        """
        if any(name.lower() in self._fixed_names for name in headers):
            # A per-request value replaces a fixed one of the same name (sent once, as httpx merges them).
            lowered = {name.lower() for name in headers}
            kept = {name: value for name, value in self._fixed_headers.items() if name.lower() not in lowered}
            return HeaderBlock(_encode_headers({**kept, **headers}))
        return HeaderBlock(self._fixed + _encode_headers(headers))

    def _head(self, method: str, headers: Mapping[str, str] | HeaderBlock, body: bytes, target: str) -> bytes:
        length = f"Content-Length: {len(body)}\r\n" if body or method in ("POST", "PUT", "PATCH") else ""
        start = f"{method} {target} HTTP/1.1\r\nHost: {self.host_header}\r\n{length}".encode("ascii")
        block = headers if isinstance(headers, HeaderBlock) else self.prepare(headers)
        return start + block.lines + b"\r\n"

    async def _connection(self) -> Http1Connection:
        if self._closed:
            raise ConnectionFailed(f"the client for {self.host} is closed")
        now = self.clock()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable and now - conn.idle_since < IDLE_EXPIRY:
                return conn
            conn.abort()  # closed by the server while idle, or idle too long
        return await self._connect()

    async def _connect(self) -> Http1Connection:
        loop = asyncio.get_running_loop()
        tls = self._context() if self.scheme == "https" else None
        for attempt in (0, 1):
            address = await self.pin.get(fresh=attempt == 1)
            conn = Http1Connection(self._release)
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await loop.create_connection(
                        lambda: conn,  # noqa: B023 - called before the loop moves on
                        address,
                        self.port,
                        ssl=tls,
                        server_hostname=self.host.removesuffix(".") if tls is not None else None,
                    )
            except ssl.SSLError as exc:
                raise ConnectionFailed(f"TLS with {self.host} failed: {exc.reason or type(exc).__name__}") from None
            except (OSError, TimeoutError) as exc:
                if attempt or self.pin.literal is not None:
                    raise ConnectionFailed(f"could not connect to {self.host}: {_why(exc)}") from None
                self.pin.forget()  # refused or unreachable: the host may have moved
                continue
            self.connections_opened += 1
            return conn
        raise AssertionError("unreachable")  # pragma: no cover

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            import httpx  # only for its default trust store (certifi), so both clients trust the same CAs

            context = httpx.create_ssl_context(trust_env=False)
            context.set_alpn_protocols(["http/1.1"])
            self._tls = context
        return self._tls

    def _release(self, conn: Http1Connection, reusable: bool) -> None:
        self._slots.release()
        if reusable and not self._closed and len(self._idle) < self.max_idle:
            conn.idle_since = self.clock()
            self._idle.append(conn)
        else:
            conn.abort()

    @property
    def idle(self) -> int:
        """Idle connections still open (a connection the server closed is not counted)."""
        return sum(1 for conn in self._idle if conn.usable)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.abort()


def _encode_headers(headers: Mapping[str, str]) -> bytes:
    lines = []
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise Refused(f"{name[:40]!r} is not a valid HTTP header name")
        if _BAD_VALUE.search(value):
            raise Refused(f"the value of the {name} header contains a line break or NUL")  # never the value
        lines.append(f"{name}: {value}\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise Refused("a header value has characters outside Latin-1") from None


def _why(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return f"no connection within {CONNECT_TIMEOUT:g} s"
    return exc.strerror or type(exc).__name__
