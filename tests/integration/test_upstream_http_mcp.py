"""A remote MCP server over Streamable HTTP behind a real `patchbay serve`, driven by the official SDK client.

The upstream is the official SDK's server in its own process on loopback (tests/integration/sdk_http_upstream.py),
recording every request it receives, so the tests assert what actually crossed the wire: which era was spoken,
how many sessions were opened, and which credentials were sent.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.conftest import patchbay_cli, run_scenario
from tests.integration.test_upstream_mcp import LEGACY, MODERN, wait_for
from tests.support.servers import RunningServer, free_port, run_patchbay

pytestmark = pytest.mark.e2e

UPSTREAM = Path(__file__).resolve().parent / "sdk_http_upstream.py"
UPSTREAM_SECRET = "upstream-secret-8c1f"  # a test credential: the only one the upstream may see

CONFIG = """
[server]
connector_retry_max_seconds = 1

[store]
url = "sqlite:///__DB__"

[auth]
mode = "api_key"

[[connectors]]
name = "new"
type = "mcp"
url = "__BASE__/new/mcp"
auth = "headers"
headers = { Authorization = { env = "UP_AUTHORIZATION" } }

[[connectors]]
name = "old"
type = "mcp"
url = "__BASE__/old/mcp"
protocol = "2025-11-25"

[[connectors]]
name = "st"
type = "mcp"
url = "__BASE__/st/mcp"
protocol = "2025-11-25"
stateful = true
"""


@dataclass
class Setup:
    server: RunningServer
    config: Path
    record: Path
    key: str

    def requests(self, tag: str | None = None) -> list[dict[str, Any]]:
        lines = self.record.read_text().splitlines() if self.record.exists() else []
        found = [json.loads(line) for line in lines]
        return [r for r in found if tag is None or r["tag"] == tag]

    def client(self, mode: str, **kwargs: Any) -> Client:
        http = httpx2.AsyncClient(headers={"authorization": f"Bearer {self.key}"}, trust_env=False, timeout=30)
        return Client(streamable_http_client(self.server.url, http_client=http), mode=mode, **kwargs)


def accepting(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("http-upstream")
    record, port = folder / "upstream-requests.jsonl", free_port()
    log = (folder / "upstream.log").open("wb")
    upstream = subprocess.Popen(
        [sys.executable, str(UPSTREAM), str(port), str(record)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: accepting(port) or upstream.poll() is not None, "the SDK upstream to listen")
        assert upstream.poll() is None, (folder / "upstream.log").read_text()
        config = folder / "patchbay.toml"
        text = CONFIG.replace("__DB__", str(folder / "front.db")).replace("__BASE__", f"http://127.0.0.1:{port}")
        config.write_text(text)
        created = patchbay_cli("keys", "create", "--name", "client", "--scopes", "mcp", "-c", str(config))
        assert created.returncode == 0, created.describe()
        key = next(w for w in created.stdout.split() if w.startswith("pb_"))
        env = {"UP_AUTHORIZATION": f"Bearer {UPSTREAM_SECRET}"}
        with run_patchbay(config, env=env, log_dir=folder, start_timeout=60) as server:
            yield Setup(server, config, record, key)
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
        log.close()


def text_of(result: types.CallToolResult) -> str:
    assert result.is_error is False, result
    first = result.content[0]
    assert isinstance(first, types.TextContent)
    return first.text


@pytest.mark.parametrize("era", [LEGACY, MODERN])
def test_http_upstreams_of_either_era_serve_clients_of_either_era(setup: Setup, era: str) -> None:
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def scenario() -> tuple[str, str]:
        async with setup.client(era) as client:
            new = await client.call_tool("new_add", {"a": 40, "b": 2}, progress_callback=on_progress)
            old = await client.call_tool("old_add", {"a": 1, "b": 2})
            return text_of(new), text_of(old)

    assert run_scenario(scenario, timeout=60) == ("42", "3")
    assert progress == [1]  # the 2026-07-28 upstream's progress reached the client under the client's own token
    new, old = setup.requests("new"), setup.requests("old")
    # "new" is detected as 2026-07-28 (stateless: discovered, never initialised); "old" is pinned to 2025-11-25
    assert {r["method"] for r in new} >= {"server/discover", "tools/call"} and "initialize" not in {
        r["method"] for r in new
    }
    assert {r["headers"].get("mcp-protocol-version") for r in new if r["method"] == "tools/call"} == {"2026-07-28"}
    assert Counter(r["method"] for r in old)["initialize"] == 1  # one shared session, whatever the client era
    assert {r["headers"].get("mcp-protocol-version") for r in old if r["method"] == "tools/call"} == {"2025-11-25"}


def test_the_upstream_never_sees_the_clients_token_only_its_configured_credential(setup: Setup) -> None:
    async def scenario() -> None:
        for era in (LEGACY, MODERN):
            async with setup.client(era) as client:
                text_of(await client.call_tool("new_add", {"a": 1, "b": 1}))
                text_of(await client.call_tool("old_add", {"a": 1, "b": 1}))

    run_scenario(scenario, timeout=60)
    everything = setup.requests()
    assert everything
    for request in everything:
        assert not any(setup.key in value for value in request["headers"].values()), request
    assert {r["headers"].get("authorization") for r in setup.requests("new")} == {f"Bearer {UPSTREAM_SECRET}"}
    assert {r["headers"].get("authorization") for r in setup.requests("old")} == {None}


def test_an_upstream_tool_call_is_audited_under_its_published_name_and_transport(setup: Setup) -> None:
    async def scenario() -> None:
        async with setup.client(LEGACY) as client:
            text_of(await client.call_tool("new_add", {"a": 1234, "b": 5678}))

    run_scenario(scenario)

    def recorded() -> list[dict[str, Any]]:
        done = patchbay_cli("audit", "search", "--kind", "call", "--json", "--config", str(setup.config))
        assert done.returncode == 0, done.describe()
        found = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        # the upstream tool says nothing of its behaviour, so it counts as a write: its intent (with the arguments)
        # is recorded first, then its outcome under the same request_ref
        refs = {r["request_ref"] for r in found if r.get("arguments") == {"a": 1234, "b": 5678}}
        mine = [r for r in found if r["request_ref"] in refs]
        return mine if len(mine) == 2 else []

    intent, done = wait_for(recorded, "the audit records of the upstream call")
    assert (intent["phase"], done["phase"]) == ("intent", "done")
    assert intent["name"] == done["name"] == "new_add"
    assert (done["transport"], done["era"], done["outcome"]) == ("streamable_http", "legacy", "ok")


def test_stateful_upstream_gets_one_session_per_downstream_session_and_reuses_it(setup: Setup) -> None:
    before = {tag: len(setup.requests(tag)) for tag in ("st", "old")}

    async def scenario() -> None:
        async with setup.client(LEGACY) as first, setup.client(LEGACY) as second:
            for client in (first, second, first, second):
                text_of(await client.call_tool("st_add", {"a": 1, "b": 1}))
                text_of(await client.call_tool("old_add", {"a": 1, "b": 1}))

    run_scenario(scenario, timeout=60)
    stateful, shared = setup.requests("st")[before["st"] :], setup.requests("old")[before["old"] :]
    assert Counter(r["method"] for r in stateful)["initialize"] == 2
    per_session = Counter(r["headers"]["mcp-session-id"] for r in stateful if r["method"] == "tools/call")
    assert sorted(per_session.values()) == [2, 2]  # each downstream session kept its own upstream session
    assert Counter(r["method"] for r in shared)["initialize"] == 0  # not stateful: the one shared session
    assert len({r["headers"]["mcp-session-id"] for r in shared if r["method"] == "tools/call"}) == 1


@pytest.mark.parametrize("era", [LEGACY, MODERN])
def test_an_upstream_input_required_is_asked_of_the_client_and_answered(setup: Setup, era: str) -> None:
    asked: list[str] = []

    async def elicit(_ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"sure": True})

    async def scenario() -> str:
        async with setup.client(era, elicitation_callback=elicit) as client:
            return text_of(await client.call_tool("new_confirm", {}))

    answer = run_scenario(scenario, timeout=60)
    assert asked == ["Sure?"]
    assert answer == 'confirmed with {"action": "accept", "content": {"sure": true}} and state state-1'
