"""Streamable HTTP at ``/mcp``, serving the 2025 handshake era and the 2026-07-28 stateless revision.

One POST is answered as plain JSON unless its handler sends something (a notification, a request to the
client) before its result: only then does the response become an SSE stream. So the common call costs one
JSON encode and two ASGI sends, and every client that accepts SSE still gets progress and logs as they happen.

Routing per request (MCP 2026-07-28 basic/versioning; reference/mcp-requirements.md §3.3):
``initialize`` opens a 2025-era session; a request whose ``params._meta`` names a protocol version is served
statelessly in the 2026-07-28 era; anything else is 2025-era, in its session when it names one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import orjson

from patchbay.auth.principal import Principal, Rejection
from patchbay.errors import RpcError
from patchbay.observe import request_ref
from patchbay.protocol import jsonrpc, versions
from patchbay.protocol.dispatch import Dispatcher
from patchbay.protocol.scope import CallScope
from patchbay.transport import http
from patchbay.transport.batch import DEFAULT_LIMITS, Batches, BatchLimits
from patchbay.transport.calls import DisconnectWatch, asker
from patchbay.transport.headers import check_param_headers, check_routing_headers
from patchbay.transport.http import Receive, Scope, Send
from patchbay.transport.reply import Reply, retry_after
from patchbay.transport.security import HostGuard
from patchbay.transport.sessions import CLIENT_CANCELLED, Session, SessionStore, owner_of
from patchbay.transport.streams import Streams

if TYPE_CHECKING:  # the authenticator pulls in the store; serving without sign-in never imports it
    from patchbay.auth.bearer import Authenticator

log = logging.getLogger("patchbay.transport")

SESSION_HEADER = b"mcp-session-id"
WATCH_AFTER_SECONDS = 0.05


class StreamableHTTP:
    """The ASGI app behind ``/mcp``."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        sessions: SessionStore,
        guard: HostGuard,
        *,
        runtime: Any = None,
        max_body: int = 4 * 1024 * 1024,
        keepalive_seconds: float = 15.0,
        retry_ms: int = 1000,
        auth: Authenticator | None = None,
        batch_limits: BatchLimits = DEFAULT_LIMITS,
    ) -> None:
        self.dispatcher = dispatcher
        self.batches = Batches(dispatcher, runtime, batch_limits)
        self.auth = auth
        self.sessions = sessions
        self.guard = guard
        self.runtime = runtime
        self.max_body = max_body
        self.keepalive = keepalive_seconds
        self.retry_ms = retry_ms
        self.streams = Streams(getattr(runtime, "hub", None), keepalive_seconds, retry_ms)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        token = request_ref.current.set(request_ref.from_header(headers.get(request_ref.HEADER)))
        try:
            await self._handle(scope, headers, receive, send)
        except http.ClientGone:
            return
        except Exception:
            # A bug of ours, never the client's: log it, answer a JSON 500 if nothing was sent yet.
            log.exception("unhandled error on %s /mcp", scope.get("method"))
            with contextlib.suppress(Exception):
                await http.rpc_error(send, 500, None, jsonrpc.INTERNAL_ERROR, "Internal error")
        finally:
            request_ref.current.reset(token)

    async def _handle(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive, send: Send) -> None:
        # The Host check for every other route is transport.edge's; /mcp checks here so its hot path stays flat.
        host = headers.get(b"host")
        if not self.guard.host_ok(host):
            await http.rpc_error(send, 421, None, jsonrpc.INVALID_REQUEST, self.guard.host_refused(host))
            return
        if not self.guard.origin_ok(headers.get(b"origin")):
            message = self.guard.origin_refused(headers.get(b"origin"))
            await http.rpc_error(send, 403, None, jsonrpc.INVALID_REQUEST, message)
            return
        method = scope["method"]
        origin = headers.get(b"origin")
        if origin is not None:  # a browser-based client (e.g. MCP Inspector's web UI): CORS
            if method == "OPTIONS":
                await http.send_preflight(send, origin, headers.get(b"access-control-request-headers"))
                return
            send = http.with_cors(send, origin)
        principal = None
        if self.auth is not None:
            # Authenticated before the body is read or parsed; anonymous requests go on only when the server
            # has public tools (mixed auth), and are limited to discovery and tools/call in post().
            outcome = await self.auth.authenticate(headers.get(b"authorization"))
            if outcome is None and not self.auth.has_public_tools():
                outcome = self.auth.missing()
            if isinstance(outcome, Rejection):
                await _refuse(send, outcome)
                return
            principal = outcome
        if method == "POST":
            await self.post(headers, receive, send, principal)
        elif method == "GET":
            await self.get(headers, send, principal, receive)
        elif method == "DELETE":
            await self.delete(headers, send, principal)
        else:
            await http.rpc_error(
                send,
                405,
                None,
                jsonrpc.INVALID_REQUEST,
                f"Method {method} not allowed on the MCP endpoint",
                extra=[(b"allow", b"GET, POST, DELETE, OPTIONS")],
            )

    # -- POST ----------------------------------------------------------------------------------------------

    async def post(self, headers: dict[bytes, bytes], receive: Receive, send: Send, principal: Any = None) -> None:
        accept = headers.get(b"accept", b"*/*").lower()
        json_ok = b"application/json" in accept or b"*/*" in accept or b"application/*" in accept
        sse_ok = b"text/event-stream" in accept or b"*/*" in accept
        if not (json_ok or sse_ok):
            await http.rpc_error(
                send,
                406,
                None,
                jsonrpc.INVALID_REQUEST,
                "Not Acceptable: the client must accept application/json and text/event-stream",
            )
            return
        # Media types are case-insensitive and may carry parameters (RFC 9110 §8.3.1); no header is read as JSON.
        content_type = headers.get(b"content-type")
        if (
            content_type is not None
            and content_type != b"application/json"
            and content_type.split(b";", 1)[0].strip().lower() != b"application/json"
        ):
            await http.rpc_error(
                send,
                415,
                None,
                jsonrpc.INVALID_REQUEST,
                "Unsupported Media Type: send Content-Type: application/json",
            )
            return
        body = await http.read_body(receive, headers, self.max_body)
        if body is None:
            await http.rpc_error(
                send, 413, None, jsonrpc.INVALID_REQUEST, f"Request body larger than {self.max_body} bytes"
            )
            return
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            await http.rpc_error(send, 400, None, jsonrpc.PARSE_ERROR, "Parse error: the body is not valid JSON")
            return
        if isinstance(message, list):
            if principal is None and self.auth is not None:
                await _refuse(send, self.auth.missing())
                return
            await self.batch(message, headers, send, principal)
            return
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            await http.rpc_error(
                send,
                400,
                _id_of(message),
                jsonrpc.INVALID_REQUEST,
                "Invalid Request: expected a JSON-RPC 2.0 message object",
            )
            return
        method = message.get("method")
        if method is None:
            await self.client_response(message, headers, send, principal)
            return
        params = message.get("params")
        if params is None:
            params = {}
        if not isinstance(method, str) or not isinstance(params, dict):
            await http.rpc_error(
                send,
                400,
                _id_of(message),
                jsonrpc.INVALID_REQUEST,
                "Invalid Request: method must be a string and params an object",
            )
            return
        if "id" not in message:
            await self.notification(method, params, headers, send, principal)
            return
        if principal is None and self.auth is not None and not self.auth.anonymous_allowed(method):
            await _refuse(send, self.auth.missing())
            return
        request_id = message["id"]
        if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
            await http.rpc_error(
                send, 400, None, jsonrpc.INVALID_REQUEST, "Invalid Request: id must be a string or number"
            )
            return
        meta = params.get("_meta")
        try:
            if isinstance(meta, dict) and versions.META_VERSION in meta and _modern_envelope(meta):
                await self.modern(request_id, method, params, meta, headers, json_ok, sse_ok, receive, send, principal)
            elif method == "initialize":
                await self.initialize(request_id, params, json_ok, send, principal)
            else:
                await self.legacy(request_id, method, params, meta, headers, json_ok, sse_ok, send, principal)
        except RpcError as exc:
            await http.send_json(send, exc.status, jsonrpc.error_response(request_id, exc.to_error()))

    async def initialize(
        self, request_id: Any, params: dict[str, Any], json_ok: bool, send: Send, principal: Principal | None = None
    ) -> None:
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise jsonrpc.invalid_params("initialize needs params.protocolVersion")
        # MCP lifecycle: echo a version we support, else offer our latest handshake version.
        version = requested if requested in versions.HANDSHAKE_VERSIONS else versions.LATEST_HANDSHAKE
        caps = params.get("capabilities")
        client_caps = caps if isinstance(caps, dict) else {}
        session = await self.sessions.create(version, client_caps, params.get("clientInfo"), owner_of(principal))
        result = self.dispatcher.initialize_result(version)
        extra = [(SESSION_HEADER, session.id.encode())]
        response = jsonrpc.result_response(request_id, result)
        if json_ok:
            await http.send_json(send, 200, response, extra)
        else:
            await http.send_sse_once(send, response, extra)

    async def legacy(
        self,
        request_id: Any,
        method: str,
        params: dict[str, Any],
        meta: Any,
        headers: dict[bytes, bytes],
        json_ok: bool,
        sse_ok: bool,
        send: Send,
        principal: Any = None,
    ) -> None:
        session = await self._session(headers, principal)
        if session is None and SESSION_HEADER in headers:
            raise RpcError(jsonrpc.SESSION_NOT_FOUND, "Session not found: initialize a new session", status=404)
        header = headers.get(b"mcp-protocol-version")
        header_version = header.decode("latin-1") if header is not None else None
        if header_version is not None and header_version not in versions.ALL_VERSIONS:
            raise RpcError(
                jsonrpc.INVALID_REQUEST,
                f"Bad Request: unsupported MCP-Protocol-Version {header_version!r}; "
                f"supported: {', '.join(versions.HANDSHAKE_VERSIONS)}",
                status=400,
            )
        if session is not None:
            # A session keeps the version it negotiated, whatever supported version a header names later.
            version = session.version
        elif header_version == versions.MODERN:
            raise jsonrpc.invalid_params(
                "A 2026-07-28 request must carry params._meta['io.modelcontextprotocol/protocolVersion'] "
                "and ['io.modelcontextprotocol/clientCapabilities']"
            )
        else:
            version = header_version or versions.DEFAULT_HEADERLESS
        if not self.dispatcher.knows(method, "legacy"):
            raise jsonrpc.method_not_found(method)
        reply = Reply(
            send,
            sse_ok,
            json_ok,
            log=session.new_stream if session and sse_ok else None,
            priming_retry=self.retry_ms if version >= "2025-11-25" else None,
            keepalive=self.keepalive,
        )
        scope = CallScope(
            era="legacy",
            version=version,
            request_id=request_id,
            method=method,
            client_caps=session.client_caps if session else {},
            client_info=session.client_info if session else None,
            log_level=session.log_level if session else "info",
            progress_token=meta.get("progressToken") if isinstance(meta, dict) else None,
            send=reply.emit if sse_ok else None,
            principal=principal,
            session=session,
            runtime=self.runtime,
            close_stream=reply.close_early,
            request_ref=request_ref.current.get(),
            meta=meta if isinstance(meta, dict) else None,
            transport="streamable_http",
        )
        if session is not None and sse_ok:
            scope.ask_client = asker(session, reply)
        task = asyncio.current_task()
        untrack = None
        if session is not None and task is not None:
            if session.inflight is None:
                session.inflight = {}
            session.inflight[request_id] = task
            if session.shared is not None:  # a fleet: a cancellation may land on another replica
                untrack = session.shared.track(session, request_id)
        try:
            result = await self.dispatcher.dispatch(method, params, scope)
            await reply.finish(jsonrpc.result_response(request_id, result), extra=retry_after(scope))
        except RpcError as exc:
            # 2025 era: a method's JSON-RPC error rides on HTTP 200, as SDK clients expect (TypeScript SDK v1
            # clients throw on any non-2xx before reading the body). Transport refusals above keep their 4xx.
            await reply.finish(jsonrpc.error_response(request_id, exc.to_error()), extra=retry_after(scope))
        except asyncio.CancelledError as exc:
            # Only the client's notifications/cancelled is answered here; a shutdown's cancellation propagates.
            if exc.args != (CLIENT_CANCELLED,) or task is None:
                raise
            task.uncancel()
            # MCP cancellation: a cancelled request gets no response; the HTTP exchange still has to end.
            await reply.abandon()
        finally:
            if session is not None and session.inflight is not None:
                session.inflight.pop(request_id, None)
            if untrack is not None:
                untrack()

    async def modern(
        self,
        request_id: Any,
        method: str,
        params: dict[str, Any],
        meta: dict[str, Any],
        headers: dict[bytes, bytes],
        json_ok: bool,
        sse_ok: bool,
        receive: Receive,
        send: Send,
        principal: Any = None,
    ) -> None:
        version = meta.get(versions.META_VERSION)
        caps = meta.get(versions.META_CLIENT_CAPS)
        if not isinstance(version, str) or not isinstance(caps, dict):
            raise jsonrpc.invalid_params(
                "params._meta must carry io.modelcontextprotocol/protocolVersion (a string) and "
                "io.modelcontextprotocol/clientCapabilities (an object)"
            )
        # The header must agree with _meta before the version itself is judged (MCP 2026-07-28 streamable-http).
        check_routing_headers(headers, method, params, version)
        if version != versions.MODERN:
            raise RpcError(
                jsonrpc.UNSUPPORTED_PROTOCOL_VERSION,
                "Unsupported protocol version",
                {"supported": list(versions.DISCOVER_VERSIONS), "requested": version},
                status=400,
            )
        if method == "subscriptions/listen":
            await self.streams.listen(request_id, params, send, receive)
            return
        if not self.dispatcher.knows(method, "modern"):
            raise jsonrpc.method_not_found(method, status=404)
        if method == "tools/call":
            tool = self.dispatcher.catalog.tools.get(params.get("name"))  # type: ignore[arg-type]
            if tool is not None and tool.header_params:
                check_param_headers(headers, tool.header_params, params.get("arguments"))
        level = meta.get(versions.META_LOG_LEVEL)
        reply = Reply(send, sse_ok, json_ok, log=None, priming_retry=None, keepalive=self.keepalive)
        scope = CallScope(
            era="modern",
            version=version,
            request_id=request_id,
            method=method,
            client_caps=caps,
            client_info=meta.get(versions.META_CLIENT_INFO),
            log_level=level if isinstance(level, str) else None,
            progress_token=meta.get("progressToken"),
            send=reply.emit if sse_ok else None,
            principal=principal,
            runtime=self.runtime,
            request_ref=request_ref.current.get(),
            meta=meta,
            transport="streamable_http",
        )
        if method != "tools/call":
            await self._run(method, params, scope, reply, request_id)
            return
        # MCP 2026-07-28 cancellation: the client closing the response stream cancels the call. Watching for the
        # disconnect costs a task, so it starts only once a call has run for a while; quick calls never pay.
        watch = DisconnectWatch(receive)
        handle = asyncio.get_running_loop().call_later(WATCH_AFTER_SECONDS, watch.start)
        try:
            await self._run(method, params, scope, reply, request_id)
        except asyncio.CancelledError:
            if not watch.fired or watch.task is None or watch.task.uncancel() != 0:
                raise
            log.info("call %r cancelled: the client closed the stream", request_id)
        finally:
            handle.cancel()
            watch.stop()

    async def _run(self, method: str, params: dict[str, Any], scope: CallScope, reply: Reply, request_id: Any) -> None:
        try:
            result = await self.dispatcher.dispatch(method, params, scope)
        except RpcError as exc:
            # 2026-07-28 errors carry their HTTP status; a request refused over a limit is RFC 6585's 429.
            extra = retry_after(scope)
            await reply.finish(jsonrpc.error_response(request_id, exc.to_error()), 429 if extra else exc.status, extra)
            return
        await reply.finish(jsonrpc.result_response(request_id, result), extra=retry_after(scope))

    async def batch(self, messages: list[Any], headers: dict[bytes, bytes], send: Send, principal: Any = None) -> None:
        session = await self._session(headers, principal)
        header = headers.get(b"mcp-protocol-version", b"").decode("latin-1")
        await self.batches.serve(send, messages, session, SESSION_HEADER in headers, header, principal)

    async def notification(
        self, method: str, params: dict[str, Any], headers: dict[bytes, bytes], send: Send, principal: Any = None
    ) -> None:
        session = await self._session(headers, principal)
        if session is None and SESSION_HEADER in headers:
            await http.rpc_error(send, 404, None, jsonrpc.SESSION_NOT_FOUND, "Session not found")
            return
        if method == "notifications/cancelled" and session is not None:
            request_id = params.get("requestId")
            task = session.inflight.get(request_id) if session.inflight else None
            if task is not None:
                task.cancel(CLIENT_CANCELLED)
            elif session.shared is not None:  # the request may run on another replica of the fleet
                try:
                    await session.shared.cancel(session, request_id)
                except RpcError as exc:
                    await _transport_error(send, exc)
                    return
        await http.send_empty(send, 202)

    async def client_response(
        self, message: dict[str, Any], headers: dict[bytes, bytes], send: Send, principal: Any = None
    ) -> None:
        if "id" not in message or ("result" not in message and "error" not in message):
            await http.rpc_error(
                send,
                400,
                _id_of(message),
                jsonrpc.INVALID_REQUEST,
                "Invalid Request: a message needs a method, or an id with a result or error",
            )
            return
        session = await self._session(headers, principal)
        if session is None and SESSION_HEADER in headers:
            await http.rpc_error(send, 404, None, jsonrpc.SESSION_NOT_FOUND, "Session not found")
            return
        if session is not None and not session.answer(message) and session.shared is not None:
            try:  # the request it answers may wait on another replica of the fleet
                await session.shared.answer(session, message)
            except RpcError as exc:
                await _transport_error(send, exc)
                return
        await http.send_empty(send, 202)

    # -- GET and DELETE ------------------------------------------------------------------------------------

    async def get(
        self, headers: dict[bytes, bytes], send: Send, principal: Any = None, receive: Receive | None = None
    ) -> None:
        if b"text/event-stream" not in headers.get(b"accept", b""):
            await http.rpc_error(
                send,
                405,
                None,
                jsonrpc.INVALID_REQUEST,
                "This MCP endpoint takes POST; GET opens an event stream and needs "
                "Accept: text/event-stream and an Mcp-Session-Id",
                extra=[(b"allow", b"GET, POST, DELETE")],
            )
            return
        session = await self._session(headers, principal)
        if session is None:
            if SESSION_HEADER in headers:
                await http.rpc_error(send, 404, None, jsonrpc.SESSION_NOT_FOUND, "Session not found")
            else:
                await http.rpc_error(
                    send,
                    405,
                    None,
                    jsonrpc.INVALID_REQUEST,
                    "No standalone stream without a session: initialize first",
                    extra=[(b"allow", b"POST")],
                )
            return
        last_event = headers.get(b"last-event-id")
        if last_event is not None:
            await self.streams.resume(session, last_event.decode("latin-1"), send, receive)
            return
        if session.standalone is not None:
            await http.rpc_error(
                send,
                409,
                None,
                jsonrpc.INVALID_REQUEST,
                "Conflict: this session already has an open GET stream",
            )
            return
        if session.shared is None:
            await self.streams.standalone(session, send, receive)
            return
        try:  # a fleet: one GET stream per session across every replica
            claimed = await session.shared.claim_stream(session)
        except RpcError as exc:
            await _transport_error(send, exc)
            return
        if not claimed:
            await http.rpc_error(
                send, 409, None, jsonrpc.INVALID_REQUEST, "Conflict: this session already has an open GET stream"
            )
            return
        try:
            await self.streams.standalone(session, send, receive)
        finally:
            await session.shared.release_stream(session)

    async def delete(self, headers: dict[bytes, bytes], send: Send, principal: Any = None) -> None:
        if SESSION_HEADER not in headers:
            await http.rpc_error(send, 400, None, jsonrpc.INVALID_REQUEST, "Bad Request: DELETE needs Mcp-Session-Id")
            return
        session = await self._session(headers, principal)
        try:
            deleted = session is not None and await self.sessions.delete(session.id)
        except RpcError as exc:
            await _transport_error(send, exc)
            return
        if not deleted:
            await http.rpc_error(send, 404, None, jsonrpc.SESSION_NOT_FOUND, "Session not found")
            return
        await http.send_empty(send, 200)

    async def _session(self, headers: dict[bytes, bytes], principal: Principal | None) -> Session | None:
        session_id = headers.get(SESSION_HEADER)
        session = await self.sessions.get(session_id.decode("latin-1")) if session_id else None
        # MCP security best practices (session hijacking): someone else's session is answered exactly like an
        # unknown one (404), so a leaked or guessed id neither works nor confirms that it exists.
        if session is None or session.owner != owner_of(principal):
            return None
        return session


async def _refuse(send: Send, rejection: Rejection) -> None:
    """RFC 6750 §3 / MCP authorization: 401 or 403 with a WWW-Authenticate challenge and a JSON-RPC error body."""
    extra = [(b"www-authenticate", rejection.challenge.encode("latin-1", "replace"))]
    await http.rpc_error(send, rejection.status, None, jsonrpc.INVALID_REQUEST, rejection.message, extra=extra)


async def _transport_error(send: Send, exc: RpcError) -> None:
    """A refusal where the transport answers (no JSON-RPC request id): e.g. 503 while a fleet's Redis is down."""
    await http.rpc_error(send, exc.status, None, exc.code, exc.message)


def _modern_envelope(meta: dict[str, Any]) -> bool:
    """A per-request _meta naming a 2025 handshake version is served in that era (statelessly), not refused
    with -32022: refusing it while listing that very version as supported would loop the client."""
    return meta.get(versions.META_VERSION) not in versions.HANDSHAKE_VERSIONS


def _id_of(message: Any) -> Any:
    return message.get("id") if isinstance(message, dict) else None
