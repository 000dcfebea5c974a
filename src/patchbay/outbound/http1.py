"""One HTTP/1.1 client connection: an asyncio protocol over the C parser of ``httptools`` (llhttp).

The upstream MCP hot path measured ~1 ms of client CPU per request through httpx (its client, httpcore's pool
and the pure-Python h11 parser); this connection writes the request head in one ``write`` and parses the answer
in C, which is what :class:`patchbay.outbound.origin.OriginClient` builds on. One request at a time per
connection (RFC 9112 §9.3: no pipelining). The body arrives as a :class:`Response` that is read whole (with a cap)
or chunk by chunk as it arrives (SSE), with reading paused while a slow consumer holds more than ``HIGH_WATER``.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable
from typing import cast

import httptools

from patchbay.outbound.transport import FetchError

HIGH_WATER = 256 * 1024


class ConnectionFailed(FetchError):
    """The connection broke, closed early or carried something that is not HTTP/1.1. The message names what
    happened, never a header or a body."""


class TooLarge(FetchError):
    """A response body is larger than the cap the caller gave."""


class Response:
    """One response. ``headers`` has lower-case names (repeated fields joined with ``", "``). Always end it with
    :meth:`aclose`: a complete response gives its connection back for reuse, an incomplete one closes it."""

    __slots__ = ("_buffered", "_chunks", "_conn", "_done", "_error", "_limit", "_waiter", "headers", "status_code")

    def __init__(self, conn: Http1Connection) -> None:
        self._conn = conn
        self.status_code = 0
        self.headers: dict[str, str] = {}
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._limit = HIGH_WATER
        self._done = False
        self._error: FetchError | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def complete(self) -> bool:
        return self._done

    async def read(self, cap: int) -> bytes:
        """The whole body.

        Raises:
            TooLarge: it is (or says it is) larger than ``cap`` bytes.
            ConnectionFailed: the connection broke before the body ended.
        """
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise self._too_large(cap)
        self._limit = cap + 1  # read whole: no pausing below the cap
        self._conn.resume()
        while not self._done:
            if self._buffered > cap:
                raise self._too_large(cap)
            await self._wait()
        if self._buffered > cap:
            raise self._too_large(cap)
        body = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks.clear()
        self._buffered = 0
        return body

    def _too_large(self, cap: int) -> TooLarge:
        self._error = error = TooLarge(f"the response is larger than {cap} bytes")  # the connection is dropped
        return error

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive.

        Raises:
            ConnectionFailed: the connection broke before the body ended.
        """
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._buffered < self._limit:
                    self._conn.resume()
                yield chunk
            if self._done:
                return
            await self._wait()

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self._error is not None and not self._chunks:
            raise self._error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _body(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > self._limit:
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        self._done = True
        self._wake()

    def _fail(self, error: FetchError) -> None:
        if not self._done:
            self._error = error
            self._wake()

    async def aclose(self) -> None:
        self._conn.end(self)


class Http1Connection(asyncio.Protocol):
    """The protocol object for one connection; ``on_release(conn, reusable)`` is called once per response."""

    def __init__(self, on_release: Callable[[Http1Connection, bool], None]) -> None:
        self.on_release = on_release
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._response: Response | None = None
        self._head: asyncio.Future[Response] | None = None
        self._headers: dict[str, str] = {}
        self._interim = False
        self._reusable = True
        self._until_eof = False
        self._paused = False

    # -- asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transports implement asyncio.Transport without subclassing it (patchbay serve runs uvloop).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._response is None or self._response.complete:
            self._broken("the upstream sent data without a request")  # RFC 9112 §9.3: nothing is pending
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._broken("the upstream switched protocols")
        except httptools.HttpParserError as exc:
            self._broken(f"the upstream sent a malformed HTTP response ({type(exc).__name__})")

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._reusable = False
        response = self._response
        if response is not None and not response.complete and self._until_eof:
            response._finish()  # RFC 9112 §6.3 (8): a body without a length ends when the connection closes
            return
        reason = "the connection closed before the response ended"
        self._fail(ConnectionFailed(reason if response is None or response.status_code else f"{reason} (no answer)"))

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    # -- httptools callbacks ----------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._interim = True  # RFC 9110 §15.2: interim answers are skipped; the final one follows
            self._headers = {}
            return
        response = self._response
        assert response is not None
        response.status_code = status
        response.headers = headers = self._headers
        self._headers = {}
        self._until_eof = "content-length" not in headers and "transfer-encoding" not in headers
        if headers.get("content-encoding", "identity").lower() != "identity":
            # We send Accept-Encoding: identity; a coded body would be handed on as garbage.
            self._broken("the upstream sent a compressed body although none was asked for")
            return
        head = self._head
        if head is not None and not head.done():
            head.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response._body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if not self._parser.should_keep_alive():  # Connection: close, or HTTP/1.0
            self._reusable = False
        if self._response is not None:
            self._response._finish()

    # -- requests ---------------------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        transport = self.transport
        return self._reusable and not self.closed and transport is not None and not transport.is_closing()

    async def send(self, head: bytes, body: bytes) -> Response:
        """Write one request and wait for its final response head.

        Raises:
            ConnectionFailed: the connection broke or the answer is not HTTP/1.1.
        """
        assert self.transport is not None and self._response is None
        response = self._response = Response(self)
        answered: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._head = answered
        self.transport.write(head + body if len(body) < 16384 else head)
        if len(body) >= 16384:
            self.transport.write(body)  # no copy of a large body
        try:
            return await answered
        except BaseException:
            self.end(response)
            raise
        finally:
            self._head = None

    def end(self, response: Response) -> None:
        """The caller is done with ``response``: keep the connection if the exchange finished cleanly."""
        if self._response is not response:
            return
        self._response = None
        reusable = response.complete and response._error is None and self.usable
        if not reusable:
            self.abort()
        else:
            self.resume()
        self.on_release(self, reusable)

    def abort(self) -> None:
        self._reusable = False
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _broken(self, reason: str) -> None:
        self._reusable = False
        self._fail(ConnectionFailed(reason))
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: FetchError) -> None:
        head = self._head
        if head is not None and not head.done():
            head.set_exception(error)
        if self._response is not None:
            self._response._fail(error)
