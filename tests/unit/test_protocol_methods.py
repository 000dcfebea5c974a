"""Resources, prompts and completions through /mcp in both eras, including the failures each must turn into a
clean JSON-RPC error (never a 500, never the exception's text).

reference/mcp-requirements.md §2.6 item 4 (resource not found), §2.7; conformance-scenarios §3, §4.3.
"""

from __future__ import annotations

import re
from typing import Any

import httpx2 as httpx
import pytest
from fixtures.tools import CODES, SECRET
from fixtures.wire import (
    JSON_POST,
    assert_json,
    assert_still_serving,
    call_modern,
    open_session,
    request,
)

pytestmark = pytest.mark.anyio


async def legacy(client: httpx.AsyncClient, method: str, params: dict[str, Any]) -> httpx.Response:
    headers = await open_session(client)
    return await client.post("/mcp", json=request(method, params, 50), headers=headers)


async def test_reading_a_missing_resource_is_32002_with_the_uri_in_2025(client: httpx.AsyncClient) -> None:
    """§2.6 item 4: clients of older revisions expect -32002 (data.uri)."""
    response = await legacy(client, "resources/read", {"uri": "test://nope"})
    error = assert_json(response)["error"]
    assert error["code"] == -32002
    assert error["data"] == {"uri": "test://nope"}
    assert response.json()["id"] == 50


async def test_reading_a_missing_resource_is_32602_in_2026(client: httpx.AsyncClient) -> None:
    """SEP-2164 (conformance-scenarios §4.3): -32602 replaces -32002 at 2026-07-28, data.uri kept."""
    response = await call_modern(client, "resources/read", {"uri": "test://nope"})
    error = assert_json(response)["error"]
    assert error["code"] == -32602
    assert error["data"]["uri"] == "test://nope"


async def test_reading_fixed_and_templated_resources(client: httpx.AsyncClient) -> None:
    fixed = assert_json(await legacy(client, "resources/read", {"uri": "test://static"}))["result"]
    assert fixed["contents"] == [{"uri": "test://static", "mimeType": "text/plain", "text": "static text"}]
    templated = assert_json(await legacy(client, "resources/read", {"uri": "test://items/pear"}))["result"]
    assert templated["contents"][0]["uri"] == "test://items/pear"
    assert '"pear"' in templated["contents"][0]["text"]


@pytest.mark.parametrize("uri", [None, 5, ["test://static"]], ids=["missing", "number", "list"])
async def test_reading_without_a_uri_string_is_invalid_params(client: httpx.AsyncClient, uri: Any) -> None:
    params = {} if uri is None else {"uri": uri}
    response = await legacy(client, "resources/read", params)
    assert assert_json(response)["error"]["code"] == -32602


async def test_a_resource_reader_that_fails_gives_a_json_error_without_the_exception_text(
    client: httpx.AsyncClient,
) -> None:
    """STYLE habit 5: nothing leaks a stack trace or a secret; R-018: never a bare 500 page."""
    for response in (
        await legacy(client, "resources/read", {"uri": "test://broken"}),
        await call_modern(client, "resources/read", {"uri": "test://broken"}),
    ):
        assert response.status_code == 200, response.text  # docs/protocol.md error codes: -32603 from a handler
        error = assert_json(response)["error"]
        assert error["code"] == -32603
        assert re.fullmatch(r"Reading test://broken failed unexpectedly \(reference [0-9a-f]{8}\)", error["message"])
        assert SECRET not in response.text
        assert "Traceback" not in response.text
    await assert_still_serving(client)


async def test_a_template_parameter_of_the_wrong_type_is_a_client_error(client: httpx.AsyncClient) -> None:
    """test://numbers/{number} takes an int: "abc" is the client's mistake (4xx / -32602), not a server bug."""
    response = await legacy(client, "resources/read", {"uri": "test://numbers/abc"})
    assert response.status_code == 200, response.text  # 2025 era: a method's error rides on HTTP 200
    error = assert_json(response)["error"]
    assert error["code"] == -32602  # invalid params, not "resource not found" (-32002): the template matched
    assert error["message"].startswith("Invalid arguments: number: Input should be a valid integer")
    modern = await call_modern(client, "resources/read", {"uri": "test://numbers/abc"})
    assert modern.status_code == 400
    assert assert_json(modern)["error"]["code"] == -32602
    ok = await legacy(client, "resources/read", {"uri": "test://numbers/42"})
    assert '"number": 42' in assert_json(ok)["result"]["contents"][0]["text"]


async def test_prompts_get_renders_the_arguments(client: httpx.AsyncClient) -> None:
    response = await legacy(client, "prompts/get", {"name": "greet", "arguments": {"name": "Ada"}})
    messages = assert_json(response)["result"]["messages"]
    assert messages == [{"role": "user", "content": {"type": "text", "text": "Hello Ada, let's talk about python."}}]


async def test_prompts_get_without_a_required_argument_is_invalid_params(client: httpx.AsyncClient) -> None:
    response = await legacy(client, "prompts/get", {"name": "greet", "arguments": {"topic": "rust"}})
    error = assert_json(response)["error"]
    assert error["code"] == -32602
    assert "name" in error["message"]
    modern = await call_modern(client, "prompts/get", {"name": "greet", "arguments": {}})
    assert assert_json(modern)["error"]["code"] == -32602


@pytest.mark.parametrize("name", ["nope", None, 3], ids=["unknown", "missing", "number"])
async def test_prompts_get_for_an_unknown_prompt_is_invalid_params(client: httpx.AsyncClient, name: Any) -> None:
    params = {} if name is None else {"name": name}
    response = await legacy(client, "prompts/get", params)
    assert assert_json(response)["error"]["code"] == -32602


async def test_a_prompt_that_fails_gives_a_json_error_without_the_exception_text(client: httpx.AsyncClient) -> None:
    response = await legacy(client, "prompts/get", {"name": "broken_prompt"})
    assert response.status_code == 200, response.text
    error = assert_json(response)["error"]
    assert error["code"] == -32603
    assert re.fullmatch(
        r"Rendering prompt 'broken_prompt' failed unexpectedly \(reference [0-9a-f]{8}\)", error["message"]
    )
    assert SECRET not in response.text
    await assert_still_serving(client)


async def test_prompts_list_declares_required_and_optional_arguments(client: httpx.AsyncClient) -> None:
    prompts = assert_json(await legacy(client, "prompts/list", {}))["result"]["prompts"]
    greet = next(p for p in prompts if p["name"] == "greet")
    assert greet["description"]
    assert {a["name"]: a["required"] for a in greet["arguments"]} == {"name": True, "topic": False}


@pytest.mark.parametrize(
    ("ref", "argument", "expected"),
    [
        ({"type": "ref/prompt", "name": "greet"}, {"name": "topic", "value": "py"}, ["python", "pytest"]),
        ({"type": "ref/resource", "uri": "test://items/{item}"}, {"name": "item", "value": "ap"}, ["apple", "apricot"]),
        ({"type": "ref/prompt", "name": "greet"}, {"name": "name", "value": "A"}, []),
    ],
    ids=["prompt", "template", "no-completer"],
)
async def test_completion_complete_offers_matching_values(
    client: httpx.AsyncClient, ref: dict[str, Any], argument: dict[str, Any], expected: list[str]
) -> None:
    response = await legacy(client, "completion/complete", {"ref": ref, "argument": argument})
    completion = assert_json(response)["result"]["completion"]
    assert completion["values"] == expected
    assert completion["total"] == len(expected)
    assert completion["hasMore"] is False


@pytest.mark.parametrize(
    ("prefix", "matching"),
    [("code-", 250), ("code-1", 100), ("code-2", 50), ("code-19", 10)],
    ids=["over-the-cap", "exactly-the-cap", "under-the-cap", "few"],
)
async def test_completion_complete_returns_at_most_100_values_with_total_and_has_more(
    client: httpx.AsyncClient, prefix: str, matching: int
) -> None:
    """MCP server/utilities/completion: at most 100 values per answer; total counts them all, hasMore says so."""
    params = {
        "ref": {"type": "ref/resource", "uri": "test://codes/{code}"},
        "argument": {"name": "code", "value": prefix},
    }
    expected = [c for c in CODES if c.startswith(prefix)]
    assert len(expected) == matching
    for response in (
        await legacy(client, "completion/complete", params),
        await call_modern(client, "completion/complete", params),
    ):
        completion = assert_json(response)["result"]["completion"]
        assert completion["values"] == expected[:100]
        assert completion["total"] == matching
        assert completion["hasMore"] is (matching > 100)


@pytest.mark.parametrize(
    "params",
    [
        {"ref": {"type": "ref/prompt", "name": "nope"}, "argument": {"name": "x", "value": ""}},
        {"ref": {"type": "ref/other"}, "argument": {"name": "x", "value": ""}},
        {"ref": "greet", "argument": {"name": "x"}},
        {"ref": {"type": "ref/resource", "uri": "test://nope/{x}"}, "argument": {"name": "x", "value": ""}},
    ],
    ids=["unknown-prompt", "unknown-ref-type", "ref-not-object", "unknown-template"],
)
async def test_completion_complete_with_a_bad_ref_is_invalid_params(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    response = await legacy(client, "completion/complete", params)
    assert assert_json(response)["error"]["code"] == -32602


@pytest.mark.parametrize("context", [["a"], "text", 3, {"arguments": "x"}], ids=["list", "string", "number", "args"])
async def test_completion_complete_ignores_a_malformed_context(client: httpx.AsyncClient, context: Any) -> None:
    params = {
        "ref": {"type": "ref/prompt", "name": "greet"},
        "argument": {"name": "topic", "value": "py"},
        "context": context,
    }
    response = await legacy(client, "completion/complete", params)
    assert response.status_code == 200, response.text
    # context only narrows what a completer may offer; one that is not {"arguments": {...}} is ignored.
    assert assert_json(response)["result"]["completion"] == {
        "values": ["python", "pytest"],
        "total": 2,
        "hasMore": False,
    }


async def test_completion_complete_works_in_2026(client: httpx.AsyncClient) -> None:
    params = {"ref": {"type": "ref/prompt", "name": "greet"}, "argument": {"name": "topic", "value": "r"}}
    result = assert_json(await call_modern(client, "completion/complete", params))["result"]
    assert result["completion"]["values"] == ["rust"]
    assert result["resultType"] == "complete"


async def test_subscribe_and_unsubscribe_answer_empty_results_in_a_session(client: httpx.AsyncClient) -> None:
    headers = await open_session(client)
    for method in ("resources/subscribe", "resources/unsubscribe"):
        response = await client.post("/mcp", json=request(method, {"uri": "test://watched"}, 1), headers=headers)
        assert assert_json(response) == {"jsonrpc": "2.0", "id": 1, "result": {}}


async def test_resources_list_and_templates_list(client: httpx.AsyncClient) -> None:
    resources = assert_json(await legacy(client, "resources/list", {}))["result"]["resources"]
    assert any(r["uri"] == "test://static" and r["name"] == "static" for r in resources)
    response = await client.post("/mcp", json=request("resources/templates/list", {}), headers=JSON_POST)
    templates = assert_json(response)["result"]["resourceTemplates"]
    assert any(t["uriTemplate"] == "test://items/{item}" for t in templates)
