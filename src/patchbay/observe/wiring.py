"""Builds what ``[metrics]`` and ``[otel]`` ask for and hands the dispatcher its ``metrics`` hook.

/metrics is never public by default: it is served on the main port only to ``Authorization: Bearer <token>``
(``[metrics] token_env``), and on a separate listener (``[metrics] listen``) that should stay on loopback or a
private network. The main-port route sits behind transport.edge like every route but /mcp (the Host check).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from patchbay.errors import ConfigError
from patchbay.gate.calls import Call
from patchbay.observe.listener import MetricsListener
from patchbay.observe.metrics import Metrics
from patchbay.observe.prom import CONTENT_TYPE, Labels

log = logging.getLogger("patchbay.observe")
MIN_TOKEN_LENGTH = 16
SHUTDOWN_SECONDS = 5.0


@dataclass(slots=True)
class Fanout:
    """Both hooks when Prometheus and OpenTelemetry are on; the dispatcher calls one ``observe``."""

    hooks: tuple[Any, ...]

    def observe(self, call: Call) -> None:
        for hook in self.hooks:
            hook.observe(call)


@dataclass
class Observability:
    metrics: Metrics | None = None
    tracing: Any = None  # patchbay.observe.otel.Tracing
    token: bytes | None = None  # the whole expected Authorization header value
    listener: MetricsListener | None = None
    pending_approvals: Any = None  # a callable counting them (a store query, run off the event loop)
    source: str = "<config>"  # the config file, for errors
    _approvals_pending: float = field(default=0.0, init=False)

    def hook(self) -> Any:
        hooks = tuple(h for h in (self.metrics, self.tracing) if h is not None)
        if not hooks:
            return None
        return hooks[0] if len(hooks) == 1 else Fanout(hooks)

    def routes(self) -> list[Route]:
        return [Route("/metrics", self.endpoint, methods=["GET"])] if self.token is not None else []

    async def scrape(self) -> bytes:
        assert self.metrics is not None
        if self.pending_approvals is not None:
            try:
                self._approvals_pending = float(await asyncio.to_thread(self.pending_approvals))
            except Exception:  # a store hiccup must not fail the whole scrape; the last value stays
                log.warning("metrics: could not count pending approvals", exc_info=True)
        return self.metrics.exposition()

    def operator(self, request: Request) -> bool:
        """True when ``request`` carries the ``[metrics]`` token (compared in constant time); False without a
        token configured. Also what lets /readyz show its operator part."""
        if self.token is None:
            return False
        header = request.headers.get("authorization", "").encode("latin-1", "replace")
        return hmac.compare_digest(header, self.token)

    async def endpoint(self, request: Request) -> Response:
        if not self.operator(request):
            # RFC 6750 §3: a bearer challenge; the body says which setting holds the token, never the token.
            return JSONResponse(
                {"error": "Unauthorized: /metrics needs Authorization: Bearer <the [metrics] token_env token>"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        return Response(await self.scrape(), media_type=CONTENT_TYPE)

    async def start(self) -> None:
        """Raises:
        ConfigError: ``[metrics] listen`` cannot be listened on."""
        if self.listener is not None:
            await self.listener.start(self.scrape, self.source)

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
        if self.tracing is not None:
            # The last spans are flushed, but a collector that is down must not hold up shutdown.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(self.tracing.shutdown), SHUTDOWN_SECONDS)


def build(settings: Any, runtime: Any, sessions: Any, legacy: Any, approvals: Any = None) -> Observability:
    """What the settings ask for; an empty Observability (no hook, no route) when they ask for nothing.

    Raises:
        ConfigError: ``[metrics] token_env`` names an unset or too short variable; ``[otel] enabled`` without the
            ``otel`` extra installed.
    """
    found = Observability(source=settings.source)
    config = settings.metrics
    if config.enabled:
        found.metrics = Metrics()
        found.token = _token(config.token_env, settings.source) if config.token_env else None
        found.listener = MetricsListener.parse(config.listen) if config.listen else None
        _add_gauges(found, runtime, sessions, legacy, approvals)
    if settings.otel.enabled:
        found.tracing = _tracing(settings)
    return found


def _token(variable: str, source: str) -> bytes:
    value = os.environ.get(variable, "")
    if len(value) < MIN_TOKEN_LENGTH:
        state = "is not set" if not value else f"is shorter than {MIN_TOKEN_LENGTH} characters"
        raise ConfigError(
            f"{source}: metrics.token_env: the environment variable {variable} {state}; set it to a random token "
            f"of at least {MIN_TOKEN_LENGTH} characters (e.g. `openssl rand -hex 32`), or remove token_env",
            file=source,
            key="metrics.token_env",
        )
    return f"Bearer {value}".encode("latin-1", "replace")


def _tracing(settings: Any) -> Any:
    try:
        from patchbay.observe.otel import Tracing
    except ImportError as exc:
        from patchbay.extras import install_command

        raise ConfigError(
            f"{settings.source}: otel.enabled: OpenTelemetry is not installed (no module {exc.name!r}); "
            f"install the otel extra: {install_command('otel')}, or set enabled = false",
            file=settings.source,
            key="otel.enabled",
        ) from None
    return Tracing(settings.otel, source=settings.source)


def _add_gauges(found: Observability, runtime: Any, sessions: Any, legacy: Any, approvals: Any) -> None:
    metrics = found.metrics
    assert metrics is not None

    def sessions_open() -> Iterable[tuple[Labels, float]]:
        return [(("streamable_http",), float(len(sessions))), (("sse",), float(len(legacy.streams)))]

    def connectors_up() -> Iterable[tuple[Labels, float]]:
        return [((c.name,), 1.0 if runtime.supervisor.is_up(c.name) else 0.0) for c in runtime.connectors]

    metrics.gauge(
        "patchbay_sessions_active",
        "Open 2025-era sessions (Streamable HTTP) and SSE streams.",
        sessions_open,
        ("transport",),
    )
    metrics.gauge(
        "patchbay_connector_up",
        "1 when the connector's system is open, 0 while retrying.",
        connectors_up,
        ("connector",),
    )
    audit = runtime.dispatcher.audit
    if audit is not None:
        metrics.counter_reading(
            "patchbay_audit_records_total", "Audit records committed.", lambda: float(audit.written)
        )
        metrics.counter_reading(
            "patchbay_audit_records_lost_total", "Audit records that could not be stored.", lambda: float(audit.lost)
        )
        metrics.counter_reading(
            "patchbay_audit_records_late_total",
            "Calls answered before their audit record was committed.",
            lambda: float(audit.late),
        )
    if runtime.fleet is not None:
        _fleet_metrics(metrics, runtime)
    if approvals is not None:
        found.pending_approvals = _pending_counter(approvals.approvals.store)
        metrics.gauge(
            "patchbay_approvals_pending",
            "Held calls waiting for a person to approve or deny them.",
            lambda: [((), found._approvals_pending)],
        )


def _pending_counter(store: Any) -> Any:
    from sqlalchemy import func, select

    from patchbay.gate.approval_models import GateApproval

    def count() -> int:
        query = select(func.count()).select_from(GateApproval)
        query = query.where(GateApproval.status == "pending", GateApproval.expires_at > store.clock())
        with store.engine.connect() as connection:
            return int(connection.scalar(query) or 0)

    return count


def _fleet_metrics(metrics: Metrics, runtime: Any) -> None:
    from patchbay.fleet.limits import RedisRateStore

    store = runtime.dispatcher.limits.store
    if isinstance(store, RedisRateStore):
        outage = store.outage
        metrics.counter_reading(
            "patchbay_rate_limit_degraded_total",
            "Rate-limit checks a replica answered alone (its share of the limit) while Redis was unreachable.",
            lambda: float(outage.local_checks),
        )
