"""Legacy HTTP+SSE (MCP 2024-11-05) through a real server: ``GET /sse`` opens the stream and names its POST endpoint;
``POST /messages?session_id=…`` is answered ``202`` and every answer travels on the stream as a ``message`` event
(docs/protocol.md, "Legacy HTTP+SSE"; its limits and error codes). A stream is bound to the principal that opened
it (tests/unit/test_auth_session_binding.py) and the Host/Origin checks are tests/unit/test_transport_edge.py's.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2 as httpx
import orjson
import pytest
from fixtures.tools import SECRET
from fixtures.wire import TOOLS_FILE, TOOLS_MODULE, request
from sqlalchemy import text
from tests.support.loopback_asgi import serving

from patchbay.app import create_app
from patchbay.gate.calls import Call
from patchbay.protocol.dispatch import Dispatcher
from patchbay.protocol.scope import CallScope
from patchbay.settings import Settings, from_dict
from patchbay.store import create_engine
from patchbay.transport import legacy_sse

pytestmark = pytest.mark.anyio

DEADLINE = 30.0  # generous: mutation runs share two cores with other work
VIEW_TOOLS = Path(__file__).parent / "fixtures" / "legacy_tools.py"
JSON = {"content-type": "application/json"}
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{32}")  # secrets.token_urlsafe(24)
NEED_TOKEN = "Authentication required: send Authorization: Bearer <token>"
UNKNOWN_SESSION = {
    "jsonrpc": "2.0",
    "id": None,
    "error": {"code": -32001, "message": "Unknown or closed session_id: open GET /sse first"},
}


def settings(tmp: Path, *, auth: str = "none", keepalive: float = 15.0, public: tuple[str, ...] = ()) -> Settings:
    fixtures: dict[str, Any] = {"name": "fx", "type": "python", "path": str(TOOLS_FILE), "prefix": ""}
    if public:
        fixtures["public_tools"] = list(public)
    data: dict[str, Any] = {
        "server": {"name": "legacy-sse", "sse_keepalive_seconds": keepalive},
        "store": {"url": f"sqlite:///{tmp / 'legacy.db'}"},
        "auth": {"mode": auth},
        "connectors": [fixtures, {"name": "lv", "type": "python", "path": str(VIEW_TOOLS), "prefix": ""}],
    }
    return from_dict(data, base_dir=tmp)


def call(name: str, request_id: int, arguments: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    return request("tools/call", {"name": name, "arguments": arguments or {}, **params}, request_id)


def initialize(request_id: int, version: Any, **params: Any) -> dict[str, Any]:
    return request("initialize", {"protocolVersion": version, "capabilities": {}, **params}, request_id)


def rpc_error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@contextlib.asynccontextmanager
async def served(config: Settings) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The app behind uvicorn on a loopback port (its lifespan run) and a client for it."""
    app = create_app(config)
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=2 * DEADLINE) as http:
        assert (await http.get("/healthz")).status_code == 200  # answered once the lifespan has started
        yield app, http


@dataclass
class Stream:
    """One open ``GET /sse``: its response, its lines as they arrive, and the endpoint its messages go to."""

    http: httpx.AsyncClient
    response: httpx.Response
    lines: AsyncIterator[str]
    endpoint: str
    headers: dict[str, str]

    async def line(self) -> str:
        with anyio.fail_after(DEADLINE):
            return await anext(self.lines)

    async def message(self) -> dict[str, Any]:
        """The next ``message`` event's JSON; keep-alive comments are skipped, but not for longer than DEADLINE."""
        with anyio.fail_after(DEADLINE):
            while True:
                line = await self.line()
                if line == "event: message":
                    data = await self.line()
                    assert data.startswith("data: "), data
                    assert await self.line() == ""
                    return dict(orjson.loads(data.removeprefix("data: ")))
                assert line in ("", ": keep-alive"), line

    async def post(self, body: Any, *, url: str | None = None, **headers: str) -> httpx.Response:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        sent = {**JSON, **self.headers, **headers}
        return await self.http.post(url or self.endpoint, content=content, headers=sent)

    async def ask(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Post a request: the messages that came before its answer, and the answer."""
        posted = await self.post(body)
        assert (posted.status_code, posted.text) == (202, "Accepted")
        before = []
        # One deadline for the whole wait: an answer that never comes (say, one sent with the wrong id) must fail
        # the test, not leave it reading keep-alives and other messages forever.
        with anyio.fail_after(DEADLINE):
            while True:
                message = await self.message()
                if message.get("id") == body["id"] and "method" not in message:
                    return before, message
                before.append(message)


async def forgotten(stream: Stream) -> None:
    """Wait until the server has noticed that ``stream`` was closed: its endpoint answers 404."""
    with anyio.fail_after(DEADLINE):
        while True:
            if (await stream.post(request("ping", None, 0))).status_code == 404:
                return
            await anyio.sleep(0.01)


@contextlib.asynccontextmanager
async def opened(http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> AsyncIterator[Stream]:
    sent = headers or {}
    async with http.stream("GET", "/sse", headers=sent) as response:
        assert response.status_code == 200
        stream = Stream(http, response, response.aiter_lines(), "", sent)
        assert await stream.line() == "event: endpoint"
        data = await stream.line()
        assert await stream.line() == ""
        assert data.startswith("data: "), data
        stream.endpoint = data.removeprefix("data: ")
        yield stream


async def test_the_stream_opens_with_its_own_post_endpoint_and_is_never_cached(tmp_path: Path) -> None:
    async with served(settings(tmp_path)) as (_, http), opened(http) as first, opened(http) as second:
        assert first.response.headers["content-type"].startswith("text/event-stream")
        assert first.response.headers["cache-control"] == "no-cache"
        assert first.response.headers["x-accel-buffering"] == "no"  # nginx must not buffer the stream
        path, _, session_id = first.endpoint.partition("?session_id=")
        assert path == "/messages" and SESSION_ID.fullmatch(session_id), first.endpoint
        assert second.endpoint != first.endpoint


async def test_an_answer_travels_on_the_stream_as_a_message_event(tmp_path: Path) -> None:
    async with served(settings(tmp_path)) as (_, http), opened(http) as stream:
        posted = await stream.post(initialize(1, "2024-11-05"))
        assert (posted.status_code, posted.text) == (202, "Accepted")
        assert await stream.line() == "event: message"
        data = await stream.line()
        assert data.startswith("data: {"), data
        assert await stream.line() == ""
        answer = orjson.loads(data.removeprefix("data: "))
        assert (answer["jsonrpc"], answer["id"]) == ("2.0", 1)
        assert answer["result"]["protocolVersion"] == "2024-11-05"


async def test_an_idle_stream_sends_keep_alives_and_still_answers(tmp_path: Path) -> None:
    async with served(settings(tmp_path, keepalive=0.05)) as (_, http), opened(http) as stream:
        assert [await stream.line() for _ in range(4)] == [": keep-alive", "", ": keep-alive", ""]
        _, answer = await stream.ask(request("ping", None, 2))
        assert answer == {"jsonrpc": "2.0", "id": 2, "result": {}}


async def test_initialize_keeps_a_known_version_and_offers_the_latest_for_any_other(tmp_path: Path) -> None:
    async with served(settings(tmp_path)) as (_, http), opened(http) as stream:
        offered = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "1999-01-01", None, "2026-07-28"]
        for request_id, version in enumerate(offered, start=1):
            _, answer = await stream.ask(initialize(request_id, version))
            expected = version if version in offered[:4] else "2025-11-25"
            assert answer["result"]["protocolVersion"] == expected, version
            _, viewed = await stream.ask(call("call_view", 100 + request_id))
            assert viewed["result"]["structuredContent"]["version"] == expected, version


async def test_a_call_sees_the_version_capabilities_and_client_its_stream_was_initialized_with(tmp_path: Path) -> None:
    async with served(settings(tmp_path)) as (_, http), opened(http) as stream:
        _, before = await stream.ask(call("call_view", 1))
        assert before["result"]["structuredContent"] == {
            "era": "legacy",
            "version": "2025-11-25",
            "caps": {},
            "client": None,
            "session": None,
            "request_id": 1,
            "progress": False,
            "subject": None,
        }
        client = {"name": "probe", "version": "1.2"}
        await stream.ask(initialize(2, "2025-03-26", capabilities={"elicitation": {}}, clientInfo=client))
        _, after = await stream.ask(call("call_view", 3, _meta={"progressToken": "p"}))
        assert after["result"]["structuredContent"] == {
            "era": "legacy",
            "version": "2025-03-26",
            "caps": {"elicitation": {}},
            "client": client,
            "session": None,
            "request_id": 3,
            "progress": True,
            "subject": None,
        }
        await stream.ask(initialize(4, "2025-03-26", capabilities=["elicitation"]))  # not an object: none declared
        _, odd = await stream.ask(call("call_view", 5))
        assert odd["result"]["structuredContent"]["caps"] == {}
        assert odd["result"]["structuredContent"]["client"] is None


async def test_progress_reaches_the_stream_only_with_the_callers_token(tmp_path: Path) -> None:
    async with served(settings(tmp_path)) as (_, http), opened(http) as stream:
        notes, answer = await stream.ask(call("progress", 1, {"steps": 2}, _meta={"progressToken": "tok-1"}))
        assert [(n["method"], n["params"]) for n in notes] == [
            ("notifications/progress", {"progressToken": "tok-1", "progress": 1, "total": 2, "message": "step 1"}),
            ("notifications/progress", {"progressToken": "tok-1", "progress": 2, "total": 2, "message": "step 2"}),
        ]
        assert answer["result"]["content"][0]["text"] == "progress done"
        for request_id, params in ((2, {}), (3, {"_meta": "not an object"}), (4, {"_meta": {"other": 1}})):
            notes, answer = await stream.ask(call("progress", request_id, {"steps": 2}, **params))
            assert notes == [], params
            assert answer["result"]["content"][0]["text"] == "progress done", params


async def test_a_tool_asks_the_client_on_the_stream_and_the_answer_is_posted_back(tmp_path: Path) -> None:
    async with served(settings(tmp_path)) as (_, http), opened(http) as stream:
        await stream.ask(initialize(1, "2025-06-18", capabilities={"elicitation": {}}))
        posted = await stream.post(call("ask_name", 2))
        assert (posted.status_code, posted.text) == (202, "Accepted")
        asked = await stream.message()
        assert asked["method"] == "elicitation/create"
        assert asked["params"]["message"] == "Name?" and "mode" not in asked["params"]  # no form mode before 2025-11-25
        reply = {"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept", "content": {"name": "Ada"}}}
        answered = await stream.post(reply)
        assert (answered.status_code, answered.content) == (202, b"")  # an answer is accepted with an empty body
        answer = await stream.message()
        assert answer["id"] == 2 and answer["result"]["content"][0]["text"] == "Hello, Ada!"


async def test_a_notification_is_accepted_and_runs_nothing(tmp_path: Path) -> None:
    async with served(settings(tmp_path)) as (_, http), opened(http) as stream:
        for method in ("notifications/initialized", "tools/list"):
            posted = await stream.post({"jsonrpc": "2.0", "method": method})
            assert (posted.status_code, posted.text) == (202, "Accepted")
        before, answer = await stream.ask(request("ping", None, 9))
        assert (before, answer) == ([], {"jsonrpc": "2.0", "id": 9, "result": {}})  # nothing came for either


async def test_a_post_must_be_json_by_its_content_type(tmp_path: Path) -> None:
    async with served(settings(tmp_path)) as (_, http), opened(http) as stream:
        for accepted in (
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/json ; charset=utf-8",
            "application/json; charset=utf-8; profile=mcp",
        ):
            posted = await stream.post(request("ping", None, 1), **{"content-type": accepted})
            assert posted.status_code == 202, accepted
            assert await stream.message() == {"jsonrpc": "2.0", "id": 1, "result": {}}
        for refused in ("text/plain", "application/jsonl", "application/x-www-form-urlencoded"):
            posted = await stream.post(request("ping", None, 2), **{"content-type": refused})
            assert posted.status_code == 415, refused
            expected = "Unsupported Media Type: send Content-Type: application/json"
            assert posted.json() == rpc_error(None, -32600, expected)


async def test_a_body_that_is_not_a_json_rpc_object_is_refused_and_never_reaches_the_stream(tmp_path: Path) -> None:
    async with served(settings(tmp_path)) as (_, http), opened(http) as stream:
        broken = await stream.post(b'{"jsonrpc": "2.0", "id": 1,')
        assert broken.status_code == 400
        assert broken.json() == rpc_error(None, -32700, "Parse error: the body is not valid JSON")
        for body in ([request("ping", None, 2)], {"jsonrpc": "1.0", "id": 3, "method": "ping"}, {"id": 4}, "ping"):
            refused = await stream.post(body)
            assert refused.status_code == 400, body
            assert refused.json() == rpc_error(None, -32600, "Invalid Request: expected a JSON-RPC 2.0 object")
        before, answer = await stream.ask(request("ping", None, 5))
        assert (before, answer) == ([], {"jsonrpc": "2.0", "id": 5, "result": {}})  # the first message on the stream


async def test_a_post_names_its_stream_by_session_id_or_session_id_in_camel_case(tmp_path: Path) -> None:
    async with served(settings(tmp_path)) as (_, http), opened(http) as stream:
        session_id = stream.endpoint.partition("session_id=")[2]
        for n, url in enumerate(
            (
                f"/messages?sessionId={session_id}",
                f"/messages/?session_id={session_id}",
                f"/messages?session_id=&sessionId={session_id}",
            ),
            start=1,
        ):
            posted = await stream.post(request("ping", None, n), url=url)
            assert posted.status_code == 202, url
            assert await stream.message() == {"jsonrpc": "2.0", "id": n, "result": {}}, url
        for url in ("/messages?session_id=unknown", "/messages", f"/messages?session_id={session_id[:-1]}"):
            refused = await stream.post(request("ping", None, 9), url=url)
            assert refused.status_code == 404, url
            assert refused.json() == UNKNOWN_SESSION, url


async def test_a_malformed_request_or_failed_method_is_answered_on_the_stream(tmp_path: Path) -> None:
    invalid = "Invalid Request: method must be a string, params an object"
    async with served(settings(tmp_path)) as (_, http), opened(http) as stream:
        _, answer = await stream.ask({"jsonrpc": "2.0", "id": 1, "method": 5})
        assert answer == rpc_error(1, -32600, invalid)
        _, answer = await stream.ask(request("tools/list", [1], 2))  # type: ignore[arg-type]
        assert answer == rpc_error(2, -32600, invalid)
        _, listed = await stream.ask({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": None})
        assert "call_view" in [t["name"] for t in listed["result"]["tools"]]
        _, missing = await stream.ask(request("nope/nothing", {}, 4))
        assert missing["error"]["code"] == -32601
        _, unread = await stream.ask(request("resources/read", {"uri": "test://nope"}, 5))
        assert unread["error"]["code"] == -32002 and unread["error"]["data"] == {"uri": "test://nope"}  # 2025 era


async def test_a_fault_inside_the_server_is_an_internal_error_on_the_stream_and_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(self: Dispatcher, method: str, params: dict[str, Any], scope: Any) -> dict[str, Any]:
        raise RuntimeError(f"store at postgres://admin:{SECRET}@db is gone")

    monkeypatch.setattr(Dispatcher, "dispatch", broken)
    async with served(settings(tmp_path)) as (_, http), opened(http) as stream:
        with caplog.at_level(logging.ERROR, logger="patchbay.transport.sse"):
            _, answer = await stream.ask(request("tools/list", {}, 7))
    assert answer == rpc_error(7, -32603, "Internal error")
    [record] = [r for r in caplog.records if r.name == "patchbay.transport.sse"]
    assert record.getMessage() == "legacy SSE request 'tools/list' failed"
    assert record.levelno == logging.ERROR and record.exc_info is not None


async def test_closing_the_stream_cancels_its_calls_and_forgets_its_session(tmp_path: Path) -> None:
    async with served(settings(tmp_path)) as (app, http):
        tools = sys.modules[TOOLS_MODULE]
        listeners = app.runtime.hub.listener_count
        async with opened(http) as stream:
            assert app.runtime.hub.listener_count == listeners + 1  # told when the server shuts down
            posted = await stream.post(call("hang", 1))
            assert posted.status_code == 202
            assert await anyio.to_thread.run_sync(tools.HANG_STARTED.wait, DEADLINE)
            endpoint = stream.endpoint
        assert await anyio.to_thread.run_sync(tools.HANG_CANCELLED.wait, DEADLINE)
        gone = await http.post(endpoint, json=request("ping", None, 2), headers=JSON)
        assert gone.status_code == 404 and gone.json() == UNKNOWN_SESSION
        assert app.runtime.hub.listener_count == listeners


async def test_a_finished_call_is_no_longer_held_by_its_stream(tmp_path: Path) -> None:
    """A stream keeps its running calls to cancel them when it closes; one left open for days must not keep every
    call it ever ran."""
    async with served(settings(tmp_path)) as (app, http), opened(http) as stream:
        [route] = [r for r in app.router.routes if getattr(r, "path", None) == "/sse"]
        [held] = route.endpoint.__self__.streams.values()
        for request_id in (1, 2, 3):
            _, answer = await stream.ask(call("echo", request_id, {"text": "done"}))
            assert answer["result"]["content"][0]["text"] == "done"
        with anyio.fail_after(DEADLINE):  # each task is let go by its done-callback, just after its answer is sent
            while True:
                if not held.tasks:
                    return
                await anyio.sleep(0.01)


async def test_a_list_change_leaves_the_stream_open(tmp_path: Path) -> None:
    """Only shutdown ends a legacy stream; list changes are published on the same hub."""
    async with served(settings(tmp_path)) as (_, http), opened(http) as stream:
        _, toggled = await stream.ask(call("toggle_tool", 1))
        assert toggled["result"]["content"][0]["text"] == "toggled"
        _, listed = await stream.ask(request("tools/list", {}, 2))
        assert "dynamic" in [t["name"] for t in listed["result"]["tools"]]  # the call reached the runtime


async def test_shutting_down_ends_every_open_stream(tmp_path: Path) -> None:
    async with served(settings(tmp_path)) as (app, http), opened(http) as first, opened(http) as second:
        app.runtime.begin_shutdown()
        with anyio.fail_after(DEADLINE):
            assert [line async for line in first.lines] == []
            assert [line async for line in second.lines] == []
        gone = await first.post(request("ping", None, 1))
        assert gone.status_code == 404


async def test_a_stream_queues_at_most_1000_messages_its_client_has_not_read() -> None:
    """A client that stops reading holds up its own calls (each waits to queue its answer), not the server's memory."""
    held = legacy_sse._Stream()
    for n in range(1000):
        await held.send(request("ping", None, n))
    assert held.queue.full()


async def test_past_the_stream_limit_a_new_stream_is_503_until_one_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert legacy_sse.MAX_STREAMS == 1000  # docs/protocol.md, Limits
    monkeypatch.setattr(legacy_sse, "MAX_STREAMS", 2)
    async with served(settings(tmp_path)) as (_, http), opened(http):
        async with opened(http) as second:
            with anyio.fail_after(DEADLINE):  # a third stream let through would never end
                refused = await http.get("/sse")
            assert refused.status_code == 503
            assert refused.json() == rpc_error(None, -32603, "Too many open SSE streams; try again later")
        await forgotten(second)
        async with opened(http) as again:
            assert SESSION_ID.fullmatch(again.endpoint.partition("session_id=")[2])


async def test_with_sign_in_a_stream_and_a_post_need_a_valid_token_before_anything_else(tmp_path: Path) -> None:
    async with served(settings(tmp_path, auth="api_key")) as (app, http):
        core = app.runtime.auth.core
        _, key = await core.run(core.keys.create, "legacy", ["mcp"])
        with anyio.fail_after(DEADLINE):  # a stream let through would never end
            missing = await http.get("/sse")
            wrong = await http.get("/sse", headers=bearer("pb_not-a-key"))
        assert missing.status_code == 401
        assert missing.json() == rpc_error(None, -32600, NEED_TOKEN)
        assert missing.headers["www-authenticate"].startswith("Bearer ")
        assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
        # Judged before the content type or the body is looked at.
        posted = await http.post("/messages?session_id=x", content=b"x", headers={"content-type": "text/plain"})
        assert posted.status_code == 401 and posted.json() == rpc_error(None, -32600, NEED_TOKEN)
        assert posted.headers["www-authenticate"].startswith("Bearer ")
        async with opened(http, bearer(key)) as stream:
            _, answer = await stream.ask(call("call_view", 1))
            assert answer["result"]["structuredContent"]["subject"] == "key:legacy"


async def test_with_public_tools_an_anonymous_stream_may_only_call_tools(tmp_path: Path) -> None:
    async with served(settings(tmp_path, auth="api_key", public=("echo",))) as (app, http):
        core = app.runtime.auth.core
        _, key = await core.run(core.keys.create, "legacy", ["mcp"])
        async with opened(http) as anonymous:
            _, echoed = await anonymous.ask(call("echo", 1, {"text": "hi"}))
            assert echoed["result"]["content"] == [{"type": "text", "text": "hi"}]
            refused = await anonymous.post(request("resources/list", {}, 2))
            assert refused.status_code == 401
            assert refused.json() == rpc_error(2, -32600, NEED_TOKEN)
            assert refused.headers["www-authenticate"].startswith("Bearer ")
            note = await anonymous.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
            assert note.status_code == 202
            before, answer = await anonymous.ask(request("ping", None, 3))
            assert (before, answer["result"]) == ([], {})  # the refused request never reached the stream
            async with opened(http, bearer(key)) as signed_in:
                _, listed = await signed_in.ask(request("resources/list", {}, 4))
                assert "resources" in listed["result"]


async def test_a_legacy_call_is_audited_with_its_transport_request_id_and_client(tmp_path: Path) -> None:
    client = {"name": "probe", "version": "1.2"}
    async with served(settings(tmp_path)) as (_, http), opened(http) as stream:
        await stream.ask(initialize(1, "2025-06-18", clientInfo=client))
        posted = await stream.post(call("echo", 2, {"text": "audited"}), **{"x-request-id": "lb-legacy-42"})
        assert posted.status_code == 202
        assert (await stream.message())["result"]["content"][0]["text"] == "audited"
    engine = create_engine(f"sqlite:///{tmp_path / 'legacy.db'}")
    query = text("SELECT body FROM audit_records WHERE kind = 'call' AND name = 'echo' ORDER BY seq")
    try:
        with anyio.fail_after(DEADLINE):
            while True:
                with engine.connect() as connection:
                    bodies = [orjson.loads(body) for body in connection.execute(query).scalars()]
                if bodies:
                    break
                await anyio.sleep(0.01)
    finally:
        engine.dispose()
    seen = {(b["transport"], b["era"], b["protocol_version"], b["request_ref"], b["jsonrpc_id"]) for b in bodies}
    assert seen == {("legacy_sse", "legacy", "2025-06-18", "lb-legacy-42", 2)}
    assert all(b["client_info"] == client for b in bodies)


@dataclass
class Observer:
    """Stands in for the metrics and tracing hook the dispatcher tells of each finished call (patchbay.observe)."""

    scopes: list[CallScope] = field(default_factory=list)

    def observe(self, finished: Call) -> None:
        self.scopes.append(finished.scope)


async def test_a_calls_meta_reaches_the_trace_hook_as_sent_and_only_when_it_is_an_object(tmp_path: Path) -> None:
    """SEP-414: a span takes its parent from ``params._meta.traceparent`` (patchbay.observe.otel), on every era."""
    meta = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    async with served(settings(tmp_path)) as (app, http), opened(http) as stream:
        observer = Observer()
        app.runtime.dispatcher.metrics = observer
        for request_id, params in enumerate(({"_meta": meta}, {}, {"_meta": "not an object"}), start=1):
            _, answer = await stream.ask(call("echo", request_id, {"text": "traced"}, **params))
            assert answer["result"]["content"][0]["text"] == "traced", params
    assert [scope.meta for scope in observer.scopes] == [meta, None, None]
    assert {scope.transport for scope in observer.scopes} == {"legacy_sse"}


def asgi_scope(method: str, path: str, *, query: bytes = b"", **extra: Any) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json")]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http"}
    return scope | {"path": path, "raw_path": path.encode(), "query_string": query, "headers": headers} | extra


async def first_chunk(app: Any, scope: dict[str, Any]) -> tuple[int, bytes]:
    """Drive the app straight over ASGI: the response status and first body chunk, then the client goes away."""
    sent: list[dict[str, Any]] = []
    arrived, gone = anyio.Event(), anyio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            arrived.set()

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(app, scope, receive, send)
            await arrived.wait()
            gone.set()
    return sent[0]["status"], sent[1]["body"]


@pytest.mark.parametrize(("root_path", "prefix"), [(None, ""), ("", ""), ("/tools", "/tools")], ids=str)
async def test_the_endpoint_sits_under_the_servers_root_path(
    tmp_path: Path, root_path: str | None, prefix: str
) -> None:
    """ASGI: ``root_path`` is optional (an empty string when absent); behind a proxy prefix it starts the path."""
    app = create_app(settings(tmp_path))
    extra = {} if root_path is None else {"root_path": root_path}
    status, chunk = await first_chunk(app, asgi_scope("GET", f"{prefix}/sse", **extra))
    assert status == 200
    event, _, session_id = chunk.decode().partition("?session_id=")
    assert event == f"event: endpoint\ndata: {prefix}/messages"
    assert SESSION_ID.fullmatch(session_id.removesuffix("\n\n")), chunk


async def test_a_client_gone_before_its_body_arrived_is_answered_400(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with anyio.fail_after(DEADLINE):
        await app(asgi_scope("POST", "/messages", query=b"session_id=x", root_path=""), receive, send)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 400
