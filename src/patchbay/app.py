"""``create_app(settings)`` builds the ASGI app: the runtime, the routes, and nothing at import time."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from patchbay import __version__
from patchbay.catalog import Catalog, Mounted
from patchbay.catalog.keeper import ManifestKeeper
from patchbay.catalog.manifest import Manifest
from patchbay.connectors.base import Connector, ConnectorEnv, Diagnosable, Reloadable, Subscribable
from patchbay.connectors.lifecycle import Backoff, OnFailure, Supervisor
from patchbay.connectors.registry import load_type
from patchbay.errors import ConfigError, ConnectorError
from patchbay.fleet import Fleet, build_fleet
from patchbay.gate import approvals_wanted
from patchbay.gate.limits import build_limits
from patchbay.gate.policy import build_gate
from patchbay.links.hub import LinkHub, links_wanted
from patchbay.observe.wiring import build as build_observability
from patchbay.protocol.dispatch import Dispatcher, ServerInfo
from patchbay.protocol.hub import Hub
from patchbay.settings import ConnectorSettings, Settings
from patchbay.transport.batch import BatchLimits
from patchbay.transport.edge import Edge
from patchbay.transport.http import Receive, Scope, Send
from patchbay.transport.legacy_sse import LegacySSE
from patchbay.transport.security import HostGuard
from patchbay.transport.sessions import MemorySessionStore, SessionStore
from patchbay.transport.streamable_http import StreamableHTTP

if TYPE_CHECKING:  # a fleet's modules import redis; a single node never loads them
    from patchbay.fleet.events import FleetEvents
    from patchbay.gate.audit import AuditRecorder

log = logging.getLogger("patchbay")

LIST_CHANGED = (
    ("tools_wire", "notifications/tools/list_changed"),
    ("prompts_wire", "notifications/prompts/list_changed"),
    ("resources_wire", "notifications/resources/list_changed"),
    ("templates_wire", "notifications/resources/list_changed"),
)


@dataclass
class Runtime:
    """Everything one server process holds: connectors, the catalog, the dispatcher and the notification hub."""

    settings: Settings
    connectors: list[Connector] = field(default_factory=list)
    hub: Hub = field(default_factory=Hub)
    catalog: Catalog = field(init=False)
    dispatcher: Dispatcher = field(init=False)
    supervisor: Supervisor = field(init=False)
    ready: bool = False
    # What start() does when a connector's system is down: "retry" (serve the rest, report it in /readyz, open it
    # when it comes up) or "raise" (refuse to start, as `patchbay serve --strict` does).
    # The server's default is "retry" (create_app); programmatic use and tests start strictly unless they ask.
    on_failure: OnFailure = "raise"
    # patchbay.auth.server.AuthServer when sign-in is on (create_app sets it); started after the catalog.
    auth: Any = None
    # Keeps manifest versions in the store and notices approvals (None: open mode without a store).
    keeper: ManifestKeeper | None = field(init=False, default=None)
    # The upstream credential store connectors share (patchbay.links); opens nothing until a connector uses it.
    links: LinkHub = field(init=False)
    # This replica's link to the fleet's Redis ([redis] url); None on a single node.
    fleet: Fleet | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.fleet = build_fleet(self.settings)
        self.links = LinkHub(self.settings)
        self.connectors = build_connectors(
            self.settings,
            on_change=self.lists_changed,
            on_resource_updated=self.resource_updated,
            links=self.links,
        )
        entries = {c.name: c for c in self.settings.connectors if c.enabled}
        keys = {c.name: f"connectors[{i}]" for i, c in enumerate(self.settings.connectors)}
        self.supervisor = Supervisor(
            self.connectors,
            source=self.settings.source,
            keys=keys,
            on_up=lambda connector: self.lists_changed(),
            backoff=Backoff(cap=self.settings.server.connector_retry_max_seconds),
        )
        self.catalog = Catalog([_mounted(c, entries[c.name]) for c in self.connectors], is_up=self.supervisor.is_up)
        self.keeper = _build_keeper(self.settings, self.catalog, self.lists_changed)
        server = self.settings.server
        info = ServerInfo(
            name=server.name,
            version=__version__,
            title=server.title,
            instructions=server.instructions,
            list_ttl_ms=server.list_ttl_ms,
        )
        secret = server.secret.get_secret_value().encode() if server.secret is not None else None
        key = hashlib.sha256(b"patchbay request state\0" + secret).digest() if secret else secrets.token_bytes(32)
        self.dispatcher = Dispatcher(self.catalog, info, state_key=key)
        self.dispatcher.gate = build_gate(self.settings, self.catalog)
        self.dispatcher.limits = build_limits(self.settings, self.catalog, self.fleet)
        self.dispatcher.audit = _build_recorder(self.settings, self.catalog)
        self.dispatcher.on_subscribe = self.subscribe_upstream

    async def start(self, on_failure: OnFailure | None = None) -> None:
        """Open every connector, then build the catalog.

        ``on_failure`` (default: the runtime's ``on_failure``) says what a connector whose system is down does:
        ``"retry"`` leaves it out and reopens it with backoff, ``"report"`` only leaves it out (one-shot CLI
        commands), ``"raise"`` stops the start.

        Raises:
            ConfigError: a connector's configuration is invalid, naming the file and the key (whatever the mode).
            ConnectorError: with ``"raise"``, the first connector that could not open, naming it.
        """
        await self.supervisor.open_all(on_failure or self.on_failure)
        try:
            if self.keeper is not None:
                await self.keeper.load()
            if self.dispatcher.audit is not None:
                await self.dispatcher.audit.open()
            self.catalog.rebuild()
            if self.keeper is not None:
                await self.keeper.settle()
                self.keeper.start()
            if self.auth is not None:
                await self.auth.start()
        except BaseException:
            if self.keeper is not None:
                await self.keeper.stop()
            await self.supervisor.close_all()
            if self.dispatcher.audit is not None:
                await self.dispatcher.audit.aclose()
            raise
        self.ready = True

    async def stop(self) -> None:
        """Stop retrying connectors that are down, then close every connector."""
        self.ready = False
        if self.keeper is not None:
            await self.keeper.stop()
        if self.auth is not None:
            self.auth.close()
        await self.supervisor.close_all()
        if self.dispatcher.audit is not None:
            await self.dispatcher.audit.aclose()

    async def connector_health(self, operator: bool = False) -> dict[str, dict[str, Any]]:
        """Each connector's state for /readyz: ``ok`` and ``detail``, and ``retry_in`` (seconds) while it is down.

        With ``operator`` (a request carrying the ``[metrics]`` token) each also gets ``operator``: its type, its
        published tool count and what it gives :class:`~patchbay.connectors.base.Diagnosable` (a stdio upstream's
        stderr), which is never shown to anyone else.
        """
        report: dict[str, dict[str, Any]] = {}
        for connector in self.connectors:
            name = connector.name
            if not self.supervisor.is_up(name):
                retry = self.supervisor.retry_in(name)
                detail = self.supervisor.status[name].detail
                report[name] = {"ok": False, "detail": detail, "retry_in": None if retry is None else round(retry, 1)}
            else:
                health = await connector.health()
                report[name] = {"ok": health.ok, "detail": health.detail}
            if operator:
                report[name]["operator"] = self._operator_part(connector)
        return report

    def _operator_part(self, connector: Connector) -> dict[str, Any]:
        kind = next((c.type for c in self.settings.connectors if c.name == connector.name), None)
        tools = len(connector.tools()) if self.supervisor.is_up(connector.name) else 0
        extra = connector.diagnostics() if isinstance(connector, Diagnosable) else {}
        return {"type": kind, "tools": tools, **extra}

    def begin_shutdown(self) -> None:
        """End long-lived streams at once; in-flight calls go on until they finish or the grace period ends."""
        self.hub.close()

    def lists_changed(self) -> None:
        """Rebuild the catalog and tell open streams which lists changed."""
        before = {attr: getattr(self.catalog, attr) for attr, _ in LIST_CHANGED}
        self.catalog.rebuild()
        sent = set()
        for attr, method in LIST_CHANGED:
            if getattr(self.catalog, attr) != before[attr] and method not in sent:
                sent.add(method)
                # Local: every replica of a fleet rebuilds its own catalog and tells its own streams.
                self.hub.publish(method, local=True)

    def resource_updated(self, uri: str) -> None:
        self.hub.publish("notifications/resources/updated", {"uri": uri})

    async def subscribe_upstream(self, uri: str) -> None:
        """Pass a client's resources/subscribe on to the connector whose resource it is, if it has a source to
        subscribe at (an upstream MCP server)."""
        for connector in self.connectors:
            up = isinstance(connector, Subscribable) and self.supervisor.is_up(connector.name)
            if up and await connector.subscribe(uri):  # type: ignore[attr-defined]
                return

    async def reload(self) -> None:
        """Reload every connector that can (``patchbay serve`` on SIGHUP), then rebuild and publish list changes.

        A connector whose reload fails keeps its previous definitions (it logs why).
        """
        for connector in self.connectors:
            if isinstance(connector, Reloadable) and self.supervisor.is_up(connector.name):
                await connector.reload()
        self.lists_changed()


def build_connectors(
    settings: Settings, *, on_change: Any = None, on_resource_updated: Any = None, links: LinkHub | None = None
) -> list[Connector]:
    """Instantiate the enabled connectors (not yet opened).

    Raises:
        ConfigError: unknown type or invalid options, naming the file and the connector's key.
    """
    connectors: list[Connector] = []
    links = links if links is not None else LinkHub(settings)
    for index, entry in enumerate(settings.connectors):
        if not entry.enabled:
            continue
        where = f"{settings.source}: connectors[{entry.name}]"
        kind = load_type(entry.type, where=where)
        try:
            options = kind.Options.model_validate(entry.options)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors(include_url=False)
            )
            raise ConfigError(
                f"{where} (type {entry.type}): {problems}", file=settings.source, key=f"connectors[{index}]"
            ) from None
        env = ConnectorEnv(
            base_dir=settings.base_dir,
            store_url=settings.store_url,
            on_change=on_change or (lambda: None),
            prefix=entry.tool_prefix,
            on_resource_updated=on_resource_updated or (lambda uri: None),
            links=links,
        )
        connectors.append(kind(entry.name, options, env))
    return connectors


def _build_keeper(settings: Settings, catalog: Catalog, rebuild: Any) -> ManifestKeeper | None:
    """The manifest keeper in review mode, and in open mode when the server keeps a durable store anyway (sign-in
    on, or [store] configured, and not in memory): a server with neither writes nothing to disk, as before
    (docs/manifest.md)."""
    manifest = settings.manifest
    if manifest.mode == "open":
        url = settings.store_url
        memory = url in ("sqlite://", "sqlite:///") or ":memory:" in url or "mode=memory" in url
        if memory or (settings.auth.mode == "none" and "store" not in settings.model_fields_set):
            return None
    catalog.manifest = Manifest(manifest.mode)
    return ManifestKeeper(catalog.manifest, settings.store_url, poll_seconds=manifest.poll_seconds, rebuild=rebuild)


def _build_recorder(settings: Settings, catalog: Catalog) -> AuditRecorder | None:
    if not settings.audit.enabled:  # the recorder's module imports SQLAlchemy: not for a server that records nothing
        return None
    from patchbay.gate.audit import build_recorder

    return build_recorder(settings, catalog)


def _mounted(connector: Connector, entry: ConnectorSettings) -> Mounted:
    return Mounted(connector, entry.tool_prefix, entry.scopes, entry.tool_scopes, entry.public_tools)


def _build_auth(settings: Settings, runtime: Runtime) -> Any:
    """The authorization server and resource-server checks, or None when ``auth.mode`` is none."""
    if settings.auth.mode == "none":
        return None
    from patchbay.auth.server import AuthServer

    auth = AuthServer(settings, runtime.catalog)
    runtime.auth = auth
    if runtime.fleet is not None:  # before the pages that sign people in take its throttle
        from patchbay.fleet.notices import share_auth

        share_auth(runtime.fleet, auth)
    runtime.catalog.security = auth.policy.schemes
    runtime.dispatcher.gate.access = auth.policy  # scopes and public tools become rules of the one policy
    if runtime.dispatcher.audit is not None:
        auth.core.audit = runtime.dispatcher.audit.event
    return auth


def create_app(settings: Settings) -> Any:
    """The ASGI app for ``settings``. The runtime starts in the app's lifespan.

    Raises:
        ConfigError: the configuration names something that does not exist or is invalid.
    """
    runtime = Runtime(settings, on_failure="retry")
    auth = _build_auth(settings, runtime)
    approvals = None
    if approvals_wanted(settings):  # the page and its sign-in stack load only when some call can be held
        from patchbay.gate import approval_pages

        approvals = approval_pages.build(settings, runtime.dispatcher, runtime.catalog, auth, runtime.fleet)
        if runtime.dispatcher.audit is not None:
            approvals.approvals.audit = runtime.dispatcher.audit.event
    if runtime.fleet is not None:  # MRTR states, manifest and approval notices shared by the fleet
        from patchbay.fleet.notices import share_runtime

        share_runtime(runtime.fleet, runtime)
        from patchbay.connectors.mcp.bridge import tag_replica

        tag_replica(runtime.connectors, runtime.fleet.replica_id)  # a retry on another replica is told so
    link_pages = None
    if links_wanted(settings) and auth is not None:  # account linking (docs/links.md)
        from patchbay.links import pages as links_pages

        link_pages = links_pages.build(runtime.links, auth, runtime.dispatcher.audit)
    console = None
    if settings.console.enabled:  # the operator console at /admin (docs/console.md); its pages import jinja2
        from patchbay.console import build as build_console

        console = build_console(runtime, auth)
    server = settings.server
    guard = HostGuard(settings.public_url, server.allowed_hosts, server.allowed_origins, server.probe_hosts)
    sessions: SessionStore
    events: FleetEvents | None = None
    if runtime.fleet is not None:  # sealed session ids any replica opens; their state in Redis (docs/deploy.md)
        from patchbay.fleet.events import fleet_events
        from patchbay.fleet.fanout import HubBridge
        from patchbay.fleet.sessions import fleet_store

        events = fleet_events(settings, runtime.fleet)  # streams resumable on any replica
        sessions = fleet_store(settings, runtime.fleet, events)
        HubBridge(runtime.hub, runtime.fleet.bus)  # notifications reach every replica's streams
    else:
        sessions = MemorySessionStore(
            idle_seconds=server.session_idle_seconds,
            max_sessions=server.max_sessions,
            # Without sign-in every caller is the same (anonymous) principal: only the store's own cap applies.
            max_per_owner=server.max_sessions_per_principal if auth is not None else None,
        )
    mcp = StreamableHTTP(
        runtime.dispatcher,
        sessions,
        guard,
        runtime=runtime,
        max_body=server.max_body_bytes,
        keepalive_seconds=server.sse_keepalive_seconds,
        auth=auth.authenticator if auth is not None else None,
        batch_limits=BatchLimits(server.max_batch_size, server.max_batch_response_bytes),
    )
    legacy = LegacySSE(
        runtime.dispatcher,
        guard,
        runtime=runtime,
        max_body=server.max_body_bytes,
        keepalive_seconds=server.sse_keepalive_seconds,
        auth=auth.authenticator if auth is not None else None,
    )
    if events is not None:
        mcp.streams.shared = events
    if console is not None:
        console.sessions, console.legacy = sessions, legacy  # counted on the overview
    # [metrics] and [otel] (docs/observability.md); with neither, no hook runs on any call.
    observability = build_observability(settings, runtime, sessions, legacy, approvals)
    runtime.dispatcher.metrics = observability.hook()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(request: Request) -> Response:
        if not runtime.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        # The operator part (a stdio upstream's stderr, ...) only with the [metrics] token; a wrong or missing
        # token is no error here: health probes carry none (docs/observability.md).
        connectors = await runtime.connector_health(operator=observability.operator(request))
        ok = all(c["ok"] for c in connectors.values())
        audit = runtime.dispatcher.audit.health() if runtime.dispatcher.audit is not None else None
        ok = ok and (audit is None or audit["ok"])
        fleet = runtime.fleet.health() if runtime.fleet is not None else None
        ok = ok and (fleet is None or fleet["ok"])
        body = {
            "status": "ok" if ok else "degraded",
            "connectors": connectors,
            "audit": audit if audit is not None else {"ok": True, "detail": "off ([audit] enabled = false)"},
            "tools": len(runtime.catalog.tools),
            "sessions": len(sessions),
        }
        if fleet is not None:
            body["redis"] = fleet
        # Degraded is 503 so that monitoring and rolling deploys see it. A load balancer in front of replicas
        # that share the broken system asks with ?degraded=ok, so it keeps routing to replicas that serve the
        # other tools instead of to none at all (docs/connectors.md, "When a source is down").
        serving = request.query_params.get("degraded") == "ok"
        return JSONResponse(body, status_code=200 if ok or serving else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            if runtime.fleet is not None:  # before the runtime: its parts use the fleet as they start
                await runtime.fleet.start()
            await runtime.start()
            await observability.start()
        except (ConnectorError, ConfigError) as exc:
            log.error("%s", exc)
            raise
        down = runtime.supervisor.down
        log.info(
            "serving %d tools at %s%s",
            len(runtime.catalog.tools),
            settings.mcp_url,
            f" (down, retrying: {', '.join(down)})" if down else "",
        )
        try:
            yield
        finally:
            sessions.close_all()
            legacy.close_all()
            await observability.stop()
            await runtime.stop()
            if events is not None:
                await events.close()
            if runtime.fleet is not None:
                await runtime.fleet.stop()
            runtime.links.close()
            if approvals is not None:
                approvals.approvals.close()

    async def http_error(request: Request, exc: Exception) -> Response:
        # Clients probe well-known paths and follow no HTML: every error here is a small JSON body.
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "Internal error")
        headers = getattr(exc, "headers", None)
        return JSONResponse({"error": detail, "status": status}, status_code=status, headers=headers)

    router = Starlette(
        exception_handlers={HTTPException: http_error},
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            *(auth.routes() if auth is not None else []),
            *(approvals.routes() if approvals is not None else []),
            *(link_pages.routes() if link_pages is not None else []),
            *(console.routes() if console is not None else []),
            *observability.routes(),
            Route("/sse", legacy.stream, methods=["GET"]),
            Route("/messages", legacy.post, methods=["POST"]),
            Route("/messages/", legacy.post, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    # Every route but /mcp is reached through the edge: the Host check (DNS rebinding) and the body cap apply to
    # each one, including routes added later. /mcp does both itself, once, on its hot path.
    edge = Edge(
        router,
        guard,
        max_body=server.max_body_bytes,
        rpc_paths=("/sse", "/messages", "/messages/"),
        probe_paths=("/healthz", "/readyz"),
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # The MCP endpoint is served straight from ASGI: the hot path skips routing and middleware. Both
        # /mcp and /mcp/ answer; neither redirects (clients drop the body or auth on redirects).
        if scope["type"] == "http" and scope["path"] in ("/mcp", "/mcp/"):
            await mcp(scope, receive, send)
        else:
            await edge(scope, receive, send)

    app.runtime = runtime  # type: ignore[attr-defined]
    app.sessions = sessions  # type: ignore[attr-defined]
    app.observability = observability  # type: ignore[attr-defined]
    app.router = router  # type: ignore[attr-defined]  # tests enumerate its routes
    app.console = console  # type: ignore[attr-defined]
    return app
