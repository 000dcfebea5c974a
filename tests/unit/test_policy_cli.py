"""``patchbay policy explain`` and ``check`` over a real config file and store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.support.policy import config_head
from typer.testing import CliRunner

from patchbay.cli import app

ENV = {"COLUMNS": "200", "NO_COLOR": "1"}
CONFIG = (
    config_head("sqlite:///policy.db", ["support-lead", "ghosts"])
    + """
[[policy]]
id = "leads-close"
description = "support leads close tickets below urgent"
subjects = ["role:support-lead"]
tools = ["crm_close_ticket"]
effect = "allow"
when = { priority = { in = ["low", "normal", "high"] } }

[[policy]]
subjects = ["client:chatgpt"]
kinds = ["write"]
effect = "deny"
description = "ChatGPT reads only"

[[policy]]
subjects = ["role:ghosts"]
tools = ["files_*"]
effect = "allow"
"""
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    file = tmp_path / "patchbay.toml"
    file.write_text(CONFIG)
    run(file, "users", "add", "lee", "--role", "support-lead", "--password-stdin", stdin="pw-for-lee-123\n")
    run(file, "keys", "create", "--name", "ci", "--role", "support-lead")
    return file


def run(config: Path, *args: str, stdin: str | None = None, code: int = 0) -> Any:
    result = CliRunner().invoke(app, [*args, "--config", str(config)], env=ENV, input=stdin)
    assert result.exit_code == code, result.output
    return result


def explain(config: Path, *who: str, tool: str, args: str = "{}") -> dict[str, Any]:
    result = run(config, "policy", "explain", *who, "--tool", tool, "--args", args, "--json")
    return json.loads(result.stdout)


def test_explain_says_allow_deny_and_why_for_a_user_with_arguments(config: Path) -> None:
    allowed = explain(config, "--user", "lee", tool="crm_close_ticket", args='{"id": 3, "priority": "high"}')
    assert allowed == {
        "effect": "allow",
        "rule": "leads-close",
        "reason": "allowed by leads-close (support leads close tickets below urgent)",
        "listed": True,
    }
    urgent = explain(config, "--user", "lee", tool="crm_close_ticket", args='{"id": 3, "priority": "urgent"}')
    assert (urgent["effect"], urgent["rule"], urgent["listed"]) == ("deny", "default", True)


def test_explain_knows_keys_clients_and_anonymous_callers(config: Path) -> None:
    key = explain(config, "--key", "ci", tool="crm_close_ticket", args='{"priority": "low"}')
    assert (key["effect"], key["rule"]) == ("allow", "leads-close")
    chatgpt = explain(config, "--user", "lee", "--client", "chatgpt", tool="crm_close_ticket")
    assert chatgpt == {
        "effect": "deny",
        "rule": "policy[1]",
        "reason": "denied by policy[1] (ChatGPT reads only)",
        "listed": False,
    }
    anonymous = explain(config, "--anonymous", tool="crm_list_customers")
    assert (anonymous["effect"], anonymous["listed"]) == ("deny", False)


def test_explain_prints_a_readable_answer(config: Path) -> None:
    result = run(config, "policy", "explain", "--user", "lee", "--tool", "files_write_file")
    assert "deny: user:lee calling files_write_file" in result.stdout
    assert "rule:   default" in result.stdout and "listed: no" in result.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--tool", "crm_close_ticket"], "exactly one of --user NAME, --key NAME or --anonymous"),
        (["--user", "nobody", "--tool", "crm_close_ticket"], "no user is named 'nobody'"),
        (["--key", "nokey", "--tool", "crm_close_ticket"], "no live API key is named 'nokey'"),
        (["--anonymous", "--tool", "crm_nothing"], "no tool is named 'crm_nothing'"),
        (["--anonymous", "--tool", "crm_close_ticket", "--args", "[1]"], "--args: must be a JSON object"),
        (["--anonymous", "--tool", "crm_close_ticket", "--args", "{"], "--args: not JSON"),
    ],
)
def test_explain_refuses_bad_input_with_a_precise_error(config: Path, args: list[str], says: str) -> None:
    result = run(config, "policy", "explain", *args, code=2)
    assert says in " ".join(result.output.split())


def test_check_summarises_the_rules_and_warns_about_roles_nobody_has(config: Path) -> None:
    result = run(config, "policy", "check")
    assert "3 rules; default deny; writes on (global)" in result.stdout
    assert "leads-close: allow role:support-lead → crm_close_ticket when priority" in result.stdout
    assert "no user, API key or IdP role map has the role 'ghosts'" in result.stderr
    assert "support-lead" not in result.stderr
