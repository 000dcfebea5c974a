"""OpenTelemetry traces and metrics for MCP calls, named by the MCP semantic conventions.

Imported only when ``[otel] enabled = true`` (the ``otel`` extra): with it off, no OpenTelemetry module is loaded
and no call does any tracing work. Conventions: open-telemetry/semantic-conventions-genai docs/gen-ai/mcp.md
(reference/governance-and-fleet.md, "OpenTelemetry MCP semantic conventions").

Spans are made when the call is finished, from the times the dispatcher took when it began (``Call.at`` and
``Call.started``), so the hot path has one hook, ``observe(call)``, as the metrics do.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from patchbay import __version__
from patchbay.errors import ConfigError
from patchbay.gate.calls import Call
from patchbay.observe.config import OtelSettings
from patchbay.observe.prom import DURATION_BUCKETS

# The target attribute of each method. The span name is "{mcp.method.name} {target}" for tools and prompts; a
# resource URI is unbounded and may hold user data, so resources/read spans are named by the method alone.
TARGETS = {"tools/call": "gen_ai.tool.name", "prompts/get": "gen_ai.prompt.name", "resources/read": "mcp.resource.uri"}
# Outcomes whose answer is an error. tools/call answers most of them with isError (error.type "tool_error" per
# semconv); Patchbay names the reason instead when the gate, a limit or a deadline gave it, which stays low-cardinality.
_ERROR_TYPES = {
    "tool_error": "tool_error",
    "denied": "denied",
    "rate_limited": "rate_limited",
    "timed_out": "timed_out",
    "cancelled": "cancelled",
    "unrecorded": "unrecorded",
}
_JSONRPC_ERROR = "JSON-RPC error "
# The duration histogram's attributes: the low-cardinality ones (no request or session ids).
_MEASURED = ("mcp.method.name", "error.type", "mcp.protocol.version")


class Tracing:
    """The dispatcher's ``metrics`` hook when OpenTelemetry is on: one SERVER span and one duration measurement
    per finished call, exported over OTLP/HTTP in the background (batching: the call never waits on export)."""

    def __init__(self, settings: OtelSettings, *, source: str = "<config>") -> None:
        headers = _headers(settings, source)
        base = settings.endpoint.rstrip("/") if settings.endpoint else None
        resource = Resource.create(
            {
                "service.name": os.environ.get("OTEL_SERVICE_NAME") or settings.service_name,
                "service.version": __version__,
            }
        )
        self.traces = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
        span_exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces" if base else None, headers=headers)
        self.traces.add_span_processor(BatchSpanProcessor(span_exporter))
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{base}/v1/metrics" if base else None, headers=headers),
            export_interval_millis=settings.metric_interval_seconds * 1000,
        )
        self.meters = MeterProvider(resource=resource, metric_readers=[reader])
        self.tracer = self.traces.get_tracer("patchbay", __version__)
        self.duration = self.meters.get_meter("patchbay", __version__).create_histogram(
            "mcp.server.operation.duration",
            unit="s",
            description="Duration of MCP requests as observed by the server.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self.propagator = TraceContextTextMapPropagator()

    def observe(self, call: Call) -> None:
        seconds = time.perf_counter() - call.started
        start = int(call.at * 1e9)
        attributes = span_attributes(call)
        error = attributes.get("error.type")
        meta = call.scope.meta
        # SEP-414: W3C trace context travels unprefixed in params._meta; most requests carry none.
        parent = self.propagator.extract(meta) if meta is not None and "traceparent" in meta else None
        span = self.tracer.start_span(
            call.method if call.method == "resources/read" else f"{call.method} {call.name}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            start_time=start,
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=start + int(seconds * 1e9))
        measured: dict[str, Any] = {k: attributes[k] for k in _MEASURED if k in attributes}
        if call.method == "tools/call":
            measured["gen_ai.tool.name"] = call.name
        self.duration.record(seconds, measured)

    def flush(self) -> None:
        self.traces.force_flush()
        self.meters.force_flush()

    def shutdown(self) -> None:
        self.traces.shutdown()
        self.meters.shutdown()


def span_attributes(call: Call) -> dict[str, Any]:
    scope = call.scope
    attributes: dict[str, Any] = {
        "mcp.method.name": call.method,
        TARGETS.get(call.method, "mcp.target"): call.name,
        "jsonrpc.request.id": str(scope.request_id),
        "mcp.protocol.version": scope.version,
        "network.transport": "tcp",
        "patchbay.outcome": call.outcome,
    }
    if call.method == "tools/call":
        attributes["gen_ai.operation.name"] = "execute_tool"
    if scope.request_ref is not None:
        attributes["patchbay.request_ref"] = scope.request_ref
    session_id = getattr(scope.session, "id", None)
    if isinstance(session_id, str):
        # The session id is a bearer-like value (whoever holds it speaks in the session): exported as a digest
        # that still groups a session's spans but cannot be used.
        attributes["mcp.session.id"] = hashlib.sha256(session_id.encode()).hexdigest()[:32]
    error = error_type(call)
    if error is not None:
        attributes["error.type"] = error
    return attributes


def error_type(call: Call) -> str | None:
    if call.outcome == "error":
        detail = call.detail or ""
        # A JSON-RPC error answered the request; anything else was a tool failure answered with isError.
        return detail[len(_JSONRPC_ERROR) :] if detail.startswith(_JSONRPC_ERROR) else "tool_error"
    return _ERROR_TYPES.get(call.outcome)


def _headers(settings: OtelSettings, source: str) -> dict[str, str] | None:
    if settings.headers_env is None:
        return None  # the exporter reads OTEL_EXPORTER_OTLP_HEADERS itself
    raw = os.environ.get(settings.headers_env, "")
    headers: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            # The value may be a secret: the message names the variable, never its text.
            raise ConfigError(
                f"{source}: otel.headers_env: ${settings.headers_env} must hold key=value pairs separated by commas",
                file=source,
                key="otel.headers_env",
            )
        headers[key.strip()] = value.strip()
    return headers
