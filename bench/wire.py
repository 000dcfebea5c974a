"""The MCP messages the benchmark sends, and a small blocking HTTP client for set-up and probes.

Two eras share one endpoint:
- 2026-07-28: every request carries its own envelope (`params._meta` plus routing headers); no session.
- 2025-11-25: `initialize` + `notifications/initialized` open a session; calls carry `Mcp-Session-Id`.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from typing import Any

MODERN_VERSION = "2026-07-28"
SESSION_VERSION = "2025-11-25"
ACCEPT_BOTH = "application/json, text/event-stream"
ID_PLACEHOLDER = "__ID__"
EXPECT = '"result":3'
"""What every good `add(1, 2)` answer contains (structuredContent {"result": 3}, compact JSON)."""

_MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def modern_headers(tool: str) -> dict[str, str]:
    return {"MCP-Protocol-Version": MODERN_VERSION, "Mcp-Method": "tools/call", "Mcp-Name": tool}


def modern_call_template(tool: str) -> str:
    """A 2026-07-28 tools/call body; `__ID__` marks the JSON-RPC id."""
    params = {"name": tool, "arguments": {"a": 1, "b": 2}, "_meta": _MODERN_META}
    return '{"jsonrpc":"2.0","id":' + ID_PLACEHOLDER + ',"method":"tools/call","params":' + _compact(params) + "}"


def session_headers(session_id: str) -> dict[str, str]:
    return {"Mcp-Session-Id": session_id, "MCP-Protocol-Version": SESSION_VERSION}


def session_call_template(tool: str, progress: bool) -> str:
    """A 2025-era tools/call body; with `progress` the id doubles as the (unique) progress token."""
    meta = ',"_meta":{"progressToken":' + ID_PLACEHOLDER + "}" if progress else ""
    params = '{"name":' + _compact(tool) + ',"arguments":{"a":1,"b":2}' + meta + "}"
    return '{"jsonrpc":"2.0","id":' + ID_PLACEHOLDER + ',"method":"tools/call","params":' + params + "}"


def fill(template: str, request_id: int) -> str:
    return template.replace(ID_PLACEHOLDER, str(request_id))


INITIALIZE = _compact(
    {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": SESSION_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        },
    }
)
INITIALIZED = '{"jsonrpc":"2.0","method":"notifications/initialized"}'


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()

    def result(self) -> dict[str, Any] | None:
        """The JSON-RPC result among the messages (an SSE stream may carry notifications first)."""
        for message in self.messages:
            if "result" in message:
                value: dict[str, Any] = message["result"]
                return value
        return None


def parse_messages(content_type: str, body: bytes) -> list[dict[str, Any]]:
    """JSON-RPC messages from a JSON body or an SSE stream (`data:` lines)."""
    text = body.decode("utf-8", "replace")
    if not text.strip():
        return []
    if content_type == "text/event-stream":
        return [json.loads(data) for data in _sse_data(text) if data.strip()]
    decoded = json.loads(text)
    return decoded if isinstance(decoded, list) else [decoded]


def _sse_data(text: str) -> list[str]:
    """The data of each SSE event (its `data:` lines joined); priming events may carry empty data."""
    events, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("data:"):
            current.append(line[5:].removeprefix(" "))
        elif not line and current:
            events.append("\n".join(current))
            current = []
    return events


def post(port: int, body: str, headers: dict[str, str], path: str = "/mcp", timeout: float = 10.0) -> Reply:
    """POST to 127.0.0.1 and read the whole answer (SSE streams end with the JSON-RPC response)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        all_headers = {"Content-Type": "application/json", "Accept": ACCEPT_BOTH, **headers}
        conn.request("POST", path, body=body.encode(), headers=all_headers)
        resp = conn.getresponse()
        raw = resp.read()
        reply_headers = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    reply = Reply(resp.status, reply_headers, raw)
    if resp.status == 200:
        reply.messages = parse_messages(reply.content_type, raw)
    return reply


def open_session(port: int) -> str:
    """initialize + notifications/initialized; returns the Mcp-Session-Id."""
    reply = post(port, INITIALIZE, {})
    session_id = reply.headers.get("mcp-session-id")
    if reply.status != 200 or reply.result() is None or not session_id:
        raise RuntimeError(f"initialize failed: {reply.status} {reply.body[:300]!r}")
    ack = post(port, INITIALIZED, session_headers(session_id))
    if ack.status not in (200, 202):
        raise RuntimeError(f"notifications/initialized failed: {ack.status} {ack.body[:300]!r}")
    return session_id


def check_add_result(reply: Reply) -> str | None:
    """None when `reply` is a good add(1, 2) answer the wrk script would also accept, else why not."""
    if reply.status != 200:
        return f"HTTP {reply.status}: {reply.body[:300]!r}"
    result = reply.result()
    if result is None:
        return f"no JSON-RPC result: {reply.body[:300]!r}"
    if result.get("isError"):
        return f"tool error: {result}"
    if (result.get("structuredContent") or {}).get("result") != 3:
        return f"unexpected result: {result}"
    if EXPECT.encode() not in reply.body or b'"isError":true' in reply.body:
        return f"answer is right but the wrk check would reject it (expects {EXPECT}): {reply.body[:300]!r}"
    return None
