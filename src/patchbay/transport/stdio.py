"""stdio: newline-delimited JSON-RPC on stdin/stdout (MCP basic/transports/stdio). Logs go to stderr only.

The opening message picks the era: ``initialize`` starts a 2025-era conversation; a request carrying the
2026-07-28 ``_meta`` is served statelessly, request by request.

Changes reach the client in both eras. After ``initialize`` the server sends ``notifications/*/list_changed`` when
a published list changes and ``notifications/resources/updated`` for the URIs the client subscribed to (MCP
2025-11-25 server/tools, server/resources). In 2026-07-28 nothing is sent unasked: each ``subscriptions/listen``
request is one subscription on this shared channel, acknowledged first, then sent only the types its filter asks
for, each tagged with its id; ``notifications/cancelled`` naming it ends it without a response, and a server
shutting down answers it with a ``complete`` result (MCP 2026-07-28 basic/patterns/subscriptions,
basic/transports/stdio).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

import orjson

from patchbay.errors import RpcError
from patchbay.observe import request_ref
from patchbay.protocol import jsonrpc, versions
from patchbay.protocol.dispatch import Dispatcher
from patchbay.protocol.hub import CLOSE, Hub
from patchbay.protocol.outstanding import Outstanding
from patchbay.protocol.scope import CallScope
from patchbay.transport import subscriptions

log = logging.getLogger("patchbay.transport.stdio")


class StdioServer:
    def __init__(self, dispatcher: Dispatcher, runtime: Any = None) -> None:
        self.dispatcher = dispatcher
        self.runtime = runtime
        self.version = versions.LATEST_HANDSHAKE
        self.caps: dict[str, Any] = {}
        self.client_info: Any = None
        self.level = "info"  # until the client picks one with logging/setLevel
        self.requests = Outstanding()
        self.inflight: dict[Any, asyncio.Task[None]] = {}
        self._write_lock = asyncio.Lock()
        self._out = sys.stdout.buffer
        self.hub: Hub | None = runtime.hub if runtime is not None else None
        self.subscribed: set[str] = set()  # 2025 era: resources/subscribe
        self._announcing: Callable[[], None] | None = None  # 2025 era: the hub listener, once initialised
        self._sending: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                break  # stdin closed: the client is gone, exit promptly
            if line.strip():
                await self._receive(line)
        if self._announcing is not None:
            self._announcing()
        for task in list(self.inflight.values()):
            task.cancel()  # open subscriptions too: the transport closed, so no response
        self.requests.cancel_all()

    async def send(self, message: dict[str, Any]) -> None:
        async with self._write_lock:
            self._out.write(orjson.dumps(message) + b"\n")
            self._out.flush()

    async def _receive(self, line: bytes) -> None:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            await self.send(jsonrpc.error_response(None, {"code": jsonrpc.PARSE_ERROR, "message": "Parse error"}))
            return
        if not isinstance(message, dict):
            await self.send(
                jsonrpc.error_response(None, {"code": jsonrpc.INVALID_REQUEST, "message": "Invalid Request"})
            )
            return
        method = message.get("method")
        if method is None:
            self.requests.answer(message)
            return
        params = message.get("params")
        if params is None:
            params = {}
        if not isinstance(method, str) or not isinstance(params, dict):
            # The same framing answer as every other transport (docs/protocol.md: -32600, not -32602).
            if "id" in message:
                error = {
                    "code": jsonrpc.INVALID_REQUEST,
                    "message": "Invalid Request: method must be a string, params an object",
                }
                await self.send(jsonrpc.error_response(message["id"], error))
            return
        if "id" not in message:
            if method == "notifications/cancelled":
                task = self.inflight.get(params.get("requestId"))
                if task is not None:
                    task.cancel()
            return
        request_id = message["id"]
        task = asyncio.create_task(self._request(request_id, str(method), params))
        self.inflight[request_id] = task
        task.add_done_callback(lambda _: self.inflight.pop(request_id, None))

    async def _request(self, request_id: Any, method: str, params: Any) -> None:
        # One id per stdio request, as per HTTP request; set inside the request's own task (its own context).
        request_ref.current.set(request_ref.new_ref())
        try:
            result = await self._dispatch(request_id, method, params)
            await self.send(jsonrpc.result_response(request_id, result))
        except RpcError as exc:
            await self.send(jsonrpc.error_response(request_id, exc.to_error()))
        except asyncio.CancelledError:
            pass  # a cancelled request gets no response
        except Exception:
            log.exception("stdio request %s failed", method)
            await self.send(
                jsonrpc.error_response(request_id, {"code": jsonrpc.INTERNAL_ERROR, "message": "Internal error"})
            )

    async def _dispatch(self, request_id: Any, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "initialize":
            requested = params.get("protocolVersion")
            self.version = requested if requested in versions.HANDSHAKE_VERSIONS else versions.LATEST_HANDSHAKE
            caps = params.get("capabilities")
            self.caps = caps if isinstance(caps, dict) else {}
            self.client_info = params.get("clientInfo")
            self._announce()
            return self.dispatcher.initialize_result(self.version)
        meta = params.get("_meta")
        if isinstance(meta, dict) and versions.META_VERSION in meta:
            version, caps = meta.get(versions.META_VERSION), meta.get(versions.META_CLIENT_CAPS)
            if not isinstance(caps, dict):
                raise jsonrpc.invalid_params("params._meta needs io.modelcontextprotocol/clientCapabilities")
            if version != versions.MODERN:
                raise RpcError(
                    jsonrpc.UNSUPPORTED_PROTOCOL_VERSION,
                    "Unsupported protocol version",
                    {"supported": list(versions.DISCOVER_VERSIONS), "requested": version},
                )
            if method == "subscriptions/listen":
                return await self._listen(request_id, params)
            level = meta.get(versions.META_LOG_LEVEL)
            scope = CallScope(
                era="modern",
                version=versions.MODERN,
                request_id=request_id,
                method=method,
                client_caps=caps,
                client_info=meta.get(versions.META_CLIENT_INFO),
                log_level=level if isinstance(level, str) else None,
                progress_token=meta.get("progressToken"),
                send=self.send,
                runtime=self.runtime,
                request_ref=request_ref.current.get(),
                meta=meta if isinstance(meta, dict) else None,
                transport="stdio",
            )
        else:
            scope = CallScope(
                era="legacy",
                version=self.version,
                request_id=request_id,
                method=method,
                client_caps=self.caps,
                client_info=self.client_info,
                log_level=self.level,
                progress_token=meta.get("progressToken") if isinstance(meta, dict) else None,
                send=self.send,
                ask_client=self._ask,
                runtime=self.runtime,
                request_ref=request_ref.current.get(),
                meta=meta if isinstance(meta, dict) else None,
                transport="stdio",
            )
        result = await self.dispatcher.dispatch(method, params, scope)
        if method == "logging/setLevel":
            self.level = params["level"]
        elif method == "resources/subscribe" and scope.era == "legacy":
            self.subscribed.add(str(params["uri"]))
        elif method == "resources/unsubscribe" and scope.era == "legacy":
            self.subscribed.discard(str(params["uri"]))
        return result

    # -- changes -------------------------------------------------------------------------------------------

    def _notify(self, message: dict[str, Any]) -> None:
        # Hub listeners must not block: the write happens in a task. Tasks reach the write lock in the order they
        # were made (asyncio.Lock is FIFO), so notifications keep their order, after any acknowledgement already
        # waiting for the lock.
        task = asyncio.ensure_future(self.send(message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _announce(self) -> None:
        """2025 era: tell the client of list changes, and of updates to resources it subscribed to."""
        if self.hub is None or self._announcing is not None:
            return

        def listener(method: str, params: dict[str, Any]) -> None:
            if method == "notifications/resources/updated" and params.get("uri") not in self.subscribed:
                return
            if method in subscriptions.FLAGS or method == "notifications/resources/updated":
                self._notify({"jsonrpc": "2.0", "method": method, "params": params})

        self._announcing = self.hub.add(listener)

    async def _listen(self, request_id: Any, params: dict[str, Any]) -> dict[str, Any]:
        """One 2026-07-28 subscription: open until cancelled (no response) or the server shuts down (the
        ``complete`` result)."""
        wanted = subscriptions.listen_filter(params)
        if self.hub is None:
            raise jsonrpc.method_not_found("subscriptions/listen")
        closing = asyncio.Event()

        def listener(method: str, body: dict[str, Any]) -> None:
            if method == CLOSE:
                closing.set()
                return
            message = subscriptions.for_subscription(wanted, request_id, method, body)
            if message is not None:
                self._notify(message)

        remove = self.hub.add(listener)  # before the acknowledgement, so no change falls between the two
        try:
            await self.send(subscriptions.acknowledgement(wanted, request_id))
            await closing.wait()
        finally:
            remove()
        return subscriptions.closing_result(request_id)

    async def _ask(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self.requests.ask(self.send, method, params)
