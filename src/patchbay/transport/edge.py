"""The guard in front of every route but ``/mcp``: the Host check and a cap on how much of a body is read.

``/mcp`` checks its own Host and bounds its own body on the hot path; everything else (sign-in pages, the token
endpoint, metadata, health, legacy SSE, and any route added later) is reached only through :class:`Edge`, so no
route can answer for a foreign Host (DNS rebinding) or read an unbounded body.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from typing import Any

import orjson
from starlette.exceptions import HTTPException

from patchbay.observe import request_ref
from patchbay.protocol import jsonrpc
from patchbay.transport.http import Message, Receive, Scope, Send
from patchbay.transport.security import HostGuard

ASGIApp = Any  # an ASGI callable; starlette's own alias would tie this module to its typing


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes the cap; the edge answers 413 whatever the route does with it."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body larger than {limit} bytes (server.max_body_bytes)")


class Edge:
    """Wraps an ASGI app: refuses a foreign Host with 421 and stops reading a body past ``max_body`` with 413.

    Both refusals are JSON: a JSON-RPC error on the MCP transport paths (``rpc_paths``), ``{"error", "status"}``
    (the shape of the app's other errors) elsewhere. ``probe_paths`` also accept ``server.probe_hosts``.
    """

    def __init__(
        self,
        app: ASGIApp,
        guard: HostGuard,
        *,
        max_body: int,
        rpc_paths: Collection[str] = (),
        probe_paths: Collection[str] = (),
    ) -> None:
        self.app = app
        self.guard = guard
        self.max_body = max_body
        self.rpc_paths = frozenset(rpc_paths)
        self.probe_paths = frozenset(probe_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        host = headers.get(b"host")
        path = scope.get("path", "")
        probe = path in self.probe_paths
        if not (self.guard.probe_ok(host) if probe else self.guard.host_ok(host)):
            message = self.guard.host_refused(host, probe=probe)
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            else:
                await self._refuse(send, path, 421, message)
            return
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await self._refuse(send, path, 413, BodyTooLarge(self.max_body).detail)
            return
        bounded = _Bounded(receive, send, self.max_body)
        # Sign-in, token and admin requests get a request id too; legacy SSE copies it into CallScope.
        token = request_ref.current.set(request_ref.from_header(headers.get(request_ref.HEADER)))
        try:
            with contextlib.suppress(BodyTooLarge):  # a route that lets it through is answered below
                await self.app(scope, bounded.receive, bounded.send)
        finally:
            request_ref.current.reset(token)
        if bounded.over and not bounded.answered:
            bounded.answered = True
            await self._refuse(send, path, 413, BodyTooLarge(self.max_body).detail)

    async def _refuse(self, send: Send, path: str, status: int, message: str) -> None:
        payload: Any
        if path in self.rpc_paths:
            payload = jsonrpc.error_response(None, {"code": jsonrpc.INVALID_REQUEST, "message": message})
        else:
            payload = {"error": message, "status": status}
        body = orjson.dumps(payload)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _Bounded:
    """``receive`` that counts body bytes and raises past the cap; ``send`` that, once the cap was passed,
    holds back whatever the route answers so the client gets the 413 (a route may catch the error and answer
    400 for an unreadable form; the truth is that the body was too large)."""

    __slots__ = ("_receive", "_send", "answered", "limit", "over", "size")

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit
        self.size = 0
        self.over = False
        self.answered = False  # a response has started (the route's, or the edge's 413)

    async def receive(self) -> Message:
        if self.over:
            raise BodyTooLarge(self.limit)
        message = await self._receive()
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.limit:
                self.over = True
                raise BodyTooLarge(self.limit)
        return message

    async def send(self, message: Message) -> None:
        if self.over and not self.answered:
            return  # the edge answers 413 once the route is done
        if message["type"] == "http.response.start":
            self.answered = True
        await self._send(message)
