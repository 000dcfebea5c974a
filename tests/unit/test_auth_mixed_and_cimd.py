"""Mixed auth (public "noauth" tools beside protected ones), client ID metadata documents behind the SSRF
guard, and the auth settings' error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.authflow import BASE, PASSWORD, Flow, add_user, call, client_for, running, settings

from patchbay.app import create_app
from patchbay.auth.cimd import MetadataDocuments
from patchbay.errors import ConfigError
from patchbay.outbound import Fetcher, Refused
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio
PUBLIC = {"public_tools": ["search"]}
CIMD_URL = "https://client.example/oauth/client.json"


async def test_tools_list_advertises_security_schemes_top_level_and_in_meta(tmp_path: Path) -> None:
    async with running(tmp_path, connector=PUBLIC) as app, client_for(app) as http:
        tools = {t["name"]: t for t in (await call(http, None, "tools/list")).json()["result"]["tools"]}
    assert tools["search"]["securitySchemes"] == [{"type": "noauth"}, {"type": "oauth2", "scopes": ["mcp"]}]
    assert tools["write_doc"]["securitySchemes"] == [{"type": "oauth2", "scopes": ["docs.write"]}]
    for tool in tools.values():
        assert tool["_meta"]["securitySchemes"] == tool["securitySchemes"]


async def test_anonymous_callers_reach_public_tools_and_get_a_challenge_for_the_rest(tmp_path: Path) -> None:
    async with running(tmp_path, connector=PUBLIC) as app, client_for(app) as http:
        public = await call(http, None, "tools/call", {"name": "search", "arguments": {"query": "q"}})
        assert public.json()["result"]["isError"] is False
        protected = (await call(http, None, "tools/call", {"name": "whoami", "arguments": {}})).json()["result"]
        assert protected["isError"] is True
        (challenge,) = protected["_meta"]["mcp/www_authenticate"]
        assert "error=" in challenge and "error_description=" in challenge and "resource_metadata=" in challenge
        other = await call(http, None, "resources/list")
        assert other.status_code == 401
        bad = await call(http, "pb_at_forged", "tools/list")  # a bad token is refused even in mixed mode
        assert bad.status_code == 401


async def test_in_api_key_mode_tools_advertise_no_oauth_and_a_challenge_names_no_metadata(tmp_path: Path) -> None:
    # api_key mode serves no protected-resource metadata, so nothing may point a client at it.
    async with running(tmp_path, auth={"mode": "api_key"}, connector=PUBLIC) as app, client_for(app) as http:
        tools = {t["name"]: t for t in (await call(http, None, "tools/list")).json()["result"]["tools"]}
        protected = (await call(http, None, "tools/call", {"name": "whoami", "arguments": {}})).json()["result"]
    assert "securitySchemes" not in tools["search"] and "securitySchemes" not in tools["whoami"]
    assert protected["isError"] is True
    assert protected["_meta"]["mcp/www_authenticate"] == [
        'Bearer scope="mcp", error="insufficient_scope", error_description="You need to sign in to use this tool"'
    ]


@pytest.mark.parametrize("secret", [True, False], ids=["with-secret", "public"])
async def test_a_configured_clients_auth_method_defaults_to_basic_with_a_secret_and_none_without(
    tmp_path: Path, monkeypatch: Any, secret: bool
) -> None:
    monkeypatch.setenv("OPS_SECRET", "ops-s3cret")
    client = {"client_id": "ops", "name": "Ops", "redirect_uris": ["https://ops.example/cb"]}
    if secret:
        client["client_secret_env"] = "OPS_SECRET"
    async with running(tmp_path, auth={"clients": [client]}) as app, client_for(app) as http:
        stored = app.runtime.auth.core.clients.get("ops")
        assert stored is not None and stored.auth_method == ("client_secret_basic" if secret else "none")
        await add_user(app)
        flow = Flow(http, client_id="ops", redirect_uri="https://ops.example/cb")
        code = await flow.code()
        anonymous = await flow.redeem(code)
    if secret:  # a client holding a secret must present it
        assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    else:
        assert anonymous.status_code == 200 and "access_token" in anonymous.json()


async def test_connector_config_sets_scopes_per_tool(tmp_path: Path) -> None:
    connector = {"scopes": ["kb.read"], "tool_scopes": {"search": ["kb.search"]}}
    async with running(tmp_path, connector=connector) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        tokens = await flow.tokens(scope="mcp kb.read")
        tools = {
            t["name"]: t for t in (await call(http, tokens["access_token"], "tools/list")).json()["result"]["tools"]
        }
        assert tools["whoami"]["securitySchemes"][0]["scopes"] == ["kb.read"]
        assert tools["search"]["securitySchemes"][0]["scopes"] == ["kb.search"]
        assert tools["write_doc"]["securitySchemes"][0]["scopes"] == ["docs.write"]  # the tool's own wins
        ok = await call(http, tokens["access_token"], "tools/call", {"name": "whoami", "arguments": {}})
        assert ok.json()["result"]["isError"] is False
        denied = await call(http, tokens["access_token"], "tools/call", {"name": "search", "arguments": {"query": "q"}})
        assert denied.json()["result"]["isError"] is True


def fake_internet(routes: dict[str, Any], dns: dict[str, str]) -> Fetcher:
    async def resolve(host: str, port: int) -> list[str]:
        return [dns[host]]

    def answer(request: httpx.Request) -> httpx.Response:
        url = f"https://{request.headers['host']}{request.url.path}"
        if url not in routes:
            return httpx.Response(404)
        return httpx.Response(200, json=routes[url], headers={"cache-control": "max-age=600"})

    return Fetcher(transport=httpx.MockTransport(answer), resolve=resolve)


def use_documents(app: Any, fetcher: Fetcher) -> None:
    app.runtime.auth.authorization.documents = MetadataDocuments(fetcher)


async def test_client_id_metadata_document_flow(tmp_path: Path) -> None:
    document = {
        "client_id": CIMD_URL,
        "client_name": "Example CIMD client",
        "redirect_uris": ["https://client.example/callback"],
        "token_endpoint_auth_method": "none",
    }
    async with running(tmp_path) as app, client_for(app) as http:
        use_documents(app, fake_internet({CIMD_URL: document}, {"client.example": "93.184.215.14"}))
        await add_user(app)
        flow = Flow(http, client_id=CIMD_URL, redirect_uri="https://client.example/callback")
        page = await http.get(flow.authorize_url())
        assert "Example CIMD client" in page.text
        tokens = await flow.tokens()
        assert (await call(http, tokens["access_token"], "tools/list")).status_code == 200
        stored = app.runtime.auth.core.clients.get(CIMD_URL)
        assert stored is not None and stored.kind == "cimd" and stored.secret_hash is None


@pytest.mark.parametrize(
    ("url", "dns", "document"),
    [
        ("https://internal.example/client.json", {"internal.example": "10.0.0.5"}, None),
        ("https://metadata.example/client.json", {"metadata.example": "169.254.169.254"}, None),
        ("https://127.0.0.1/client.json", {}, None),
        (
            "https://liar.example/client.json",
            {"liar.example": "93.184.215.14"},
            {"client_id": "https://other.example/c"},
        ),
    ],
)
async def test_unsafe_or_invalid_metadata_documents_are_refused(
    tmp_path: Path, url: str, dns: dict[str, str], document: Any
) -> None:
    routes = {url: {**(document or {}), "redirect_uris": ["https://x.example/cb"]}}
    async with running(tmp_path) as app, client_for(app) as http:
        use_documents(app, fake_internet(routes, dns))
        flow = Flow(http, client_id=url, redirect_uri="https://x.example/cb")
        page = await http.get(flow.authorize_url(), follow_redirects=False)
        token = await flow.redeem("pb_ac_x")
        assert page.status_code == 400 and "location" not in page.headers
        assert token.status_code == 401 and token.json()["error"] == "invalid_client"
        assert app.runtime.auth.core.clients.list() == []


async def test_configured_client_with_secret_from_the_environment(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("CHATGPT_SECRET", "s3cret-value-for-tests")
    client = {
        "client_id": "chatgpt",
        "name": "ChatGPT",
        "redirect_uris": ["https://chatgpt.com/connector_platform_oauth_redirect"],
        "client_secret_env": "CHATGPT_SECRET",
    }
    async with running(tmp_path, auth={"clients": [client]}) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(
            http, client_id="chatgpt", client_secret="s3cret-value-for-tests", redirect_uri=client["redirect_uris"][0]
        )
        tokens = await flow.tokens()
        assert tokens["access_token"].startswith("pb_at_")
        assert (await call(http, tokens["access_token"], "tools/list")).status_code == 200


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"mode": "oauht"}, "auth.mode"),
        ({"mode": "external"}, "[auth.external]"),
        ({"default_scopes": ["x"]}, "default_scopes ['x'] must also be in scopes_supported"),
        ({"scopes_supported": ["bad scope"]}, "not a valid scope"),
        ({"clients": [{"client_id": "c", "name": "n", "redirect_uris": [], "extra": 1}]}, "auth.clients"),
        ({"access_token_seconds": 5}, "auth.access_token_seconds"),
    ],
)
def test_auth_settings_errors_name_the_file_and_key(auth: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_dict({"auth": auth}, source="patchbay.toml")
    assert "patchbay.toml" in str(caught.value) and message in str(caught.value)


async def test_authorization_server_issuer_is_public_url_not_the_host_header(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        document = (await http.get("/.well-known/oauth-authorization-server", headers={"host": "localhost:1"})).json()
    assert document["issuer"] == BASE


@pytest.mark.parametrize(
    ("redirects", "warned"),
    [
        (["http://127.0.0.1:8765/callback", "http://localhost/cb", "http://[::1]:9/cb"], True),
        (["http://127.0.0.1:8765/callback", "https://client.example/callback"], False),
    ],
)
async def test_consent_warns_when_a_metadata_document_client_redirects_only_to_this_computer(
    tmp_path: Path, redirects: list[str], warned: bool
) -> None:
    document = {
        "client_id": CIMD_URL,
        "client_name": "Example CIMD client",
        "redirect_uris": redirects,
        "token_endpoint_auth_method": "none",
    }
    async with running(tmp_path) as app, client_for(app) as http:
        use_documents(app, fake_internet({CIMD_URL: document}, {"client.example": "93.184.215.14"}))
        await add_user(app)
        flow = Flow(http, client_id=CIMD_URL, redirect_uri=redirects[0])
        form = await flow.login_form()
        consent = await http.post("/authorize/login", data=form.filled("alice", PASSWORD, "allow"))
    assert consent.status_code == 200 and "Allow access?" in consent.text
    assert ("This client only redirects to this computer (localhost)." in consent.text) is warned


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_a_configured_clients_secret_variable_that_is_unset_is_a_config_error(
    tmp_path: Path, monkeypatch: Any, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CHATGPT_SECRET", raising=False)
    else:
        monkeypatch.setenv("CHATGPT_SECRET", value)
    client = {"client_id": "chatgpt", "name": "ChatGPT", "redirect_uris": ["https://chatgpt.com/cb"]}
    with pytest.raises(ConfigError) as caught:
        create_app(settings(tmp_path, auth={"clients": [{**client, "client_secret_env": "CHATGPT_SECRET"}]}))
    assert caught.value.key == "auth.clients[0].client_secret_env" and caught.value.file == "<config>"
    assert str(caught.value) == (
        "<config>: auth.clients[chatgpt]: client_secret_env names CHATGPT_SECRET, which is not set in the environment"
    )


@pytest.mark.parametrize("private", [False, True])
async def test_metadata_documents_are_fetched_by_the_outbound_fetcher_built_on_first_use(
    tmp_path: Path, private: bool
) -> None:
    """The documents' fetcher is the one ``[outbound]`` describes, widened by ``[auth] allow_private_network``; it
    is built on the first fetch (most servers never see a document URL) and then kept."""
    from patchbay.auth.server import AuthServer
    from patchbay.catalog import Catalog

    seen: list[tuple[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url)))
        return httpx.Response(200, json={"client_id": str(request.url)})

    configured = settings(tmp_path, {"client_metadata_documents": True, "allow_private_network": private})
    server = AuthServer(configured, Catalog([]), transport=httpx.MockTransport(answer))
    try:
        documents = server.authorization.documents
        assert documents is not None
        lazy: Any = documents.fetcher
        assert lazy.fetcher is None
        url = "http://127.0.0.1:9/client.json"
        if not private:
            with pytest.raises(Refused):
                await lazy.request("GET", url)
            assert seen == []
            return
        first = await lazy.request("GET", url)
        built = lazy.fetcher
        second = await lazy.request("HEAD", url + "?again")
        assert first.status == 200 and first.json() == {"client_id": url}
        assert second.status == 200 and lazy.fetcher is built is not None
        assert seen == [("GET", url), ("HEAD", url + "?again")]
    finally:
        server.close()
