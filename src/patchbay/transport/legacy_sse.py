"""Legacy HTTP+SSE (MCP 2024-11-05): ``GET /sse`` opens the stream, ``POST /messages?session_id=`` sends.

Deprecated by the spec but still used by some clients (the OpenAI Responses API accepts it; older Claude
builds). Every response travels on the event stream; the POST is answered ``202 Accepted`` at once.

In a fleet the stream lives on one replica; a POST reaching another is checked there and forwarded to it
(patchbay.fleet.fanout.LegacyRelay).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from patchbay.auth.principal import Rejection
from patchbay.errors import RpcError
from patchbay.observe import request_ref
from patchbay.protocol import jsonrpc, versions
from patchbay.protocol.dispatch import Dispatcher
from patchbay.protocol.hub import CLOSE
from patchbay.protocol.outstanding import Outstanding
from patchbay.protocol.scope import CallScope
from patchbay.transport import http
from patchbay.transport.security import HostGuard
from patchbay.transport.sessions import owner_of
from patchbay.transport.sse import KEEPALIVE
from patchbay.transport.streams import end_queue

if TYPE_CHECKING:  # the authenticator pulls in the store; serving without sign-in never imports it
    from patchbay.auth.bearer import Authenticator
    from patchbay.fleet.fanout import Holder, LegacyRelay

log = logging.getLogger("patchbay.transport.sse")
MAX_STREAMS = 1000
_NOBODY = object()  # the owner of a session that exists nowhere: never equal to a caller's


class _Stream:
    __slots__ = ("caps", "client_info", "level", "owner", "queue", "requests", "tasks", "version")

    def __init__(self, owner: str | None = None) -> None:
        self.owner = owner  # owner_of(the principal that opened GET /sse)
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1000)
        self.version = versions.LATEST_HANDSHAKE
        self.caps: dict[str, Any] = {}
        self.client_info: Any = None
        self.level = "info"  # until the client picks one with logging/setLevel
        self.requests = Outstanding()
        self.tasks: set[asyncio.Task[None]] = set()

    async def send(self, message: dict[str, Any]) -> None:
        await self.queue.put(b"event: message\ndata: " + orjson.dumps(message) + b"\n\n")


class LegacySSE:
    def __init__(
        self,
        dispatcher: Dispatcher,
        guard: HostGuard,
        *,
        runtime: Any = None,
        max_body: int = 4 * 1024 * 1024,
        keepalive_seconds: float = 15.0,
        auth: Authenticator | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.auth = auth
        self.guard = guard
        self.runtime = runtime
        self.max_body = max_body
        self.keepalive = keepalive_seconds
        self.streams: dict[str, _Stream] = {}
        self.relay: LegacyRelay | None = None
        fleet = getattr(runtime, "fleet", None)
        if fleet is not None:  # imported only in a fleet: a single node never loads redis
            from patchbay.fleet.fanout import LegacyRelay

            # Three keep-alive intervals: a stream's record outlives one late refresh, not a dead replica for long.
            self.relay = LegacyRelay(fleet.link, fleet.bus, fleet.replica_id, self._delivered, 3 * keepalive_seconds)

    def _refused(self, request: Request) -> Response | None:
        # The Host was checked by transport.edge in front of these routes; the Origin is the transport's to judge.
        header = request.headers.get("origin")
        origin = header.encode("latin-1") if header is not None else None
        if not self.guard.origin_ok(origin):
            return _error(403, None, jsonrpc.INVALID_REQUEST, self.guard.origin_refused(origin))
        return None

    async def _authenticate(self, request: Request) -> Any:
        """The principal, None (anonymous, mixed auth), or a refusal Response; checked before any body is read."""
        if self.auth is None:
            return None
        header = request.headers.get("authorization")
        outcome = await self.auth.authenticate(header.encode("latin-1") if header is not None else None)
        if outcome is None and not self.auth.has_public_tools():
            outcome = self.auth.missing()
        if isinstance(outcome, Rejection):
            response = _error(outcome.status, None, jsonrpc.INVALID_REQUEST, outcome.message)
            response.headers["WWW-Authenticate"] = outcome.challenge
            return response
        return outcome

    async def stream(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        principal = await self._authenticate(request)
        if isinstance(principal, Response):
            return principal
        if len(self.streams) >= MAX_STREAMS:
            return _error(503, None, jsonrpc.INTERNAL_ERROR, "Too many open SSE streams; try again later")
        session_id = secrets.token_urlsafe(24)
        stream = _Stream(owner_of(principal))
        self.streams[session_id] = stream
        endpoint = f"{request.scope.get('root_path', '')}/messages?session_id={session_id}"
        hub = getattr(self.runtime, "hub", None)
        remove = (
            hub.add(lambda method, _: end_queue(stream.queue, None) if method == CLOSE else None)
            if hub is not None
            else None
        )
        relay = self.relay
        if relay is not None:
            await relay.hold(session_id, stream.owner)

        async def events() -> Any:
            try:
                yield f"event: endpoint\ndata: {endpoint}\n\n".encode()
                while True:
                    try:
                        item = await asyncio.wait_for(stream.queue.get(), self.keepalive)
                    except TimeoutError:
                        item = KEEPALIVE
                        if relay is not None:
                            await relay.hold(session_id, stream.owner)
                    if item is None:
                        break
                    yield item
            finally:
                if remove is not None:
                    remove()
                if relay is not None:
                    relay.release(session_id)
                self._drop(session_id)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def post(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        principal = await self._authenticate(request)
        if isinstance(principal, Response):
            return principal
        content_type = request.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return _error(
                415, None, jsonrpc.INVALID_REQUEST, "Unsupported Media Type: send Content-Type: application/json"
            )
        try:
            body = await http.read_body(request.receive, dict(request.scope["headers"]), self.max_body)
        except http.ClientGone:
            return Response(status_code=400)
        if body is None:
            return _error(413, None, jsonrpc.INVALID_REQUEST, f"Request body larger than {self.max_body} bytes")
        session_id = request.query_params.get("session_id") or request.query_params.get("sessionId") or ""
        stream = self.streams.get(session_id)
        holder: Holder | None = None
        if stream is None and self.relay is not None and session_id:
            try:  # a fleet: the stream may live on another replica
                holder = await self.relay.holder(session_id)
            except RpcError as exc:
                return _error(exc.status, None, exc.code, exc.message)
        owner = owner_of(principal)
        # MCP security best practices (session hijacking): only the principal that opened the stream may post to
        # it; anyone else is told the session does not exist.
        if (stream.owner if stream is not None else holder.owner if holder is not None else _NOBODY) != owner:
            return _error(404, None, jsonrpc.SESSION_NOT_FOUND, "Unknown or closed session_id: open GET /sse first")
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(400, None, jsonrpc.PARSE_ERROR, "Parse error: the body is not valid JSON")
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return _error(400, None, jsonrpc.INVALID_REQUEST, "Invalid Request: expected a JSON-RPC 2.0 object")
        if "method" in message and "id" in message:
            method = message.get("method")
            if principal is None and self.auth is not None and not self.auth.anonymous_allowed(str(method)):
                refusal = self.auth.missing()
                response = _error(refusal.status, message.get("id"), jsonrpc.INVALID_REQUEST, refusal.message)
                response.headers["WWW-Authenticate"] = refusal.challenge
                return response
        if stream is not None:
            self._accept(stream, message, principal)
        elif holder is not None and self.relay is not None and "id" in message:  # a notification needs no one
            try:
                await self.relay.forward(holder, session_id, owner, principal, message)
            except RpcError as exc:
                return _error(exc.status, None, exc.code, exc.message)
        return Response(status_code=202) if "method" not in message else Response("Accepted", status_code=202)

    def _accept(self, stream: _Stream, message: dict[str, Any], principal: Any) -> None:
        """Serve a checked message on its stream: an answer to a request of ours, or a request to run."""
        if "method" not in message:
            stream.requests.answer(message)
        elif "id" in message:
            task = asyncio.create_task(self._handle(stream, message, principal))
            stream.tasks.add(task)
            task.add_done_callback(stream.tasks.discard)

    def _delivered(self, session_id: str, owner: str | None, message: dict[str, Any], principal: Any) -> None:
        """A message another replica checked and forwarded (fleet); the owner is checked again where it is known."""
        stream = self.streams.get(session_id)
        if stream is None or stream.owner != owner:
            log.info("a forwarded message for legacy SSE session %s was dropped: no such stream here", session_id[:8])
            return
        self._accept(stream, message, principal)

    async def _handle(self, stream: _Stream, message: dict[str, Any], principal: Any = None) -> None:
        request_id, method = message["id"], message.get("method")
        params = message.get("params") or {}
        try:
            if not isinstance(method, str) or not isinstance(params, dict):
                raise RpcError(jsonrpc.INVALID_REQUEST, "Invalid Request: method must be a string, params an object")
            if method == "initialize":
                requested = params.get("protocolVersion")
                stream.version = requested if requested in versions.HANDSHAKE_VERSIONS else versions.LATEST_HANDSHAKE
                caps = params.get("capabilities")
                stream.caps = caps if isinstance(caps, dict) else {}
                stream.client_info = params.get("clientInfo")
                result = self.dispatcher.initialize_result(stream.version)
            else:
                meta = params.get("_meta")
                scope = CallScope(
                    era="legacy",
                    version=stream.version,
                    request_id=request_id,
                    method=method,
                    client_caps=stream.caps,
                    client_info=stream.client_info,
                    log_level=stream.level,
                    progress_token=meta.get("progressToken") if isinstance(meta, dict) else None,
                    send=stream.send,
                    ask_client=functools.partial(stream.requests.ask, stream.send),
                    principal=principal,
                    session=None,
                    runtime=self.runtime,
                    request_ref=request_ref.current.get(),
                    meta=meta if isinstance(meta, dict) else None,
                    transport="legacy_sse",
                )
                result = await self.dispatcher.dispatch(method, params, scope)
                if method == "logging/setLevel":
                    stream.level = params["level"]
            await stream.send(jsonrpc.result_response(request_id, result))
        except RpcError as exc:
            await stream.send(jsonrpc.error_response(request_id, exc.to_error()))
        except Exception:
            log.exception("legacy SSE request %r failed", method)
            await stream.send(
                jsonrpc.error_response(request_id, {"code": jsonrpc.INTERNAL_ERROR, "message": "Internal error"})
            )

    def _drop(self, session_id: str) -> None:
        stream = self.streams.pop(session_id, None)
        if stream is None:
            return
        for task in stream.tasks:
            task.cancel()
        stream.requests.cancel_all()

    def close_all(self) -> None:
        for stream in self.streams.values():
            stream.queue.put_nowait(None)


def _error(status: int, request_id: Any, code: int, message: str) -> Response:
    return JSONResponse(jsonrpc.error_response(request_id, {"code": code, "message": message}), status_code=status)
