"""Random rule sets never let an unlisted tool be called, and never hide a tool a caller may call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.policy import connectors

from patchbay.app import Runtime
from patchbay.auth.access import ToolAccessPolicy
from patchbay.auth.principal import Principal
from patchbay.catalog import Catalog
from patchbay.gate.config import GateSettings, PolicyRule
from patchbay.gate.policy import Gate
from patchbay.gate.rules import compile_rules
from patchbay.settings import from_dict

SUBJECTS = ["*", "anonymous", "user:ada", "user:bob", "role:sales", "role:ops", "client:chatgpt", "key:ci"]
SUBJECTS += ["client:c-2", "scope:crm.write"]
GLOBS = ["*", "crm_*", "files_*", "crm_close_ticket", "files_read_file", "*_file", "nothing_here"]
CONDITIONS: list[dict[str, Any]] = [
    {"priority": {"in": ["low", "high"]}},
    {"priority": {"eq": "urgent"}},
    {"priority": {"matches": "h.*"}},
    {"id": {"gt": 3}},
    {"id": {"exists": False}},
    {"ticket.priority": {"ne": "urgent"}},
    {"id": {"le": 2}, "priority": {"not_in": ["urgent"]}},
]
PRINCIPALS: list[Principal | None] = [
    None,
    Principal("user:ada", "user", frozenset({"mcp"}), frozenset({"sales"}), username="ada", client_id="c-1"),
    Principal("user:bob", "user", frozenset({"mcp"}), frozenset({"ops"}), "bob", "c-2", client_name="chatgpt"),
    Principal("key:ci", "api_key", frozenset({"mcp", "crm.write"}), frozenset({"sales"})),
]
PRIORITY = st.sampled_from(["low", "high", "urgent", 5, None])
ARGUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "priority": PRIORITY,
        "id": st.integers(0, 6),
        "ticket": st.fixed_dictionaries({}, optional={"priority": PRIORITY}),
    },
)


@st.composite
def rules(draw: st.DrawFn) -> PolicyRule:
    return PolicyRule(
        subjects=draw(st.lists(st.sampled_from(SUBJECTS), min_size=1, max_size=3)),
        except_=draw(st.lists(st.sampled_from(SUBJECTS), max_size=2)),
        tools=draw(st.lists(st.sampled_from(GLOBS), min_size=1, max_size=2)),
        connectors=draw(st.none() | st.lists(st.sampled_from(["crm", "files"]), min_size=1, max_size=2)),
        kinds=draw(st.none() | st.lists(st.sampled_from(["read", "write", "destructive", "open_world"]), min_size=1)),
        effect=draw(st.sampled_from(["allow", "deny", "approve"])),
        when=draw(st.none() | st.sampled_from(CONDITIONS)),
    )


@pytest.fixture(scope="module")
def catalog() -> Iterator[Catalog]:
    crm = {"tool_scopes": {"close_ticket": ["crm.write"]}, "public_tools": ["list_customers"]}
    runtime = Runtime(from_dict({"connectors": connectors(**crm)}))
    anyio.run(runtime.start)
    try:
        yield runtime.catalog
    finally:
        anyio.run(runtime.stop)


WRITES = st.sampled_from(["on", "off", "approve"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rule_set=st.lists(rules(), max_size=6),
    default=st.sampled_from(["allow", "deny"]),
    writes=WRITES,
    crm_writes=st.none() | WRITES,
    sign_in=st.booleans(),
    argument_sets=st.lists(ARGUMENTS, min_size=1, max_size=8),
)
def test_listed_exactly_when_some_arguments_are_not_refused(
    catalog: Catalog,
    rule_set: list[PolicyRule],
    default: str,
    writes: str,
    crm_writes: str | None,
    sign_in: bool,
    argument_sets: list[dict[str, Any]],
) -> None:
    gate = Gate(
        catalog,
        compile_rules(rule_set),
        GateSettings.model_validate({"default": default, "writes": writes}),
        {"crm": crm_writes} if crm_writes else {},  # type: ignore[dict-item]
        access=ToolAccessPolicy(None, ("mcp",), advertise=True) if sign_in else None,
    )
    for principal in PRINCIPALS:
        listed = {tool["name"] for tool in gate.listed(principal)}
        for name in catalog.tools:
            effects = {gate.decide(name, principal, arguments).effect for arguments in argument_sets}
            if name not in listed:
                assert effects == {"deny"}, (name, principal)
            elif effects == {"deny"}:
                # Listed but refused for these arguments: only an argument condition or a sign-in step-up may do it.
                reasons = {gate.decide(name, principal, arguments).rule for arguments in argument_sets}
                conditional = {r.name for r in gate.rules if r.conditions}
                assert reasons <= conditional | {"scopes", "default"}, (name, principal, reasons)
