"""``patchbay serve --stdio`` tells its client of changes: after ``initialize`` (2025 era) list changes and updates
of subscribed resources; in 2026-07-28 only on ``subscriptions/listen`` requests, each acknowledged first, filtered,
tagged with its id and ended by ``notifications/cancelled`` (MCP 2026-07-28 basic/patterns/subscriptions)."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from patchbay.protocol.hub import Hub
from patchbay.transport.stdio import StdioServer

pytestmark = pytest.mark.anyio
DEADLINE = 30.0
SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
TOOLS = '''
from patchbay import Context, prompt, resource, tool


@tool(read_only=True)
async def toggle_tool(ctx: Context) -> str:
    """Adds or removes the tool dynamic."""
    if "dynamic" in globals():
        del globals()["dynamic"]
    else:
        async def dynamic() -> str:
            """Comes and goes."""
            return "dynamic"
        globals()["dynamic"] = tool(dynamic, read_only=True)
    ctx.lists_changed()
    return "toggled"


@tool(read_only=True)
async def toggle_prompt(ctx: Context) -> str:
    """Adds or removes the prompt dynamic_prompt."""
    if "dynamic_prompt" in globals():
        del globals()["dynamic_prompt"]
    else:
        async def dynamic_prompt() -> str:
            """Comes and goes."""
            return "dynamic"
        globals()["dynamic_prompt"] = prompt(dynamic_prompt)
    ctx.lists_changed()
    return "toggled"


@tool(read_only=True)
async def touch(uris: list[str], ctx: Context) -> str:
    """Says the resources at uris changed, in order."""
    for uri in uris:
        ctx.resource_updated(uri)
    return "touched"


@resource("test://watched", name="watched")
async def watched() -> str:
    """A resource a client subscribes to."""
    return "watched"
'''


class Stdio:
    """A ``patchbay serve --stdio`` child and the messages it wrote, in order."""

    def __init__(self, process: asyncio.subprocess.Process, stderr: Path) -> None:
        self.process, self.stderr = process, stderr
        self.backlog: list[dict[str, Any]] = []  # read, not yet taken

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")
        await self.process.stdin.drain()

    async def read_until(self, done: Any) -> list[dict[str, Any]]:
        """Every message not taken yet up to and including the first for which ``done(message)`` holds."""
        assert self.process.stdout is not None
        async with asyncio.timeout(DEADLINE):
            while True:
                for index, message in enumerate(self.backlog):
                    if done(message):
                        taken = self.backlog[: index + 1]
                        del self.backlog[: index + 1]
                        return taken
                line = await self.process.stdout.readline()
                assert line, f"the stdio server closed its stdout: {self.stderr.read_text(errors='replace')}"
                self.backlog.append(json.loads(line))

    async def call(self, request_id: int, name: str, arguments: dict[str, Any], modern: bool) -> dict[str, Any]:
        """The call's response; notifications written before it stay for :meth:`read_until`."""
        params: dict[str, Any] = {"name": name, "arguments": arguments}
        if modern:
            params["_meta"] = META
        await self.send({"id": request_id, "method": "tools/call", "params": params})
        *before, response = await self.read_until(lambda m: m.get("id") == request_id and "method" not in m)
        self.backlog[:0] = before
        return response


@pytest.fixture
async def stdio(tmp_path: Path) -> AsyncIterator[Stdio]:
    (tmp_path / "tools.py").write_text(TOOLS)
    config = tmp_path / "patchbay.toml"
    config.write_text(
        '[server]\nname = "stdio-changes"\n\n[store]\nurl = "sqlite:///:memory:"\n\n'
        '[[connectors]]\nname = "fx"\ntype = "python"\npath = "tools.py"\nprefix = ""\n'
    )
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as errors:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "patchbay", "serve", "--stdio", "--config", str(config)],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
            cwd=tmp_path,
        )
        try:
            yield Stdio(process, stderr)
        finally:
            assert process.stdin is not None
            process.stdin.close()  # the server exits by itself
            async with asyncio.timeout(DEADLINE):
                await process.wait()


def notifications(messages: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(method, subscription id or uri) of each notification, in order."""
    found = []
    for message in messages:
        if "method" in message and "id" not in message:
            params = message.get("params") or {}
            found.append((message["method"], params.get("uri") or (params.get("_meta") or {}).get(SUBSCRIPTION_ID)))
    return found


async def test_a_2025_client_hears_of_list_changes_and_of_its_subscribed_resources_only(stdio: Stdio) -> None:
    capabilities = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    await stdio.send({"id": 1, "method": "initialize", "params": capabilities})
    (answer,) = await stdio.read_until(lambda m: m.get("id") == 1)
    assert answer["result"]["capabilities"]["tools"]["listChanged"] is True
    await stdio.send({"method": "notifications/initialized"})

    await stdio.call(2, "toggle_tool", {}, modern=False)
    heard = await stdio.read_until(lambda m: m.get("method") == "notifications/tools/list_changed")
    assert notifications(heard) == [("notifications/tools/list_changed", None)]

    await stdio.send({"id": 3, "method": "resources/subscribe", "params": {"uri": "test://watched"}})
    await stdio.read_until(lambda m: m.get("id") == 3)
    await stdio.call(4, "touch", {"uris": ["test://other", "test://watched"]}, modern=False)
    heard = await stdio.read_until(lambda m: m.get("method") == "notifications/resources/updated")
    assert notifications(heard) == [("notifications/resources/updated", "test://watched")]


async def test_a_2026_client_hears_only_on_its_subscriptions_each_filtered_and_tagged(stdio: Stdio) -> None:
    await stdio.call(1, "toggle_tool", {}, modern=True)  # nothing is sent unasked in 2026-07-28
    await stdio.send({"id": "tools", "method": "subscriptions/listen", "params": {"_meta": META, "notifications": {}}})
    (ack,) = await stdio.read_until(lambda m: m.get("method") == "notifications/subscriptions/acknowledged")
    assert ack["params"]["_meta"][SUBSCRIPTION_ID] == "tools"
    wanted = {"promptsListChanged": True, "resourceSubscriptions": ["test://watched"]}
    await stdio.send({"id": 7, "method": "subscriptions/listen", "params": {"_meta": META, "notifications": wanted}})
    (ack,) = await stdio.read_until(lambda m: m.get("method") == "notifications/subscriptions/acknowledged")
    assert ack["params"] == {"notifications": wanted, "_meta": {SUBSCRIPTION_ID: 7}}

    # Messages on the one channel keep their order, so what a subscription must not get would come first.
    await stdio.call(2, "toggle_tool", {}, modern=True)
    await stdio.call(3, "touch", {"uris": ["test://other", "test://watched"]}, modern=True)
    await stdio.call(4, "toggle_prompt", {}, modern=True)
    heard = await stdio.read_until(lambda m: m.get("method") == "notifications/prompts/list_changed")
    assert notifications(heard) == [
        ("notifications/resources/updated", "test://watched"),
        ("notifications/prompts/list_changed", 7),
    ]
    assert all(SUBSCRIPTION_ID in m["params"]["_meta"] for m in heard if "method" in m)


async def test_a_cancelled_subscription_ends_without_a_response(stdio: Stdio) -> None:
    for request_id, flag in (("a", "toolsListChanged"), ("b", "promptsListChanged")):
        listen = {"_meta": META, "notifications": {flag: True, "toolsListChanged": True}}
        await stdio.send({"id": request_id, "method": "subscriptions/listen", "params": listen})
        await stdio.read_until(lambda m: m.get("method") == "notifications/subscriptions/acknowledged")
    await stdio.send({"method": "notifications/cancelled", "params": {"requestId": "a", "reason": "done"}})
    await stdio.call(1, "toggle_tool", {}, modern=True)
    heard = await stdio.read_until(lambda m: m.get("method") == "notifications/tools/list_changed")
    assert notifications(heard) == [("notifications/tools/list_changed", "b")]
    assert not any(m.get("id") == "a" for m in heard)


async def test_a_server_shutting_down_ends_each_subscription_with_a_complete_result() -> None:
    hub = Hub()
    server = StdioServer(dispatcher=None, runtime=type("Runtime", (), {"hub": hub})())  # type: ignore[arg-type]
    out = io.BytesIO()
    server._out = out  # type: ignore[assignment]
    listen = asyncio.ensure_future(
        server._request(5, "subscriptions/listen", {"_meta": META, "notifications": {"toolsListChanged": True}})
    )
    async with asyncio.timeout(DEADLINE):
        while True:  # until the acknowledgement is written
            if b"acknowledged" in out.getvalue():
                break
            await asyncio.sleep(0.01)
        hub.publish("notifications/tools/list_changed")
        hub.close()
        await listen
    written = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [m.get("method") for m in written] == [
        "notifications/subscriptions/acknowledged",
        "notifications/tools/list_changed",
        None,
    ]
    assert written[-1] == {
        "jsonrpc": "2.0",
        "id": 5,
        "result": {"resultType": "complete", "_meta": {SUBSCRIPTION_ID: 5}},
    }
