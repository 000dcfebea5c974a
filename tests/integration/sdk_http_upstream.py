"""The official SDK's server (MCPServer) over Streamable HTTP on loopback, recording every request it receives.

``python sdk_http_upstream.py PORT RECORD_FILE [CERT_FILE KEY_FILE]`` (with a certificate: HTTPS).
``/<tag>/mcp`` is served as ``/mcp``, so several Patchbay
connectors can point at one process and still be told apart; each request appends one JSON line to RECORD_FILE:
``{"tag", "http", "method", "headers"}`` (headers lower-cased, all of them: the tests look for leaked tokens).
The SDK answers both eras on one endpoint: 2026-07-28 (``server/discover``, stateless) and the 2025 handshake.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult
from pydantic import BaseModel

server = MCPServer("recorded-upstream")


@server.tool()
async def add(a: int, b: int, ctx: Context) -> int:
    """Adds two numbers, reporting progress on the way."""
    await ctx.report_progress(1, 2)
    return a + b


@server.tool()
async def confirm(ctx: Context) -> str | InputRequiredResult:
    """Asks the client to confirm first (a 2026-07-28 ``input_required`` result, then the retry's answers)."""
    if ctx.input_responses:
        answer = ctx.input_responses.get("ok")
        given = answer.model_dump(mode="json", exclude_none=True) if isinstance(answer, BaseModel) else answer
        return f"confirmed with {json.dumps(given, sort_keys=True)} and state {ctx.request_state}"
    ask = {
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": "Sure?",
            "requestedSchema": {"type": "object", "properties": {"sure": {"type": "boolean"}}},
        },
    }
    return InputRequiredResult(input_requests={"ok": ask}, request_state="state-1")  # type: ignore[dict-item]


Receive = Callable[[], Awaitable[dict[str, Any]]]


class Recording:
    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.record = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - open for the process's life

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        parts = scope["path"].strip("/").split("/")
        tag = parts[0] if len(parts) == 2 else ""
        if tag:
            scope = {**scope, "path": "/mcp", "raw_path": b"/mcp"}
        body = b""
        while scope["method"] == "POST":
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method = None
        try:
            parsed = json.loads(body) if body else None
            method = parsed.get("method") if isinstance(parsed, dict) else None
        except ValueError:
            pass
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.record.write(
            json.dumps({"tag": tag, "http": scope["method"], "method": method, "headers": headers}) + "\n"
        )
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed and scope["method"] == "POST":
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


if __name__ == "__main__":
    port, path = int(sys.argv[1]), sys.argv[2]
    tls = {"ssl_certfile": sys.argv[3], "ssl_keyfile": sys.argv[4]} if len(sys.argv) == 5 else {}
    app = Recording(server.streamable_http_app(), path)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", **tls)  # type: ignore[arg-type]
