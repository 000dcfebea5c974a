"""Discovery and challenges: RFC 9728 / RFC 8414 / OIDC documents and the 401 a client starts OAuth from."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.authflow import BASE, MCP, call, client_for, running, settings

from patchbay.app import create_app

pytestmark = pytest.mark.anyio

PRM_PATHS = ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"]
AS_PATHS = [
    "/.well-known/oauth-authorization-server",
    "/.well-known/oauth-authorization-server/mcp",
    "/.well-known/openid-configuration",
    "/.well-known/openid-configuration/mcp",
    "/mcp/.well-known/openid-configuration",
    "/mcp/.well-known/oauth-authorization-server",
]


async def test_protected_resource_metadata_names_the_exact_mcp_url_at_both_paths(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        for path in PRM_PATHS:
            response = await http.get(path)
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            assert response.headers["access-control-allow-origin"] == "*"
            assert response.headers["cache-control"] == "public, max-age=3600"
            document = response.json()
            assert document["resource"] == MCP
            assert document["authorization_servers"] == [BASE]
            # Tool scopes are published; offline_access is not (MCP 2026-07-28).
            assert "docs.write" in document["scopes_supported"]
            assert "offline_access" not in document["scopes_supported"]


async def test_authorization_server_metadata_is_identical_everywhere(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        documents = [(await http.get(p)).json() for p in AS_PATHS]
    assert all(d == documents[0] for d in documents)
    document = documents[0]
    assert document["issuer"] == BASE
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["authorization_response_iss_parameter_supported"] is True
    assert document["client_id_metadata_document_supported"] is True
    assert set(document["token_endpoint_auth_methods_supported"]) == {
        "none",
        "client_secret_basic",
        "client_secret_post",
    }
    assert "offline_access" in document["scopes_supported"]
    assert document["registration_endpoint"] == f"{BASE}/register"


async def test_cors_preflight_on_discovery_and_token_endpoints(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        for path in [*PRM_PATHS, *AS_PATHS, "/token", "/revoke", "/introspect", "/register"]:
            response = await http.options(
                path, headers={"origin": "https://inspector.example", "access-control-request-method": "POST"}
            )
            assert response.status_code == 204
            assert response.headers["access-control-allow-origin"] == "*"


async def test_missing_token_gets_401_with_resource_metadata_and_scope(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        response = await call(http, None, "tools/list")
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge == f'Bearer resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp", scope="mcp"'
    assert response.json()["error"]["message"].startswith("Authentication required")


async def test_bad_token_gets_401_invalid_token(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        response = await call(http, "pb_at_not-a-real-token", "tools/list")
        basic = await http.post("/mcp", json={}, headers={"authorization": "Basic Zm9vOmJhcg=="})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert "resource_metadata=" in response.headers["www-authenticate"]
    assert basic.status_code == 401


async def test_discovery_answers_get_and_head_and_refuses_other_methods(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        for path in [*PRM_PATHS, *AS_PATHS]:
            head = await http.head(path)
            assert head.status_code == 200 and head.content == b"", path
            assert (await http.post(path, json={})).status_code == 405, path


async def test_api_key_mode_serves_no_oauth_discovery(tmp_path: Path) -> None:
    async with running(tmp_path, auth={"mode": "api_key"}) as app, client_for(app) as http:
        for path in [*PRM_PATHS, *AS_PATHS, "/authorize", "/token"]:
            response = await http.get(path)
            assert response.status_code == 404, path  # not served at all in api_key mode
            assert response.headers["content-type"].startswith("application/json"), path
        refused = await call(http, None, "tools/list")
        _, key = await app.runtime.auth.core.run(app.runtime.auth.core.keys.create, "ci", ["mcp"])
        allowed = await call(http, key, "tools/list")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer realm="patchbay"'
    assert allowed.status_code == 200 and allowed.json()["result"]["tools"]


async def test_discovery_asked_before_the_server_has_started_is_a_json_404_with_cors(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path))  # routes exist, documents are published only by start()
    async with client_for(app) as http:
        for path in [PRM_PATHS[0], AS_PATHS[0]]:
            response = await http.get(path)
            assert response.status_code == 404, path
            assert response.json() == {"error": "not_found"}
            assert response.headers["access-control-allow-origin"] == "*"


async def test_discovery_documents_hold_exactly_the_advertised_fields(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        prm = (await http.get(PRM_PATHS[0])).json()
        server = (await http.get(AS_PATHS[0])).json()
    assert prm == {
        "resource": MCP,
        "authorization_servers": [BASE],
        "scopes_supported": ["mcp", "docs.write"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Patchbay test",
    }
    client_methods = ["client_secret_basic", "client_secret_post"]
    assert server == {
        "issuer": BASE,
        "authorization_endpoint": f"{BASE}/authorize",
        "token_endpoint": f"{BASE}/token",
        "revocation_endpoint": f"{BASE}/revoke",
        "introspection_endpoint": f"{BASE}/introspect",
        "registration_endpoint": f"{BASE}/register",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", *client_methods],
        "revocation_endpoint_auth_methods_supported": ["none", *client_methods],
        "introspection_endpoint_auth_methods_supported": client_methods,
        "scopes_supported": ["mcp", "docs.write", "offline_access"],
        "authorization_response_iss_parameter_supported": True,
        "client_id_metadata_document_supported": True,
        "subject_types_supported": ["public"],
    }


async def test_listed_offline_access_is_advertised_once_never_in_resource_metadata_and_no_registration_when_off(
    tmp_path: Path,
) -> None:
    auth = {"scopes_supported": ["mcp", "offline_access"], "registration": False}
    async with running(tmp_path, auth=auth) as app, client_for(app) as http:
        prm = (await http.get(PRM_PATHS[0])).json()
        server = (await http.get(AS_PATHS[0])).json()
    assert prm["scopes_supported"] == ["mcp", "docs.write"]
    assert server["scopes_supported"] == ["mcp", "docs.write", "offline_access"]
    assert "registration_endpoint" not in server
