"""A 2026-07-28 client in front of a 2025-era upstream: the upstream's questions to the client are bridged to
``input_required`` when the client can answer them, and refused like Patchbay's own tools refuse them when it
declared no capability to.

The upstream is the conformance fixture (tests/conformance/patchbay.toml) served by its own `patchbay serve`; the
front pins it to the 2025-11-25 handshake era, so its questions arrive over the upstream session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.test_upstream_passthrough import call, fronted
from tests.support.servers import RunningServer

pytestmark = pytest.mark.e2e

FRONT = """
[server]
connector_retry_max_seconds = 1

[store]
url = "sqlite:///:memory:"

[[connectors]]
name = "fx"
type = "mcp"
protocol = "2025-11-25"
url = "__URL__"
"""
PROMPT = {"prompt": "Capital of France?"}


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with fronted(tmp_path_factory.mktemp("bridge"), FRONT) as (_, server):
        yield server


def test_a_2026_client_that_can_sample_answers_a_2025_upstream_through_input_required(front: RunningServer) -> None:
    status, first = call(front, "fx_test_sampling", {"sampling": {}}, arguments=PROMPT)
    assert status == 200, first
    asked = first["result"]
    assert asked["resultType"] == "input_required", asked
    [(key, request)] = asked["inputRequests"].items()
    assert key.startswith("upstream-") and request["method"] == "sampling/createMessage"
    answer = {"role": "assistant", "content": {"type": "text", "text": "Paris"}, "model": "m"}
    status, second = call(
        front,
        "fx_test_sampling",
        {"sampling": {}},
        arguments=PROMPT,
        inputResponses={key: answer},
        requestState=asked["requestState"],
    )
    assert status == 200 and second["result"]["content"][0]["text"] == "LLM response: Paris", second


def test_a_2026_client_without_the_capability_is_not_asked_and_the_upstream_hears_why(
    front: RunningServer,
) -> None:
    status, answer = call(front, "fx_test_sampling", {}, arguments=PROMPT)
    assert status == 200, answer
    result = answer["result"]
    assert result["resultType"] == "complete" and result["isError"] is True, result
    # The fixture's own words around the front's refusal of its sampling/createMessage request.
    assert "needs the client capability 'sampling'" in result["content"][0]["text"], result
