"""One evaluation for ``tools/list`` and ``tools/call``: the ``[[policy]]`` rules, the write switches and the
tools' scopes, per caller.

Decision order (docs/policy.md): among rules whose subjects and tools match (and, at call time, whose ``when``
holds) a deny wins; then writes = "off"; then a missing sign-in or scope (a step-up the client can fix by signing
in again); then approve; then allow; then ``[gate] default``; an allowed write under writes = "approve" needs
approval.

A tool is listed for a caller iff no unconditional deny (rule or writes = "off") covers it and either the default
is allow or some allow/approve rule, conditional or not, names the caller. So an unlisted tool is refused for every
argument, and a tool callable with some arguments is listed. A step-up refusal never hides a tool: ChatGPT offers
sign-in only for tools it can see.

Caching: per caller (the frozen principal) the listed wire list and, per tool, the final decision, or, when a
matching rule has conditions, the rules left to test against the arguments of each call. A new catalog (any
rebuild) starts over.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from patchbay.auth.principal import Principal
from patchbay.catalog import Catalog, ToolAccess
from patchbay.definitions import ToolResult
from patchbay.gate import Decision
from patchbay.gate.config import GateSettings, WritesMode
from patchbay.gate.rules import Rule, compile_rules
from patchbay.settings import Settings

log = logging.getLogger("patchbay.gate")

CACHE_SIZE = 4096
ALLOWED = Decision("allow", "default", "allowed by default (no rule matches)")


@dataclass(frozen=True, slots=True)
class ToolFacts:
    """What the policy needs to know about one tool, computed once per catalog."""

    name: str
    connector: str | None
    write: bool
    writes: WritesMode
    writes_rule: str
    access: ToolAccess | None
    rules: tuple[Rule, ...]
    """The rules whose tool part covers this tool, in config order."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A decision that depends on the call's arguments: the caller's rules for the tool, some with conditions."""

    facts: ToolFacts
    rules: tuple[Rule, ...]


@dataclass(slots=True)
class View:
    """One caller's view of the catalog."""

    wire: list[dict[str, Any]]
    decisions: dict[str, Decision | Pending]


class Gate:
    """The policy step of the gate. ``access`` (patchbay.auth.access.ToolAccessPolicy) is set when sign-in is on."""

    def __init__(
        self,
        catalog: Catalog,
        rules: Sequence[Rule] = (),
        settings: GateSettings | None = None,
        connector_writes: Mapping[str, WritesMode] | None = None,
        access: Any = None,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.catalog = catalog
        self.rules = tuple(rules)
        self.settings = settings or GateSettings()
        self.connector_writes = dict(connector_writes or {})
        self.cache_size = cache_size
        self._views: dict[Principal | None, View] = {}
        self._facts: dict[str, ToolFacts] = {}
        self._seen: tuple[Any, Any] = (None, None)
        self._last: tuple[Any, View] | None = None
        self.access = access

    @property
    def access(self) -> Any:
        return self._access

    @access.setter
    def access(self, value: Any) -> None:
        self._access = value
        self._seen = (None, None)
        self._last = None
        writes = {self.settings.writes, *self.connector_writes.values()}
        # Nothing to decide: every call is allowed and every list is the catalog's (one attribute test per call).
        self.trivial = not self.rules and writes == {"on"} and value is None and self.settings.default == "allow"

    @property
    def per_caller(self) -> bool:
        """Whether lists differ by caller (2026-07-28 lists then carry cacheScope "private")."""
        return not self.trivial

    def listed(self, principal: Any) -> list[dict[str, Any]]:
        """The ``tools/list`` wire list for this caller."""
        if self.trivial:
            return self.catalog.tools_wire
        return self._view(principal).wire

    def decide(self, name: str, principal: Any, arguments: Mapping[str, Any]) -> Decision:
        """Allow, deny or approve this call, naming the rule that decided."""
        if self.trivial:
            return ALLOWED
        found = self._view(principal).decisions.get(name)
        if found is None:
            return Decision("deny", "unknown", f"there is no tool named '{name}'")
        if isinstance(found, Decision):
            return found
        matched = [r for r in found.rules if not r.conditions or r.holds(arguments)]
        return self._combine(found.facts, matched, principal)

    def is_listed(self, name: str, principal: Any) -> bool:
        return any(tool["name"] == name for tool in self.listed(principal))

    def refuse(self, name: str, principal: Any, decision: Decision) -> dict[str, Any]:
        """The finished ``tools/call`` result for a denied call: a tool error the model can read, never a transport
        error (clients may show tools the caller cannot call, e.g. ChatGPT's frozen snapshots)."""
        log.info("tools/call %s by %s denied by %s", name, principal or "anonymous", decision.rule)
        facts = self._facts.get(name)
        if decision.rule == "scopes" and self.access is not None and facts is not None:
            refusal: dict[str, Any] | None = self.access.denied(name, facts.access, principal)
            if refusal is not None:
                return refusal
        if decision.effect == "approve":  # only when no approvals are configured: nobody could approve it
            text = f"'{name}' {decision.reason}, and this server takes no approvals, so it cannot run."
            return ToolResult.error(text).to_wire()
        return ToolResult.error(f"You may not call '{name}': {decision.reason}.").to_wire()

    def facts(self, name: str) -> ToolFacts | None:
        self._sync()
        return self._facts.get(name)

    # -- building views ----------------------------------------------------------------------------------------

    def _sync(self) -> None:
        catalog = self.catalog
        if catalog.tools is self._seen[0] and catalog.tools_wire is self._seen[1]:
            return
        owners = _owners(catalog)
        self._facts = {name: self._tool_facts(name, owners.get(name)) for name in catalog.tools}
        self._views.clear()
        self._last = None
        self._seen = (catalog.tools, catalog.tools_wire)

    def _tool_facts(self, name: str, connector: str | None) -> ToolFacts:
        annotations = self.catalog.tools[name].annotations
        writes: WritesMode = self.settings.writes
        writes_rule = "writes (global)"
        if connector is not None and connector in self.connector_writes:
            writes, writes_rule = self.connector_writes[connector], f"writes (connector {connector})"
        return ToolFacts(
            name=name,
            connector=connector,
            write=not annotations.read_only,
            writes=writes,
            writes_rule=writes_rule,
            access=self.catalog.access.get(name) if self.access is not None else None,
            rules=tuple(r for r in self.rules if r.covers(name, connector, annotations)),
        )

    def _view(self, principal: Any) -> View:
        self._sync()
        # The caller of the previous request, by identity: the token cache hands the same Principal object to
        # every request with that token, so a busy caller skips hashing its principal (identity implies equality).
        last = self._last
        if last is not None and last[0] is principal:
            return last[1]
        key = principal if isinstance(principal, Principal) else None
        view = self._views.get(key)
        if view is None:
            view = self._build_view(key)
            if len(self._views) >= self.cache_size:
                del self._views[next(iter(self._views))]  # the oldest caller; a miss only costs a rebuild
            self._views[key] = view
        self._last = (principal, view)
        return view

    def _build_view(self, principal: Principal | None) -> View:
        decisions: dict[str, Decision | Pending] = {}
        shown: set[str] = set()
        for name, facts in self._facts.items():
            rules = tuple(r for r in facts.rules if r.applies_to(principal))
            if self._shows(facts, rules):
                shown.add(name)
            if any(r.conditions for r in rules):
                decisions[name] = Pending(facts, rules)
            else:
                decisions[name] = self._combine(facts, rules, principal)
        wire = [tool for tool in self.catalog.tools_wire if tool["name"] in shown]
        return View(wire, decisions)

    def _shows(self, facts: ToolFacts, rules: Sequence[Rule]) -> bool:
        if facts.write and facts.writes == "off":
            return False
        if any(r.effect == "deny" and not r.conditions for r in rules):
            return False
        return self.settings.default == "allow" or any(r.effect != "deny" for r in rules)

    def _combine(self, facts: ToolFacts, matched: Sequence[Rule], principal: Any) -> Decision:
        for rule in matched:
            if rule.effect == "deny":
                return Decision("deny", rule.name, f"denied by {rule.because()}")
        if facts.write and facts.writes == "off":
            return Decision("deny", facts.writes_rule, f"denied by {facts.writes_rule}: write tools are off")
        step_up = self._step_up(facts, principal)
        if step_up is not None:
            return step_up
        for rule in matched:
            if rule.effect == "approve":
                return Decision("approve", rule.name, f"needs approval by {rule.because()}")
        allowing = next((r for r in matched if r.effect == "allow"), None)
        if allowing is None and self.settings.default == "deny":
            return Decision("deny", "default", 'denied by default (no rule allows it and [gate] default = "deny")')
        if facts.write and facts.writes == "approve":
            return Decision(
                "approve", facts.writes_rule, f"needs approval by {facts.writes_rule}: writes need approval"
            )
        if allowing is None:
            return ALLOWED
        return Decision("allow", allowing.name, f"allowed by {allowing.because()}")

    def _step_up(self, facts: ToolFacts, principal: Any) -> Decision | None:
        """The tool's scopes and public flag as a rule: anonymous on a non-public tool, or a token lacking one of
        the tool's scopes, is refused with a sign-in challenge (patchbay.auth.access)."""
        access = facts.access
        if access is None or access.public:
            return None
        if not isinstance(principal, Principal):
            return Decision("deny", "scopes", "you need to sign in to use this tool")
        missing = [s for s in access.scopes if s not in principal.scopes]
        if missing:
            return Decision("deny", "scopes", f"it needs the scope(s) {' '.join(missing)}; sign in again to grant them")
        return None


def build_gate(settings: Settings, catalog: Catalog) -> Gate:
    """The gate for ``settings`` over ``catalog``; app.py gives it the sign-in checks once sign-in is built."""
    writes = {c.name: c.writes for c in settings.connectors if c.writes is not None}
    return Gate(catalog, compile_rules(settings.policy), settings.gate, writes)


def _owners(catalog: Catalog) -> dict[str, str]:
    """Public tool name → the connector that publishes it."""
    owners: dict[str, str] = {}
    for mount in catalog.mounted:
        name = mount.connector.name
        if not catalog.is_up(name):
            continue
        for tool in mount.connector.tools():
            owners.setdefault(mount.prefix + tool.name, name)
    return owners
