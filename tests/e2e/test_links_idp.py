"""Linking an account when people sign in to Patchbay through the organisation's identity provider.

A real `patchbay serve` (the front) with ``[auth.upstream]`` pointing at a real OpenID provider on loopback
(`oidc-provider`, tests/e2e/scripts/oidc_idp.mjs), in front of a second real Patchbay with OAuth on (the upstream,
an ``auth = "user_oauth"`` mcp connector). A person opens the front's link page, presses "Sign in with Example IdP",
signs in at the provider, comes back, links their upstream account, and then calls the upstream's ``whoami``
through the front with a token the front issued after the same provider sign-in.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from tests.e2e.conftest import patchbay_cli
from tests.support.browser import Browser
from tests.support.forms import next_form
from tests.support.idp import Provider, run_idp, sign_in_through_idp
from tests.support.oauth_upstream import PASSWORD, run_oauth_upstream
from tests.support.servers import RunningServer, run_patchbay
from tests.support.user_tokens import user_token

pytestmark = pytest.mark.e2e

ACCEPT = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@dataclass
class Env:
    front: RunningServer
    upstream: RunningServer
    issuer: str
    config: Path


def _serve_config(folder: Path, body: str) -> Path:
    path = folder / "patchbay.toml"
    path.write_text(body, encoding="utf-8")
    return path


def front_config(folder: Path, provider: Provider, upstream_url: str) -> Path:
    return _serve_config(
        folder,
        f"""
[server]
name = "Front"
connector_retry_max_seconds = 1

[store]
url = "sqlite:///{folder / "front.db"}"

[auth]
mode = "oauth"
{provider.upstream_section("preferred_username")}
[outbound]
allow_private_network = true

[[connectors]]
name = "up"
type = "mcp"
url = "{upstream_url}"
auth = "user_oauth"
""",
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    up_folder, folder = tmp_path_factory.mktemp("links-idp-up"), tmp_path_factory.mktemp("links-idp")
    provider = Provider()
    with run_oauth_upstream(up_folder, ("alice",)) as upstream:
        config = front_config(folder, provider, upstream.url)
        with (
            run_patchbay(config, env=provider.patchbay_env, log_dir=folder) as front,
            run_idp(provider, f"{front.base_url}/authorize/callback", folder / "idp.log"),
        ):
            yield Env(front, upstream, provider.issuer, config)


async def link_through_idp(env: Env, account: str) -> list[str]:
    """Open the link page, sign in with the provider as ``account``, come back, press Link, sign in and agree at
    the upstream: every page seen, the last one the front's answer."""
    base = env.front.base_url
    async with httpx.AsyncClient(base_url=base, timeout=30, trust_env=False) as http:
        signing_in = await sign_in_through_idp(http, base, env.issuer, "/links/to/up", account, PASSWORD)
        linking = Browser(http, (base, env.upstream.base_url), account, PASSWORD)
        done = await linking.authorize("/links/to/up")
        assert done.location is None, f"left the flow at {done.location}"
        return signing_in.pages + linking.pages


def call(env: Env, token: str, name: str) -> dict[str, Any]:
    """One tools/call in a fresh 2025-06-18 session: the JSON-RPC result."""
    return rpc(env, token, "tools/call", {"name": name, "arguments": {}})


def rpc(env: Env, token: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """One request in a fresh 2025-06-18 session: the JSON-RPC result."""
    with httpx.Client(base_url=env.front.base_url, timeout=30, trust_env=False) as http:
        headers = {**ACCEPT, "authorization": f"Bearer {token}"}
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}
        opened = http.post(
            "/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}, headers=headers
        )
        assert opened.status_code == 200, opened.text
        headers |= {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        reply = http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, headers=headers)
        assert "result" in reply.json(), reply.text
        result: dict[str, Any] = reply.json()["result"]
        return result


def test_a_person_signed_in_through_the_idp_links_their_account_and_calls_the_upstream_with_it(env: Env) -> None:
    pages = anyio.run(link_through_idp, env, "alice")
    assert "Sign in with Example IdP" in pages[0] and 'name="password"' in pages[0]  # as on /authorize: both
    assert "Signed in to Front as <strong>alice</strong>" in "".join(pages)  # the link page, after the provider
    assert "Linked" in pages[-1] and "<strong>alice</strong>" in pages[-1], pages[-1]
    listed = patchbay_cli("links", "list", "--user", "alice", "-c", str(env.config))
    assert listed.returncode == 0 and "user:alice" in listed.stdout and "up" in listed.stdout, listed.describe()

    token = anyio.run(lambda: user_token(env.front.base_url, "alice", PASSWORD, idp=env.issuer))
    # The first link makes the upstream's tools appear (they are listed with that account): wait for them.
    deadline = time.monotonic() + 30
    while "up_whoami" not in {tool["name"] for tool in rpc(env, token, "tools/list", {})["tools"]}:
        assert time.monotonic() < deadline, "the upstream's tools did not appear after the first link"
        time.sleep(0.1)
    result = call(env, token, "up_whoami")
    assert result.get("isError") is not True, result
    assert result["structuredContent"]["subject"] == "user:alice"  # the upstream got alice's own linked token


def test_a_provider_callback_this_browser_did_not_start_on_the_link_page_signs_no_one_in(env: Env) -> None:
    with httpx.Client(base_url=env.front.base_url, timeout=20, trust_env=False) as http:
        http.cookies.set("patchbay_linker_idp", "state-a.verifier.nonce.up", path="/authorize/callback")
        answer = http.get("/authorize/callback", params={"state": "state-b", "code": "x"})
        assert answer.status_code in (400, 403) and "patchbay_linker=" not in answer.headers.get("set-cookie", "")
        page = http.get("/links/to/up")
    form = next_form(page.text)
    assert form is not None and form.has_password, page.text  # still asked to sign in
