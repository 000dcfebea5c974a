"""Streamable HTTP, both eras, as a client.

2025 era (MCP 2025-11-25 basic/transports: streamable HTTP): every message is a POST with ``Accept:
application/json, text/event-stream``; a request's answer is one JSON object or an SSE stream whose progress, log
notifications and server→client requests belong to that request; ``Mcp-Session-Id`` from the ``initialize``
answer and ``MCP-Protocol-Version`` (2025-06-18 and later) go on every later request; a stream that ends early
after an event id is resumed with ``GET`` + ``Last-Event-ID`` (resumability, SSE polling); the optional ``GET``
stream carries unsolicited notifications and requests and is reopened with backoff; ``404`` on a known session
means it ended (the request was not processed); ``DELETE`` ends it on close.

2026-07-28 (basic/transports/streamable-http): no session, no GET stream; each request carries
``MCP-Protocol-Version``, ``Mcp-Method`` and, for ``tools/call``, ``prompts/get`` and ``resources/read``,
``Mcp-Name``; closing the response stream is the cancellation.

Every request goes to the one configured URL over :class:`~patchbay.outbound.origin.OriginClient` (HTTP/1.1
keep-alive, the host pinned): the hot path of every proxied call, measured in bench/upstream_client.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from patchbay.outbound import FetchError
from patchbay.outbound.origin import HeaderBlock, OriginClient, Response, TooLarge
from patchbay.protocol.versions import MODERN, at_least
from patchbay.upstream.errors import SessionLost, UpstreamError, UpstreamUnauthorized, UpstreamUnavailable
from patchbay.upstream.sse import events

if TYPE_CHECKING:
    from patchbay.upstream.session import Call, UpstreamSession

log = logging.getLogger("patchbay.upstream")

ACCEPT_BOTH = "application/json, text/event-stream"
ERROR_BODY_BYTES = 64 * 1024
MAX_RESUMES = 1000
LISTEN_BACKOFF_MAX = 30.0
CLOSE_TIMEOUT = 5.0
DRAIN_SECONDS = 2.0
NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
MAX_BLOCKS = 256  # encoded header blocks kept per channel
# What a server answers a request it cannot serve in this era (2025-only: no session; 2026-only: no such method).
NOT_THIS_ERA = (400, 404, 405)


class HttpChannel:
    answers_inline = True

    def __init__(self, client: OriginClient, headers: Mapping[str, str], max_bytes: int) -> None:
        self.client = client
        self.auth_headers = dict(headers)
        self.max_bytes = max_bytes
        self.session_id: str | None = None
        self._session: UpstreamSession | None = None
        self._listener: asyncio.Task[None] | None = None
        self._host = client.host
        self._blocks: dict[tuple[Any, ...], HeaderBlock] = {}

    def bind(self, session: UpstreamSession) -> None:
        self._session = session

    @property
    def cancels_by_closing(self) -> bool:
        return self._session is not None and self._session.modern

    def update_headers(self, headers: Mapping[str, str]) -> None:
        if headers != self.auth_headers:
            self.auth_headers = dict(headers)
            self._blocks.clear()

    def _block(self, message: dict[str, Any]) -> HeaderBlock:
        """The encoded headers of a request, built once per method, name and session state: every proxied call
        of a tool sends the same ones.

        Raises:
            Refused: a configured header cannot be sent.
        """
        session = self._session
        method = message.get("method")
        param = NAME_PARAM.get(method) if isinstance(method, str) else None
        name = (message.get("params") or {}).get(param) if param else None
        if not isinstance(name, str):
            name = None  # only a string becomes Mcp-Name
        state = (session.modern, session.protocol_version) if session is not None else None
        key = (method, name, state, self.session_id)
        block = self._blocks.get(key)
        if block is None:
            if len(self._blocks) >= MAX_BLOCKS:  # resources/read names any URI: the table stays bounded
                self._blocks.clear()
            block = self._blocks[key] = self.client.prepare(self._headers(message))
        return block

    def _headers(self, message: dict[str, Any]) -> dict[str, str]:
        headers = {"Accept": ACCEPT_BOTH, "Content-Type": "application/json", **self.auth_headers}
        session = self._session
        version = session.protocol_version if session is not None else ""
        if session is not None and session.modern:
            method = message.get("method")
            headers["MCP-Protocol-Version"] = MODERN
            if isinstance(method, str):
                headers["Mcp-Method"] = method
                key = NAME_PARAM.get(method)
                value = (message.get("params") or {}).get(key) if key else None
                if isinstance(value, str):
                    headers["Mcp-Name"] = _header_value(value)
            return headers
        if version and at_least(version, "2025-06-18"):
            headers["MCP-Protocol-Version"] = version
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
        return headers

    async def send(self, message: dict[str, Any], call: Call | None) -> None:
        body = orjson.dumps(message)
        if call is None:
            await self._post_other(body, self._headers(message))
            if message.get("method") == "notifications/initialized":
                self._start_listening()
            return
        call.delivered = True
        try:
            response = await self.client.request("POST", self._block(message), body)
        except FetchError as exc:
            raise UpstreamUnavailable(f"could not reach {self._host}: {exc}") from None
        answered = False
        try:
            await self._answer(response, call, is_initialize=message.get("method") == "initialize")
            answered = True
        except FetchError as exc:
            raise UpstreamUnavailable(f"the connection to {self._host} failed mid-answer: {exc}") from None
        finally:
            if answered and not response.complete and self._session is not None:
                self._session.spawn(self._drain(response))
            else:
                await response.aclose()  # unfinished: the connection is closed (2026-07-28: the cancellation)

    async def _drain(self, response: Response) -> None:
        """Read the rest of an answered SSE stream (servers end it right after the answer), so its connection
        is kept for the next call instead of being closed and opened again."""
        size = 0
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        break
        except (FetchError, TimeoutError):
            pass
        finally:
            await response.aclose()

    async def _post_other(self, body: bytes, headers: dict[str, str]) -> None:
        """A notification or a response: ``202 Accepted`` expected (its body, if any, is read and dropped)."""
        try:
            response, _ = await self.client.fetch("POST", headers, body, ERROR_BODY_BYTES)
        except FetchError as exc:
            raise UpstreamUnavailable(f"could not reach {self._host}: {exc}") from None
        if response.status_code == 404 and self.session_id is not None:
            self._lost()
            raise SessionLost("the upstream ended its session", delivered=False)
        if response.status_code >= 400:
            raise UpstreamUnavailable(f"{self._host} refused a notification with HTTP {response.status_code}")

    async def _answer(self, response: Response, call: Call, *, is_initialize: bool) -> None:
        status = response.status_code
        if status == 401:
            raise UpstreamUnauthorized(
                f"{self._host} refused the credentials (HTTP 401)",
                www_authenticate=response.headers.get("www-authenticate", ""),
            )
        if status == 404 and self.session_id is not None:
            self._lost()
            raise SessionLost("the upstream ended its session (HTTP 404)", delivered=False)
        if status >= 300:
            return await self._refused(response, call)
        if is_initialize and (sid := response.headers.get("mcp-session-id")):
            self.session_id = sid
        kind = response.headers.get("content-type", "")
        if kind.startswith("text/event-stream"):
            return await self._read_stream(response, call)
        message = self._parse(await self._body(response, self.max_bytes))
        assert self._session is not None
        if isinstance(message, dict) and "method" not in message:
            self._session.resolve(message)  # the answer alone, as nearly always: nothing to route or await
        else:
            await self._route(message, call)
        if not call.future.done():
            raise UpstreamUnavailable(f"{self._host} answered HTTP {status} without a JSON-RPC response")

    async def _refused(self, response: Response, call: Call) -> None:
        body = await self._body(response, ERROR_BODY_BYTES)
        with contextlib.suppress(orjson.JSONDecodeError, UpstreamUnavailable):
            await self._deliver(body, call)  # a JSON-RPC error riding on a 4xx (2026-07-28 answers so)
        if call.future.done():
            return
        status = response.status_code
        if status in NOT_THIS_ERA:
            raise UpstreamError(-32600, f"{self._host} answered HTTP {status}")
        raise UpstreamUnavailable(f"{self._host} answered HTTP {status}")

    async def _body(self, response: Response, cap: int) -> bytes:
        try:
            return await response.read(cap)
        except TooLarge:
            raise UpstreamUnavailable(f"{self._host} sent a message larger than {cap} bytes") from None

    def _parse(self, body: bytes) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamUnavailable(f"{self._host} answered with a body that is not JSON") from None

    async def _deliver(self, body: bytes, call: Call | None) -> None:
        await self._route(self._parse(body), call)

    async def _route(self, message: Any, call: Call | None) -> None:
        """Hand each message of a JSON body (one, or a batch) to the session."""
        assert self._session is not None
        for one in message if isinstance(message, list) else [message]:
            await self._session.receive(one, call)

    async def _read_stream(self, response: Response, call: Call) -> None:
        last_id: str | None = None
        retry_ms: int | None = None
        current = response  # the caller closes ``response``; a resumed stream is closed here
        try:
            for _ in range(MAX_RESUMES):
                async for event in events(current.aiter_bytes(), self.max_bytes):
                    last_id = event.id if event.id is not None else last_id
                    retry_ms = event.retry if event.retry is not None else retry_ms
                    if event.data and event.event == "message":
                        await self._event(event.data, call)
                        if call.future.done():
                            return
                if last_id is None or self.cancels_by_closing:
                    break
                # MCP 2025-11-25 resumability / SSE polling: continue the same stream after the last event seen.
                await asyncio.sleep((retry_ms or 0) / 1000)
                if current is not response:
                    await current.aclose()
                current = await self._resume(last_id)
        finally:
            if current is not response:
                await current.aclose()
        raise UpstreamUnavailable(f"{self._host} closed the response stream before answering")

    async def _resume(self, last_id: str) -> Response:
        headers = self._headers({})
        headers["Accept"] = "text/event-stream"
        headers["Last-Event-ID"] = last_id
        del headers["Content-Type"]
        response = await self.client.request("GET", headers)
        if response.status_code != 200:
            await response.aclose()
            raise UpstreamUnavailable(
                f"{self._host} refused to resume the response stream (HTTP {response.status_code})"
            )
        return response

    async def _event(self, data: str, call: Call | None) -> None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("upstream %s sent an SSE event that is not JSON; skipped", self._host)
            return
        assert self._session is not None
        await self._session.receive(message, call)

    # -- the GET stream (2025 era) -------------------------------------------------------------------------

    def _start_listening(self) -> None:
        if self.session_id is not None and self._listener is None and self._session is not None:
            self._listener = asyncio.ensure_future(self._listen(self._session))

    async def _listen(self, session: UpstreamSession) -> None:
        """Keep the session's standalone stream open; stop on 405 (the server offers none) or session end."""
        delay = 1.0
        last_id: str | None = None
        while session.lost is None:
            headers = self._headers({})
            headers["Accept"] = "text/event-stream"
            del headers["Content-Type"]
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            try:
                response = await self.client.request("GET", headers)
                try:
                    if response.status_code == 405:
                        return
                    if response.status_code == 404:
                        self._lost()
                        return
                    if response.status_code == 200:
                        delay = 1.0
                        async for event in events(response.aiter_bytes(), self.max_bytes):
                            last_id = event.id if event.id is not None else last_id
                            delay = event.retry / 1000 if event.retry is not None else delay
                            if event.data and event.event == "message":
                                await self._event(event.data, None)
                finally:
                    await response.aclose()
            except (FetchError, UpstreamUnavailable) as exc:
                log.debug("upstream %s: the GET stream ended: %s", self._host, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, LISTEN_BACKOFF_MAX)

    def _lost(self) -> None:
        if self._session is not None:
            self._session.lose("the upstream ended its session")
        self.session_id = None

    async def close(self) -> None:
        listener = self._listener
        if listener is not None and listener is not asyncio.current_task():
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        if self.session_id is None:
            return
        headers = {"Mcp-Session-Id": self.session_id, **self.auth_headers}
        self.session_id = None
        with contextlib.suppress(FetchError, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.client.fetch("DELETE", headers, b"", ERROR_BODY_BYTES)


def _header_value(value: str) -> str:
    # MCP 2026-07-28 basic/transports/streamable-http: non-ASCII header values as =?base64?...?=
    if value.isascii() and value.isprintable():
        return value
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="
