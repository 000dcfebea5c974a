"""Observability: request ids shared by logs, audit records and traces; Prometheus metrics; OpenTelemetry."""
