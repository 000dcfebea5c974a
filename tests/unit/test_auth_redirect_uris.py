"""Redirect URIs a client may register, and the headers they reach (Location, CSP form-action)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.authflow import CHATGPT_REDIRECT, CLAUDE_REDIRECT, REDIRECT, Flow, client_for, running, settings

from patchbay.app import create_app
from patchbay.auth.cimd import parse_document
from patchbay.auth.clients import Client
from patchbay.auth.errors import OAuthError
from patchbay.errors import ConfigError

pytestmark = pytest.mark.anyio

HOSTILE = "https://a.example;frame-ancestors https://evil.example/cb"
DIRECTIVES = {"default-src", "style-src", "form-action", "frame-ancestors", "base-uri"}


def _csp(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        assert name not in directives, f"{name} appears twice; browsers obey the first"
        directives[name] = values
    return directives


@pytest.mark.parametrize(
    "uri",
    [
        CHATGPT_REDIRECT,
        CLAUDE_REDIRECT,
        "http://localhost:33418/callback",
        "http://127.0.0.1:6274/oauth/callback?x=1",
        "http://[::1]:8080/cb",
        "com.example.app:/oauth2redirect",
        "cursor://anysphere.cursor-retrieval/oauth/callback",
    ],
)
async def test_redirect_uris_of_real_clients_are_accepted(tmp_path: Path, uri: str) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        response = await http.post("/register", json={"redirect_uris": [uri], "token_endpoint_auth_method": "none"})
    assert response.status_code == 201, response.text
    assert response.json()["redirect_uris"] == [uri]


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        (HOSTILE, "only RFC 3986 URI characters"),
        ("https://a.example;sandbox/cb", "has no valid host"),
        ("https://a.example/cb; frame-ancestors *", "only RFC 3986 URI characters"),
        ("https://a.example/cb\r\nSet-Cookie: x=1", "only RFC 3986 URI characters"),
        ('https://a.example/"x', "only RFC 3986 URI characters"),
        ("https://a.example/cb#frag", "only RFC 3986 URI characters"),
        ("https://a.example/%zz", "only RFC 3986 URI characters"),
        ("https://user:pw@a.example/cb", "user information"),
        ("https:///cb", "has no host"),
        ("https://a_b.example/cb", "has no valid host"),
        ("https://[::1/cb", "has no valid host"),
        ("https://[zz]/cb", "has no valid host"),
        ("https://a.example:99999/cb", "invalid port"),
        ("http://127.0.0.1.evil.example/cb", "loopback"),
        ("javascript:alert(1)", "javascript"),
    ],
)
async def test_redirect_uris_that_could_break_a_header_are_refused(tmp_path: Path, uri: str, says: str) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        response = await http.post("/register", json={"redirect_uris": [uri], "token_endpoint_auth_method": "none"})
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_redirect_uri" and says in response.json()["error_description"]
        assert app.runtime.auth.core.clients.list() == []


async def test_sign_in_page_csp_allows_only_the_redirect_origin(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        flow = Flow(http)
        await flow.register()
        page = await http.get(flow.authorize_url())
    assert page.status_code == 200
    csp = _csp(page.headers["content-security-policy"])
    assert set(csp) == DIRECTIVES
    assert csp["form-action"] == ["'self'", "http://127.0.0.1:9999"]
    assert csp["frame-ancestors"] == ["'none'"]


@pytest.mark.parametrize("kind", ["config", "cimd", "dcr"])
async def test_a_stored_hostile_redirect_uri_never_changes_the_csp(tmp_path: Path, kind: str) -> None:
    # A record written before this check existed, or by a path that skips it, still cannot reach the header.
    async with running(tmp_path, auth={"client_metadata_documents": False}) as app, client_for(app) as http:
        core = app.runtime.auth.core
        client = Client(client_id="old-client", kind=kind, name="Old", redirect_uris=(HOSTILE,))  # type: ignore[arg-type]
        await core.run(core.clients.save, client)
        flow = Flow(http, client_id="old-client", redirect_uri=HOSTILE)
        page = await http.get(flow.authorize_url())
    assert page.status_code == 200
    csp = _csp(page.headers["content-security-policy"])
    assert set(csp) == DIRECTIVES
    assert csp["form-action"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"]


def test_a_client_metadata_document_with_a_hostile_redirect_uri_is_invalid() -> None:
    url = "https://client.example/meta.json"
    with pytest.raises(OAuthError) as refused:
        parse_document(url, {"client_id": url, "redirect_uris": [HOSTILE]})
    assert refused.value.error == "invalid_client" and "only RFC 3986" in refused.value.description


def test_a_configured_client_with_a_hostile_redirect_uri_is_a_config_error(tmp_path: Path) -> None:
    clients = [{"client_id": "ops", "name": "Ops", "redirect_uris": [REDIRECT, "https://a.example;sandbox/cb"]}]
    with pytest.raises(ConfigError) as refused:
        create_app(settings(tmp_path, auth={"clients": clients}))
    assert refused.value.key == "auth.clients[0].redirect_uris[1]" and refused.value.file == "<config>"
    assert str(refused.value) == (
        "<config>: auth.clients[0].redirect_uris[1]: redirect URI 'https://a.example;sandbox/cb': has no valid host "
        "name or IP address. Allowed: https URLs with a host name, http only to "
        "127.0.0.1, [::1] or localhost, or a private-use scheme (com.example.app:/callback); no user@, spaces, quotes "
        "or #fragment"
    )


async def test_a_malformed_bracketed_host_is_refused_at_every_endpoint_not_a_server_error(tmp_path: Path) -> None:
    # urllib raises ValueError for "[zz]" or an unclosed "[": each endpoint answers its own refusal instead.
    async with running(tmp_path) as app, client_for(app) as http:
        flow = Flow(http)
        await flow.register()
        for uri in ("https://[zz]/cb", "https://[::1/cb"):
            page = await http.get(flow.authorize_url(redirect_uri=uri), follow_redirects=False)
            assert page.status_code == 400 and "location" not in page.headers
        stranger = Flow(http, client_id="https://[zz]/client.json")
        page = await http.get(stranger.authorize_url(), follow_redirects=False)
        assert page.status_code == 400 and "location" not in page.headers
        token = await stranger.redeem("pb_ac_x")
        assert token.status_code == 401 and token.json()["error"] == "invalid_client"
