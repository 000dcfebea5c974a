"""OpenTelemetry (docs/observability.md "Traces"): spans and the duration metric exported over OTLP/HTTP to an
in-process collector on loopback, decoded with opentelemetry-proto, named and attributed per the MCP semantic
conventions, parented on the client's ``params._meta.traceparent`` (SEP-414)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2 as httpx
from fixtures.wire import JSON_POST, TOOLS_FILE, initialize_body, live_server, modern_request, request
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from patchbay.settings import Settings, from_dict

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"
DEADLINE = 15.0  # seconds
SPAN_KIND_SERVER = 2  # opentelemetry.proto.trace.v1.Span.SpanKind.SPAN_KIND_SERVER
STATUS_ERROR = 2


class Collector:
    """An OTLP/HTTP receiver: keeps every decoded export request, by signal."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.metrics: list[Any] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                with collector.lock:
                    if self.path == "/v1/traces":
                        request = ExportTraceServiceRequest.FromString(body)
                        collector.spans += [s for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
                    elif self.path == "/v1/metrics":
                        request = ExportMetricsServiceRequest.FromString(body)
                        collector.metrics += [
                            m for r in request.resource_metrics for sm in r.scope_metrics for m in sm.metrics
                        ]
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, what: str, count: int, flush: Any) -> list[Any]:
        deadline = time.monotonic() + DEADLINE
        while True:
            flush()
            with self.lock:
                found = list(getattr(self, what))
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@contextlib.contextmanager
def collector() -> Iterator[Collector]:
    running = Collector()
    thread = threading.Thread(target=running.server.serve_forever, name="otlp-collector", daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.server.shutdown()
        running.server.server_close()


def settings_for(tmp_path: Path, endpoint: str) -> Settings:
    data = {
        "server": {"name": "patchbay-unit"},
        "store": {"url": "sqlite:///:memory:"},
        "connectors": [{"name": "fx", "type": "python", "path": str(TOOLS_FILE), "prefix": ""}],
        "otel": {"enabled": True, "endpoint": endpoint, "metric_interval_seconds": 3600},
    }
    return from_dict(data, base_dir=tmp_path)


def attributes(span: Any) -> dict[str, Any]:
    found = {}
    for item in span.attributes:
        kind = item.value.WhichOneof("value")
        found[item.key] = getattr(item.value, kind)
    return found


def test_calls_are_exported_as_semconv_spans_parented_on_meta_traceparent(tmp_path: Path) -> None:
    with collector() as otlp, live_server(settings_for(tmp_path, otlp.url)) as server:
        base = f"http://127.0.0.1:{server.port}"
        traceparent = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
        body, headers = modern_request(
            "tools/call", {"name": "echo", "arguments": {"text": "hi"}}, traceparent=traceparent
        )
        with httpx.Client(base_url=base, timeout=DEADLINE) as http:
            answered = http.post("/mcp", json=body, headers={**headers, "x-request-id": "trace-req-7"})
            assert answered.status_code == 200 and answered.json()["result"]["isError"] is False
            opened = http.post("/mcp", json=initialize_body(), headers=JSON_POST)
            session_id = opened.headers["mcp-session-id"]
            session = {**JSON_POST, "mcp-session-id": session_id}
            refused = http.post(
                "/mcp", json=request("tools/call", {"name": "refuse", "arguments": {}}, 77), headers=session
            )
            assert refused.json()["result"]["isError"] is True
        tracing = server.app.observability.tracing
        spans = otlp.wait_for("spans", 2, tracing.flush)
        metrics = otlp.wait_for("metrics", 1, tracing.flush)

    by_name = {span.name: span for span in spans}
    assert set(by_name) == {"tools/call echo", "tools/call refuse"}, list(by_name)
    echo, refuse = by_name["tools/call echo"], by_name["tools/call refuse"]
    assert echo.kind == SPAN_KIND_SERVER
    assert echo.trace_id.hex() == TRACE_ID and echo.parent_span_id.hex() == PARENT_SPAN
    assert echo.end_time_unix_nano >= echo.start_time_unix_nano > 0
    echoed = attributes(echo)
    assert echoed["mcp.method.name"] == "tools/call"
    assert echoed["gen_ai.tool.name"] == "echo"
    assert echoed["gen_ai.operation.name"] == "execute_tool"
    assert echoed["mcp.protocol.version"] == "2026-07-28"
    assert echoed["jsonrpc.request.id"] == str(body["id"])
    assert echoed["network.transport"] == "tcp"
    assert echoed["patchbay.request_ref"] == "trace-req-7"
    assert "error.type" not in echoed and echo.status.code != STATUS_ERROR

    refused_attrs = attributes(refuse)
    assert refuse.trace_id.hex() != TRACE_ID and not refuse.parent_span_id  # no traceparent: a new trace
    assert refused_attrs["error.type"] == "tool_error" and refuse.status.code == STATUS_ERROR
    assert refused_attrs["jsonrpc.request.id"] == "77"
    # The session id is bearer-like: only a digest leaves the server, never the id itself.
    assert refused_attrs["mcp.session.id"] == hashlib.sha256(session_id.encode()).hexdigest()[:32]
    assert all(session_id not in str(value) for value in refused_attrs.values())

    # Cumulative temporality: each flush exports the totals so far; the last export holds both calls.
    duration = [m for m in metrics if m.name == "mcp.server.operation.duration"][-1]
    assert duration.unit == "s"
    points = duration.histogram.data_points
    assert sum(p.count for p in points) == 2
    assert list(points[0].explicit_bounds) == [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300]


def test_a_2025_era_call_is_parented_on_its_meta_traceparent_too(tmp_path: Path) -> None:
    """SEP-414 reads ``params._meta`` of any request, not only of 2026-07-28 ones."""
    with collector() as otlp, live_server(settings_for(tmp_path, otlp.url)) as server:
        meta = {"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"}
        body = request("tools/call", {"name": "echo", "arguments": {"text": "hi"}, "_meta": meta}, 5)
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=DEADLINE) as http:
            answered = http.post("/mcp", json=body, headers=JSON_POST)
            assert answered.status_code == 200 and answered.json()["result"]["isError"] is False
        tracing = server.app.observability.tracing
        [span] = otlp.wait_for("spans", 1, tracing.flush)
    assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == PARENT_SPAN
    assert attributes(span)["mcp.protocol.version"] == "2025-03-26"


def test_a_2025_era_meta_that_is_not_an_object_carries_no_trace_context(tmp_path: Path) -> None:
    """A ``params._meta`` that is not an object names no parent: the call is answered and starts its own trace."""
    with collector() as otlp, live_server(settings_for(tmp_path, otlp.url)) as server:
        body = request("tools/call", {"name": "echo", "arguments": {"text": "hi"}, "_meta": ["traceparent"]}, 6)
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=DEADLINE) as http:
            answered = http.post("/mcp", json=body, headers=JSON_POST)
            assert answered.status_code == 200 and answered.json()["result"]["isError"] is False
        tracing = server.app.observability.tracing
        [span] = otlp.wait_for("spans", 1, tracing.flush)
    assert span.parent_span_id == b""
    assert attributes(span)["mcp.protocol.version"] == "2025-03-26"


def test_with_otel_off_no_opentelemetry_module_is_loaded(tmp_path: Path) -> None:
    script = f"""
import sys, anyio, httpx2 as httpx
sys.path.insert(0, {str(Path(__file__).parent)!r})
from fixtures.wire import client_for, running, settings_for, modern_request
async def main():
    async with running(settings_for(__import__("pathlib").Path({str(tmp_path)!r}))) as app, client_for(app) as http:
        body, headers = modern_request("tools/call", {{"name": "echo", "arguments": {{"text": "hi"}}}})
        assert (await http.post("/mcp", json=body, headers=headers)).status_code == 200
anyio.run(main)
print(sorted(m for m in sys.modules if m.startswith(("opentelemetry", "patchbay.observe.otel"))))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
