"""Opening an upstream session: pick the transport, detect the era once per upstream, run the handshake.

Era detection (MCP 2026-07-28 basic/versioning, server/discover): ``protocol="auto"`` sends ``server/discover``
first. An answer listing 2026-07-28 makes the upstream a 2026-07-28 one; a JSON-RPC error, an answer without
2026-07-28, or HTTP 400/404/405 (what a 2025-only server answers a request outside a session) means a
handshake-era upstream: ``initialize`` follows. Anything inconclusive (401, 429, 5xx, unreachable, no answer) is
an error and is not cached, so the next attempt probes again. The legacy HTTP+SSE transport is handshake-only.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from patchbay.outbound import Fetcher, FetchError
from patchbay.outbound.origin import OriginClient
from patchbay.protocol.versions import LATEST_HANDSHAKE, MODERN
from patchbay.upstream.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from patchbay.upstream.session import Handlers, NotModern, UpstreamSession
from patchbay.upstream.target import Target

if TYPE_CHECKING:
    from patchbay.upstream.process import ProcessSpec, StreamWriterLike

HANDSHAKE_TIMEOUT = 30.0
HANDSHAKE = "handshake"


class StdioEndpoint(Protocol):
    """The part of ``patchbay.upstream.process.StdioProcess`` the stdio transport uses."""

    async def start(self) -> tuple[asyncio.StreamReader, StreamWriterLike]: ...
    async def stop(self) -> None: ...
    async def wait_exit(self) -> int | None: ...
    def stderr_tail(self) -> str: ...
    def touch(self) -> None: ...


class Opener:
    """Builds sessions for one pool: one HTTP client (HTTP kinds) and the cached era."""

    def __init__(
        self,
        name: str,
        target: Target,
        *,
        client_info: dict[str, Any],
        capabilities: dict[str, Any],
        fetcher: Fetcher,
        handshake_timeout: float | None,
        process_factory: Callable[[str, ProcessSpec], StdioEndpoint] | None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self.tls = tls
        self.target = target
        self.client_info = client_info
        self.capabilities = capabilities
        self.fetcher = fetcher
        self.process_factory = process_factory
        spec_timeout = target.process.start_timeout if target.process is not None else HANDSHAKE_TIMEOUT
        self.handshake_timeout = handshake_timeout or spec_timeout
        self.era: str | None = None if target.protocol == "auto" else _era_of(target.protocol)
        self.discovered: dict[str, Any] | None = None
        self._client: httpx.AsyncClient | None = None
        self._origin: OriginClient | None = None
        self._processes: dict[str, StdioEndpoint] = {}

    def client(self) -> httpx.AsyncClient:
        """The pool's one HTTP client: the target's origin pinned, keep-alive (built on first use)."""
        if self._client is None:
            from patchbay.outbound import pinned_client

            if self.target.url is None:
                raise UpstreamUnavailable(f"the upstream {self.name} has no URL")
            try:
                self._client = pinned_client(
                    self.target.url, self.fetcher, headers=dict(self.target.headers), tls=self.tls
                )
            except FetchError as exc:
                raise UpstreamUnavailable(str(exc)) from None
        return self._client

    def origin(self) -> OriginClient:
        """The pool's lean HTTP/1.1 client for the target's URL (Streamable HTTP), built on first use."""
        if self._origin is None:
            if self.target.url is None:
                raise UpstreamUnavailable(f"the upstream {self.name} has no URL")
            try:
                self._origin = OriginClient(
                    self.target.url, headers=self.target.headers, resolve=self.fetcher.resolve, tls=self.tls
                )
            except FetchError as exc:
                raise UpstreamUnavailable(str(exc)) from None
        return self._origin

    async def open(self, identity: str, headers: Mapping[str, str], handlers: Handlers) -> UpstreamSession:
        """A new, initialised session for ``identity``.

        Raises:
            UpstreamUnavailable: cannot reach, start or initialise the upstream.
        """
        kind = self.target.kind
        if kind == "stdio":
            session = await self._open_stdio(identity, handlers)
        elif kind == "sse":
            from patchbay.upstream.legacy_sse import open_legacy_sse

            session = await open_legacy_sse(self, headers, handlers)
        else:
            from patchbay.upstream.http import HttpChannel

            channel = HttpChannel(self.origin(), headers, self.target.max_message_bytes)
            session = UpstreamSession(channel, handlers)
            channel.bind(session)
        try:
            await self._handshake(session, handshake_only=kind == "sse")
        except BaseException:
            await session.close()
            raise
        return session

    async def _open_stdio(self, identity: str, handlers: Handlers) -> UpstreamSession:
        from patchbay.upstream.stdio import StdioChannel

        process = self._processes.get(identity)
        if process is None:
            process = self._processes[identity] = self._new_process(identity)

        def forget() -> None:
            if self._processes.get(identity) is process:
                del self._processes[identity]

        channel = StdioChannel(process, self.target.max_message_bytes, on_close=forget)
        session = UpstreamSession(channel, handlers)
        await channel.start(session)
        return session

    def _new_process(self, identity: str) -> StdioEndpoint:
        spec = self.target.process
        if spec is None:
            raise UpstreamUnavailable(f"the upstream {self.name} has no command")
        factory = self.process_factory
        if factory is None:
            from patchbay.upstream.process import StdioProcess

            factory = StdioProcess
        label = self.name if not identity else f"{self.name} ({identity})"
        return factory(label, spec)

    async def _handshake(self, session: UpstreamSession, *, handshake_only: bool) -> None:
        timeout = self.handshake_timeout
        if handshake_only or self.era not in (None, MODERN):
            version = self.era if self.era not in (None, HANDSHAKE, MODERN) else LATEST_HANDSHAKE
            await session.initialize(version or LATEST_HANDSHAKE, self.client_info, self.capabilities, timeout=timeout)
            return
        if self.era == MODERN and self.discovered is not None:
            session.set_envelope(self.client_info, self.capabilities)
            session.adopt(self.discovered)
            return
        try:
            await session.discover(self.client_info, self.capabilities, timeout=timeout)
        except (UpstreamError, NotModern) as exc:
            if self.era == MODERN:
                raise UpstreamUnavailable(f"the upstream does not speak {MODERN}: {exc}") from None
            self.era = HANDSHAKE
            session.modern = False
            await session.initialize(LATEST_HANDSHAKE, self.client_info, self.capabilities, timeout=timeout)
            return
        except UpstreamTimeout:
            raise UpstreamUnavailable(f"the upstream did not answer server/discover within {timeout:g} s") from None
        self.era = MODERN
        self.discovered = getattr(session, "discovered", None)

    def update_headers(self, session: UpstreamSession, headers: Mapping[str, str]) -> None:
        update = getattr(session.channel, "update_headers", None)
        if update is not None:
            update(headers)

    def describe(self, session: UpstreamSession | None) -> str:
        if session is None:
            return "no session open yet"
        name = session.server_info.get("name", "the upstream")
        return f"{name} speaks {session.protocol_version} over {self.target.kind}"

    def stderr_tail(self) -> str:
        process = self._processes.get("")
        if process is None and self._processes:
            process = next(iter(self._processes.values()))
        return process.stderr_tail() if process is not None else ""

    async def close(self) -> None:
        processes = list(self._processes.values())
        self._processes.clear()
        await asyncio.gather(*(process.stop() for process in processes), return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._origin is not None:
            await self._origin.aclose()
            self._origin = None


def _era_of(protocol: str) -> str:
    return MODERN if protocol == MODERN else protocol
