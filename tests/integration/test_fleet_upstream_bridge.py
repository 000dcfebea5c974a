"""An upstream MCP server's question to a 2026-07-28 client, in a fleet: the upstream call stays parked in the
replica that asked, so a retry with the answer that reaches another replica is refused saying exactly that, and
the same retry on the asking replica completes (docs/deploy.md, "Upstream questions in a fleet").

Two `patchbay serve` replicas share one redis-server, one secret and one SQLite store, in front of the conformance
fixture (its own `patchbay serve`) pinned to the 2025-11-25 era, as in test_upstream_bridge.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.conformance.test_conformance import CONFIG as FIXTURE
from tests.integration.test_upstream_mcp import readyz, wait_for
from tests.integration.test_upstream_passthrough import call
from tests.support.redis_server import TIMEOUT_MS
from tests.support.servers import RunningServer, run_patchbay

pytestmark = pytest.mark.e2e

FRONT = """
[server]
connector_retry_max_seconds = 1
secret = "{secret}"

[store]
url = "sqlite:///{store}"

[redis]
url = "{redis_url}"
key_prefix = "{prefix}"
timeout_ms = {timeout_ms}

[[connectors]]
name = "fx"
type = "mcp"
protocol = "2025-11-25"
url = "{upstream}"
"""
PROMPT = {"prompt": "Capital of France?"}
ANSWER = {"role": "assistant", "content": {"type": "text", "text": "Paris"}, "model": "m"}


@pytest.fixture(scope="module")
def fronts(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[tuple[RunningServer, RunningServer]]:
    folder = tmp_path_factory.mktemp("fleet-bridge")
    with run_patchbay(FIXTURE, log_dir=folder / "fixture") as fixture:
        config = folder / "front.toml"
        config.write_text(
            FRONT.format(
                secret=secrets.token_urlsafe(32),
                store=folder / "front.db",
                redis_url=redis_url,
                prefix=f"pb-bridge-{secrets.token_hex(4)}:",
                upstream=fixture.url,
                timeout_ms=TIMEOUT_MS,
            )
        )
        with (
            run_patchbay(config, log_dir=folder / "a", start_timeout=60) as a,
            run_patchbay(config, log_dir=folder / "b", start_timeout=60) as b,
        ):
            for server in (a, b):
                wait_for(lambda server=server: readyz(server)["connectors"]["fx"]["ok"], "the fronted fixture")
            yield a, b


def ask(server: RunningServer) -> tuple[str, dict[str, object]]:
    status, first = call(server, "fx_test_sampling", {"sampling": {}}, arguments=PROMPT)
    assert status == 200, first
    asked = first["result"]
    assert asked["resultType"] == "input_required", asked
    [key] = asked["inputRequests"]
    return key, asked


def test_an_answer_reaching_another_replica_is_refused_naming_the_fleet(
    fronts: tuple[RunningServer, RunningServer],
) -> None:
    a, b = fronts
    key, asked = ask(a)

    status, elsewhere = call(
        b, "fx_test_sampling", {"sampling": {}}, arguments=PROMPT, inputResponses={key: ANSWER},
        requestState=asked["requestState"],
    )  # fmt: skip

    assert status == 200, elsewhere
    result = elsewhere["result"]
    assert result["isError"] is True, result
    assert "reached another replica of the fleet" in result["content"][0]["text"], result


def test_the_same_answer_on_the_asking_replica_completes_the_call(fronts: tuple[RunningServer, RunningServer]) -> None:
    a, _ = fronts
    key, asked = ask(a)

    status, second = call(
        a, "fx_test_sampling", {"sampling": {}}, arguments=PROMPT, inputResponses={key: ANSWER},
        requestState=asked["requestState"],
    )  # fmt: skip

    assert status == 200 and second["result"]["content"][0]["text"] == "LLM response: Paris", second
