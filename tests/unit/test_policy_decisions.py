"""The policy's decisions over a real catalog (two python connectors): order, conditions, writes, scopes, lists."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fixtures.wire import call_modern, client_for, running
from tests.support.policy import EXAMPLE_RULES, ROLES, connectors

from patchbay.app import Runtime
from patchbay.auth.access import ToolAccessPolicy
from patchbay.auth.principal import Principal
from patchbay.gate.policy import Gate
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio

ALL = {"crm_list_customers", "crm_close_ticket", "files_read_file", "files_write_file"}


def user(name: str, *roles: str, client: str | None = None, scopes: tuple[str, ...] = ("mcp",)) -> Principal:
    return Principal(
        f"user:{name}", "user", frozenset(scopes), frozenset(roles), username=name, client_id=client or "c-1"
    )


def key(name: str, *roles: str) -> Principal:
    return Principal(f"key:{name}", "api_key", frozenset({"mcp"}), frozenset(roles))


@contextlib.asynccontextmanager
async def gate_for(rules: list[dict[str, Any]], **config: Any) -> AsyncIterator[Gate]:
    crm = config.pop("crm", {})
    config["gate"] = {"roles": ROLES, **config.get("gate", {})}
    settings = from_dict({"connectors": connectors(**crm), "policy": rules, **config}, source="policy.toml")
    runtime = Runtime(settings)
    await runtime.start()
    try:
        gate = runtime.dispatcher.gate
        assert isinstance(gate, Gate)
        yield gate
    finally:
        await runtime.stop()


def names(gate: Gate, principal: Any) -> set[str]:
    return {tool["name"] for tool in gate.listed(principal)}


async def test_without_rules_every_tool_is_listed_and_allowed_and_lists_are_not_per_caller() -> None:
    async with gate_for([]) as gate:
        assert gate.trivial and not gate.per_caller
        assert names(gate, None) == names(gate, user("ada")) == ALL
        assert gate.decide("files_write_file", None, {}).effect == "allow"


async def test_the_issue_example_lists_exactly_what_each_caller_may_call() -> None:
    async with gate_for(EXAMPLE_RULES, gate={"default": "deny"}) as gate:
        sales, lead = user("sam", "sales"), user("lee", "support-lead")
        assert names(gate, sales) == {"crm_list_customers", "files_read_file"}
        assert names(gate, lead) == {"crm_close_ticket", "files_read_file"}
        assert names(gate, user("lee", "support-lead", client="chatgpt")) == {"files_read_file"}
        assert names(gate, None) == {"files_read_file"}
        refused = gate.decide("crm_close_ticket", sales, {"id": 1, "priority": "low"})
        assert (refused.effect, refused.rule) == ("deny", "default")
        wrote = gate.decide("files_write_file", lead, {"path": "a", "text": "b"})
        assert (wrote.effect, wrote.rule, wrote.reason) == ("deny", "policy[2]", "denied by policy[2] (nobody writes)")


async def test_argument_conditions_are_evaluated_on_every_call_never_cached_away() -> None:
    async with gate_for(EXAMPLE_RULES, gate={"default": "deny"}) as gate:
        lead = user("lee", "support-lead")
        for priority, effect in [("high", "allow"), ("urgent", "deny"), ("low", "allow"), ("urgent", "deny")]:
            decision = gate.decide("crm_close_ticket", lead, {"id": 3, "priority": priority})
            assert decision.effect == effect, priority
        allowed = gate.decide("crm_close_ticket", lead, {"id": 3, "priority": "high"})
        assert allowed.reason == "allowed by leads-close (support leads close tickets below urgent)"
        assert gate.decide("crm_close_ticket", lead, {"id": 3}).effect == "deny"  # missing argument: condition false


@pytest.mark.parametrize("order", [("allow", "approve", "deny"), ("deny", "approve", "allow"), ("approve", "deny")])
async def test_deny_wins_whatever_the_order_of_the_rules(order: tuple[str, ...]) -> None:
    rules = [{"subjects": ["role:sales"], "tools": ["crm_*"], "effect": effect} for effect in order]
    async with gate_for(rules) as gate:
        decision = gate.decide("crm_list_customers", user("sam", "sales"), {})
        assert (decision.effect, decision.rule) == ("deny", f"policy[{order.index('deny')}]")
        assert "crm_list_customers" not in names(gate, user("sam", "sales"))
        assert "crm_list_customers" in names(gate, user("ada"))


async def test_approve_wins_over_allow_and_the_default_applies_when_no_rule_matches() -> None:
    rules = [
        {"subjects": ["*"], "tools": ["crm_close_ticket"], "effect": "allow"},
        {"subjects": ["role:ops"], "tools": ["crm_close_ticket"], "effect": "approve", "description": "ops ask"},
    ]
    async with gate_for(rules, gate={"default": "deny"}) as gate:
        held = gate.decide("crm_close_ticket", user("olga", "ops"), {"id": 1})
        assert (held.effect, held.rule, held.reason) == (
            "approve",
            "policy[1]",
            "needs approval by policy[1] (ops ask)",
        )
        assert gate.decide("crm_close_ticket", user("ada"), {"id": 1}).effect == "allow"
        other = gate.decide("crm_list_customers", user("ada"), {})
        assert (other.effect, other.rule) == ("deny", "default")
        assert names(gate, user("olga", "ops")) == {"crm_close_ticket"}
    async with gate_for(rules) as gate:
        assert gate.decide("crm_list_customers", user("ada"), {}).rule == "default"
        assert names(gate, user("ada")) == ALL


async def test_subjects_match_users_roles_keys_clients_scopes_anonymous_and_except() -> None:
    cases: list[tuple[str, Any, bool]] = [
        ("user:ada", user("ada"), True),
        ("user:ada", user("bob"), False),
        ("user:ci", key("ci"), False),
        ("key:ci", key("ci"), True),
        ("key:ci", user("ci"), False),
        ("role:sales", key("ci", "sales"), True),
        ("client:c-1", user("ada"), True),
        ("client:ChatGPT", Principal("user:ada", "user", client_id="x", client_name="ChatGPT"), True),
        ("client:ChatGPT", user("ada"), False),
        ("scope:crm.write", user("ada", scopes=("mcp", "crm.write")), True),
        ("scope:crm.write", user("ada"), False),
        ("anonymous", None, True),
        ("anonymous", user("ada"), False),
        ("*", None, True),
    ]
    for subject, principal, matches in cases:
        async with gate_for([{"subjects": [subject], "tools": ["crm_list_customers"], "effect": "deny"}]) as gate:
            denied = gate.decide("crm_list_customers", principal, {}).effect == "deny"
            assert denied is matches, (subject, principal)
    rule = {"subjects": ["*"], "except": ["role:admin"], "tools": ["crm_*"], "effect": "deny"}
    async with gate_for([rule]) as gate:
        assert gate.decide("crm_list_customers", user("root", "admin"), {}).effect == "allow"
        assert gate.decide("crm_list_customers", user("ada"), {}).effect == "deny"


async def test_rules_select_tools_by_connector_and_annotation_class() -> None:
    rules = [
        {"subjects": ["*"], "connectors": ["files"], "effect": "deny"},
        {"subjects": ["role:x"], "kinds": ["destructive"], "effect": "deny"},
        {"subjects": ["role:y"], "kinds": ["read"], "effect": "deny"},
    ]
    async with gate_for(rules) as gate:
        assert names(gate, user("ada")) == {"crm_list_customers", "crm_close_ticket"}
        # close_ticket is a write but not destructive; write_file is destructive (and denied by connector anyway).
        assert names(gate, user("ada", "x")) == {"crm_list_customers", "crm_close_ticket"}
        assert names(gate, user("ada", "y")) == {"crm_close_ticket"}


async def test_writes_off_globally_unlists_write_tools_and_a_connector_setting_wins() -> None:
    async with gate_for([], gate={"writes": "off"}) as gate:
        assert names(gate, user("ada")) == {"crm_list_customers", "files_read_file"}
        refused = gate.decide("crm_close_ticket", user("ada"), {"id": 1})
        assert (refused.effect, refused.rule) == ("deny", "writes (global)")
    async with gate_for([], gate={"writes": "off"}, crm={"writes": "approve"}) as gate:
        assert names(gate, user("ada")) == {"crm_list_customers", "crm_close_ticket", "files_read_file"}
        held = gate.decide("crm_close_ticket", user("ada"), {"id": 1})
        assert (held.effect, held.rule) == ("approve", "writes (connector crm)")
        assert gate.decide("crm_list_customers", user("ada"), {}).effect == "allow"


async def test_writes_approve_never_grants_what_the_rules_deny() -> None:
    rules = [{"subjects": ["role:sales"], "tools": ["crm_*"], "effect": "allow"}]
    async with gate_for(rules, gate={"default": "deny", "writes": "approve"}) as gate:
        assert gate.decide("crm_close_ticket", user("sam", "sales"), {"id": 1}).effect == "approve"
        assert gate.decide("crm_close_ticket", user("ada"), {"id": 1}).rule == "default"
        assert names(gate, user("ada")) == set()


async def test_scopes_and_public_tools_are_rules_whose_step_up_refusal_does_not_hide_the_tool() -> None:
    crm = {"tool_scopes": {"close_ticket": ["crm.write"]}, "public_tools": ["list_customers"]}
    async with gate_for([], crm=crm) as gate:
        gate.access = ToolAccessPolicy("https://mcp.example.com/prm", ("mcp",), advertise=True)
        assert gate.per_caller
        assert names(gate, None) == ALL and names(gate, user("ada")) == ALL
        assert gate.decide("crm_list_customers", None, {}).effect == "allow"
        anonymous = gate.decide("files_read_file", None, {"path": "x"})
        assert (anonymous.effect, anonymous.rule) == ("deny", "scopes")
        weak = gate.decide("crm_close_ticket", user("ada"), {"id": 1})
        assert (weak.effect, weak.rule) == ("deny", "scopes")
        refusal = gate.refuse("crm_close_ticket", user("ada"), weak)
        (challenge,) = refusal["_meta"]["mcp/www_authenticate"]
        assert 'scope="mcp crm.write"' in challenge and 'error="insufficient_scope"' in challenge
        assert gate.decide("crm_close_ticket", user("ada", scopes=("mcp", "crm.write")), {"id": 1}).effect == "allow"


async def test_a_deny_rule_refuses_with_a_readable_tool_error_naming_rule_and_description() -> None:
    rules = [{"id": "leads", "description": "only support leads close tickets", "subjects": ["*"], "effect": "deny"}]
    async with gate_for(rules) as gate:
        decision = gate.decide("crm_close_ticket", user("ada"), {})
        refusal = gate.refuse("crm_close_ticket", user("ada"), decision)
        assert refusal["isError"] is True
        text = refusal["content"][0]["text"]
        assert text == "You may not call 'crm_close_ticket': denied by leads (only support leads close tickets)."


async def test_a_changed_catalog_is_seen_at_once() -> None:
    async with gate_for([{"subjects": ["*"], "tools": ["crm_*"], "effect": "deny"}]) as gate:
        assert names(gate, None) == {"files_read_file", "files_write_file"}
        catalog = gate.catalog
        catalog.tools = {k: v for k, v in catalog.tools.items() if k != "files_write_file"}
        assert names(gate, None) == {"files_read_file"}
        assert gate.decide("files_write_file", None, {}).rule == "unknown"
        catalog.rebuild()
        assert names(gate, None) == {"files_read_file", "files_write_file"}
        assert gate.decide("files_write_file", None, {}).effect == "allow"


async def test_the_same_principal_object_reused_between_other_callers_keeps_its_own_decisions() -> None:
    # The token cache hands one Principal object to every request with the same token; the gate remembers the
    # last caller by identity. Interleaved callers, and a catalog change, must never get another caller's view.
    async with gate_for(EXAMPLE_RULES, gate={"default": "deny"}) as gate:
        sales, lead = user("sam", "sales"), user("lee", "support-lead")
        for principal, tool, effect in [
            (sales, "crm_list_customers", "allow"),
            (sales, "crm_list_customers", "allow"),
            (lead, "crm_list_customers", "deny"),
            (sales, "crm_close_ticket", "deny"),
            (None, "crm_list_customers", "deny"),
            (lead, "crm_close_ticket", "allow"),
        ]:
            assert gate.decide(tool, principal, {"id": 1, "priority": "low"}).effect == effect, (principal, tool)
        catalog = gate.catalog
        catalog.tools = {k: v for k, v in catalog.tools.items() if k != "crm_close_ticket"}
        assert gate.decide("crm_close_ticket", lead, {"id": 1, "priority": "low"}).rule == "unknown"
        assert names(gate, lead) == {"files_read_file"}


@pytest.mark.parametrize(("rules", "scope"), [([], "public"), ([{"subjects": ["*"], "effect": "allow"}], "private")])
async def test_modern_tools_list_is_private_when_the_gate_filters_per_caller(
    tmp_path: Any, rules: list[dict[str, Any]], scope: str
) -> None:
    settings = from_dict({"connectors": connectors(), "policy": rules}, base_dir=tmp_path)
    async with running(settings) as app, client_for(app) as http:
        listed = (await call_modern(http, "tools/list")).json()["result"]
        assert listed["cacheScope"] == scope
        assert {tool["name"] for tool in listed["tools"]} == ALL


async def test_a_call_needing_approval_is_refused_when_no_approvals_are_configured(tmp_path: Any) -> None:
    settings = from_dict({"connectors": connectors(writes="approve")}, base_dir=tmp_path)
    async with running(settings) as app, client_for(app) as http:
        app.runtime.dispatcher.approvals = None
        params = {"name": "crm_close_ticket", "arguments": {"id": 4}}
        result = (await call_modern(http, "tools/call", params)).json()["result"]
        assert result["isError"] is True
        assert "needs approval by writes (connector crm)" in result["content"][0]["text"]


async def test_a_denied_call_is_logged_with_tool_caller_and_rule_never_the_arguments(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rules = [{"id": "no-crm", "subjects": ["*"], "tools": ["crm_*"], "effect": "deny"}]
    async with gate_for(rules) as gate:
        with caplog.at_level(logging.INFO, logger="patchbay.gate"):
            for principal in (user("ada"), None):
                decision = gate.decide("crm_close_ticket", principal, {"id": 7, "priority": "secret-priority"})
                gate.refuse("crm_close_ticket", principal, decision)
    records = [r for r in caplog.records if r.name == "patchbay.gate"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.INFO, "tools/call crm_close_ticket by user:ada denied by no-crm"),
        (logging.INFO, "tools/call crm_close_ticket by anonymous denied by no-crm"),
    ]


async def test_sign_in_refusals_name_the_tool_and_the_missing_scope() -> None:
    crm = {"tool_scopes": {"close_ticket": ["crm.write", "crm.admin"]}}
    async with gate_for([], crm=crm) as gate:
        gate.access = ToolAccessPolicy("https://mcp.example.com/prm", ("mcp",), advertise=True)
        weak = gate.decide("crm_close_ticket", user("ada", scopes=("mcp", "crm.admin")), {"id": 1})
        assert weak.reason == "it needs the scope(s) crm.write; sign in again to grant them"
        weaker = gate.decide("crm_close_ticket", user("ada"), {"id": 1})
        assert weaker.reason == "it needs the scope(s) crm.write crm.admin; sign in again to grant them"
        text = gate.refuse("crm_close_ticket", user("ada"), weaker)["content"][0]["text"]
        assert text == (
            "Permission required: The tool 'crm_close_ticket' needs the scope(s): crm.write crm.admin. "
            "Sign in again to grant it."
        )
        anonymous = gate.decide("crm_list_customers", None, {})
        assert (anonymous.rule, anonymous.reason) == ("scopes", "you need to sign in to use this tool")
        text = gate.refuse("crm_list_customers", None, anonymous)["content"][0]["text"]
        assert text == "Authentication required: you need to sign in to use this tool."


async def test_a_deny_rule_refusal_is_never_turned_into_a_sign_in_challenge() -> None:
    rules = [{"id": "no-files", "subjects": ["*"], "tools": ["files_*"], "effect": "deny"}]
    async with gate_for(rules) as gate:
        gate.access = ToolAccessPolicy("https://mcp.example.com/prm", ("mcp",), advertise=True)
        decision = gate.decide("files_read_file", None, {"path": "a"})
        assert (decision.effect, decision.rule) == ("deny", "no-files")
        refusal = gate.refuse("files_read_file", None, decision)
        assert "_meta" not in refusal
        assert refusal["content"][0]["text"] == "You may not call 'files_read_file': denied by no-files."


async def test_a_held_call_without_approvals_says_nobody_can_approve_it() -> None:
    async with gate_for([], crm={"writes": "approve"}) as gate:
        held = gate.decide("crm_close_ticket", user("ada"), {"id": 1})
        refusal = gate.refuse("crm_close_ticket", user("ada"), held)
        assert refusal["isError"] is True
        assert refusal["content"][0]["text"] == (
            "'crm_close_ticket' needs approval by writes (connector crm): writes need approval, "
            "and this server takes no approvals, so it cannot run."
        )


async def test_tool_facts_name_the_write_switch_and_the_rules_covering_each_tool() -> None:
    rules = [{"id": "crm-ops", "subjects": ["role:ops"], "tools": ["crm_*"], "effect": "approve"}]
    async with gate_for(rules, gate={"writes": "approve"}, crm={"writes": "off"}) as gate:
        close, write = gate.facts("crm_close_ticket"), gate.facts("files_write_file")
        assert close is not None and write is not None
        assert (close.connector, close.write, close.writes, close.writes_rule) == (
            "crm",
            True,
            "off",
            "writes (connector crm)",
        )
        assert [r.name for r in close.rules] == ["crm-ops"]
        assert (close.name, write.name) == ("crm_close_ticket", "files_write_file")
        assert (write.connector, write.writes, write.writes_rule, write.rules) == (
            "files",
            "approve",
            "writes (global)",
            (),
        )
        listing = gate.facts("crm_list_customers")
        assert listing is not None and listing.write is False
        assert gate.facts("crm_nothing") is None


async def test_a_callers_view_is_built_once_per_catalog_and_at_most_cache_size_callers_are_kept() -> None:
    async with gate_for(EXAMPLE_RULES) as built:
        assert built.cache_size == 4096
        gate = Gate(built.catalog, built.rules, built.settings, cache_size=2)
        ada, bob, cy = user("ada"), user("bob"), user("cy")
        first = gate.listed(ada)
        assert gate.listed(ada) is first
        assert gate.listed(user("ada")) is first  # an equal principal from another token lookup shares the view
        bobs = gate.listed(bob)
        gate.listed(cy)  # a third caller: the oldest (ada) goes
        assert gate.listed(bob) is bobs
        again = gate.listed(ada)
        assert again is not first and again == first


async def test_each_decision_names_its_rule_and_gives_the_documented_reason() -> None:
    async with gate_for([], gate={"writes": "off"}) as gate:
        off = gate.decide("crm_close_ticket", user("ada"), {"id": 1})
        assert (off.effect, off.rule, off.reason) == (
            "deny",
            "writes (global)",
            "denied by writes (global): write tools are off",
        )
        allowed = gate.decide("crm_list_customers", user("ada"), {})
        assert (allowed.effect, allowed.rule, allowed.reason) == (
            "allow",
            "default",
            "allowed by default (no rule matches)",
        )
        unknown = gate.decide("crm_nothing", user("ada"), {})
        assert (unknown.effect, unknown.rule, unknown.reason) == (
            "deny",
            "unknown",
            "there is no tool named 'crm_nothing'",
        )
    async with gate_for([], gate={"default": "deny", "writes": "approve"}) as gate:
        refused = gate.decide("crm_list_customers", user("ada"), {})
        assert refused.reason == 'denied by default (no rule allows it and [gate] default = "deny")'
    async with gate_for([{"subjects": ["*"], "effect": "allow"}], gate={"writes": "approve"}) as gate:
        held = gate.decide("crm_close_ticket", user("ada"), {"id": 1})
        assert (held.effect, held.rule, held.reason) == (
            "approve",
            "writes (global)",
            "needs approval by writes (global): writes need approval",
        )


async def test_a_connector_going_down_drops_its_tools_and_leaves_the_others_owned_by_their_connector() -> None:
    rules = [{"id": "no-files", "subjects": ["*"], "connectors": ["files"], "kinds": ["write"], "effect": "deny"}]
    async with gate_for(rules) as gate:
        catalog = gate.catalog
        catalog.is_up = lambda name: name != "crm"  # crm (mounted first) is down: its system is unreachable
        catalog.rebuild()
        assert names(gate, user("ada")) == {"files_read_file"}
        assert gate.decide("files_write_file", user("ada"), {"path": "a", "text": "b"}).rule == "no-files"
        assert gate.decide("crm_list_customers", user("ada"), {}).rule == "unknown"


async def test_a_conditional_deny_alone_neither_lists_a_tool_under_default_deny_nor_hides_it_under_allow() -> None:
    rules = [
        {
            "subjects": ["role:sales"],
            "tools": ["crm_close_ticket"],
            "effect": "deny",
            "when": {"priority": {"eq": "urgent"}},
        }
    ]
    sam = user("sam", "sales")
    async with gate_for(rules, gate={"default": "deny"}) as gate:
        assert names(gate, sam) == set()
        assert gate.decide("crm_close_ticket", sam, {"id": 1, "priority": "low"}).rule == "default"
    async with gate_for(rules) as gate:
        assert "crm_close_ticket" in names(gate, sam)
        assert gate.decide("crm_close_ticket", sam, {"id": 1, "priority": "urgent"}).rule == "policy[0]"
        assert gate.decide("crm_close_ticket", sam, {"id": 1, "priority": "low"}).effect == "allow"


async def test_a_gate_built_with_sign_in_checks_applies_them_from_the_first_call() -> None:
    async with gate_for([]) as built:
        gate = Gate(built.catalog, access=ToolAccessPolicy(None, ("mcp",), advertise=True))
        assert gate.per_caller
        refused = gate.decide("crm_list_customers", None, {})
        assert (refused.effect, refused.rule) == ("deny", "scopes")
        assert gate.decide("crm_list_customers", user("ada"), {}).effect == "allow"
