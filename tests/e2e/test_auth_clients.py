"""Sign-in with real clients against a real `patchbay serve` in oauth mode, each flow ending in a tools/call:
the official Python SDK's OAuth client (authorization code + PKCE, then a refresh), mcp-remote (the bridge Claude
Desktop uses, driven headlessly through $BROWSER), and the MCP Inspector CLI with a bearer token and an API key.
Users and keys are made with the `patchbay` CLI.
"""

from __future__ import annotations

import json
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from tests.e2e.conftest import SCRIPTS, inspector_cli, patchbay_cli, run_scenario
from tests.support.browser import Browser
from tests.support.node import NODE_MODULES, node22, node_env
from tests.support.servers import RunningServer, free_port, run_patchbay
from tests.support.user_tokens import add_user

pytestmark = pytest.mark.e2e

TOOLS = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "auth_tools.py"
PASSWORD = "e2e password 123"


@dataclass(frozen=True)
class AuthServer:
    server: RunningServer
    config: Path
    api_key: str


def write_config(folder: Path) -> Path:
    config = folder / "patchbay.toml"
    config.write_text(
        f"""
[server]
name = "Patchbay auth e2e"

[store]
url = "sqlite:///{folder / "auth.db"}"

[auth]
mode = "oauth"
scopes_supported = ["mcp", "docs.write"]

[[connectors]]
name = "t"
type = "python"
path = "{TOOLS}"
prefix = ""
""",
        encoding="utf-8",
    )
    return config


@pytest.fixture(scope="module")
def oauth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    folder = tmp_path_factory.mktemp("auth")
    config = write_config(folder)
    add_user(config, "alice", PASSWORD, ["staff"])
    key = patchbay_cli("keys", "create", "--name", "inspector", "--scopes", "mcp", "-c", str(config))
    assert key.returncode == 0, key.describe()
    with run_patchbay(config, log_dir=folder) as server:
        yield AuthServer(server, config, key.stdout.strip())


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def test_python_sdk_oauth_client_signs_in_calls_a_tool_and_refreshes(oauth_server: AuthServer) -> None:
    server = oauth_server.server
    redirect_uri = "http://127.0.0.1:33418/callback"
    storage = MemoryStorage()
    seen: dict[str, Any] = {}
    urls: list[str] = []
    sent: list[tuple[str, str, str]] = []

    async def scenario() -> tuple[Any, Any]:
        async with httpx2.AsyncClient(trust_env=False) as browser_http:
            browser = Browser(browser_http, (server.base_url,), "alice", PASSWORD)

            async def redirect_handler(url: str) -> None:
                urls.append(url)
                seen["outcome"] = await browser.authorize(url)

            async def callback_handler() -> AuthorizationCodeResult:
                params = seen["outcome"].params
                return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))

            provider = OAuthClientProvider(
                server_url=server.url,
                client_metadata=OAuthClientMetadata(
                    client_name="python-sdk-e2e",
                    redirect_uris=[AnyUrl(redirect_uri)],
                    grant_types=["authorization_code", "refresh_token"],
                    response_types=["code"],
                ),
                storage=storage,
                redirect_handler=redirect_handler,
                callback_handler=callback_handler,
            )

            async def record(request: httpx2.Request) -> None:
                sent.append((request.method, request.url.path, request.content.decode("utf-8", "replace")))

            async with (
                httpx2.AsyncClient(auth=provider, trust_env=False, event_hooks={"request": [record]}) as http,
                Client(streamable_http_client(server.url, http_client=http), mode="legacy") as client,
            ):
                first = await client.call_tool("whoami", {})
                # The access token's lifetime passes (as the SDK sees it): the next call refreshes first.
                provider.context.token_expiry_time = time.time() - 1
                access_before = storage.tokens.access_token if storage.tokens else None
                second = await client.call_tool("whoami", {})
                assert storage.tokens is not None and storage.tokens.access_token != access_before
            return first, second

    first, second = run_scenario(scenario, timeout=60)
    assert len(urls) == 1, "one sign-in, then the refresh token"
    grants = [body for method, path, body in sent if (method, path) == ("POST", "/token")]
    assert len(grants) == 2 and "grant_type=authorization_code" in grants[0] and "grant_type=refresh_token" in grants[1]
    assert "resource=" in urls[0] and "code_challenge_method=S256" in urls[0]
    for result in (first, second):
        assert result.is_error is False, result
        assert result.structured_content["subject"] == "user:alice"
        assert result.structured_content["roles"] == ["staff"]


def browser_command(folder: Path) -> Path:
    """$BROWSER for Node clients: a wrapper around scripts/auto_browser.py with this Python."""
    wrapper = folder / "fake-browser"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{SCRIPTS / "auto_browser.py"}" "$1"\n', encoding="utf-8")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


def test_mcp_remote_signs_in_headlessly_and_calls_a_tool(oauth_server: AuthServer, tmp_path: Path) -> None:
    server = oauth_server.server
    config_dir = tmp_path / "mcp-auth"
    browser_log = tmp_path / "browser.log"
    env = node_env(
        {
            "BROWSER": str(browser_command(tmp_path)),
            "DISPLAY": "",
            "MCP_REMOTE_CONFIG_DIR": str(config_dir),
            "AUTO_BROWSER_USER": "alice",
            "AUTO_BROWSER_PASSWORD": PASSWORD,
            "AUTO_BROWSER_LOG": str(browser_log),
            "HOME": str(tmp_path),
        }
    )
    proxy = NODE_MODULES / "mcp-remote" / "dist" / "proxy.js"
    params = StdioServerParameters(
        command=str(node22()),
        args=[str(proxy), server.url, str(free_port()), "--host", "127.0.0.1", "--allow-http"],
        env=env,
    )

    async def scenario() -> Any:
        with (tmp_path / "mcp-remote.log").open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
                tools = {t.name for t in (await client.list_tools()).tools}
                assert {"whoami", "search", "write_doc"} <= tools
                return await client.call_tool("whoami", {})

    result = run_scenario(scenario, timeout=90)
    assert result.is_error is False, (result, (tmp_path / "mcp-remote.log").read_text())
    assert result.structured_content["subject"] == "user:alice"
    stored = [json.loads(p.read_text()) for p in config_dir.rglob("*_tokens.json")]
    assert stored and stored[0]["access_token"].startswith("pb_at_") and stored[0]["refresh_token"]
    assert "/authorize" in browser_log.read_text()


def oauth_token(server: RunningServer) -> str:
    """An access token obtained the way any client would (DCR, sign-in page, code + PKCE)."""
    import base64
    import hashlib
    import secrets
    from urllib.parse import urlencode

    async def scenario() -> str:
        async with httpx2.AsyncClient(base_url=server.base_url, trust_env=False) as http:
            registered = (
                await http.post(
                    "/register",
                    json={"redirect_uris": ["http://127.0.0.1:1/cb"], "token_endpoint_auth_method": "none"},
                )
            ).json()
            verifier = secrets.token_urlsafe(48)
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            query = urlencode(
                {
                    "response_type": "code",
                    "client_id": registered["client_id"],
                    "redirect_uri": "http://127.0.0.1:1/cb",
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                    "resource": server.url,
                }
            )
            outcome = await Browser(http, (server.base_url,), "alice", PASSWORD).authorize(f"/authorize?{query}")
            form = {
                "grant_type": "authorization_code",
                "code": outcome.params["code"],
                "code_verifier": verifier,
                "client_id": registered["client_id"],
                "redirect_uri": "http://127.0.0.1:1/cb",
            }
            token: str = (await http.post("/token", data=form)).json()["access_token"]
            return token

    return run_scenario(scenario)


@pytest.mark.parametrize("credential", ["oauth", "api_key"])
def test_inspector_cli_calls_a_tool_with_a_bearer_token(
    oauth_server: AuthServer, credential: str, tmp_path: Path
) -> None:
    server = oauth_server.server
    token = oauth_token(server) if credential == "oauth" else oauth_server.api_key
    done = inspector_cli(
        server.url,
        "--method",
        "tools/call",
        "--tool-name",
        "whoami",
        "--header",
        f"Authorization: Bearer {token}",
        home=tmp_path,
    )
    assert done.returncode == 0, done.describe()
    result = done.json()["result"]
    expected = "user:alice" if credential == "oauth" else "key:inspector"
    assert result["structuredContent"]["subject"] == expected


def test_without_credentials_the_inspector_is_asked_to_sign_in(oauth_server: AuthServer, tmp_path: Path) -> None:
    done = inspector_cli(oauth_server.server.url, "--method", "tools/list", home=tmp_path)
    assert done.returncode != 0
    assert "auth" in (done.stderr + done.stdout).lower()


def test_cli_lists_and_revokes_what_the_flows_created(oauth_server: AuthServer) -> None:
    config = str(oauth_server.config)
    clients = patchbay_cli("clients", "list", "-c", config)
    assert clients.returncode == 0 and "dcr" in clients.stdout
    users = patchbay_cli("users", "list", "-c", config)
    assert "alice" in users.stdout and "staff" in users.stdout
    token = oauth_token(oauth_server.server)
    assert list_tools(oauth_server.server, token).status_code == 200
    assert list_tools(oauth_server.server, token).status_code == 200  # now answered from the server's cache
    revoked = patchbay_cli("tokens", "revoke", "--user", "alice", "-c", config)
    assert revoked.returncode == 0, revoked.describe()
    assert "revoked" in revoked.stdout
    # The CLI ran in another process; the server must refuse the token on its very next request.
    refused = list_tools(oauth_server.server, token)
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
    missing = patchbay_cli("tokens", "revoke", "--user", "nobody", "-c", config)
    assert missing.returncode == 1 and "no such user" in missing.stderr


def list_tools(server: RunningServer, token: str) -> httpx2.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"authorization": f"Bearer {token}", "accept": "application/json, text/event-stream"}
    return httpx2.post(server.url, json=body, headers=headers, trust_env=False, timeout=10)
