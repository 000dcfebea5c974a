"""[[policy]] and [gate] as config: what loads, and a precise error for everything that cannot be evaluated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.support.policy import EXAMPLE_RULES, ROLES, connectors

from patchbay.errors import ConfigError
from patchbay.settings import from_dict, load

SOURCE = "policy.toml"


def _load(rules: Any, **extra: Any) -> Any:
    extra.setdefault("gate", {"roles": ROLES})
    return from_dict({"connectors": connectors(), "policy": rules, **extra}, source=SOURCE)


def _error(rules: Any, **extra: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        _load(rules, **extra)
    assert str(caught.value).startswith(f"{SOURCE}: "), str(caught.value)
    return caught.value


def test_the_issue_example_loads_with_its_defaults() -> None:
    settings = _load(EXAMPLE_RULES)
    assert [r.effect for r in settings.policy] == ["allow", "allow", "deny", "deny", "allow"]
    assert settings.policy[2].tools == ["files_*"] and settings.policy[3].tools == ["*"]
    assert settings.gate.default == "allow" and settings.gate.writes == "on"


def test_policy_and_gate_load_from_a_toml_file(tmp_path: Path) -> None:
    file = tmp_path / "patchbay.toml"
    file.write_text(
        '[gate]\ndefault = "deny"\nwrites = "approve"\nroles = ["sales", "admin"]\n\n'
        '[[connectors]]\nname = "crm"\ntype = "python"\npath = "crm.py"\nwrites = "off"\n\n'
        '[[policy]]\nid = "sales"\nsubjects = ["role:sales"]\ntools = ["crm_*"]\neffect = "allow"\n'
        "when = { amount = { gt = 1000 }, 'ticket.priority' = { ne = \"urgent\" } }\n"
        '\n[[policy]]\nsubjects = ["*"]\nexcept = ["role:admin"]\neffect = "deny"\n'
    )
    settings = load(file, env={})
    assert settings.gate.default == "deny" and settings.gate.writes == "approve"
    assert settings.connectors[0].writes == "off"
    assert settings.policy[0].when == {"amount": {"gt": 1000}, "ticket.priority": {"ne": "urgent"}}
    assert settings.policy[1].except_ == ["role:admin"]


@pytest.mark.parametrize(
    ("rule", "key", "says"),
    [
        ({"subjects": [], "effect": "allow"}, "policy[0].subjects", "at least 1"),
        ({"effect": "allow"}, "policy[0].subjects", "Field required"),
        ({"subjects": ["sales"], "effect": "allow"}, "policy[0].subjects", "'role:<name>'"),
        ({"subjects": ["group:x"], "effect": "allow"}, "policy[0].subjects", "is not a subject"),
        ({"subjects": ["role:"], "effect": "allow"}, "policy[0].subjects", "is not a subject"),
        ({"subjects": ["*"], "except": ["nobody"], "effect": "allow"}, "policy[0].except", "is not a subject"),
        ({"subjects": ["*"], "effect": "permit"}, "policy[0].effect", "'allow', 'deny' or 'approve'"),
        ({"subjects": ["*"]}, "policy[0].effect", "Field required"),
        ({"subjects": ["*"], "effect": "deny", "kinds": ["writes"]}, "policy[0].kinds[0]", "'read', 'write'"),
        ({"subjects": ["*"], "effect": "deny", "tools": ["crm tools"]}, "policy[0].tools", "not a tool name glob"),
        ({"subjects": ["*"], "effect": "deny", "tools": []}, "policy[0].tools", "at least 1"),
        ({"subjects": ["*"], "effect": "deny", "id": "two words"}, "policy[0].id", "1-64 of"),
        ({"subjects": ["*"], "effect": "deny", "when": {}}, "policy[0].when", "is empty"),
        ({"subjects": ["*"], "effect": "deny", "when": {"a": {"like": 1}}}, "policy[0].when", "unknown operator"),
        ({"subjects": ["*"], "effect": "deny", "when": {"a": {}}}, "policy[0].when", "table of operators"),
        ({"subjects": ["*"], "effect": "deny", "when": {"a": 3}}, "policy[0].when", "a: give a table of operators"),
        ({"subjects": ["*"], "effect": "deny", "when": {"a..b": {"eq": 1}}}, "policy[0].when", "argument path"),
        ({"subjects": ["*"], "effect": "deny", "when": {"a": {"in": "x"}}}, "policy[0].when", "a.in: must be a list"),
        ({"subjects": ["*"], "effect": "deny", "when": {"a": {"gt": True}}}, "policy[0].when", "a.gt: must be"),
        ({"subjects": ["*"], "effect": "deny", "when": {"a": {"eq": [1]}}}, "policy[0].when", "a.eq: must be"),
        ({"subjects": ["*"], "effect": "deny", "when": {"a": {"exists": 1}}}, "policy[0].when", "true or false"),
        ({"subjects": ["*"], "effect": "deny", "when": {"a": {"matches": "(x"}}}, "policy[0].when", "not a valid"),
        ({"subjects": ["*"], "effect": "deny", "when": {"a": {"matches": "x" * 300}}}, "policy[0].when", "at most"),
    ],
)
def test_a_rule_that_cannot_be_evaluated_is_a_config_error_naming_rule_and_key(
    rule: dict[str, Any], key: str, says: str
) -> None:
    error = _error([rule])
    assert f"{SOURCE}: {key}:" in str(error)
    assert says in str(error)


def test_an_unknown_key_in_a_rule_names_the_rule_and_the_allowed_keys() -> None:
    error = _error([{"subjects": ["*"], "effect": "allow"}, {"subjects": ["*"], "effect": "deny", "tool": ["x"]}])
    assert error.key == "policy[1].tool"
    assert "unknown key in [[policy]] 'policy[1].tool'. Did you mean 'tools'?" in str(error)
    assert "Allowed: id, description, subjects, except, tools, connectors, kinds, effect, when." in str(error)


def test_an_unknown_connector_in_a_rule_is_an_error_listing_the_known_ones() -> None:
    error = _error([{"subjects": ["*"], "effect": "deny"}, {"subjects": ["*"], "effect": "deny", "connectors": ["hr"]}])
    assert error.key == "policy[1].connectors"
    assert "no connector is named 'hr'; known: crm, files" in str(error)


def test_two_rules_with_one_id_are_an_error() -> None:
    error = _error([{"id": "a", "subjects": ["*"], "effect": "deny"}, {"id": "a", "subjects": ["*"], "effect": "deny"}])
    assert "policy[1].id: 'a' is already the id of policy[0]" in str(error)


def test_policy_written_as_a_single_table_or_not_a_table_is_an_error() -> None:
    assert "[[policy]] table (double brackets)" in str(_error({"subjects": ["*"], "effect": "deny"}))
    assert "policy[0]: must be a table" in str(_error(["deny everything"]))


def test_bad_gate_and_connector_writes_values_name_what_is_allowed() -> None:
    error = _error([], gate={"writes": "maybe"})
    assert "gate.writes: Input should be 'on', 'off' or 'approve' (got 'maybe')" in str(error)
    assert "gate.default: Input should be 'allow' or 'deny'" in str(_error([], gate={"default": "approve"}))
    assert "Did you mean 'default'?" in str(_error([], gate={"defualt": "deny"}))
    with pytest.raises(ConfigError, match=r"connectors\[crm\]\.writes: Input should be 'on', 'off' or 'approve'"):
        from_dict({"connectors": connectors(writes="no")}, source=SOURCE)


def test_a_rule_naming_a_role_nobody_declared_is_refused_with_the_roles_that_are() -> None:
    rules = [{"subjects": ["*"], "except": ["role:support-laed"], "tools": ["crm_*"], "effect": "deny"}]
    error = _error(rules, gate={"roles": ["sales", "support-lead"]})
    assert error.key == "policy[0].except"
    assert str(error) == (
        f"{SOURCE}: policy[0].except: the role 'support-laed' is not declared (known: approver, sales, support-lead); "
        "list every role your rules name in [gate] roles"
    )


def test_roles_an_idp_role_map_hands_out_and_approver_roles_need_no_declaration() -> None:
    upstream = {"issuer": "https://idp.example.com", "client_id": "pb", "role_map": {"eng": ["engineer"]}}
    rules = [
        {"subjects": ["role:engineer"], "tools": ["crm_*"], "effect": "allow"},
        {"subjects": ["role:approver"], "tools": ["crm_*"], "effect": "allow"},
    ]
    settings = from_dict(
        {"connectors": connectors(), "policy": rules, "auth": {"mode": "oauth", "upstream": upstream}}, source=SOURCE
    )
    assert [r.subjects for r in settings.policy] == [["role:engineer"], ["role:approver"]]
    assert "'engineer' is not declared" in str(_error(rules[:1], gate={"roles": []}))


def test_a_declared_role_must_be_a_role_name() -> None:
    assert "'sales team' is not a role name" in str(_error([], gate={"roles": ["sales team"]}))
