"""``[metrics]`` and ``[otel]``: where Prometheus scrapes and where traces go (docs/observability.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class MetricsSettings(BaseModel):
    """``[metrics]``: /metrics is served only when one of these is set; by default nobody can read it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str | None = None
    """``host:port`` of a separate listener serving only /metrics, without a token (e.g. "127.0.0.1:9464"). Keep
    it on loopback or a private network: anyone who reaches it can read the metrics."""
    token_env: str | None = Field(None, pattern=_ENV_NAME)
    """Environment variable holding a bearer token; /metrics is then also served on the main port to requests
    with ``Authorization: Bearer <token>``."""

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError('must be "host:port", e.g. "127.0.0.1:9464"')
        return value

    @property
    def enabled(self) -> bool:
        return self.listen is not None or self.token_env is not None


class OtelSettings(BaseModel):
    """``[otel]``: OpenTelemetry traces and metrics over OTLP/HTTP (needs the ``otel`` extra)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    """Export a span per tools/call, resources/read and prompts/get, and mcp.server.operation.duration."""
    endpoint: str | None = None
    """OTLP/HTTP base URL (``/v1/traces`` and ``/v1/metrics`` are added); default: OTEL_EXPORTER_OTLP_ENDPOINT,
    else http://localhost:4318."""
    headers_env: str | None = Field(None, pattern=_ENV_NAME)
    """Environment variable holding export headers as ``key=value,key2=value2`` (an API key); default:
    OTEL_EXPORTER_OTLP_HEADERS."""
    service_name: str = Field("patchbay", min_length=1, max_length=200)
    """The ``service.name`` resource attribute (OTEL_SERVICE_NAME wins when set)."""
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    """Share of new traces kept; a call whose client sent a sampled traceparent is always kept."""
    metric_interval_seconds: float = Field(60.0, ge=1.0, le=3600.0)
    """How often metrics are pushed to the collector."""

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError('must be an http:// or https:// URL, e.g. "http://collector:4318"')
        return value
