"""The policy matrix over real signed-in principals: a real `patchbay serve` in oauth mode, local users with roles
and API keys made with the `patchbay` CLI, two OAuth clients registered dynamically (one named "chatgpt"), and the
official Python SDK client in both eras. For every (principal, tool): listed ⇔ callable for some arguments, and
unlisted ⇒ every call refused with a tool error naming the rule.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.conftest import patchbay_cli, run_scenario
from tests.support.browser import Browser
from tests.support.policy import EXAMPLE_RULES, config_head
from tests.support.servers import RunningServer, run_patchbay

pytestmark = pytest.mark.e2e

PASSWORD = "policy e2e password"
REDIRECT = "http://127.0.0.1:9/callback"
ERAS = ("legacy", "2026-07-28")
# Arguments each tool is tried with: close_ticket once below urgent and once urgent (the condition decides).
ARGUMENTS: dict[str, list[dict[str, Any]]] = {
    "crm_list_customers": [{}],
    "crm_close_ticket": [{"id": 1, "priority": "high"}, {"id": 2, "priority": "urgent"}],
    "files_read_file": [{"path": "a.txt"}],
    "files_write_file": [{"path": "a.txt", "text": "x"}],
}
# What the example policy, with [gate] default = "deny", lets each principal see.
EXPECTED = {
    "sam via client A (role sales)": {"crm_list_customers", "files_read_file"},
    "lee via client A (role support-lead)": {"crm_close_ticket", "files_read_file"},
    "lee via chatgpt (role support-lead)": {"files_read_file"},
    "key ci (role sales)": {"crm_list_customers", "files_read_file"},
    "key ops (no role)": {"files_read_file"},
    "anonymous": {"files_read_file"},
}


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + " }"
    return str(value).lower() if isinstance(value, bool) else str(value)


def write_config(folder: Path) -> Path:
    rules = "".join(
        "\n[[policy]]\n" + "".join(f"{key} = {_toml(value)}\n" for key, value in rule.items()) for rule in EXAMPLE_RULES
    )
    config = folder / "patchbay.toml"
    config.write_text(
        config_head(f"sqlite:///{folder / 'policy.db'}", ["sales", "support-lead"]) + rules,
        encoding="utf-8",
    )
    return config


@dataclass(frozen=True)
class PolicyServer:
    server: RunningServer
    tokens: dict[str, str | None]


def _add_user(config: Path, name: str, role: str) -> None:
    script = Path(sys.executable).with_name("patchbay")
    added = subprocess.run(
        [str(script), "users", "add", name, "--role", role, "--password-stdin", "-c", str(config)],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr


def _key(config: Path, name: str, *roles: str) -> str:
    made = patchbay_cli("keys", "create", "--name", name, *(a for r in roles for a in ("--role", r)), "-c", str(config))
    assert made.returncode == 0, made.describe()
    return made.stdout.strip()


async def _oauth_token(server: RunningServer, client_name: str, username: str) -> str:
    """Register a client, sign in as ``username`` on the real pages, and redeem the code (PKCE, RFC 8707)."""
    async with httpx2.AsyncClient(base_url=server.base_url, trust_env=False, timeout=30) as http:
        registered = await http.post(
            "/register",
            json={"client_name": client_name, "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"},
        )
        assert registered.status_code == 201, registered.text
        client_id = registered.json()["client_id"]
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": secrets.token_urlsafe(8),
            "scope": "mcp",
            "resource": server.url,
        }
        browser = Browser(http, (server.base_url,), username, PASSWORD)
        outcome = await browser.authorize(f"{server.base_url}/authorize?{urlencode(query)}")
        redeemed = await http.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": outcome.params["code"],
                "redirect_uri": REDIRECT,
                "client_id": client_id,
                "code_verifier": verifier,
                "resource": server.url,
            },
        )
        assert redeemed.status_code == 200, redeemed.text
        token: str = redeemed.json()["access_token"]
        return token


@pytest.fixture(scope="module")
def policy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyServer]:
    folder = tmp_path_factory.mktemp("policy")
    config = write_config(folder)
    _add_user(config, "sam", "sales")
    _add_user(config, "lee", "support-lead")
    keys = {"key ci (role sales)": _key(config, "ci", "sales"), "key ops (no role)": _key(config, "ops")}
    with run_patchbay(config, log_dir=folder) as server:

        async def sign_in() -> dict[str, str]:
            return {
                "sam via client A (role sales)": await _oauth_token(server, "Client A", "sam"),
                "lee via client A (role support-lead)": await _oauth_token(server, "Client A", "lee"),
                "lee via chatgpt (role support-lead)": await _oauth_token(server, "chatgpt", "lee"),
            }

        tokens: dict[str, str | None] = {**run_scenario(sign_in, timeout=60), **keys, "anonymous": None}
        yield PolicyServer(server, tokens)


def _text(result: Any) -> str:
    return " ".join(getattr(part, "text", "") for part in result.content)


@pytest.mark.parametrize("era", ERAS)
def test_every_principal_lists_exactly_the_tools_it_may_call(policy_server: PolicyServer, era: str) -> None:
    async def scenario() -> dict[str, tuple[set[str], dict[str, list[tuple[bool, str]]]]]:
        seen = {}
        for who, token in policy_server.tokens.items():
            headers = {"authorization": f"Bearer {token}"} if token else {}
            async with (
                httpx2.AsyncClient(headers=headers, trust_env=False, timeout=30) as http,
                Client(streamable_http_client(policy_server.server.url, http_client=http), mode=era) as client,
            ):
                listed = {tool.name for tool in (await client.list_tools()).tools}
                calls = {}
                for name, argument_sets in ARGUMENTS.items():
                    results = [await client.call_tool(name, arguments) for arguments in argument_sets]
                    calls[name] = [(bool(r.is_error), _text(r)) for r in results]
                seen[who] = (listed, calls)
        return seen

    seen = run_scenario(scenario, timeout=120)
    assert set(seen) == set(EXPECTED)
    for who, (listed, calls) in seen.items():
        assert listed == EXPECTED[who], who
        for name, outcomes in calls.items():
            callable_somehow = any(not refused for refused, _ in outcomes)
            assert callable_somehow == (name in listed), (who, name, outcomes)
            for refused, text in outcomes:
                if refused and who == "anonymous" and name.startswith("crm_"):
                    # Not public: the sign-in challenge of the "scopes" rule (ChatGPT's account linking).
                    assert text == "Authentication required: you need to sign in to use this tool.", text
                elif refused:
                    assert text.startswith(f"You may not call '{name}': denied by "), (who, name, text)


def test_conditions_default_and_deny_wins_name_their_rule(policy_server: PolicyServer) -> None:
    tokens = policy_server.tokens

    async def call(who: str, name: str, arguments: dict[str, Any]) -> tuple[bool, str]:
        async with (
            httpx2.AsyncClient(headers={"authorization": f"Bearer {tokens[who]}"}, trust_env=False) as http,
            Client(streamable_http_client(policy_server.server.url, http_client=http), mode="2026-07-28") as client,
        ):
            result = await client.call_tool(name, arguments)
            return bool(result.is_error), _text(result)

    async def scenario() -> list[tuple[bool, str]]:
        lead = "lee via client A (role support-lead)"
        return [
            await call(lead, "crm_close_ticket", {"id": 7, "priority": "normal"}),
            await call(lead, "crm_close_ticket", {"id": 7, "priority": "urgent"}),
            await call(lead, "files_write_file", {"path": "x", "text": "y"}),
            await call("lee via chatgpt (role support-lead)", "crm_close_ticket", {"id": 7, "priority": "low"}),
            await call("key ops (no role)", "crm_list_customers", {}),
        ]

    normal, urgent, write, chatgpt, default = run_scenario(scenario, timeout=60)
    assert normal == (False, "closed ticket 7 (normal)")
    assert urgent == (
        True,
        "You may not call 'crm_close_ticket': denied by default (no rule allows it and [gate] default = \"deny\").",
    )
    assert write == (True, "You may not call 'files_write_file': denied by policy[2] (nobody writes).")
    assert chatgpt == (True, "You may not call 'crm_close_ticket': denied by policy[3] (ChatGPT reads only).")
    assert default[0] is True and "denied by default" in default[1]
