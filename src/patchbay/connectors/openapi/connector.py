"""``type = "openapi"``: a REST API described by an OpenAPI (or Swagger 2.0) document, published as tools.

At open the spec is read (file or URL, through the SSRF guard), its selected operations become tools (or the three
search tools for a large API), the configured credentials are read and matched to each operation's security
requirements, and every operation gets its route: one pooled HTTP/1.1 client per API origin. Calls then go through
:class:`~patchbay.connectors.openapi.caller.Caller`. A base URL the operator configured is trusted like an mcp
connector's ``url``, and so is the origin of a spec URL the operator configured (the spec's host and a server on
that same origin); a server on another origin, taken from a spec that was fetched from a URL, is held to the
``[outbound]`` address policy, as any address learned from data would be.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson

from patchbay.catalog.catalog import tool_wire
from patchbay.connectors.base import ConnectorEnv, Health
from patchbay.connectors.openapi.auth import build_credentials
from patchbay.connectors.openapi.caller import Caller
from patchbay.connectors.openapi.models import ApiSpec, Plan
from patchbay.connectors.openapi.options import OpenApiOptions
from patchbay.connectors.openapi.spec import load_spec
from patchbay.connectors.openapi.tools import Built, build_tools
from patchbay.definitions import Prompt, Resource, ResourceTemplate, Tool
from patchbay.errors import ConfigError, ConnectorError
from patchbay.links import resolve_value
from patchbay.outbound import AddressPolicy, Fetcher, Refused, fetcher_for
from patchbay.outbound.origin import OriginClient
from patchbay.outbound.policy import HostError, literal_address
from patchbay.outbound.transport import Resolver, system_resolver

log = logging.getLogger("patchbay.connectors.openapi")

SHOWN = 50  # skipped operations (and those without credentials) listed in diagnostics() and the start-up log


class OpenApiConnector:
    Options = OpenApiOptions

    def __init__(
        self, name: str, options: OpenApiOptions, env: ConnectorEnv, *, resolve: Resolver = system_resolver
    ) -> None:
        self.name = name
        self.options = options
        self.env = env
        self.resolve = resolve
        self._spec: ApiSpec | None = None
        self._built: Built | None = None
        self._caller: Caller | None = None
        self._base_url = ""
        self._clients: dict[str, OriginClient] = {}
        self._signature = b""

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Read the spec, build the tools and their routes.

        Raises:
            ConfigError: the spec file is missing or not an API description, a secret is missing, an override
                names no operation, a credential does not fit its scheme, or no base URL can be had.
            ConnectorError: the spec's URL cannot be reached (retried with backoff by the server).
        """
        spec, built, caller = await self._load()
        self._install(spec, built, caller)
        self._report(spec, built, caller)

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()
        self._caller = None

    async def reload(self) -> bool:
        """Read the spec again and rebuild the tools; True (and the catalog told) when what is published changed.

        Never raises: a spec that no longer loads keeps the published tools and logs why.
        """
        try:
            spec, built, caller = await self._load()
        except (ConfigError, ConnectorError, OSError) as exc:
            log.warning("connector '%s': reloading the spec failed, keeping the published tools: %s", self.name, exc)
            return False
        changed = self._install(spec, built, caller)
        if changed:
            self._report(spec, built, caller)
            self.env.on_change()
        return changed

    async def health(self) -> Health:
        if self._built is None or self._caller is None:
            return Health(False, "the spec is not loaded")
        built, last = self._built, self._caller.last
        detail = f"{built.selected} operations as {built.mode}"
        if last.problem:
            return Health(not last.down, f"{detail}; the last call failed: {last.problem}")
        return Health(True, detail)

    def diagnostics(self) -> dict[str, Any]:
        spec, built, caller = self._spec, self._built, self._caller
        if spec is None or built is None or caller is None:
            return {"spec": self.options.spec, "loaded": False}
        return {
            "spec": spec.source or self.options.spec,
            "version": spec.version,
            "base_url": self._base_url,
            "operations": len(spec.operations) + len(spec.skipped),
            "selected": built.selected,
            "skipped": [{"operation": s.key, "reason": s.reason} for s in spec.skipped[:SHOWN]],
            "skipped_count": len(spec.skipped),
            "mode": built.mode,
            "estimated_tokens": built.estimated_tokens,
            "without_credentials": caller.credentials.lacking[:SHOWN],
            "last_call": {"at": caller.last.at, "problem": caller.last.problem} if caller.last.at else None,
        }

    def tools(self) -> Sequence[Tool]:
        return self._built.tools if self._built is not None else []

    def plans(self) -> dict[str, Plan]:
        """Each selected operation's :class:`Plan` by its connector-local tool name (empty before open)."""
        return dict(self._built.plans) if self._built is not None else {}

    def resources(self) -> Sequence[Resource]:
        return []

    def resource_templates(self) -> Sequence[ResourceTemplate]:
        return []

    def prompts(self) -> Sequence[Prompt]:
        return []

    # -- building ----------------------------------------------------------------------------------------------

    async def _load(self) -> tuple[ApiSpec, Built, Caller]:
        fetcher = self._fetcher()
        spec = await load_spec(self.options, base_dir=self.env.base_dir, fetcher=fetcher)
        base_url, vetted = self._base(spec)
        credentials = build_credentials(self.name, spec, self.options, self.env, base_url=base_url)
        headers = {
            header: resolve_value(value, base_dir=self.env.base_dir, where=f"headers.{header}")
            for header, value in self.options.headers.items()
        }
        caller = Caller(self.name, self.options, credentials, headers)
        built = build_tools(spec, self.options, caller.invoke, prefix=self.env.prefix, label=self.name)
        published = built.operation_tools if built.mode == "tools" and built.operation_tools is not None else []
        outputs = {tool.name: tool.output_schema for tool in published}
        from_url = spec.source.startswith(("http://", "https://"))

        def route_to(plan: Plan) -> tuple[OriginClient, str]:
            url, vet = base_url, vetted
            servers = plan.operation.servers
            if servers and self.options.base_url is None:
                url = urljoin(base_url if not from_url else spec.source, servers[0])
                vet = from_url and not _same_origin(url, spec.source)
            policy = fetcher.policy if vet else None
            return self._client(url, policy, allow_http=fetcher.allow_http), urlsplit(url).path

        try:
            caller.add_routes(built.plans.values(), route_to, outputs, spec.defs)
        except Refused as exc:
            raise ConfigError(f"base_url: {exc}", key="base_url") from None
        self._base_url = base_url
        return spec, built, caller

    def _install(self, spec: ApiSpec, built: Built, caller: Caller) -> bool:
        signature = orjson.dumps([tool_wire(tool.name, tool) for tool in built.tools], option=orjson.OPT_SORT_KEYS)
        changed = signature != self._signature
        self._spec, self._built, self._caller, self._signature = spec, built, caller, signature
        return changed

    def _fetcher(self) -> Fetcher:
        links = self.env.links
        if links is not None:
            return links.fetcher  # type: ignore[no-any-return]
        from patchbay.settings import OutboundSettings

        return fetcher_for(OutboundSettings())

    def _base(self, spec: ApiSpec) -> tuple[str, bool]:
        """The API's base URL, and whether it must be vetted (taken from a spec that came from a URL).

        Raises:
            ConfigError: no base URL: ``base_url`` unset and the spec names no absolute server.
        """
        if self.options.base_url is not None:
            return self.options.base_url, False
        from_url = spec.source.startswith(("http://", "https://"))
        for server in spec.servers:
            url = urljoin(spec.source, server) if from_url else server
            if url.startswith(("http://", "https://")):
                # A server on the spec's own origin is the host the operator named: trusted like base_url.
                return url, from_url and not _same_origin(url, spec.source)
        if from_url:
            return urljoin(spec.source, "/"), False  # OpenAPI 3.1 §4.8.1: no servers means "/" (the spec's origin)
        raise ConfigError(
            "base_url: the spec names no absolute server URL; set base_url to where the API is served",
            key="base_url",
        )

    def _client(self, url: str, policy: AddressPolicy | None, *, allow_http: bool) -> OriginClient:
        """The pooled client for ``url``'s origin; with ``policy``, its addresses are vetted (spec-derived URL).

        Raises:
            Refused: the URL is not usable, or (vetted) plain http or an address the policy refuses.
        """
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        client = self._clients.get(origin)
        if client is not None:
            return client
        resolve = self.resolve
        if policy is not None:
            if parts.scheme != "https" and not allow_http:
                raise Refused(f"the spec's server {origin} is plain http; set base_url to use it")
            _vet_literal(parts.hostname or "", policy)
            resolve = _vetting(resolve, policy)
        client = self._clients[origin] = OriginClient(
            origin, resolve=resolve, max_connections=self.options.max_in_flight
        )
        return client

    def _report(self, spec: ApiSpec, built: Built, caller: Caller) -> None:
        log.info(
            "openapi %s: %d operations, %d published, %d skipped, mode %s (estimated %s tokens as tools), calling %s",
            self.name,
            len(spec.operations) + len(spec.skipped),
            built.selected,
            len(spec.skipped),
            built.mode,
            f"{built.estimated_tokens:,}",
            self._base_url,
        )
        for skipped in spec.skipped[:SHOWN]:
            log.warning("openapi %s: skipped %s: %s", self.name, skipped.key, skipped.reason)
        if len(spec.skipped) > SHOWN:
            log.warning("openapi %s: %d more operations skipped", self.name, len(spec.skipped) - SHOWN)
        lacking = caller.credentials.lacking
        if lacking:
            log.warning(
                "openapi %s: no configured credential fits the security of %d operations (%s%s); they are called "
                "without one",
                self.name,
                len(lacking),
                ", ".join(lacking[:10]),
                ", ..." if len(lacking) > 10 else "",
            )


def _same_origin(a: str, b: str) -> bool:
    one, two = urlsplit(a), urlsplit(b)
    return (one.scheme, one.netloc.lower()) == (two.scheme, two.netloc.lower())


def _vet_literal(host: str, policy: AddressPolicy) -> None:
    try:
        address = literal_address(host)
    except HostError as exc:
        raise Refused(str(exc)) from None
    if address is not None and (why := policy.refusal(address)) is not None:
        raise Refused(f"the spec's server {host} is a {why} address; set base_url to call it")


def _vetting(resolve: Resolver, policy: AddressPolicy) -> Resolver:
    """A resolver that refuses a name whose addresses the policy does not admit (a spec's server is data)."""

    async def vetted(host: str, port: int) -> list[str]:
        answers = await resolve(host, port)
        for answer in answers:
            why = policy.refusal(ipaddress.ip_address(answer))
            if why is not None:
                raise Refused(f"{host} resolves to a {why} address, which [outbound] does not allow")
        return answers

    return vetted
