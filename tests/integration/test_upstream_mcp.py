"""Other MCP servers behind a real `patchbay serve`, driven by the official Python SDK client.

Upstreams are real: the npm reference servers (tests/e2e/node, pinned) and Patchbay's own conformance fixture
over stdio, and a tiny SDK server for faults (tests/integration/fixture_upstream.py).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp.client import Client

from tests.e2e.conftest import CONFORMANCE_CONFIG, run_scenario
from tests.support.node import NODE_MODULES, require_node_tools
from tests.support.servers import RunningServer, run_patchbay

pytestmark = pytest.mark.e2e

LEGACY = "legacy"
MODERN = "2026-07-28"
FIXTURE = Path(__file__).resolve().parent / "fixture_upstream.py"
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def everything() -> str:
    require_node_tools()
    return str(NODE_MODULES / ".bin" / "mcp-server-everything")


def toml_list(items: list[str]) -> str:
    return json.dumps(items)


def readyz(server: RunningServer) -> dict[str, Any]:
    try:
        with _opener.open(f"{server.base_url}/readyz?degraded=ok", timeout=5) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())  # type: ignore[no-any-return]


def wait_for(condition: Any, what: str, deadline: float = 30.0) -> Any:
    """Poll ``condition()`` until it returns something truthy, failing after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


CURATED = """
[server]
connector_retry_max_seconds = 1

[[connectors]]
name = "every"
type = "mcp"
command = __EVERYTHING__
include = ["echo", "get-sum", "trigger-*", "toggle-*", "get-structured-content"]
exclude = ["trigger-url-elicitation"]
rename = { get-sum = "add" }
[connectors.tools.echo]
title = "Echo back"
description = "Repeats the message."
annotations = { readOnlyHint = true, openWorldHint = false }

[[connectors]]
name = "fx"
type = "mcp"
command = __FIXTURE__

[[policy]]
subjects = ["*"]
tools = ["every_trigger-sampling-request"]
effect = "deny"
"""


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("upstreams")
    conformance = [sys.executable, "-m", "patchbay", "serve", "--stdio", "--config", str(CONFORMANCE_CONFIG)]
    config = CURATED.replace("__EVERYTHING__", toml_list([everything()])).replace("__FIXTURE__", toml_list(conformance))
    (folder / "patchbay.toml").write_text(config)
    with run_patchbay(folder / "patchbay.toml", log_dir=folder, start_timeout=60) as server:
        yield server


@pytest.mark.parametrize("era", [LEGACY, MODERN])
def test_upstream_tools_are_listed_with_prefix_curated_and_called(curated: RunningServer, era: str) -> None:
    async def scenario() -> tuple[list[types.Tool], types.CallToolResult, types.CallToolResult]:
        async with Client(curated.url, mode=era) as client:
            tools = (await client.list_tools()).tools
            echoed = await client.call_tool("every_echo", {"message": "hello upstream"})
            added = await client.call_tool("every_add", {"a": 2, "b": 40})
            return tools, echoed, added

    tools, echoed, added = run_scenario(scenario, timeout=60)
    names = {t.name for t in tools}
    assert {"every_echo", "every_add", "every_trigger-long-running-operation"} <= names
    assert "every_get-sum" not in names  # renamed
    assert "every_trigger-url-elicitation" not in names  # excluded
    assert "every_get-tiny-image" not in names  # not included
    assert "fx_test_simple_text" in names
    assert all(len(n) <= 64 for n in names)
    echo = next(t for t in tools if t.name == "every_echo")
    assert echo.title == "Echo back"
    assert echo.description == "Repeats the message."
    assert echo.annotations is not None and echo.annotations.read_only_hint is True
    assert echo.annotations.open_world_hint is False
    assert echoed.is_error is False
    assert echoed.content == [types.TextContent(type="text", text="Echo: hello upstream")]
    assert added.is_error is False
    assert "42" in added.content[0].text  # type: ignore[union-attr]


def test_policy_deny_applies_to_an_upstream_tool(curated: RunningServer) -> None:
    async def scenario() -> tuple[set[str], types.CallToolResult]:
        async with Client(curated.url, mode=LEGACY) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            return names, await client.call_tool("every_trigger-sampling-request", {"prompt": "hi"})

    names, refused = run_scenario(scenario, timeout=60)
    assert "every_trigger-sampling-request" not in names
    assert refused.is_error is True


@pytest.mark.parametrize("era", [LEGACY, MODERN])
def test_progress_logs_sampling_and_elicitation_pass_through(curated: RunningServer, era: str) -> None:
    progress: list[tuple[float, float | None]] = []
    logs: list[Any] = []
    sampled: list[types.CreateMessageRequestParams] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total))

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    async def sample(_ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        sampled.append(params)
        content = types.TextContent(type="text", text="Paris")
        return types.CreateMessageResult(role="assistant", content=content, model="m", stop_reason="endTurn")

    async def elicit(_ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.com"})

    async def scenario() -> list[types.CallToolResult]:
        async with Client(
            curated.url,
            mode=era,
            logging_callback=on_log,
            log_level="debug" if era == MODERN else None,
            sampling_callback=sample,
            elicitation_callback=elicit,
        ) as client:
            return [
                await client.call_tool("fx_test_tool_with_progress", {}, progress_callback=on_progress),
                await client.call_tool("fx_test_tool_with_logging", {}),
                await client.call_tool("fx_test_sampling", {"prompt": "Capital of France?"}),
                await client.call_tool("fx_test_elicitation", {"message": "Who are you?"}),
            ]

    with_progress, with_logging, with_sampling, with_elicitation = run_scenario(scenario, timeout=60)
    assert with_progress.is_error is False
    assert [v for v, _ in progress] == [0, 50, 100]
    assert with_logging.is_error is False
    assert logs == ["Tool execution started", "Tool processing data", "Tool execution completed"]
    assert with_sampling.content == [types.TextContent(type="text", text="LLM response: Paris")], with_sampling
    [ask] = sampled
    assert [m.content for m in ask.messages] == [types.TextContent(type="text", text="Capital of France?")]
    assert with_elicitation.is_error is False
    assert "action=accept" in with_elicitation.content[0].text  # type: ignore[union-attr]


def test_upstream_resources_are_prefixed_and_read(curated: RunningServer) -> None:
    async def scenario() -> tuple[list[str], Any]:
        async with Client(curated.url, mode=LEGACY) as client:
            uris = [str(r.uri) for r in (await client.list_resources()).resources]
            first = next(u for u in uris if u.startswith("every+demo://"))
            return uris, await client.read_resource(first)

    uris, read = run_scenario(scenario, timeout=60)
    assert uris and all(u.startswith(("every+", "fx+")) for u in uris)
    assert str(read.contents[0].uri).startswith("every+demo://")


# -- failures ---------------------------------------------------------------------------------------------


FAULTY = """
[server]
connector_retry_max_seconds = 1

[[connectors]]
name = "faulty"
type = "mcp"
command = __COMMAND__
call_timeout = __TIMEOUT__
"""


def faulty_config(folder: Path, command: list[str], call_timeout: float = 30) -> Path:
    path = folder / "patchbay.toml"
    path.write_text(FAULTY.replace("__COMMAND__", toml_list(command)).replace("__TIMEOUT__", str(call_timeout)))
    return path


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_crash_mid_call_is_a_clean_tool_error_and_the_process_restarts(tmp_path: Path) -> None:
    config = faulty_config(tmp_path, [sys.executable, str(FIXTURE)])

    async def scenario(url: str) -> tuple[types.CallToolResult, types.CallToolResult, types.CallToolResult]:
        async with Client(url, mode=LEGACY) as client:
            before = await client.call_tool("faulty_count", {})
            crashed = await client.call_tool("faulty_crash", {})
            after = await client.call_tool("faulty_count", {})
            return before, crashed, after

    with run_patchbay(config, log_dir=tmp_path, start_timeout=60) as server:
        before, crashed, after = run_scenario(lambda: scenario(server.url), timeout=30)
    assert before.is_error is False
    assert crashed.is_error is True
    assert "faulty" in crashed.content[0].text  # type: ignore[union-attr]
    assert after.is_error is False
    first_pid = before.content[0].text.split()[-1]  # type: ignore[union-attr]
    assert after.content[0].text == f"1 in {after.content[0].text.split()[-1]}"  # type: ignore[union-attr]
    assert after.content[0].text.split()[-1] != first_pid  # type: ignore[union-attr]


def test_hung_upstream_call_times_out_cleanly(tmp_path: Path) -> None:
    config = faulty_config(tmp_path, [sys.executable, str(FIXTURE)], call_timeout=2)

    async def scenario(url: str) -> tuple[float, types.CallToolResult, types.CallToolResult]:
        async with Client(url, mode=LEGACY) as client:
            started = time.monotonic()
            hung = await client.call_tool("faulty_hang", {})
            return time.monotonic() - started, hung, await client.call_tool("faulty_count", {})

    with run_patchbay(config, log_dir=tmp_path, start_timeout=60) as server:
        took, hung, after = run_scenario(lambda: scenario(server.url), timeout=30)
    assert hung.is_error is True
    assert "did not answer within 2 seconds" in hung.content[0].text  # type: ignore[union-attr]
    assert took < 20  # the call's own timeout (2 s) ended it, not the scenario's
    assert after.is_error is False  # the session is still usable


def test_upstream_down_at_start_is_degraded_then_its_tools_appear(tmp_path: Path) -> None:
    script = tmp_path / "later.py"
    config = faulty_config(tmp_path, [sys.executable, str(script)])
    with run_patchbay(config, log_dir=tmp_path, start_timeout=60) as server:
        down = readyz(server)
        assert down["status"] == "degraded"
        assert down["connectors"]["faulty"]["ok"] is False
        assert down["connectors"]["faulty"]["detail"]
        script.write_text(FIXTURE.read_text())
        wait_for(lambda: readyz(server)["connectors"]["faulty"]["ok"], "the upstream to come up")

        async def names() -> set[str]:
            async with Client(server.url, mode=LEGACY) as client:
                return {t.name for t in (await client.list_tools()).tools}

        assert {"faulty_count", "faulty_crash", "faulty_hang"} <= run_scenario(names)


SESSIONS = 10_000  # the issue: 10,000 downstream sessions leave the pool size in stdio processes


def test_many_downstream_sessions_share_one_upstream_process(tmp_path: Path) -> None:
    config = faulty_config(tmp_path, [sys.executable, str(FIXTURE)])
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "faulty_count", "arguments": {}}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with run_patchbay(config, log_dir=tmp_path, start_timeout=60) as server:
        with httpx2.Client(timeout=10, trust_env=False) as http:
            for _ in range(SESSIONS):
                opened = http.post(server.url, json=init, headers=headers)
                assert opened.status_code == 200
                session = {
                    **headers,
                    "Mcp-Session-Id": opened.headers["mcp-session-id"],
                    "MCP-Protocol-Version": "2025-11-25",
                }
                answered = http.post(server.url, json=call, headers=session)
                assert answered.status_code == 200
                http.delete(server.url, headers=session)
        assert len(children_of(server.proc.pid)) == 1
        last = answered.text
    assert f"{SESSIONS} in" in last
