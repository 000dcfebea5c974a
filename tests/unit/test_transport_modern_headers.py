"""2026-07-28 requests: required ``_meta``, version checks and the routing headers (MCP-Protocol-Version, Mcp-Method,
Mcp-Name, Mcp-Param-*), each refused with the status and code the spec names.

reference/mcp-requirements.md §2.6 items 1 and 3, §3.2; R-031, R-032; conformance-scenarios §4.1, §4.4, §4.5, §10.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx2 as httpx
import pytest
from fixtures.wire import (
    HANDSHAKE_VERSIONS,
    META_CAPS,
    META_INFO,
    META_VERSION,
    MODERN,
    assert_json,
    assert_rpc_error,
    assert_still_serving,
    meta,
    modern_request,
)

pytestmark = pytest.mark.anyio

INVALID_PARAMS = -32602
HEADER_MISMATCH = -32020
UNSUPPORTED_VERSION = -32022


def b64(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode()).decode() + "?="


async def send(client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    return await client.post("/mcp", json=body, headers=headers)


@pytest.mark.parametrize("missing", [META_VERSION, META_CAPS], ids=["protocolVersion", "clientCapabilities"])
async def test_missing_required_meta_is_400_invalid_params(client: httpx.AsyncClient, missing: str) -> None:
    """§2.6 item 1: a missing required _meta field → -32602, HTTP 400, echoing the request id."""
    body, headers = modern_request("server/discover", request_id=102)
    del body["params"]["_meta"][missing]
    response = await send(client, body, headers)
    assert_rpc_error(response, 400, INVALID_PARAMS, request_id=102)
    await assert_still_serving(client)


async def test_discover_without_any_meta_is_400_invalid_params(client: httpx.AsyncClient) -> None:
    """conformance-scenarios §4.1 step 1: server/discover with params {} and the 2026 header."""
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    headers |= {"mcp-protocol-version": MODERN, "mcp-method": "server/discover"}
    body = {"jsonrpc": "2.0", "id": 101, "method": "server/discover", "params": {}}
    assert_rpc_error(await send(client, body, headers), 400, INVALID_PARAMS, request_id=101)


async def test_client_info_is_optional(client: httpx.AsyncClient) -> None:
    body, headers = modern_request("server/discover", request_id=105)
    del body["params"]["_meta"][META_INFO]
    response = await send(client, body, headers)
    assert response.status_code == 200
    assert assert_json(response)["result"]["resultType"] == "complete"


async def test_clientcapabilities_that_is_not_an_object_is_400(client: httpx.AsyncClient) -> None:
    body, headers = modern_request("tools/list", request_id=103)
    body["params"]["_meta"][META_CAPS] = "all"
    assert_rpc_error(await send(client, body, headers), 400, INVALID_PARAMS, request_id=103)


async def test_header_and_meta_version_mismatch_is_400_header_mismatch(client: httpx.AsyncClient) -> None:
    """conformance-scenarios §4.1 step 7: the header/_meta check comes before the version-support check."""
    body, headers = modern_request("server/discover", request_id=302)
    body["params"]["_meta"][META_VERSION] = "v999.0.0"
    assert_rpc_error(await send(client, body, headers), 400, HEADER_MISMATCH, request_id=302)
    await assert_still_serving(client)


async def test_missing_protocol_version_header_is_400_header_mismatch(client: httpx.AsyncClient) -> None:
    body, headers = modern_request("tools/list", request_id=304)
    del headers["mcp-protocol-version"]
    assert_rpc_error(await send(client, body, headers), 400, HEADER_MISMATCH, request_id=304)


async def test_unsupported_version_is_400_with_supported_and_requested(client: httpx.AsyncClient) -> None:
    """§2.6 item 3: -32022 with data.supported (⊆ discover's supportedVersions) and data.requested."""
    body, headers = modern_request("server/discover", request_id=301)
    body["params"]["_meta"][META_VERSION] = "v999.0.0"
    headers["mcp-protocol-version"] = "v999.0.0"
    error = assert_rpc_error(await send(client, body, headers), 400, UNSUPPORTED_VERSION, request_id=301)
    assert error["data"]["requested"] == "v999.0.0"
    assert error["data"]["supported"]
    discover_body, discover_headers = modern_request("server/discover")
    discovered = (await send(client, discover_body, discover_headers)).json()["result"]["supportedVersions"]
    assert set(error["data"]["supported"]) <= set(discovered)
    await assert_still_serving(client)


@pytest.mark.parametrize("version", ["2026-07-29", "2025-11-26", "2027-01-01", "2026-07-28-draft"])
async def test_an_unsupported_version_error_never_lists_the_requested_version(
    client: httpx.AsyncClient, version: str
) -> None:
    """A -32022 that names the requested version among the supported ones sends the client into a loop: it
    retries with a version the server has just said it supports. Near misses of real versions included."""
    body, headers = modern_request("tools/list", request_id=305)
    body["params"]["_meta"][META_VERSION] = version
    headers["mcp-protocol-version"] = version
    error = assert_rpc_error(await send(client, body, headers), 400, UNSUPPORTED_VERSION, request_id=305)
    assert error["data"] == {"supported": [MODERN, *HANDSHAKE_VERSIONS], "requested": version}  # as in docs
    assert version not in error["data"]["supported"]


@pytest.mark.parametrize("version", HANDSHAKE_VERSIONS)
async def test_a_meta_naming_a_2025_version_is_served_in_the_2025_era(client: httpx.AsyncClient, version: str) -> None:
    """docs/protocol.md "Versions and eras" rule 1: not refused with -32022, but answered as a 2025-era request."""
    body, headers = modern_request("tools/list", request_id=306)
    body["params"]["_meta"][META_VERSION] = version
    headers["mcp-protocol-version"] = version
    response = await send(client, body, headers)
    assert response.status_code == 200, response.text
    result = assert_json(response)["result"]
    assert any(t["name"] == "echo" for t in result["tools"])
    assert "resultType" not in result and "ttlMs" not in result  # no 2026-07-28 fields


@pytest.mark.parametrize(
    ("method", "header"),
    [("tools/list", None), ("tools/list", "prompts/list"), ("tools/list", "TOOLS/LIST"), ("tools/list", "")],
    ids=["missing", "mismatched", "value-case", "empty"],
)
async def test_mcp_method_missing_or_mismatched_is_400_header_mismatch(
    client: httpx.AsyncClient, method: str, header: str | None
) -> None:
    """conformance-scenarios §4.4: header names are case-insensitive, values case-sensitive."""
    body, headers = modern_request(method, request_id=401)
    if header is None:
        del headers["mcp-method"]
    else:
        headers["mcp-method"] = header
    assert_rpc_error(await send(client, body, headers), 400, HEADER_MISMATCH, request_id=401)
    await assert_still_serving(client)


@pytest.mark.parametrize("name", ["mcp-method", "MCP-METHOD", "Mcp-Method"])
async def test_mcp_method_header_name_is_case_insensitive(client: httpx.AsyncClient, name: str) -> None:
    body, headers = modern_request("tools/list")
    del headers["mcp-method"]
    headers[name] = "tools/list"
    response = await send(client, body, headers)
    assert response.status_code == 200
    assert "error" not in assert_json(response)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("tools/call", {"name": "echo", "arguments": {"text": "x"}}),
        ("prompts/get", {"name": "greet", "arguments": {"name": "Ada"}}),
        ("resources/read", {"uri": "test://static"}),
    ],
)
@pytest.mark.parametrize("header", [None, "wrong_name"], ids=["missing", "mismatched"])
async def test_mcp_name_missing_or_mismatched_is_400_header_mismatch(
    client: httpx.AsyncClient, method: str, params: dict[str, Any], header: str | None
) -> None:
    body, headers = modern_request(method, params, request_id=402)
    if header is None:
        del headers["mcp-name"]
    else:
        headers["mcp-name"] = header
    assert_rpc_error(await send(client, body, headers), 400, HEADER_MISMATCH, request_id=402)


async def test_mcp_name_surrounding_whitespace_is_trimmed(client: httpx.AsyncClient) -> None:
    """conformance-scenarios §4.4 (OWS in name): "  echo  " matches "echo"."""
    body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"text": "ows"}})
    headers["mcp-name"] = "  echo  "
    response = await send(client, body, headers)
    assert response.status_code == 200
    assert assert_json(response)["result"]["content"][0]["text"] == "ows"


async def test_base64_header_values_are_decoded_before_comparing(client: httpx.AsyncClient) -> None:
    """§3.2: values that are not safe ASCII arrive as =?base64?…?=; the server decodes before comparing."""
    body, headers = modern_request("resources/read", {"uri": "test://items/pomme-épicée"})
    headers["mcp-name"] = b64("test://items/pomme-épicée")
    headers["mcp-method"] = b64("resources/read")
    response = await send(client, body, headers)
    assert response.status_code == 200, response.text
    assert "pomme-épicée" in assert_json(response)["result"]["contents"][0]["text"]


async def test_invalid_base64_header_value_is_400_header_mismatch(client: httpx.AsyncClient) -> None:
    body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"text": "x"}}, request_id=403)
    headers["mcp-name"] = "=?base64?ZWNo!!!?="
    assert_rpc_error(await send(client, body, headers), 400, HEADER_MISMATCH, request_id=403)


def regional(region: Any, header: str | None, **arguments: Any) -> tuple[dict[str, Any], dict[str, str]]:
    body, headers = modern_request("tools/call", {"name": "regional", "arguments": {"region": region, **arguments}})
    if header is not None:
        headers["mcp-param-region"] = header
    return body, headers


@pytest.mark.parametrize(
    ("region", "header"),
    [("Hello", b64("Hello")), ("SGVsbG8=", "SGVsbG8="), ("=?base64?SGVsbG8=", "=?base64?SGVsbG8="), ("eu", " eu ")],
    ids=["base64", "literal-b64-text", "no-suffix-literal", "ows"],
)
async def test_mcp_param_header_matching_the_argument_is_accepted(
    client: httpx.AsyncClient, region: str, header: str
) -> None:
    """conformance-scenarios §4.5: only =?base64?…?= is decoded; anything else compares literally after trim."""
    response = await send(client, *regional(region, header))
    assert response.status_code == 200, response.text
    assert assert_json(response)["result"]["content"][0]["text"].startswith(f"region={region} ")


@pytest.mark.parametrize(
    ("region", "header"),
    [
        ("Hello", "=?base64?SGVsbG8?="),
        ("Hello", "=?base64?SGVs!!!bG8=?="),
        ("test-value", None),
        ("test-value", "other-value"),
        ("Hello", "hello"),
    ],
    ids=["bad-padding", "bad-alphabet", "omitted", "different", "case"],
)
async def test_mcp_param_header_invalid_missing_or_different_is_400_header_mismatch(
    client: httpx.AsyncClient, region: str, header: str | None
) -> None:
    response = await send(client, *regional(region, header))
    body = assert_json(response)
    assert response.status_code == 400
    assert body["error"]["code"] == HEADER_MISMATCH


async def test_mcp_param_integer_header_compares_numerically(client: httpx.AsyncClient) -> None:
    """§3.2: integers are compared numerically (so "007" matches 7)."""
    body, headers = regional("eu", "eu", count=7)
    headers["mcp-param-count"] = "007"
    response = await send(client, body, headers)
    assert response.status_code == 200, response.text
    assert assert_json(response)["result"]["content"][0]["text"] == "region=eu count=7"
    body, headers = regional("eu", "eu", count=7)
    headers["mcp-param-count"] = "8"
    assert (await send(client, body, headers)).json()["error"]["code"] == HEADER_MISMATCH


async def test_mcp_param_header_for_an_absent_optional_argument_is_refused(client: httpx.AsyncClient) -> None:
    body, headers = regional("eu", "eu")
    headers["mcp-param-count"] = "3"
    response = await send(client, body, headers)
    assert response.status_code == 400
    assert assert_json(response)["error"]["code"] == HEADER_MISMATCH


async def test_a_2025_request_is_not_checked_for_mcp_param_headers(client: httpx.AsyncClient) -> None:
    """Mcp-Param-* belongs to 2026-07-28; a 2025-era call without it still runs."""
    body = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "regional"}}
    body["params"]["arguments"] = {"region": "eu"}
    response = await client.post("/mcp", json=body, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert assert_json(response)["result"]["isError"] is False


async def test_meta_with_extra_keys_is_accepted(client: httpx.AsyncClient) -> None:
    """Unknown _meta keys (traceparent, vendor keys) never break a request (§2.6 item 14)."""
    body, headers = modern_request("tools/list")
    body["params"]["_meta"] = {**meta(), "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", "x/y": [1]}
    response = await send(client, body, headers)
    assert response.status_code == 200
    assert assert_json(response)["result"]["resultType"] == "complete"
