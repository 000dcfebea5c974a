"""JSON-RPC batches: MCP 2025-03-26 says receivers MUST accept them; later revisions removed them.

Only a 2025-03-26 conversation may send one (the transport checks that); each request in it runs in turn, and
the answers go back together as one JSON array. A batch has no stream, so its calls cannot ask the client.
"""

from __future__ import annotations

from typing import Any

from patchbay.errors import RpcError
from patchbay.protocol import jsonrpc
from patchbay.protocol.dispatch import Dispatcher
from patchbay.protocol.scope import CallScope
from patchbay.transport.sessions import Session


async def answer_batch(
    dispatcher: Dispatcher,
    messages: list[Any],
    version: str,
    session: Session | None,
    principal: Any,
    runtime: Any,
) -> list[dict[str, Any]]:
    """The responses to the requests in ``messages``; client responses in it go to the session."""
    responses = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            if isinstance(message, dict) and session is not None and "id" in message:
                session.answer(message)
                continue
            responses.append(
                jsonrpc.error_response(None, {"code": jsonrpc.INVALID_REQUEST, "message": "Invalid Request"})
            )
            continue
        if "id" not in message:
            continue
        params = message.get("params") or {}
        if not isinstance(params, dict):
            error = {"code": jsonrpc.INVALID_REQUEST, "message": "Invalid Request: params must be an object"}
            responses.append(jsonrpc.error_response(message["id"], error))
            continue
        scope = CallScope(
            era="legacy",
            version=version,
            request_id=message["id"],
            method=message["method"],
            client_caps=session.client_caps if session else {},
            principal=principal,
            session=session,
            runtime=runtime,
        )
        try:
            result = await dispatcher.dispatch(message["method"], params, scope)
            responses.append(jsonrpc.result_response(message["id"], result))
        except RpcError as exc:
            responses.append(jsonrpc.error_response(message["id"], exc.to_error()))
    return responses
