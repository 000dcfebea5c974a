"""Small raw-ASGI helpers for the hot path: read a bounded body, send JSON, SSE chunks, errors."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from patchbay.protocol import jsonrpc
from patchbay.transport.sse import SSE_HEADERS, frame

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPE = (b"content-type", b"application/json")


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes | None:
    """The whole request body, or None when it is larger than ``limit`` (the caller answers 413)."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body if len(body) <= limit else None
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def send_json(send: Send, status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_encoded(send, status, orjson.dumps(payload), extra)


async def send_encoded(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send ``body``, already-encoded JSON."""
    headers = [JSON_TYPE, (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_sse_once(send: Send, payload: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *(extra or [])]})
    await send({"type": "http.response.body", "body": frame(orjson.dumps(payload))})


async def send_empty(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def rpc_error(
    send: Send,
    status: int,
    request_id: Any,
    code: int,
    message: str,
    *,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A transport-level refusal: the HTTP status plus a JSON-RPC error body, never HTML."""
    await send_json(send, status, jsonrpc.error_response(request_id, {"code": code, "message": message}), extra)


async def chunk(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def end(send: Send) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        await send({"type": "http.response.body", "body": b"", "more_body": False})


# Browser-based clients read these from responses; everything else is same-origin or server-to-server.
CORS_EXPOSE = b"Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate"
CORS_ALLOW_HEADERS = (
    b"Authorization, Content-Type, Accept, MCP-Protocol-Version, Mcp-Session-Id, Mcp-Method, Mcp-Name, Last-Event-ID"
)


def with_cors(send: Send, origin: bytes) -> Send:
    """``send`` that adds CORS headers for an Origin the guard has already allowed."""

    async def cors_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [
                *message.get("headers", ()),
                (b"access-control-allow-origin", origin),
                (b"access-control-expose-headers", CORS_EXPOSE),
                (b"vary", b"Origin"),
            ]
        await send(message)

    return cors_send


async def send_preflight(send: Send, origin: bytes, requested: bytes | None) -> None:
    # Mcp-Param-* names depend on the tool, so the requested headers are echoed; the Origin was checked already.
    allow = requested if requested else CORS_ALLOW_HEADERS
    headers = [
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
        (b"access-control-allow-headers", allow),
        (b"access-control-max-age", b"600"),
        (b"vary", b"Origin"),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
