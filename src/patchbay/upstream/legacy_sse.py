"""The 2024-11-05 HTTP+SSE transport as a client (MCP 2024-11-05 basic/transports: HTTP with SSE).

``GET`` the SSE URL; the first ``endpoint`` event names the URL to POST messages to (resolved against the SSE
URL; another origin is vetted by the outbound policy like any URL learned from upstream data); every answer and
server message arrives on the stream as a ``message`` event. The stream ending ends the session: a reconnect would
be a new session, so the pool re-initialises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from patchbay.outbound import FetchError
from patchbay.upstream.errors import SessionLost, UpstreamUnauthorized, UpstreamUnavailable
from patchbay.upstream.session import Call, Handlers, UpstreamSession
from patchbay.upstream.sse import Event, events

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from patchbay.upstream.opening import Opener

log = logging.getLogger("patchbay.upstream")


class LegacySseChannel:
    cancels_by_closing = False

    def __init__(self, client: httpx.AsyncClient, url: str, headers: Mapping[str, str], max_bytes: int) -> None:
        self.client = client
        self.url = url
        self.auth_headers = dict(headers)
        self.max_bytes = max_bytes
        self.endpoint: str | None = None
        self._host = httpx.URL(url).host
        self._reader: asyncio.Task[None] | None = None
        self._session: UpstreamSession | None = None

    def update_headers(self, headers: Mapping[str, str]) -> None:
        self.auth_headers = dict(headers)

    async def start(self, session: UpstreamSession, timeout: float) -> None:  # noqa: ASYNC109
        """Open the stream and wait for its ``endpoint`` event.

        Raises:
            UpstreamUnavailable: unreachable, refused, or no endpoint within ``timeout`` seconds.
        """
        self._session = session
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.ensure_future(self._read(session, ready))
        try:
            async with asyncio.timeout(timeout):
                endpoint = await asyncio.shield(ready)
        except TimeoutError:
            raise UpstreamUnavailable(f"{self._host} sent no endpoint event within {timeout:g} s") from None
        self.endpoint = str(httpx.URL(self.url).join(endpoint))

    async def _read(self, session: UpstreamSession, ready: asyncio.Future[str]) -> None:
        reason = "the upstream closed its event stream"
        try:
            headers = {"Accept": "text/event-stream", **self.auth_headers}
            async with self.client.stream("GET", self.url, headers=headers) as response:
                if response.status_code == 401:
                    raise UpstreamUnauthorized(f"{self._host} refused the credentials (HTTP 401)")
                if response.status_code != 200:
                    raise UpstreamUnavailable(
                        f"{self._host} answered the event stream with HTTP {response.status_code}"
                    )
                await self._events(events(response.aiter_bytes(), self.max_bytes), session, ready)
        except asyncio.CancelledError:
            raise
        except (UpstreamUnavailable, httpx.HTTPError, FetchError) as exc:
            reason = str(exc) if isinstance(exc, UpstreamUnavailable | FetchError) else type(exc).__name__
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, UpstreamUnavailable) else UpstreamUnavailable(reason))
        if not ready.done():
            ready.set_exception(UpstreamUnavailable(reason))
        session.lose(reason)

    async def _events(self, stream: AsyncIterator[Event], session: UpstreamSession, ready: asyncio.Future[str]) -> None:
        async for event in stream:
            if event.event == "endpoint":
                if not ready.done():
                    ready.set_result(event.data.strip())
            elif event.event == "message" and event.data:
                try:
                    message = orjson.loads(event.data)
                except orjson.JSONDecodeError:
                    log.warning("upstream %s sent an SSE event that is not JSON; skipped", self._host)
                    continue
                await session.receive(message, None)

    async def send(self, message: dict[str, Any], call: Call | None) -> None:
        session = self._session
        if session is None or session.lost is not None or self.endpoint is None:
            raise SessionLost(session.lost if session and session.lost else "the stream is not open", delivered=False)
        if call is not None:
            call.delivered = True
        headers = {"Content-Type": "application/json", **self.auth_headers}
        try:
            response = await self.client.post(self.endpoint, content=orjson.dumps(message), headers=headers)
        except (httpx.HTTPError, FetchError) as exc:
            reason = str(exc) if isinstance(exc, FetchError) else type(exc).__name__
            raise UpstreamUnavailable(f"could not reach {self._host}: {reason}") from None
        if response.status_code == 404:
            session.lose("the upstream no longer knows this session")
            raise SessionLost("the upstream no longer knows this session (HTTP 404)", delivered=False)
        if response.status_code == 401:
            raise UpstreamUnauthorized(f"{self._host} refused the credentials (HTTP 401)")
        if response.status_code >= 300:
            raise UpstreamUnavailable(f"{self._host} refused a message with HTTP {response.status_code}")

    async def close(self) -> None:
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def open_legacy_sse(opener: Opener, headers: Mapping[str, str], handlers: Handlers) -> UpstreamSession:
    """A session over a new event stream, not yet initialised.

    Raises:
        UpstreamUnavailable: the stream could not be opened.
    """
    target = opener.target
    channel = LegacySseChannel(opener.client(), target.url or "", headers, target.max_message_bytes)
    session = UpstreamSession(channel, handlers)
    try:
        await channel.start(session, opener.handshake_timeout)
    except BaseException:
        await channel.close()
        raise
    return session
