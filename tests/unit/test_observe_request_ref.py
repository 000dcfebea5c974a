"""Request ids (docs/observability.md "Request ids"): every HTTP request gets one short id, a valid incoming
``X-Request-Id`` or a generated one, printed on each log line the request causes.

The fixture tool ``explode`` fails with an unexpected error, which the dispatcher logs: that line must name the
request it belongs to, in both log formats, on the Streamable HTTP and the legacy SSE transport.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import orjson
import pytest
from fixtures.wire import (
    JSON_POST,
    TOOLS_FILE,
    client_for,
    live_server,
    modern_request,
    open_session,
    request,
    running,
    settings_for,
)

from patchbay import logs
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio

GENERATED = re.compile(r"[0-9a-f]{16}")
EXPLODE = {"name": "explode", "arguments": {}}
DEADLINE = 10.0  # seconds


class _Lines(logging.Handler):
    """Formats each record when it is emitted, inside the request's context, as the real stderr handler does."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def captured(formatter: logging.Formatter) -> Iterator[_Lines]:
    handler = _Lines(formatter)
    logger = logging.getLogger("patchbay")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def failure_refs(handler: _Lines) -> list[Any]:
    entries = [orjson.loads(line) for line in handler.lines]
    return [entry.get("request_ref") for entry in entries if "explode failed" in entry["msg"]]


async def explode_modern(client: httpx.AsyncClient, extra: dict[str, str]) -> None:
    body, headers = modern_request("tools/call", EXPLODE)
    response = await client.post("/mcp", json=body, headers={**headers, **extra})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["isError"] is True


async def test_incoming_request_id_is_printed_on_the_requests_log_line(client: httpx.AsyncClient) -> None:
    with captured(logs.JsonFormatter()) as lines:
        await explode_modern(client, {"x-request-id": "lb-7f3a:0042"})
    assert failure_refs(lines) == ["lb-7f3a:0042"]


@pytest.mark.parametrize(
    "header",
    ["has space", "x" * 65, "new\nline", 'quote"d', ""],
    ids=["space", "too-long", "newline", "quote", "empty"],
)
async def test_unsafe_request_id_is_replaced_by_a_generated_one(client: httpx.AsyncClient, header: str) -> None:
    with captured(logs.JsonFormatter()) as lines:
        body, headers = modern_request("tools/call", EXPLODE)
        # httpx refuses a newline in a header value; the raw bytes reach the server as a proxy could send them.
        raw = [(k.encode(), v.encode()) for k, v in headers.items()] + [(b"x-request-id", header.encode())]
        response = await client.post("/mcp", content=orjson.dumps(body), headers=raw)
        assert response.status_code == 200, response.text
    [ref] = failure_refs(lines)
    assert GENERATED.fullmatch(ref), ref


async def test_each_request_without_an_id_gets_its_own(client: httpx.AsyncClient) -> None:
    session = await open_session(client)
    with captured(logs.JsonFormatter()) as lines:
        for _ in range(3):
            response = await client.post("/mcp", json=request("tools/call", EXPLODE), headers=session)
            assert response.status_code == 200, response.text
    refs = failure_refs(lines)
    assert len(refs) == 3 and len(set(refs)) == 3, refs
    assert all(GENERATED.fullmatch(ref) for ref in refs), refs


async def test_readable_log_lines_end_with_the_request_id(client: httpx.AsyncClient) -> None:
    with captured(logs.TextFormatter()) as lines:
        await explode_modern(client, {"x-request-id": "trace-1"})
    [line] = [line for line in lines.lines if "explode failed" in line]
    assert line.splitlines()[0].endswith("[trace-1]"), line


def test_legacy_sse_request_id_reaches_the_log_line(tmp_path: Path) -> None:
    async def scenario(port: int) -> None:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=DEADLINE) as http,
            http.stream("GET", "/sse") as response,
        ):
            lines = response.aiter_lines()
            with anyio.fail_after(DEADLINE):
                assert await anext(lines) == "event: endpoint"
                endpoint = (await anext(lines)).removeprefix("data:").strip()
                headers = {**JSON_POST, "x-request-id": "sse-req-1"}
                posted = await http.post(endpoint, json=request("tools/call", EXPLODE), headers=headers)
                assert posted.status_code == 202, posted.text
                async for line in lines:  # the answer comes on the stream once the call has failed
                    if line.startswith("data:") and '"isError":true' in line:
                        return
            raise AssertionError("the stream ended before the answer")

    with captured(logs.JsonFormatter()) as lines, live_server(settings_for(tmp_path)) as server:
        anyio.run(scenario, server.port)
    assert failure_refs(lines) == ["sse-req-1"]


async def test_request_id_is_in_the_calls_audit_record(tmp_path: Path) -> None:
    database = tmp_path / "store.db"
    settings = from_dict(
        {
            "store": {"url": f"sqlite:///{database}"},
            "connectors": [{"name": "fx", "type": "python", "path": str(TOOLS_FILE), "prefix": ""}],
        },
        base_dir=tmp_path,
    )
    async with running(settings) as app, client_for(app) as http:
        body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
        answered = await http.post("/mcp", json=body, headers={**headers, "x-request-id": "audit-ref-1"})
        assert answered.status_code == 200, answered.text
        rows: list[tuple[Any, ...]] = []
        with anyio.fail_after(DEADLINE):  # a read's record may trail its answer by [audit] read_window_ms
            while not rows:
                with contextlib.closing(sqlite3.connect(database)) as db:
                    rows = db.execute("SELECT request_ref, name FROM audit_records WHERE kind = 'call'").fetchall()
                await anyio.sleep(0.02)
    assert rows == [("audit-ref-1", "echo")]
