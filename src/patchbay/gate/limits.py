"""The limits step of the gate: ``[[limits]]`` rate limits, quotas and concurrency caps, call timeouts, and
result-size caps per client (docs/limits.md).

The dispatcher holds one :class:`Limits` as ``Dispatcher.limits`` and calls, for each ``tools/call``,
``resources/read`` and ``prompts/get``: :meth:`Limits.admit` (refuse over a rate or a full concurrency cap),
:meth:`Limits.slot` around the handler (hold the concurrency slots), :meth:`Limits.timeout` (the seconds the
handler may run) and :meth:`Limits.cap` (cut a tool result to the client's limit). A limit covers tools by
``tools``, resource URIs by ``resources`` and prompts by ``prompts``; a connector-wide concurrency cap (``per =
"connector"``, naming none of the three) covers all of its connectors' calls.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from patchbay.auth.principal import Principal
from patchbay.catalog import Catalog
from patchbay.definitions import ToolAnnotations, ToolResult
from patchbay.gate.calls import Call
from patchbay.gate.limits_caps import DEFAULT_RESULT_BYTES, cap_result, limits_by_profile, profile_of
from patchbay.gate.limits_config import LimitRule, Per, Rate
from patchbay.gate.limits_gauges import Gauges
from patchbay.gate.limits_rate import MemoryRateStore, RateStore
from patchbay.gate.rules import kinds_of, subject_matches
from patchbay.settings import Settings

log = logging.getLogger("patchbay.gate")

RETRY_META = "patchbay/retryAfterMs"
# No one can know when an in-flight call ends; a second is short enough for a person and long enough not to spin.
CONCURRENCY_RETRY_S = 1.0
DEFAULT_TIMEOUT_S = 60.0
_NULL_SLOT: contextlib.nullcontext[None] = contextlib.nullcontext()


@dataclass(frozen=True, slots=True)
class Limit:
    """One compiled ``[[limits]]`` table."""

    name: str
    """``limits[<index>]`` or the table's ``id``."""
    per: Per
    subjects: tuple[str, ...]
    tools: tuple[re.Pattern[str], ...]
    resources: tuple[re.Pattern[str], ...]
    prompts: tuple[re.Pattern[str], ...]
    # A concurrency cap per connector that names no tools, resources or prompts: every call to the connector.
    connector_wide: bool
    connectors: frozenset[str] | None
    kinds: frozenset[str] | None
    rate: Rate | None
    burst: int
    concurrency: int | None

    def covers(self, tool: str, connector: str | None, annotations: ToolAnnotations) -> bool:
        if not any(p.match(tool) for p in self.tools):
            return False
        if self.connectors is not None and connector not in self.connectors:
            return False
        return self.kinds is None or bool(self.kinds & kinds_of(annotations))

    def covers_read(self, method: str, name: str, connector: str | None) -> bool:
        """Whether a ``resources/read`` of URI ``name`` or a ``prompts/get`` of prompt ``name`` counts here."""
        globs = self.resources if method == "resources/read" else self.prompts
        if globs:
            if not any(p.match(name) for p in globs):
                return False
        elif not self.connector_wide:
            return False
        if self.connectors is not None and connector not in self.connectors:
            return False
        return self.kinds is None or "read" in self.kinds  # reading a resource or a prompt changes nothing

    def applies_to(self, principal: Any) -> bool:
        known = principal if isinstance(principal, Principal) else None
        return any(subject_matches(s, known) for s in self.subjects)

    def key(self, principal: Any, tool: str, connector: str | None) -> str:
        """The budget this call counts against: the limit's name and the value of ``per`` for the call."""
        return f"{self.name}\0{_per_value(self.per, principal, tool, connector)}"

    def describe(self) -> str:
        if self.rate is not None:
            burst = f", burst {self.burst:,}" if self.burst != self.rate.count else ""
            return f"{self.rate}{burst} per {self.per}"
        return f"{self.concurrency:,} concurrent call{'s' if self.concurrency != 1 else ''} per {self.per}"


def _per_value(per: Per, principal: Any, tool: str, connector: str | None) -> str:
    """Anonymous callers share one budget: nothing else identifies them reliably (docs/limits.md)."""
    if per == "tool":
        return tool
    if per == "connector":
        return connector or ""
    if per == "global":
        return ""
    if not isinstance(principal, Principal):
        return "anonymous"
    if per == "user":
        return principal.subject
    client = principal.client_id or (principal.subject if principal.kind == "api_key" else "")
    return client if per == "client" else f"{principal.subject}\0{client}"


def compile_limits(rules: Sequence[LimitRule]) -> list[Limit]:
    compiled = []
    for index, rule in enumerate(rules):
        rate = rule.parsed_rate
        named = {"tools", "resources", "prompts"} & rule.model_fields_set
        compiled.append(
            Limit(
                name=rule.id or f"limits[{index}]",
                per=rule.per,
                subjects=tuple(rule.subjects),
                tools=_globs(rule.covered_tools),
                resources=_globs(rule.resources or ()),
                prompts=_globs(rule.prompts or ()),
                connector_wide=rule.per == "connector" and rule.concurrency is not None and not named,
                connectors=frozenset(rule.connectors) if rule.connectors is not None else None,
                kinds=frozenset(rule.kinds) if rule.kinds is not None else None,
                rate=rate,
                burst=rule.burst or (rate.count if rate is not None else 0),
                concurrency=rule.concurrency,
            )
        )
    return compiled


def _globs(globs: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(fnmatch.translate(glob)) for glob in globs)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds a call may run: a tool's own (``tool_timeouts``, by the connector's tool name), else its
    connector's (``timeout_seconds``), else ``default`` (``[gate] call_timeout_seconds``)."""

    default: float = DEFAULT_TIMEOUT_S
    connectors: Mapping[str, float] = field(default_factory=dict)
    tools: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def of(self, connector: str | None, local_name: str | None) -> float:
        if connector is None:
            return self.default
        per_tool = self.tools.get(connector, {})
        if local_name is not None and local_name in per_tool:
            return per_tool[local_name]
        return self.connectors.get(connector, self.default)


@dataclass(frozen=True, slots=True)
class ToolLimits:
    """What the limits know about one tool, computed once per catalog."""

    connector: str | None
    limits: tuple[Limit, ...]
    concurrency: tuple[Limit, ...]
    timeout: float
    strict_structure: bool


class Limits:
    """``Dispatcher.limits``: admit, slot, timeout and cap for each call (see the module docstring)."""

    def __init__(
        self,
        catalog: Catalog,
        limits: Sequence[Limit] = (),
        timeouts: Timeouts | None = None,
        result_bytes: int | None = DEFAULT_RESULT_BYTES,
        profile_bytes: Mapping[str, int] | None = None,
        store: RateStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.limits = tuple(limits)
        self.timeouts = timeouts or Timeouts()
        self.result_bytes = result_bytes
        self.profile_bytes = dict(limits_by_profile({}) if profile_bytes is None else profile_bytes)
        self.store: RateStore = store or MemoryRateStore()
        self.clock = clock
        self.gauges = Gauges()
        self._tools: dict[str, ToolLimits] = {}
        self._read_owners: dict[tuple[str, str], str] = {}
        self._seen: Any = None
        # The limits that can cover a resources/read or prompts/get: none in most configs, which then pay nothing.
        self._reads = tuple(lim for lim in self.limits if lim.resources or lim.prompts or lim.connector_wide)

    # -- the dispatcher's hooks ----------------------------------------------------------------------------------

    async def admit(self, call: Call) -> dict[str, Any] | None:
        """None when the call may go on; else the finished tools/call result refusing it, with the retry time.

        Rates are spent only by calls that pass every limit: a call refused by one limit gives back what the
        limits before it took.
        """
        facts = self._facts(call)
        if facts is None or not facts.limits:
            return None
        principal = call.scope.principal
        now = self.clock()
        taken: list[tuple[str, Rate]] = []
        for limit in facts.limits:
            if not limit.applies_to(principal):
                continue
            key = limit.key(principal, call.name, facts.connector)
            if limit.rate is not None:
                wait = await self.store.take(key, limit.rate, limit.burst, now)
                if wait is None:
                    taken.append((key, limit.rate))
                    continue
            elif limit.concurrency is not None and self.gauges.held(key) < limit.concurrency:
                continue
            else:
                wait = CONCURRENCY_RETRY_S
            for done, rate in taken:
                await self.store.refund(done, rate)
            return self._refuse(call, limit, wait)
        return None

    def slot(self, call: Call) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold a slot of every concurrency cap that covers the call while it runs; released on return, error and
        cancellation. :meth:`admit` refused the call if a cap was full; when the last slot went in between (the
        audit intent of a write is awaited there) the call waits in line for the next free one, which comes: every
        holder runs under its timeout."""
        facts = self._facts(call)
        if facts is None or not facts.concurrency:
            return _NULL_SLOT
        principal = call.scope.principal
        held = [(lim.key(principal, call.name, facts.connector), lim) for lim in facts.concurrency]
        held = [(key, lim) for key, lim in held if lim.applies_to(principal)]
        return self._hold(held) if held else _NULL_SLOT

    def timeout(self, call: Call) -> float | None:
        """Seconds the call's handler may run before it is cancelled."""
        facts = self._tool_facts(call) if call.method == "tools/call" else None
        return facts.timeout if facts is not None else self.timeouts.default

    def cap(self, call: Call, wire: dict[str, Any]) -> dict[str, Any]:
        """``wire`` cut to the calling client's result limit with a note, or ``wire`` itself when it fits."""
        if call.method != "tools/call":
            return wire
        profile = profile_of(call.scope.client_info)
        limit = self.profile_bytes.get(profile, self.result_bytes) if profile else self.result_bytes
        if limit is None:
            return wire
        facts = self._tool_facts(call)
        return cap_result(wire, limit, facts is not None and facts.strict_structure)

    # -- internals -------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _hold(self, held: Sequence[tuple[str, Limit]]) -> AsyncIterator[None]:
        taken: list[str] = []
        try:
            for key, limit in held:
                await self.gauges.acquire(key, limit.concurrency or 1)
                taken.append(key)
            yield
        finally:
            for key in taken:
                self.gauges.release(key)

    def _refuse(self, call: Call, limit: Limit, wait: float) -> dict[str, Any]:
        seconds = max(1, math.ceil(wait))
        if limit.rate is not None:
            text = f"rate limited by {limit.name} ({limit.describe()}); retry after {seconds} s"
        else:
            text = f"too many calls at once: {limit.name} ({limit.describe()}) is full; retry after {seconds} s"
        call.outcome = "rate_limited"
        call.detail = text
        log.info("%s %s by %s %s", call.method, call.name, call.scope.principal or "anonymous", text)
        retry_ms = max(1, math.ceil(wait * 1000))
        call.scope.retry_after_ms = retry_ms  # the HTTP transports' Retry-After
        return ToolResult.error(f"'{call.name}' was not run: {text}.", meta={RETRY_META: retry_ms}).to_wire()

    def _facts(self, call: Call) -> ToolLimits | None:
        if call.method == "tools/call":
            return self._tool_facts(call)
        if not self._reads:
            return None
        connector = self._owner(call)
        covering = tuple(lim for lim in self._reads if lim.covers_read(call.method, call.name, connector))
        if not covering:
            return None
        concurrency = tuple(lim for lim in covering if lim.concurrency is not None)
        return ToolLimits(connector, covering, concurrency, self.timeouts.default, strict_structure=False)

    def _tool_facts(self, call: Call) -> ToolLimits | None:
        catalog = self.catalog
        if catalog.tools is not self._seen:
            self._tools = _tool_limits(catalog, self.limits, self.timeouts)
            self._read_owners = _read_owners(catalog)
            self._seen = catalog.tools
        return self._tools.get(call.name)

    def _owner(self, call: Call) -> str | None:
        """The connector serving a resource URI or a prompt (None when no connector claims it)."""
        self._tool_facts(call)  # refreshes the owners when the catalog was rebuilt
        owners = self._read_owners
        if call.method == "prompts/get":
            return owners.get(("prompt", call.name))
        fixed = owners.get(("resource", call.name))
        if fixed is not None:
            return fixed
        found = self.catalog.find_template(call.name)
        return owners.get(("template", found[0].uri_template)) if found is not None else None


def _tool_limits(catalog: Catalog, limits: Sequence[Limit], timeouts: Timeouts) -> dict[str, ToolLimits]:
    owners = _owners(catalog)
    facts: dict[str, ToolLimits] = {}
    for name, tool in catalog.tools.items():
        connector, local = owners.get(name, (None, None))
        covering = tuple(lim for lim in limits if lim.covers(name, connector, tool.annotations))
        facts[name] = ToolLimits(
            connector=connector,
            limits=covering,
            concurrency=tuple(lim for lim in covering if lim.concurrency is not None),
            timeout=timeouts.of(connector, local),
            strict_structure=tool.output_schema is not None,
        )
    return facts


def _read_owners(catalog: Catalog) -> dict[tuple[str, str], str]:
    """("prompt", public name), ("resource", URI) and ("template", URI template) → the connector serving it."""
    owners: dict[tuple[str, str], str] = {}
    for mount in catalog.mounted:
        name = mount.connector.name
        if not catalog.is_up(name):
            continue
        for prompt in mount.connector.prompts():
            owners.setdefault(("prompt", mount.prefix + prompt.name), name)
        for resource in mount.connector.resources():
            owners.setdefault(("resource", resource.uri), name)
        for template in mount.connector.resource_templates():
            owners.setdefault(("template", template.uri_template), name)
    return owners


def _owners(catalog: Catalog) -> dict[str, tuple[str, str]]:
    """Public tool name → (the connector that publishes it, the connector's own name for it)."""
    owners: dict[str, tuple[str, str]] = {}
    for mount in catalog.mounted:
        name = mount.connector.name
        if not catalog.is_up(name):
            continue
        for tool in mount.connector.tools():
            owners.setdefault(mount.prefix + tool.name, (name, tool.name))
    return owners


def build_limits(settings: Settings, catalog: Catalog, fleet: Any = None) -> Limits:
    """The limits for ``settings`` over ``catalog``: ``[[limits]]``, the timeouts and the result caps.

    Rate budgets live in this process, or in Redis when ``fleet`` (a patchbay.fleet.Fleet) is given, so that N
    replicas share one budget. Concurrency caps are per replica by nature: a slot is a call running here.
    """
    gate = settings.gate
    connectors = [c for c in settings.connectors if c.enabled]
    timeouts = Timeouts(
        default=gate.call_timeout_seconds,
        connectors={c.name: c.timeout_seconds for c in connectors if c.timeout_seconds is not None},
        tools={c.name: dict(c.tool_timeouts) for c in connectors if c.tool_timeouts},
    )
    return Limits(
        catalog,
        compile_limits(settings.limits),
        timeouts,
        result_bytes=gate.max_result_bytes,
        profile_bytes=limits_by_profile(gate.client_result_bytes),
        store=_fleet_store(fleet) if fleet is not None and settings.limits else None,
    )


def _fleet_store(fleet: Any) -> RateStore:
    from patchbay.fleet.limits import RedisRateStore

    return RedisRateStore(fleet.link, fleet.replicas.live)
