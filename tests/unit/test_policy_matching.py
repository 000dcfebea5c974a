"""A rule's list-time part on its own: the annotation classes a tool falls in, which tools a rule covers, and which
callers a subject names."""

from __future__ import annotations

from typing import Any

import pytest

from patchbay.auth.principal import Principal
from patchbay.definitions import ToolAnnotations
from patchbay.gate.config import PolicyRule
from patchbay.gate.rules import compile_rule, kinds_of, subject_matches

READ = ToolAnnotations(read_only=True, open_world=False)
WRITE = ToolAnnotations(destructive=False, open_world=False)


@pytest.mark.parametrize(
    ("annotations", "kinds"),
    [
        (READ, {"read"}),
        (ToolAnnotations(read_only=True, open_world=True), {"read", "open_world"}),
        (WRITE, {"write"}),
        (ToolAnnotations(destructive=True, open_world=False), {"write", "destructive"}),
        (ToolAnnotations(destructive=False, open_world=True), {"write", "open_world"}),
        (ToolAnnotations(), {"write", "destructive", "open_world"}),
    ],
)
def test_a_tool_falls_in_the_annotation_classes_its_hints_give(annotations: ToolAnnotations, kinds: set[str]) -> None:
    assert kinds_of(annotations) == kinds


def rule(**fields: Any) -> Any:
    return compile_rule(0, PolicyRule.model_validate({"subjects": ["*"], "effect": "deny", **fields}))


def test_a_rule_covers_a_tool_when_a_glob_the_connector_and_a_kind_all_match() -> None:
    assert rule(tools=["crm_*", "files_read_?ile"]).covers("files_read_file", "files", READ)
    assert not rule(tools=["crm_*"]).covers("files_read_file", "files", READ)
    assert not rule(tools=["crm_*"]).covers("xcrm_list", "crm", READ)
    only_crm = rule(connectors=["crm"])
    assert only_crm.covers("crm_list", "crm", READ)
    assert not only_crm.covers("files_read_file", "files", READ)
    assert not only_crm.covers("orphan", None, READ)  # a tool no running connector publishes
    open_world = rule(kinds=["open_world"])
    assert open_world.covers("web_fetch", None, ToolAnnotations(read_only=True, open_world=True))
    assert not open_world.covers("crm_list", None, READ)
    assert rule(kinds=["read", "destructive"]).covers("crm_list", None, READ)
    assert not rule(kinds=["destructive"]).covers("crm_close", None, WRITE)


def test_a_rule_without_description_is_named_alone_and_an_id_replaces_the_index() -> None:
    assert rule().because() == "policy[0]"
    assert compile_rule(3, PolicyRule(subjects=["*"], effect="deny")).name == "policy[3]"
    described = rule(id="leads", description="support leads only")
    assert (described.name, described.because()) == ("leads", "leads (support leads only)")


ADA = Principal("user:ada", "user", frozenset({"mcp"}), frozenset({"sales"}), username="ada", client_id="c-1")
CIMD = "https://app.example.com/oauth/client.json"


@pytest.mark.parametrize(
    ("subject", "principal", "matches"),
    [
        ("*", ADA, True),
        ("*", None, True),
        ("anonymous", None, True),
        ("user:ada", None, False),
        ("role:sales", None, False),
        ("user:ada", ADA, True),
        ("user:user:ada", ADA, True),  # the external form: a user's subject
        ("user:sub-42", Principal("sub-42", "external"), True),
        ("user:lee", Principal("sub-42", "external", username="lee"), True),
        ("user:key:ci", Principal("key:ci", "api_key"), False),  # an API key is never a user
        ("key:ci", Principal("key:ci", "api_key"), True),
        ("key:ci", Principal("key:ci", "user"), False),
        ("key:cd", Principal("key:ci", "api_key"), False),
        ("role:sales", ADA, True),
        ("role:ops", ADA, False),
        ("scope:mcp", ADA, True),
        ("scope:crm.write", ADA, False),
        ("client:c-1", ADA, True),
        ("client:c-2", ADA, False),
        (f"client:{CIMD}", Principal("user:ada", "user", client_id=CIMD), True),
        ("client:ChatGPT", Principal("user:ada", "user", client_name="ChatGPT"), True),
    ],
)
def test_a_subject_names_exactly_the_callers_its_form_describes(
    subject: str, principal: Principal | None, matches: bool
) -> None:
    assert subject_matches(subject, principal) is matches


def test_except_removes_callers_the_subjects_name() -> None:
    sales_but_ada = rule(subjects=["role:sales", "user:bob"], except_=["user:ada"])
    assert not sales_but_ada.applies_to(ADA)
    assert sales_but_ada.applies_to(Principal("user:sam", "user", roles=frozenset({"sales"}), username="sam"))
    assert sales_but_ada.applies_to(Principal("user:bob", "user", username="bob"))
    assert not sales_but_ada.applies_to(Principal("user:cy", "user", username="cy"))
    assert not sales_but_ada.applies_to(None)
