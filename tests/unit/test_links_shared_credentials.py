"""Credentials shared by every caller, against real parts: ``auth = "client_credentials"`` with a real token endpoint
and protected API on loopback (uvicorn), ``auth = "headers"`` from environment variables and secret files with the
config errors a missing one gives, and the client ID metadata document the link pages publish.

Our own authorization server has no client_credentials grant (it serves people), so the token endpoint here is a
small Starlette app that does what RFC 6749 §4.4 asks: client authentication by HTTP Basic, the grant, the scope
and the RFC 8707 resource, and access tokens with ``expires_in``; its API accepts only tokens it issued.
"""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.support.loopback_asgi import serving

from patchbay.app import create_app
from patchbay.auth.cimd import parse_document
from patchbay.connectors.base import ConnectorEnv
from patchbay.errors import ConfigError
from patchbay.links import AuthOptions, LinkUnavailable, SecretRef, credentials_for
from patchbay.links.hub import LinkHub
from patchbay.links.shared import EARLY_SECONDS
from patchbay.settings import Settings, from_dict

pytestmark = pytest.mark.anyio

SECRET = "cc-secret-never-logged-0123"
LIFETIME = 3600


@dataclass
class TokenServer:
    """A client-credentials authorization server and the API it protects."""

    base: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)
    issued: set[str] = field(default_factory=set)
    counter: Any = field(default_factory=lambda: itertools.count(1))

    async def token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.requests.append(form)
        expected = "Basic " + base64.b64encode(f"patchbay:{SECRET}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client", "error_description": "bad client"}, 401)
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        token = f"cc-token-{next(self.counter)}"
        self.issued.add(token)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": LIFETIME, "scope": form.get("scope", "")}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def api(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        ok = scheme == "Bearer" and token in self.issued
        return JSONResponse({"ok": ok}, 200 if ok else 401)

    async def resource_metadata(self, request: Request) -> Response:  # RFC 9728 §3
        return JSONResponse({"resource": f"{self.base}/api", "authorization_servers": [self.base]})

    async def server_metadata(self, request: Request) -> Response:  # RFC 8414 §3
        return JSONResponse(
            {
                "issuer": self.base,
                "token_endpoint": f"{self.base}/token",
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "grant_types_supported": ["client_credentials"],
            }
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/token", self.token, methods=["POST"]),
                Route("/api", self.api),
                Route("/.well-known/oauth-protected-resource/api", self.resource_metadata),
                Route("/.well-known/oauth-authorization-server", self.server_metadata),
            ]
        )


@pytest.fixture
async def token_server() -> AsyncIterator[TokenServer]:
    server = TokenServer()
    async with serving(server.app()) as base:
        server.base = base
        yield server


def settings_in(folder: Path, **extra: Any) -> Settings:
    config = folder / "patchbay.toml"
    config.write_text("", encoding="utf-8")
    raw = {"outbound": {"allow_private_network": True}, **extra}
    return from_dict(raw, source=str(config), base_dir=folder)


def env_in(folder: Path) -> ConnectorEnv:
    settings = settings_in(folder)
    return ConnectorEnv(base_dir=folder, store_url=settings.store_url, links=LinkHub(settings))


def shifted(offset: list[float]) -> Callable[[], float]:
    """The real clock moved ``offset[0]`` seconds ahead (expiry times come from the real clock)."""
    return lambda: time.time() + offset[0]


async def api_status(server: TokenServer, headers: dict[str, str]) -> int:
    async with httpx2.AsyncClient(trust_env=False) as http:
        return (await http.get(f"{server.base}/api", headers=headers)).status_code


# -- auth = "client_credentials" ------------------------------------------------------------------------------------


async def test_client_credentials_discovers_the_token_endpoint_and_caches_the_token_until_shortly_before_expiry(
    token_server: TokenServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CC_SECRET", SECRET)
    options = AuthOptions(
        auth="client_credentials", client_id="patchbay", client_secret_env="CC_SECRET", scopes=["read"]
    )
    credentials = credentials_for("api", options, env_in(tmp_path), upstream_url=f"{token_server.base}/api")
    offset = [0.0]
    credentials.clock = shifted(offset)  # type: ignore[attr-defined]

    identity, first = await credentials.headers_for(None)
    assert identity == ""  # one token for everyone: nothing about the caller
    _, again = await credentials.headers_for(None)
    assert again == first and len(token_server.requests) == 1  # cached
    assert token_server.requests[0] == {
        "grant_type": "client_credentials",
        "scope": "read",
        "resource": f"{token_server.base}/api",  # RFC 8707, from the protected-resource metadata
    }
    assert await api_status(token_server, first) == 200

    offset[0] = LIFETIME - EARLY_SECONDS - 600  # ten minutes before the renewal window: still cached
    assert (await credentials.headers_for(None))[1] == first and len(token_server.requests) == 1
    offset[0] = LIFETIME - EARLY_SECONDS  # inside the window: renewed before it can expire on the way
    _, renewed = await credentials.headers_for(None)
    assert renewed != first and len(token_server.requests) == 2
    assert await api_status(token_server, renewed) == 200


async def test_client_credentials_invalidate_makes_the_next_call_fetch_a_new_token(
    token_server: TokenServer, tmp_path: Path
) -> None:
    (tmp_path / "cc.secret").write_text(SECRET + "\n", encoding="utf-8")
    options = AuthOptions(
        auth="client_credentials",
        client_id="patchbay",
        client_secret_file="cc.secret",
        token_url=f"{token_server.base}/token",  # configured: no discovery
    )
    credentials = credentials_for("api", options, env_in(tmp_path), upstream_url=f"{token_server.base}/api")
    _, first = await credentials.headers_for(None)
    credentials.invalidate("")  # the upstream answered 401
    _, second = await credentials.headers_for(None)
    assert second != first and len(token_server.requests) == 2
    assert all(r["grant_type"] == "client_credentials" for r in token_server.requests)
    assert await api_status(token_server, second) == 200


async def test_a_refused_client_secret_is_a_clear_error_that_does_not_show_the_secret(
    token_server: TokenServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CC_SECRET", "wrong-" + SECRET)
    options = AuthOptions(auth="client_credentials", client_id="patchbay", client_secret_env="CC_SECRET")
    credentials = credentials_for("api", options, env_in(tmp_path), upstream_url=f"{token_server.base}/api")
    with pytest.raises(LinkUnavailable) as refused:
        await credentials.headers_for(None)
    message = str(refused.value)
    assert "refused Patchbay's client credentials" in message and "invalid_client" in message
    assert SECRET not in message


def test_a_missing_client_secret_variable_names_the_file_connector_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CC_MISSING", raising=False)
    options = AuthOptions(auth="client_credentials", client_id="patchbay", client_secret_env="CC_MISSING")
    with pytest.raises(ConfigError) as missing:
        credentials_for("api", options, env_in(tmp_path), upstream_url="https://api.example.com/api")
    assert str(missing.value).startswith(f"{tmp_path / 'patchbay.toml'}: connectors[api].client_secret_env:")
    assert "CC_MISSING is not set" in str(missing.value)


# -- auth = "headers" -----------------------------------------------------------------------------------------------


async def test_static_headers_come_from_literals_environment_variables_and_secret_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKEN", "env-token-1")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "key.txt").write_text("file-key-2\n", encoding="utf-8")  # trailing newline dropped
    headers = {
        "Authorization": SecretRef(env="API_TOKEN"),
        "X-Api-Key": SecretRef(file="secrets/key.txt"),
        "X-Tenant": "acme",
    }
    credentials = credentials_for("api", AuthOptions(auth="headers", headers=headers), env_in(tmp_path))
    identity, sent = await credentials.headers_for(None)
    assert identity == ""
    assert sent == {"Authorization": "env-token-1", "X-Api-Key": "file-key-2", "X-Tenant": "acme"}
    sent["X-Tenant"] = "changed by a caller"
    assert (await credentials.headers_for(None))[1]["X-Tenant"] == "acme"  # each call gets its own copy
    credentials.invalidate("")  # nothing to renew
    assert (await credentials.headers_for(None))[1]["Authorization"] == "env-token-1"


@pytest.mark.parametrize(
    ("value", "prepare", "expected"),
    [
        (SecretRef(env="HDR_UNSET"), None, "environment variable HDR_UNSET is not set (or empty)"),
        (SecretRef(env="HDR_EMPTY"), None, "environment variable HDR_EMPTY is not set (or empty)"),
        (SecretRef(file="absent.txt"), None, "cannot read secret file"),
        (SecretRef(file="empty.txt"), "", "is empty"),
    ],
)
def test_a_missing_header_secret_is_a_config_error_naming_the_file_connector_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: SecretRef, prepare: str | None, expected: str
) -> None:
    monkeypatch.delenv("HDR_UNSET", raising=False)
    monkeypatch.setenv("HDR_EMPTY", "")
    if prepare is not None:
        (tmp_path / "empty.txt").write_text(prepare, encoding="utf-8")
    options = AuthOptions(auth="headers", headers={"Authorization": value})
    with pytest.raises(ConfigError) as failed:
        credentials_for("api", options, env_in(tmp_path))
    message = str(failed.value)
    assert message.startswith(f"{tmp_path / 'patchbay.toml'}: connectors[api].headers.Authorization: ")
    assert expected in message


# -- the client ID metadata document --------------------------------------------------------------------------------

PUBLIC = "https://mcp.example.com"


def linking_app(tmp_path: Path) -> Any:
    settings = settings_in(
        tmp_path,
        server={"public_url": PUBLIC, "name": "Acme"},
        store={"url": f"sqlite:///{tmp_path / 'store.db'}"},
        auth={"mode": "oauth"},
        connectors=[{"name": "jira", "type": "mcp", "url": "https://mcp.vendor.example/mcp", "auth": "user_oauth"}],
    )
    return create_app(settings)


async def test_the_client_metadata_document_names_only_our_callback_and_is_its_own_client_id(tmp_path: Path) -> None:
    transport = httpx2.ASGITransport(app=linking_app(tmp_path))
    async with httpx2.AsyncClient(transport=transport, base_url=PUBLIC) as http:
        served = await http.get("/links/client-metadata.json")
        elsewhere = await http.get("/links/client-metadata.json", headers={"host": "attacker.example"})
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    document = served.json()
    url = f"{PUBLIC}/links/client-metadata.json"
    assert document == {
        "client_id": url,
        "client_name": "Acme (Patchbay)",
        "redirect_uris": [f"{PUBLIC}/links/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    # A CIMD authorization server (ours, for one) accepts it as a public client whose one redirect is our callback.
    client = parse_document(url, document)
    assert client.redirect_uris == (f"{PUBLIC}/links/callback",) and client.auth_method == "none"
    assert elsewhere.status_code == 421 and "client_id" not in elsewhere.text  # Host is checked as everywhere
