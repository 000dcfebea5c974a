"""Multi round-trip requests (MRTR, 2026-07-28): input_required results, retries with inputResponses, and a
requestState the server refuses when tampered with, expired, or made for another request.

reference/mcp-requirements.md §2.6 item 8, R-035; conformance-scenarios §4.6.
"""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import pytest
from fixtures.wire import META_SERVER_INFO, assert_json, call_modern

from patchbay.errors import RpcError
from patchbay.protocol import mrtr

pytestmark = pytest.mark.anyio


def accept(**content: Any) -> dict[str, Any]:
    return {"action": "accept", "content": content}


async def call(client: httpx.AsyncClient, name: str, **extra: Any) -> httpx.Response:
    return await call_modern(client, "tools/call", {"name": name, "arguments": {}, **extra})


async def first_round(client: httpx.AsyncClient, name: str = "ask_name") -> dict[str, Any]:
    response = await call(client, name)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = assert_json(response)["result"]
    assert result["resultType"] == "input_required"
    return result


async def test_a_tool_that_needs_input_returns_input_required_with_request_state(client: httpx.AsyncClient) -> None:
    result = await first_round(client)
    request = result["inputRequests"]["user_name"]
    assert request["method"] == "elicitation/create"
    assert request["params"]["requestedSchema"]["properties"]["name"]["type"] == "string"
    assert isinstance(result["requestState"], str) and result["requestState"]
    assert "ttlMs" not in result and "cacheScope" not in result  # §2.6 item 7: no hints on input_required
    assert result["_meta"][META_SERVER_INFO]["name"] == "patchbay-unit"


async def test_the_retry_with_input_responses_completes(client: httpx.AsyncClient) -> None:
    state = (await first_round(client))["requestState"]
    response = await call(client, "ask_name", inputResponses={"user_name": accept(name="Alice")}, requestState=state)
    result = assert_json(response)["result"]
    assert result["resultType"] == "complete"
    assert result["content"] == [{"type": "text", "text": "Hello, Alice!"}]


async def test_a_first_call_that_already_carries_the_answer_completes(client: httpx.AsyncClient) -> None:
    """conformance §4.6 ignore-extra-params: no requestState needed; unexpected keys are ignored."""
    responses = {"user_name": accept(name="Bo"), "unknown_extra_key": accept(foo="bar")}
    result = assert_json(await call(client, "ask_name", inputResponses=responses))["result"]
    assert result["resultType"] == "complete"
    assert result["content"][0]["text"] == "Hello, Bo!"


async def test_multi_round_state_carries_the_earlier_answers(client: httpx.AsyncClient) -> None:
    """conformance §4.6 multi-round: round 3 sends only round 2's answer; round 1's travels in requestState."""
    r1 = await first_round(client, "two_rounds")
    assert list(r1["inputRequests"]) == ["step1"]
    response = await call(
        client, "two_rounds", inputResponses={"step1": accept(name="Alice")}, requestState=r1["requestState"]
    )
    r2 = assert_json(response)["result"]
    assert r2["resultType"] == "input_required"
    assert list(r2["inputRequests"]) == ["step2"]
    assert "Alice" in r2["inputRequests"]["step2"]["params"]["message"]
    assert r2["requestState"] != r1["requestState"]
    response = await call(
        client, "two_rounds", inputResponses={"step2": accept(color="blue")}, requestState=r2["requestState"]
    )
    r3 = assert_json(response)["result"]
    assert r3["resultType"] == "complete"
    assert r3["content"][0]["text"] == "Alice likes blue"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s + "-TAMPERED",
        lambda s: s[:-2] + ("AA" if not s.endswith("AA") else "BB"),
        lambda s: "x" + s,
        lambda s: s.replace(".", ""),
        lambda s: "not base64 at all.!!!",
        lambda s: "é.é",
        lambda s: "",
    ],
    ids=["suffix", "mac-bytes", "payload-prefix", "no-dot", "garbage", "non-ascii", "empty"],
)
async def test_a_tampered_request_state_is_invalid_params(client: httpx.AsyncClient, tamper: Any) -> None:
    """§2.6 item 8: requestState is attacker-controlled and integrity-protected."""
    state = (await first_round(client))["requestState"]
    response = await call(
        client, "ask_name", inputResponses={"user_name": accept(name="x")}, requestState=tamper(state)
    )
    assert response.status_code == 400
    assert assert_json(response)["error"]["code"] == -32602


@pytest.mark.parametrize("state", [None, 12, ["a.b"], {"s": "a.b"}], ids=["null", "number", "list", "object"])
async def test_a_request_state_that_is_not_a_string_is_invalid_params(client: httpx.AsyncClient, state: Any) -> None:
    response = await call(client, "ask_name", requestState=state)
    assert assert_json(response)["error"]["code"] == -32602


async def test_an_expired_request_state_is_invalid_params(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = (await first_round(client))["requestState"]
    real_time = mrtr.time.time

    class Later:
        @staticmethod
        def time() -> float:
            return real_time() + mrtr.TTL_SECONDS + 5

    monkeypatch.setattr(mrtr, "time", Later)
    response = await call(client, "ask_name", inputResponses={"user_name": accept(name="x")}, requestState=state)
    error = assert_json(response)["error"]
    assert error["code"] == -32602
    assert "expired" in error["message"]


async def test_a_state_made_for_another_tool_is_invalid_params(client: httpx.AsyncClient) -> None:
    state = (await first_round(client, "two_rounds"))["requestState"]
    response = await call(client, "ask_name", inputResponses={"user_name": accept(name="x")}, requestState=state)
    assert assert_json(response)["error"]["code"] == -32602


async def test_a_state_made_for_other_arguments_is_invalid_params(client: httpx.AsyncClient) -> None:
    """The state is bound to the request digest, arguments included."""
    state = (await first_round(client))["requestState"]
    params = {"name": "ask_name", "arguments": {"extra": 1}, "requestState": state}
    params["inputResponses"] = {"user_name": accept(name="x")}
    response = await call_modern(client, "tools/call", params)
    assert assert_json(response)["error"]["code"] == -32602


@pytest.mark.parametrize(
    "responses",
    [{"user_name": 12345}, {"user_name": "Alice"}, {"user_name": None}, {"user_name": [1]}, [1, 2], "x", 5],
    ids=["entry-number", "entry-string", "entry-null", "entry-list", "list", "string", "number"],
)
async def test_input_responses_that_are_not_objects_are_invalid_params(
    client: httpx.AsyncClient, responses: Any
) -> None:
    """conformance §4.6 validate-input: anything but a complete result; -32602 recommended."""
    response = await call(client, "ask_name", inputResponses=responses)
    assert response.status_code == 400
    assert assert_json(response)["error"]["code"] == -32602


async def test_a_declined_answer_is_a_tool_error_not_a_crash(client: httpx.AsyncClient) -> None:
    response = await call(client, "ask_name", inputResponses={"user_name": {"action": "decline"}})
    result = assert_json(response)["result"]
    assert result["isError"] is True
    assert "name" in result["content"][0]["text"]


async def test_input_is_not_requested_on_list_methods(client: httpx.AsyncClient) -> None:
    """conformance §4.6 unsupported-methods: only tools/call, resources/read and prompts/get may ask."""
    for method in ("tools/list", "prompts/list"):
        result = assert_json(await call_modern(client, method, {}))["result"]
        assert result["resultType"] == "complete"


async def test_a_tool_that_needs_an_undeclared_capability_is_400_missing_capability(
    client: httpx.AsyncClient,
) -> None:
    """§2.6 item 8: never ask for what the client did not declare; -32021 with data.requiredCapabilities."""
    from fixtures.wire import modern_request

    body, headers = modern_request("tools/call", {"name": "ask_name", "arguments": {}})
    body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = {"sampling": {}}
    response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 400
    error = assert_json(response)["error"]
    assert error["code"] == -32021
    assert error["data"]["requiredCapabilities"] == {"elicitation": {}}


def test_a_sealed_carry_comes_back_with_the_answers_once_and_only_for_its_request() -> None:
    signer = mrtr.StateSigner(b"k" * 32)
    digest = mrtr.request_digest("tools/call", "t", {}, "alice")
    state = signer.seal(digest, {"a": {"x": 1}}, {"upstream": "their-state"})
    assert signer.open_with_carry(state, digest) == ({"a": {"x": 1}}, {"upstream": "their-state"})
    with pytest.raises(RpcError, match="already used"):
        signer.open_with_carry(state, digest)
    other = mrtr.request_digest("tools/call", "t", {}, "bob")  # the same call by someone else
    with pytest.raises(RpcError, match="different request"):
        signer.open_with_carry(signer.seal(digest, {}, "c"), other)
    assert signer.open_with_carry(signer.seal(digest, {}), digest) == ({}, None)
