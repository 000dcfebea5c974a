"""JSON-RPC batches: MCP 2025-03-26 says receivers MUST accept them; later revisions removed them.

Only a 2025-03-26 conversation may send one (the transport checks that); each request in it runs in turn, and
the answers go back together as one JSON array. A batch has no stream, so its calls cannot ask the client.

A small request must not buy a huge response (amplification): the transport refuses a batch of more than
``server.max_batch_size`` messages, and once the answers reach ``server.max_batch_response_bytes`` the requests
after that are not run but answered with an error saying so. The answer that crossed the limit is replaced by
such an error too, so the response stays within the limit plus one short error per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from patchbay.errors import RpcError
from patchbay.observe import request_ref
from patchbay.protocol import jsonrpc, versions
from patchbay.protocol.dispatch import Dispatcher
from patchbay.protocol.scope import CallScope
from patchbay.transport import http
from patchbay.transport.http import Send
from patchbay.transport.sessions import Session


@dataclass(frozen=True)
class BatchLimits:
    max_size: int = 100
    max_response_bytes: int = 8 * 1024 * 1024


DEFAULT_LIMITS = BatchLimits()


@dataclass
class Batches:
    """Serves one POSTed batch: checks the era, the session and the count, then answers within the limits."""

    dispatcher: Dispatcher
    runtime: Any
    limits: BatchLimits

    async def serve(
        self,
        send: Send,
        messages: list[Any],
        session: Session | None,
        named_session: bool,
        header_version: str,
        principal: Any,
    ) -> None:
        version = session.version if session else (header_version or versions.DEFAULT_HEADERLESS)
        refusal = None
        if version != "2025-03-26":
            refusal = f"Invalid Request: JSON-RPC batches are not supported in protocol version {version}"
        elif not messages:
            refusal = "Invalid Request: an empty batch"
        elif session is None and named_session:
            await http.rpc_error(send, 404, None, jsonrpc.SESSION_NOT_FOUND, "Session not found")
            return
        elif len(messages) > self.limits.max_size:
            refusal = (
                f"Invalid Request: this batch holds {len(messages)} messages; at most {self.limits.max_size} "
                "are allowed (server.max_batch_size)"
            )
        if refusal is not None:
            await http.rpc_error(send, 400, None, jsonrpc.INVALID_REQUEST, refusal)
            return
        args = (self.dispatcher, messages, version, session, principal, self.runtime, self.limits)
        responses = await answer_batch(*args)
        if responses:
            await http.send_encoded(send, 200, b"[" + b",".join(responses) + b"]")
        else:
            await http.send_empty(send, 202)


async def answer_batch(
    dispatcher: Dispatcher,
    messages: list[Any],
    version: str,
    session: Session | None,
    principal: Any,
    runtime: Any,
    limits: BatchLimits = DEFAULT_LIMITS,
) -> list[bytes]:
    """The encoded responses to the requests in ``messages``; client responses in it go to the session."""
    responses: list[bytes] = []
    size = 0
    for message in messages:
        if size > limits.max_response_bytes and _is_request(message):
            responses.append(_too_large(message["id"], limits, ran=False))
            continue
        answer = await _answer(dispatcher, message, version, session, principal, runtime)
        if answer is None:
            continue
        if size + len(answer) > limits.max_response_bytes:
            answer = _too_large(message.get("id") if isinstance(message, dict) else None, limits, ran=True)
            size = limits.max_response_bytes + 1  # nothing after this one runs
        else:
            size += len(answer) + 1
        responses.append(answer)
    return responses


def _is_request(message: Any) -> bool:
    return isinstance(message, dict) and "id" in message and isinstance(message.get("method"), str)


def _too_large(request_id: Any, limits: BatchLimits, *, ran: bool) -> bytes:
    limit = limits.max_response_bytes
    if ran:
        text = (
            f"Response too large: this request ran, but its answer does not fit in the batch's response "
            f"(server.max_batch_response_bytes = {limit}); send it on its own"
        )
    else:
        text = (
            f"Not run: the batch's response reached server.max_batch_response_bytes ({limit} bytes); "
            "send this request again on its own or in a smaller batch"
        )
    error = {"code": jsonrpc.INVALID_REQUEST, "message": text, "data": {"limit": limit}}
    return orjson.dumps(jsonrpc.error_response(request_id, error))


async def _answer(
    dispatcher: Dispatcher, message: Any, version: str, session: Session | None, principal: Any, runtime: Any
) -> bytes | None:
    """The encoded answer to one batch member, or None for notifications and client responses."""
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        if isinstance(message, dict) and session is not None and "id" in message:
            return await _client_answer(session, message)
        error = {"code": jsonrpc.INVALID_REQUEST, "message": "Invalid Request"}
        return orjson.dumps(jsonrpc.error_response(None, error))
    if "id" not in message:
        return None
    params = message.get("params") or {}
    if not isinstance(params, dict):
        error = {"code": jsonrpc.INVALID_REQUEST, "message": "Invalid Request: params must be an object"}
        return orjson.dumps(jsonrpc.error_response(message["id"], error))
    scope = CallScope(
        era="legacy",
        version=version,
        request_id=message["id"],
        method=message["method"],
        client_caps=session.client_caps if session else {},
        principal=principal,
        session=session,
        runtime=runtime,
        request_ref=request_ref.current.get(),
        meta=meta if isinstance(meta := params.get("_meta"), dict) else None,
        transport="streamable_http",
    )
    try:
        result = await dispatcher.dispatch(message["method"], params, scope)
        return orjson.dumps(jsonrpc.result_response(message["id"], result))
    except RpcError as exc:
        return orjson.dumps(jsonrpc.error_response(message["id"], exc.to_error()))


async def _client_answer(session: Session, message: dict[str, Any]) -> bytes | None:
    """Hand a client's response to the request waiting for it, on this replica or (a fleet) another one."""
    if session.answer(message) or session.shared is None:
        return None
    try:
        await session.shared.answer(session, message)
    except RpcError as exc:  # the fleet's store is down: say so rather than lose the answer silently
        return orjson.dumps(jsonrpc.error_response(message.get("id"), exc.to_error()))
    return None
