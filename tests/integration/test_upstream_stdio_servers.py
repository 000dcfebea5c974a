"""The npm reference servers over stdio behind a real `patchbay serve` (server-filesystem, server-memory, and
server-everything's resource subscriptions), and what /readyz says of a stdio upstream stuck in a crash loop.

Driven by the official SDK client; the servers are the pinned ones in tests/e2e/node.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.client import Client

from tests.e2e.conftest import run_scenario
from tests.integration.test_upstream_mcp import LEGACY, MODERN, _opener, everything, readyz, toml_list
from tests.support.node import NODE_MODULES, require_node_tools
from tests.support.servers import RunningServer, run_patchbay

pytestmark = pytest.mark.e2e

CRASHING = Path(__file__).resolve().parent / "crashing_upstream.py"


def node_server(name: str) -> str:
    require_node_tools()
    return str(NODE_MODULES / ".bin" / name)


CONFIG = """
[server]
connector_retry_max_seconds = 1

[[connectors]]
name = "files"
type = "mcp"
command = __FILES__

[[connectors]]
name = "memory"
type = "mcp"
command = __MEMORY__
env = { MEMORY_FILE_PATH = "__MEMORY_FILE__" }

[[connectors]]
name = "every"
type = "mcp"
command = __EVERYTHING__
include = ["toggle-subscriber-updates", "echo"]
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    folder = tmp_path_factory.mktemp("npm-upstreams")
    share = folder / "share"
    share.mkdir()
    config = (
        CONFIG.replace("__FILES__", toml_list([node_server("mcp-server-filesystem"), str(share)]))
        .replace("__MEMORY__", toml_list([node_server("mcp-server-memory")]))
        .replace("__MEMORY_FILE__", str(folder / "memory.jsonl"))
        .replace("__EVERYTHING__", toml_list([everything()]))
    )
    (folder / "patchbay.toml").write_text(config)
    with run_patchbay(folder / "patchbay.toml", log_dir=folder, start_timeout=60) as server:
        yield server, folder


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


@pytest.mark.parametrize("era", [LEGACY, MODERN])
def test_server_filesystem_lists_writes_and_reads_inside_its_folder_only(
    served: tuple[RunningServer, Path], era: str
) -> None:
    server, folder = served
    share = folder / "share"
    note = share / f"note-{era}.txt"

    async def scenario() -> tuple[set[str], list[types.CallToolResult]]:
        async with Client(server.url, mode=era) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            return names, [
                await client.call_tool("files_write_file", {"path": str(note), "content": f"hello from {era}"}),
                await client.call_tool("files_read_text_file", {"path": str(note)}),
                await client.call_tool("files_list_directory", {"path": str(share)}),
                await client.call_tool("files_write_file", {"path": str(folder / "outside.txt"), "content": "no"}),
            ]

    names, (wrote, read, listed, outside) = run_scenario(scenario, timeout=90)
    assert {"files_write_file", "files_read_text_file", "files_list_directory"} <= names
    assert wrote.is_error is not True, wrote
    assert note.read_text() == f"hello from {era}"  # the write really happened, where it was asked
    assert text_of(read) == f"hello from {era}"
    assert f"[FILE] {note.name}" in text_of(listed)
    assert outside.is_error is True  # the upstream's own refusal, passed on as a tool error
    assert not (folder / "outside.txt").exists()


def test_server_memory_keeps_what_it_is_told_in_its_file(served: tuple[RunningServer, Path]) -> None:
    server, folder = served
    entity = {"name": "Ada Lovelace", "entityType": "person", "observations": ["wrote the first program"]}

    async def scenario() -> tuple[types.CallToolResult, types.CallToolResult]:
        async with Client(server.url, mode=LEGACY) as client:
            created = await client.call_tool("memory_create_entities", {"entities": [entity]})
            return created, await client.call_tool("memory_read_graph", {})

    created, graph = run_scenario(scenario, timeout=90)
    assert created.is_error is not True, created
    assert "Ada Lovelace" in text_of(graph)
    stored = [json.loads(line) for line in (folder / "memory.jsonl").read_text().splitlines() if line.strip()]
    assert any(r.get("name") == "Ada Lovelace" and r.get("type") == "entity" for r in stored), stored


@pytest.mark.filterwarnings("ignore:resources/subscribe is removed")  # the 2025 method is what is tested here
def test_a_subscribed_client_gets_resources_updated_with_the_published_uri(served: tuple[RunningServer, Path]) -> None:
    server, _ = served
    updated: list[str] = []
    arrived = anyio.Event()

    async def on_message(message: Any) -> None:
        if getattr(message, "method", None) == "notifications/resources/updated":
            updated.append(str(message.params.uri))
            arrived.set()

    async def scenario() -> str:
        async with Client(server.url, mode=LEGACY, message_handler=on_message) as client:
            uris = [str(r.uri) for r in (await client.list_resources()).resources]
            uri = next(u for u in uris if u.startswith("every+demo://"))
            await client.subscribe_resource(uri)
            toggled = await client.call_tool("every_toggle-subscriber-updates", {})
            assert toggled.is_error is not True, toggled
            with anyio.fail_after(20):
                await arrived.wait()
            return uri

    uri = run_scenario(scenario, timeout=60)
    assert updated and set(updated) == {uri}  # the upstream's URI, under the connector's prefix


CRASH_CONFIG = """
[server]
connector_retry_max_seconds = 1

[metrics]
token_env = "PATCHBAY_TEST_METRICS_TOKEN"

[[connectors]]
name = "shaky"
type = "mcp"
command = __COMMAND__
"""
METRICS_TOKEN = "crash-loop-metrics-token-0123456789"


def readyz_as(server: RunningServer, authorization: str) -> tuple[int, str]:
    """/readyz with an Authorization header: its status and raw body (never a 401, whatever the header)."""
    request = urllib.request.Request(f"{server.base_url}/readyz", headers={"Authorization": authorization})
    try:
        with _opener.open(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_readyz_shows_a_crash_looping_stdio_upstream_with_its_reason_and_stderr_only_with_the_token(
    tmp_path: Path,
) -> None:
    config = tmp_path / "patchbay.toml"
    config.write_text(CRASH_CONFIG.replace("__COMMAND__", toml_list([sys.executable, str(CRASHING)])))

    async def crash_until_refused(server: RunningServer) -> list[types.CallToolResult]:
        results: list[types.CallToolResult] = []
        async with Client(server.url, mode=LEGACY) as client:
            for _ in range(10):  # the supervisor stops restarting after 5 restarts within its window
                results.append(await client.call_tool("shaky_crash", {}))
                if not await anyio.to_thread.run_sync(lambda: readyz(server)["connectors"]["shaky"]["ok"]):
                    break
        return results

    env = {"PATCHBAY_TEST_METRICS_TOKEN": METRICS_TOKEN}
    with run_patchbay(config, env=env, log_dir=tmp_path, start_timeout=60) as server:
        assert readyz(server)["connectors"]["shaky"]["ok"] is True
        results = run_scenario(lambda: crash_until_refused(server), timeout=120)
        down = readyz(server)
        wrong = [readyz_as(server, header) for header in (f"Bearer {METRICS_TOKEN}x", "Bearer ", METRICS_TOKEN)]
        status, operator = readyz_as(server, f"Bearer {METRICS_TOKEN}")
    assert all(r.is_error for r in results)
    assert len(results) < 10  # it was given up on: the supervisor stopped restarting it
    assert "failed 6 times" in text_of(results[-1])  # the call that found it down says why
    # The child's last words (its stderr) reach neither the caller nor the public /readyz ...
    assert not any("lost its database connection" in text_of(r) for r in results)
    detail = down["connectors"]["shaky"]["detail"]
    assert down["status"] == "degraded" and down["connectors"]["shaky"]["ok"] is False
    assert "exited with code 3" in detail and "failed 6 times within 300 s" in detail, detail
    assert "lost its database connection" not in json.dumps(down) and "operator" not in down["connectors"]["shaky"]
    for code, body in wrong:  # a wrong token is no token: the probe still gets its answer
        assert code == 503 and "lost its database connection" not in body and '"operator"' not in body, body
    # ... but the operator, with the [metrics] token, sees them.
    assert status == 503
    shaky = json.loads(operator)["connectors"]["shaky"]
    assert "lost its database connection" in shaky["operator"]["stderr"], shaky
    assert shaky["operator"]["type"] == "mcp" and shaky["operator"]["upstream"] == "stdio"
