"""Version negotiation and the shape of results in each era: initialize (2025), server/discover and the
``resultType``/cache hints every 2026-07-28 result carries.

reference/mcp-requirements.md §2.6 items 2, 5, 7; §2.8; R-012, R-030, R-033.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fixtures.wire import (
    HANDSHAKE_VERSIONS,
    JSON_POST,
    LATEST,
    META_SERVER_INFO,
    MODERN,
    assert_json,
    assert_rpc_error,
    call_modern,
    client_for,
    initialize_body,
    request,
    running,
    settings_for,
)

pytestmark = pytest.mark.anyio


async def initialize(client: httpx.AsyncClient, version: Any) -> httpx.Response:
    body = initialize_body(version)
    return await client.post("/mcp", json=body, headers=JSON_POST)


@pytest.mark.parametrize("version", HANDSHAKE_VERSIONS)
async def test_initialize_echoes_every_supported_handshake_version(client: httpx.AsyncClient, version: str) -> None:
    """§2.8: answer with the same version when supported (Claude Code sends 2024-11-05 and fails otherwise)."""
    response = await initialize(client, version)
    result = assert_json(response)["result"]
    assert result["protocolVersion"] == version
    assert response.headers["mcp-session-id"]


@pytest.mark.parametrize("version", ["2099-01-01", "1.0.0", MODERN, "2025-11-26"])
async def test_initialize_with_an_unknown_version_offers_the_latest_handshake_version(
    client: httpx.AsyncClient, version: str
) -> None:
    """§2.8: never answer 2026-07-28 to initialize (it is not a handshake version)."""
    result = assert_json(await initialize(client, version))["result"]
    assert result["protocolVersion"] == LATEST


@pytest.mark.parametrize("version", [None, 20251125, ["2025-11-25"]], ids=["missing", "number", "list"])
async def test_initialize_without_a_version_string_is_invalid_params(client: httpx.AsyncClient, version: Any) -> None:
    body = initialize_body(request_id=77)
    if version is None:
        del body["params"]["protocolVersion"]
    else:
        body["params"]["protocolVersion"] = version
    response = await client.post("/mcp", json=body, headers=JSON_POST)
    assert_rpc_error(response, 400, -32602, request_id=77)  # docs/protocol.md: 400 for initialize
    assert "mcp-session-id" not in response.headers


async def test_initialize_declares_capabilities_and_server_info(client: httpx.AsyncClient) -> None:
    """R-012: capabilities and serverInfo; §9: tools, resources{subscribe}, prompts, logging, completions."""
    result = assert_json(await initialize(client, LATEST))["result"]
    caps = result["capabilities"]
    for capability in ("tools", "resources", "prompts", "logging", "completions"):
        assert isinstance(caps.get(capability), dict), capability
    assert caps["resources"].get("subscribe") is True
    assert result["serverInfo"]["name"] == "patchbay-unit"
    assert result["serverInfo"]["version"]
    assert "resultType" not in result


async def test_session_ids_are_visible_ascii_and_unique(client: httpx.AsyncClient) -> None:
    """§3.1 sessions: visible ASCII 0x21-0x7E, cryptographically random."""
    ids = {(await initialize(client, LATEST)).headers["mcp-session-id"] for _ in range(20)}
    assert len(ids) == 20
    for session_id in ids:
        assert len(session_id) >= 22
        assert all(0x21 <= ord(c) <= 0x7E for c in session_id)


async def test_discover_has_the_2026_shape(client: httpx.AsyncClient) -> None:
    """§2.6 item 2, R-030: resultType, supportedVersions, capabilities, ttlMs, cacheScope, _meta serverInfo."""
    response = await call_modern(client, "server/discover", {})
    assert response.status_code == 200
    result = assert_json(response)["result"]
    assert result["resultType"] == "complete"
    assert result["supportedVersions"][0] == MODERN
    assert set(HANDSHAKE_VERSIONS[:3]) <= set(result["supportedVersions"])
    assert isinstance(result["capabilities"]["tools"], dict)
    assert result["ttlMs"] == 60_000  # server.list_ttl_ms, default
    assert result["cacheScope"] == "public"
    info = result["_meta"][META_SERVER_INFO]
    assert info["name"] == "patchbay-unit" and info["version"]


async def test_discover_is_not_served_in_the_2025_era(client: httpx.AsyncClient) -> None:
    response = await client.post("/mcp", json=request("server/discover", {}, 3), headers=JSON_POST)
    assert_rpc_error(response, 200, -32601, request_id=3)


MODERN_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("server/discover", {}),
    ("tools/list", {}),
    ("tools/call", {"name": "echo", "arguments": {"text": "hi"}}),
    ("tools/call", {"name": "refuse", "arguments": {}}),
    ("resources/list", {}),
    ("resources/templates/list", {}),
    ("resources/read", {"uri": "test://static"}),
    ("prompts/list", {}),
    ("prompts/get", {"name": "greet", "arguments": {"name": "Ada"}}),
    (
        "completion/complete",
        {"ref": {"type": "ref/prompt", "name": "greet"}, "argument": {"name": "topic", "value": "py"}},
    ),
]
CACHEABLE = {
    "server/discover",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
}


@pytest.mark.parametrize(("method", "params"), MODERN_CALLS, ids=[f"{m}-{i}" for i, (m, _) in enumerate(MODERN_CALLS)])
async def test_every_2026_result_has_result_type_and_server_info(
    client: httpx.AsyncClient, method: str, params: dict[str, Any]
) -> None:
    """§2.6 items 1 and 5 (R-033): resultType on every result; serverInfo in every result's _meta."""
    response = await call_modern(client, method, params)
    assert response.status_code == 200, response.text
    result = assert_json(response)["result"]
    assert result["resultType"] == "complete"
    assert result["_meta"][META_SERVER_INFO]["name"] == "patchbay-unit"


@pytest.mark.parametrize(("method", "params"), [c for c in MODERN_CALLS if c[0] in CACHEABLE])
async def test_2026_list_and_read_results_carry_the_documented_cache_hints(
    client: httpx.AsyncClient, method: str, params: dict[str, Any]
) -> None:
    """§2.6 item 7 and docs/protocol.md: lists and discover are shared for server.list_ttl_ms; a read is one
    caller's, never cached (a resource's content may depend on who reads it)."""
    result = assert_json(await call_modern(client, method, params))["result"]
    expected = (0, "private") if method == "resources/read" else (60_000, "public")
    assert (result["ttlMs"], result["cacheScope"]) == expected
    assert type(result["ttlMs"]) is int


async def test_list_ttl_ms_sets_the_ttl_of_lists_but_not_of_reads(tmp_path: Path) -> None:
    async with running(settings_for(tmp_path, list_ttl_ms=1234)) as app, client_for(app) as client:
        listed = assert_json(await call_modern(client, "tools/list", {}))["result"]
        read = assert_json(await call_modern(client, "resources/read", {"uri": "test://static"}))["result"]
    assert (listed["ttlMs"], listed["cacheScope"]) == (1234, "public")
    assert (read["ttlMs"], read["cacheScope"]) == (0, "private")


async def test_tool_results_carry_no_cache_hints(client: httpx.AsyncClient) -> None:
    result = assert_json(await call_modern(client, "tools/call", {"name": "echo", "arguments": {"text": "x"}}))
    assert "ttlMs" not in result["result"]
    assert "cacheScope" not in result["result"]


async def test_2025_results_carry_no_2026_fields(client: httpx.AsyncClient) -> None:
    response = await client.post("/mcp", json=request("tools/list", {}), headers=JSON_POST)
    result = assert_json(response)["result"]
    assert "resultType" not in result
    assert "ttlMs" not in result


async def test_tools_list_order_is_deterministic(client: httpx.AsyncClient) -> None:
    """R-034: the same tools in the same order on every call."""
    names = []
    for _ in range(3):
        result = assert_json(await call_modern(client, "tools/list", {}))["result"]
        names.append([t["name"] for t in result["tools"]])
    assert names[0] == names[1] == names[2]
    assert "echo" in names[0]


async def test_an_unknown_cursor_is_invalid_params(client: httpx.AsyncClient) -> None:
    response = await call_modern(client, "tools/list", {"cursor": "bogus"})
    assert response.status_code == 400
    assert assert_json(response)["error"]["code"] == -32602


async def test_ping_answers_an_empty_result_in_the_2025_era(client: httpx.AsyncClient) -> None:
    response = await client.post("/mcp", json=request("ping", None, 8), headers=JSON_POST)
    assert assert_json(response) == {"jsonrpc": "2.0", "id": 8, "result": {}}
