"""Patchbay with a real external identity provider: `oidc-provider` (npm, a certified OpenID Connect
implementation; tests/e2e/scripts/oidc_idp.mjs) on loopback.

- ``external`` mode: JWT access tokens (RFC 9068, audience = Patchbay's MCP URL through RFC 8707 resource
  indicators) checked against the IdP's JWKS, and opaque ones checked by RFC 7662 introspection; a token for
  another audience or past its expiry is 401 with the challenge; the protected-resource metadata names the IdP.
- federated sign-in (``oauth`` mode with ``[auth.upstream]``): the official Python SDK OAuth client is sent to
  Patchbay's /authorize, on to the IdP's sign-in and consent pages, back to Patchbay's callback, and gets
  Patchbay's own tokens; the tool sees a principal whose roles come from the IdP's ``groups`` claim.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from mcp.client import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata
from pydantic import AnyUrl

from tests.e2e.conftest import run_scenario
from tests.e2e.test_auth_clients import TOOLS, MemoryStorage
from tests.support.browser import Browser
from tests.support.idp import Provider, run_idp
from tests.support.servers import RunningServer, run_patchbay

pytestmark = pytest.mark.e2e

ACCEPT = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}
ELSEWHERE = "http://127.0.0.1:9/elsewhere/mcp"  # a resource that is not this Patchbay


@dataclass(frozen=True)
class IdP:
    issuer: str
    agent_secret: str
    proc: subprocess.Popen[bytes]


@dataclass(frozen=True)
class Setup:
    idp: IdP
    external: RunningServer  # [auth] mode = "external"
    federated: RunningServer  # [auth] mode = "oauth" with [auth.upstream] = the IdP


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def external_config(folder: Path, issuer: str) -> Path:
    return _write(
        folder / "external.toml",
        f"""
[store]
url = "sqlite:///{folder / "external.db"}"

[auth]
mode = "external"

[auth.external]
issuer = "{issuer}"
introspection_client_id = "patchbay-rs"
introspection_client_secret_env = "PATCHBAY_IDP_RS_SECRET"
clock_skew_seconds = 0
allow_private_network = true

[[connectors]]
name = "t"
type = "python"
path = "{TOOLS}"
prefix = ""
""",
    )


def federated_config(folder: Path, provider: Provider) -> Path:
    roles = 'role_map = { "mcp-admins" = ["admin"], "sales" = ["sales"] }\ndefault_roles = ["member"]'
    return _write(
        folder / "federated.toml",
        f"""
[store]
url = "sqlite:///{folder / "federated.db"}"

[auth]
mode = "oauth"
{provider.upstream_section(more=roles)}
[[connectors]]
name = "t"
type = "python"
path = "{TOOLS}"
prefix = ""
""",
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("idp")
    # Patchbay only contacts the IdP when a token or a sign-in arrives, so both servers can start first; the IdP
    # then starts on the port their configs name, knowing the federated server's callback.
    provider = Provider()
    env = {"PATCHBAY_IDP_RS_SECRET": provider.secrets["rs"], **provider.patchbay_env}
    with (
        run_patchbay(external_config(folder, provider.issuer), env=env, log_dir=folder) as external,
        run_patchbay(federated_config(folder, provider), env=env, log_dir=folder) as federated,
        run_idp(provider, f"{federated.base_url}/authorize/callback", folder / "idp.log") as proc,
    ):
        yield Setup(IdP(provider.issuer, provider.secrets["agent"], proc), external, federated)


def idp_token(idp: IdP, client_id: str, resource: str) -> str:
    """An access token from the IdP's token endpoint: the client_credentials grant with a resource indicator."""
    with httpx2.Client(trust_env=False, timeout=10) as http:
        response = http.post(
            f"{idp.issuer}/token",
            data={"grant_type": "client_credentials", "scope": "mcp", "resource": resource},
            auth=(client_id, idp.agent_secret),
        )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def call_whoami(server: RunningServer, token: str) -> httpx2.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
    headers = {**ACCEPT, "authorization": f"Bearer {token}"}
    with httpx2.Client(trust_env=False, timeout=10) as http:
        return http.post(server.url, json=body, headers=headers)


def assert_invalid_token(server: RunningServer, response: httpx2.Response) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert f'resource_metadata="{server.base_url}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert 'error="invalid_token"' in challenge


# -- external mode: JWKS ----------------------------------------------------------------------------------------


def test_protected_resource_metadata_names_the_idp(setup: Setup) -> None:
    server = setup.external
    with httpx2.Client(trust_env=False, timeout=10) as http:
        metadata = http.get(f"{server.base_url}/.well-known/oauth-protected-resource/mcp").json()
        unauthenticated = http.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=ACCEPT)
    assert metadata["resource"] == server.url
    assert metadata["authorization_servers"] == [setup.idp.issuer]
    assert unauthenticated.status_code == 401
    assert "resource_metadata=" in unauthenticated.headers["www-authenticate"]


def test_an_idp_jwt_for_this_server_calls_a_tool_through_the_python_sdk(setup: Setup) -> None:
    server = setup.external
    token = idp_token(setup.idp, "agent", server.url)
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"  # RFC 9068: checked against the JWKS

    async def scenario() -> Any:
        headers = {"authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, trust_env=False) as http,
            Client(streamable_http_client(server.url, http_client=http), mode="legacy") as client,
        ):
            return await client.call_tool("whoami", {})

    result = run_scenario(scenario)
    assert result.is_error is False, result
    me = result.structured_content
    assert me["subject"] == "agent" and me["kind"] == "external" and me["client_id"] == "agent"
    assert me["scopes"] == ["mcp"] and me["roles"] == ["idp-operator"]


def test_an_idp_jwt_for_another_audience_is_401(setup: Setup) -> None:
    server = setup.external
    elsewhere = idp_token(setup.idp, "agent", ELSEWHERE)
    assert jwt.decode(elsewhere, options={"verify_signature": False})["aud"] == ELSEWHERE
    assert_invalid_token(server, call_whoami(server, elsewhere))
    assert call_whoami(server, idp_token(setup.idp, "agent", server.url)).status_code == 200


def test_an_expired_idp_jwt_is_401(setup: Setup) -> None:
    server = setup.external
    token = idp_token(setup.idp, "agent-short", server.url)  # lives 3 s at the IdP
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert call_whoami(server, token).status_code == 200
    deadline = time.monotonic() + 30
    while (response := call_whoami(server, token)).status_code == 200:
        assert time.monotonic() < deadline, "the token was still accepted 30 s after it was issued"
        time.sleep(0.2)
    assert time.time() >= expires, "refused before it expired"
    assert_invalid_token(server, response)


# -- external mode: introspection -------------------------------------------------------------------------------


def test_an_opaque_idp_token_is_checked_by_introspection(setup: Setup) -> None:
    server = setup.external
    token = idp_token(setup.idp, "agent-opaque", server.url)
    assert token.count(".") != 2  # not a JWT: only introspection can tell
    response = call_whoami(server, token)
    assert response.status_code == 200, response.text
    me = response.json()["result"]["structuredContent"]
    assert me["subject"] == "agent-opaque" and me["kind"] == "external" and me["roles"] == ["idp-operator"]
    elsewhere = idp_token(setup.idp, "agent-opaque", ELSEWHERE)
    assert_invalid_token(server, call_whoami(server, elsewhere))
    assert_invalid_token(server, call_whoami(server, secrets.token_urlsafe(32)))


# -- federated sign-in ------------------------------------------------------------------------------------------


def test_federated_sign_in_through_the_idp_with_the_python_sdk_oauth_client(setup: Setup) -> None:
    server = setup.federated
    storage = MemoryStorage()
    seen: dict[str, Any] = {}
    urls: list[str] = []

    async def scenario() -> Any:
        async with httpx2.AsyncClient(trust_env=False, timeout=20) as browser_http:
            # Any password signs in at oidc-provider's development pages; "alice" is the account id.
            browser = Browser(
                browser_http,
                (server.base_url, setup.idp.issuer),
                "alice",
                "any password",
                prefer="/authorize/upstream",
            )

            async def redirect_handler(url: str) -> None:
                seen["outcome"] = await browser.authorize(url)
                seen["pages"] = browser.pages

            async def callback_handler() -> AuthorizationCodeResult:
                params = seen["outcome"].params
                return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))

            provider = OAuthClientProvider(
                server_url=server.url,
                client_metadata=OAuthClientMetadata(
                    client_name="python-sdk-federated-e2e",
                    redirect_uris=[AnyUrl("http://127.0.0.1:33419/callback")],
                    grant_types=["authorization_code", "refresh_token"],
                    response_types=["code"],
                ),
                storage=storage,
                redirect_handler=redirect_handler,
                callback_handler=callback_handler,
            )

            async def record(request: httpx2.Request) -> None:
                urls.append(str(request.url))

            async with (
                httpx2.AsyncClient(auth=provider, trust_env=False, event_hooks={"request": [record]}) as http,
                Client(streamable_http_client(server.url, http_client=http), mode="legacy") as client,
            ):
                return await client.call_tool("whoami", {})

    result = run_scenario(scenario, timeout=90)
    pages = "\n".join(seen.get("pages", []))
    assert result.is_error is False, (result, pages[-3000:])
    me = result.structured_content
    # username_claim = "email"; groups mcp-admins and sales map to admin and sales, "unmapped" is dropped.
    assert me["subject"] == "user:alice@example.com" and me["kind"] == "user"
    assert me["roles"] == ["admin", "member", "sales"]
    assert "Sign in with Example IdP" in pages and "Sign-in" in pages  # Patchbay's page, then the IdP's
    assert seen["outcome"].params["iss"] == server.base_url
    assert storage.tokens is not None and storage.tokens.access_token.startswith("pb_at_")
    assert not any(setup.idp.issuer in url for url in urls), "the MCP client never talks to the IdP"
