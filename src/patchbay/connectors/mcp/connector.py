"""``type = "mcp"``: another MCP server behind Patchbay, local (a stdio command) or remote (a URL).

The upstream's tools, resources, templates and prompts are listed once at open(), curated (names, URI prefix,
overrides) and published with handlers that proxy through one pooled upstream session per credential identity.
Upstream ``list_changed`` notifications, and a periodic re-list as a fallback, re-read the lists; the catalog is
told only when what is published changed (the manifest keeper then holds or publishes the change).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from patchbay import __version__
from patchbay.connectors.base import ConnectorEnv, Health
from patchbay.connectors.mcp.bridge import Bridge
from patchbay.connectors.mcp.build import Definitions, Lists, build
from patchbay.connectors.mcp.curation import NameProblem, UriMap
from patchbay.connectors.mcp.linking import NobodyLinked, connect_tool, lister
from patchbay.connectors.mcp.options import McpOptions
from patchbay.connectors.mcp.proxy import Proxy
from patchbay.definitions import Completer, Prompt, Resource, ResourceTemplate, Tool
from patchbay.errors import ConfigError, ConnectorError, RpcError
from patchbay.links import Credentials, LinkError, LinkRequired, credentials_for, resolve_value
from patchbay.links.user_oauth import UserOAuth
from patchbay.protocol.jsonrpc import INTERNAL_ERROR
from patchbay.upstream import Target, UpstreamError, UpstreamPool, UpstreamTimeout, UpstreamUnavailable
from patchbay.upstream.process import ProcessSpec, StdioProcess

log = logging.getLogger("patchbay.connectors.mcp")

MAX_PAGES = 100  # of one list; an upstream that pages forever is cut off
# What Patchbay offers upstream: it forwards sampling and elicitation to the person's client. Roots are not
# offered: they would be the client's roots, which upstream servers on this machine must not take as theirs.
CLIENT_CAPABILITIES: dict[str, Any] = {"sampling": {}, "elicitation": {"form": {}, "url": {}}}
STATELESS = "2026-07-28"
STDERR_SHOWN = 4000  # characters of a child's stderr in diagnostics(): its last lines, not the whole 64 KiB ring
LIST_CHANGED = {
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
}


class McpConnector:
    Options = McpOptions

    def __init__(self, name: str, options: McpOptions, env: ConnectorEnv) -> None:
        self.name = name
        self.options = options
        self.env = env
        self.uris = UriMap(f"{name}+" if options.resource_prefix is None else options.resource_prefix)
        self.bridge = Bridge()
        self._in_flight = asyncio.Semaphore(options.max_in_flight)
        self._pool: UpstreamPool | None = None
        self._proxy: Proxy | None = None
        self._credentials: Credentials | None = None
        self._lists = Lists()
        self._defs = Definitions()
        self._signature = b""
        self._capabilities: dict[str, Any] = {}
        self._upstream_version = ""
        self._subscribed: set[str] = set()
        self._relist: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._problem = ""
        # user_oauth before anyone linked: why only the connect tool is published ("" once the lists are read).
        self._waiting = ""
        # The shared stdio child's supervisor outlives the pool (see _supervisor).
        self._process: StdioProcess | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Start (or reach) the upstream, list what it offers and publish it curated.

        Raises:
            ConfigError: a secret is missing, or a published name would be refused by clients or collide
                (``rename`` fixes it).
            ConnectorError: the upstream cannot be started, reached or initialised; the message says why.
        """
        if self._credentials is None:
            self._credentials = credentials_for(self.name, self.options, self.env, upstream_url=self.options.url)
            if isinstance(self._credentials, UserOAuth):
                self._credentials.on_linked = lambda subject: self._wake.set()
        if self._pool is None:
            self._pool = self._new_pool(self._target())
        self._proxy = Proxy(
            self.name,
            self._pool,
            self._credentials,
            self.bridge,
            self._in_flight,
            self.options.call_timeout,
            self.options.stateful,
        )
        try:
            lists = await self._list_all()
        except NobodyLinked as exc:
            self._publish_connect(str(exc))
        except (UpstreamUnavailable, UpstreamTimeout, UpstreamError, LinkError) as exc:
            raise ConnectorError(f"upstream MCP server '{self.name}': {_why(exc)}") from None
        else:
            try:
                self._publish(lists)
            except NameProblem as exc:
                raise ConfigError(str(exc), key=f"rename.{exc.upstream}") from None
        if self._relist is None:
            self._relist = asyncio.get_running_loop().create_task(self._watch(), name=f"patchbay-relist-{self.name}")

    async def close(self) -> None:
        task, self._relist = self._relist, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.bridge.close()
        pool, self._pool = self._pool, None
        self._subscribed.clear()
        self._signature = b""  # a reopened connector publishes handlers bound to its new pool
        self._waiting = ""
        if pool is not None:
            await pool.close()  # every session, and every child process with them

    async def health(self) -> Health:
        if self._pool is None:
            return Health(False, "not started")
        if self._waiting:
            return Health(True, self._waiting)
        ok, reason = self._pool.health()
        if ok and self._problem:
            return Health(True, f"{reason}; last re-list failed: {self._problem}")
        return Health(ok, reason)

    def diagnostics(self) -> dict[str, Any]:
        """For operators only (``/readyz`` with the ``[metrics]`` token): never published, as the stderr tail can
        hold what the child printed."""
        pool = self._pool
        # The shared child's supervisor outlives pools and failed opens, and so does its stderr ring.
        stderr = self._process.stderr_tail() if self._process is not None else ""
        stderr = stderr or (pool.stderr_tail() if pool is not None else "")
        version = (pool.protocol_version() if pool is not None else "") or self._upstream_version
        return {
            "upstream": self._target_kind(),
            "protocol_version": version or None,
            "era": None if not version else "2026-07-28" if version >= STATELESS else "2025",
            "stderr": stderr[-STDERR_SHOWN:] if stderr else None,
        }

    def tools(self) -> Sequence[Tool]:
        return self._defs.tools

    def resources(self) -> Sequence[Resource]:
        return self._defs.resources

    def resource_templates(self) -> Sequence[ResourceTemplate]:
        return self._defs.templates

    def prompts(self) -> Sequence[Prompt]:
        return self._defs.prompts

    # -- the upstream ------------------------------------------------------------------------------------

    def _target_kind(self) -> str:
        if self.options.url is None:
            return "stdio"
        return "sse" if self.options.transport == "sse" else "http"

    def _target(self) -> Target:
        options = self.options
        if options.url is not None:
            if options.transport == "sse":
                return Target("sse", url=options.url, protocol=options.protocol)
            return Target("http", url=options.url, protocol=options.protocol)
        assert options.command is not None
        env = {
            key: resolve_value(value, base_dir=self.env.base_dir, where=f"env.{key}")
            for key, value in options.env.items()
        }
        cwd = self.env.base_dir / options.cwd if options.cwd is not None else None
        if cwd is not None and not cwd.is_dir():
            raise ConfigError(f"cwd: '{options.cwd}' is not a folder (looked at {cwd})", key="cwd")
        spec = ProcessSpec(
            argv=tuple(_program(options.command, self.env.base_dir)),
            cwd=cwd,
            env=env,
            start_timeout=options.start_timeout,
            idle_shutdown=options.idle_shutdown,
        )
        return Target("stdio", process=spec, protocol=options.protocol)

    def _tls(self) -> ssl.SSLContext | None:
        """The trust for an upstream behind an internal CA (``ca_file``); None: the usual public CAs.

        Raises:
            ConfigError: ``ca_file`` cannot be read or holds no certificate.
        """
        if self.options.ca_file is None:
            return None
        from patchbay.outbound.trust import trusting

        return trusting(self.options.ca_file, base_dir=self.env.base_dir, key="ca_file")

    def _new_pool(self, target: Target) -> UpstreamPool:
        return UpstreamPool(
            self.name,
            target,
            client_info={"name": "patchbay", "version": __version__},
            capabilities=CLIENT_CAPABILITIES,
            on_notification=self._on_notification,
            max_sessions=self.options.max_sessions,
            idle_seconds=self.options.session_idle_seconds,
            handshake_timeout=self.options.start_timeout,
            process_factory=self._supervisor,
            tls=self._tls(),
        )

    def _supervisor(self, label: str, spec: ProcessSpec) -> StdioProcess:
        """The shared child's supervisor, kept across pools: the lifecycle closes and reopens a connector whose
        open failed, and a new supervisor would forget the failed starts, so a command that fails every start
        would never reach the crash-loop cap. A stateful session's own child gets its own supervisor."""
        if label != self.name:
            return StdioProcess(label, spec)
        if self._process is None or self._process.spec != spec:
            self._process = StdioProcess(label, spec)
        else:
            self._process.resume()
        return self._process

    async def _shared(self) -> tuple[str, dict[str, str]]:
        """The identity and headers that read the lists: the shared credentials, or with ``user_oauth`` a person's
        linked account (:mod:`patchbay.connectors.mcp.linking`).

        Raises:
            NobodyLinked: ``user_oauth`` and no usable account is linked yet.
            LinkError: credentials cannot be had.
        """
        assert self._credentials is not None
        if not isinstance(self._credentials, UserOAuth):
            return await self._credentials.headers_for(None)
        person = await lister(self._credentials.hub, self.name, self.options.list_with)
        try:
            return await self._credentials.headers_for(person)
        except LinkRequired as exc:
            raise NobodyLinked(f"{person.username} has no usable linked account: {exc}") from None

    async def _list_all(self) -> Lists:
        assert self._pool is not None
        identity, headers = await self._shared()
        session = await self._pool.session(identity, headers)
        caps = self._capabilities = dict(session.capabilities)
        self._upstream_version = session.protocol_version
        lists = Lists()
        if "tools" in caps:
            lists.tools = await self._list("tools/list", "tools", identity, headers)
        if "resources" in caps:
            lists.resources = await self._list("resources/list", "resources", identity, headers)
            lists.templates = await self._list("resources/templates/list", "resourceTemplates", identity, headers)
        if "prompts" in caps:
            lists.prompts = await self._list("prompts/list", "prompts", identity, headers)
        return lists

    async def _list(self, method: str, key: str, identity: str, headers: dict[str, str]) -> list[dict[str, Any]]:
        assert self._pool is not None
        items: list[dict[str, Any]] = []
        cursor: Any = None
        for _ in range(MAX_PAGES):
            params = {"cursor": cursor} if cursor is not None else {}
            result = await self._pool.call(
                method, params, identity=identity, headers=headers, timeout=self.options.start_timeout
            )
            page = result.get(key)
            items.extend(item for item in (page if isinstance(page, list) else []) if isinstance(item, dict))
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
        return items

    def _publish(self, lists: Lists) -> bool:
        """Replace the definitions when the lists differ from the published ones; True when they did.

        Raises:
            NameProblem: a name in ``lists`` cannot be published.
        """
        signature = orjson.dumps(
            [lists.tools, lists.resources, lists.templates, lists.prompts], option=orjson.OPT_SORT_KEYS
        )
        if signature == self._signature:
            return False
        assert self._proxy is not None
        self._defs = build(lists, self.options, self.env.prefix, self._proxy, self.uris, self._completer)
        self._lists, self._signature = lists, signature
        self._waiting = ""
        return True

    def _publish_connect(self, why: str) -> None:
        """Publish only the connect tool (user_oauth before anyone linked); ``why`` shows in health()."""
        assert self._proxy is not None
        self._defs = Definitions(tools=[connect_tool(self.name, self._proxy, self._wake.set)])
        self._lists, self._signature, self._waiting = Lists(), b"connect", why

    # -- changes -------------------------------------------------------------------------------------------

    async def _on_notification(self, method: str, params: dict[str, Any]) -> None:
        if method in LIST_CHANGED:
            self._wake.set()
        elif method == "notifications/resources/updated":
            uri = params.get("uri")
            if isinstance(uri, str):
                self.env.on_resource_updated(self.uris.outward(uri))
        elif method == "notifications/message":
            if self._proxy is not None and await self._proxy.log_unclaimed(params):
                return
            log.info("upstream %s says: %s", self.name, str(params.get("data"))[:500])

    async def _watch(self) -> None:
        """Re-read the lists when the upstream says they changed, or every ``relist_seconds``."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.relist_seconds):
                    await self._wake.wait()
            self._wake.clear()
            await self.relist()

    async def relist(self) -> bool:
        """Read the upstream's lists again; True (and the catalog told) when what is published changed.

        Never raises: a failed re-list keeps the published definitions and shows in health().
        """
        try:
            lists = await self._list_all()
            changed = self._publish(lists)
        except NobodyLinked as exc:
            if self._waiting:  # still nobody: the connect tool stays
                self._waiting = str(exc)
                return False
            self._problem = _why(exc)
            log.warning("connector '%s': no linked account can re-read the upstream's lists, keeping them", self.name)
            return False
        except (UpstreamUnavailable, UpstreamTimeout, UpstreamError, LinkError, NameProblem) as exc:
            self._problem = _why(exc)
            log.warning("connector '%s': re-reading the upstream's lists failed, keeping them: %s", self.name, exc)
            return False
        self._problem = ""
        if changed:
            log.info("connector '%s': the upstream's lists changed", self.name)
            self.env.on_change()
        return changed

    # -- subscriptions and completions ---------------------------------------------------------------------

    async def subscribe(self, uri: str) -> bool:
        """Subscribe upstream to a published resource URI (once; updates then reach every subscribed session).

        Returns False when ``uri`` is not this connector's.

        Raises:
            RpcError: the upstream refused the subscription (its code) or cannot be reached.
        """
        inner = self.uris.inward(uri)
        if inner is None or self._pool is None:
            return False
        resources = self._capabilities.get("resources")
        if not isinstance(resources, dict) or not resources.get("subscribe") or inner in self._subscribed:
            return True
        if self._upstream_version >= STATELESS:
            # MCP 2026-07-28 removed resources/subscribe (an upstream of that era answers -32601): the pool's listen
            # stream asks for the URI's updates instead.
            self._pool.watch_resource(inner)
            self._subscribed.add(inner)
            return True
        try:
            identity, headers = await self._shared()
            await self._pool.call(
                "resources/subscribe",
                {"uri": inner},
                identity=identity,
                headers=headers,
                timeout=self.options.call_timeout,
            )
        except UpstreamError as exc:
            raise RpcError(
                exc.code, f"The upstream server '{self.name}' refused the subscription: {exc.message}"
            ) from None
        except (UpstreamUnavailable, UpstreamTimeout, LinkError) as exc:
            raise RpcError(INTERNAL_ERROR, f"The upstream server '{self.name}' is unavailable: {_why(exc)}") from None
        self._subscribed.add(inner)
        return True

    def _completer(self, ref: dict[str, Any], argument: str) -> Completer | None:
        if "completions" not in self._capabilities:
            return None

        async def complete(value: str, context: dict[str, str]) -> list[str]:
            if self._pool is None:
                return []
            try:
                identity, headers = await self._shared()
                params = {"ref": ref, "argument": {"name": argument, "value": value}, "context": {"arguments": context}}
                result = await self._pool.call(
                    "completion/complete", params, identity=identity, headers=headers, timeout=self.options.call_timeout
                )
            except (UpstreamUnavailable, UpstreamTimeout, UpstreamError, LinkError):
                return []  # completions are suggestions: none is a fine answer
            values = (result.get("completion") or {}).get("values")
            return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []

        return complete


def _program(command: list[str], base_dir: Path) -> list[str]:
    """A program given relative to the config file (``./server.py``) is found there, not in the cwd."""
    program = command[0]
    if program.startswith(("./", "../")):
        return [str((base_dir / program).resolve()), *command[1:]]
    return command


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, UpstreamTimeout):
        return f"no answer in time ({text})" if text else "no answer in time"
    if isinstance(exc, UpstreamError):
        return f"it answered an error: {exc.message}"
    return text or exc.__class__.__name__
