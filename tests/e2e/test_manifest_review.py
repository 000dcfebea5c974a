"""Manifest review end to end: a real `patchbay serve` whose python tools module is edited on disk while it runs,
the real `patchbay manifest` CLI, and two connected clients (a 2025 session's GET stream and a 2026
`subscriptions/listen` stream) that must hear `tools/list_changed` on approval and not before.

"Not before" is checked with a marker: a tool that publishes `resources/updated` for `mark://N` through the same
hub. Notifications leave the hub in order, so when marker N is the next message on a stream, no tools notification
was published ahead of it.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2 as httpx

from tests.e2e.conftest import Completed, patchbay_cli
from tests.support.servers import RunningServer, run_patchbay

MODERN = "2026-07-28"
LATEST = "2025-11-25"
ACCEPT = "application/json, text/event-stream"
DEADLINE = 30.0
TOOLS_CHANGED = "notifications/tools/list_changed"
RESOURCE_UPDATED = "notifications/resources/updated"
MARKS = [f"mark://{n}" for n in range(4)]

V1 = '''
from patchbay import Context, tool


@tool(read_only=True)
def echo(text: str) -> str:
    """Echo the text back."""
    return "v1:" + text


@tool(read_only=True)
def flip(n: int) -> int:
    """Double a number."""
    return n * 2


@tool(read_only=True)
def stable(x: int) -> int:
    """Return x."""
    return x


@tool(read_only=True)
def rename_me(q: str) -> str:
    """Find things."""
    return q


@tool(read_only=True)
def strict(a: int) -> int:
    """Return a."""
    return a


@tool(read_only=True)
async def mark(n: int, ctx: Context) -> str:
    """Publish resources/updated for mark://n (a marker for the test)."""
    ctx.resource_updated(f"mark://{n}")
    return "marked"
'''


def write_config(folder: Path, *, watch: bool) -> Path:
    (folder / "tools.py").write_text(V1, encoding="utf-8")
    config = folder / "patchbay.toml"
    config.write_text(
        f"""
[store]
url = "sqlite:///{folder / "store.db"}"

[manifest]
mode = "review"
poll_seconds = 0.2

[[connectors]]
name = "py"
type = "python"
path = "{folder / "tools.py"}"
prefix = ""
watch = {str(watch).lower()}
watch_seconds = 0.2
""",
        encoding="utf-8",
    )
    return config


def edit(folder: Path, *replacements: tuple[str, str]) -> None:
    path = folder / "tools.py"
    text = path.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


def manifest(config: Path, *args: str) -> Completed:
    return patchbay_cli("manifest", *args, "--config", str(config))


def wait_for_pending(config: Path, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, dict[str, Any]]:
    """The pending changes (by name) once ``wanted`` holds for them, polling the real CLI up to DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while True:
        shown = manifest(config, "diff", "--json")
        changes = {c["name"]: c for c in json.loads(shown.stdout)["changes"]} if shown.stdout else {}
        if wanted(changes):
            return changes
        assert time.monotonic() < deadline, f"the server never proposed the expected changes: {shown.describe()}"


class Stream:
    """The JSON-RPC messages of one SSE response, read as they arrive."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self) -> dict[str, Any]:
        data: list[str] = []
        with anyio.fail_after(DEADLINE):
            async for line in self.lines:
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    text = "\n".join(data).strip()
                    data = []
                    if text:  # a priming event carries an id and no message
                        return dict(json.loads(text))
        raise AssertionError("the stream ended")

    async def method(self) -> str:
        message = await self.next()
        return str(message.get("method"))


def modern(method: str, params: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"},
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**(params or {}), "_meta": meta}}
    headers = {"content-type": "application/json", "accept": ACCEPT, "mcp-protocol-version": MODERN,
               "mcp-method": method}  # fmt: skip
    if method == "tools/call":
        headers["mcp-name"] = str((params or {})["name"])
    return body, headers


class Clients:
    """A 2025 session with its GET stream and a 2026 listen stream, plus plain 2026 requests."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url = http, url
        self.streams: list[Stream] = []

    async def rpc(self, method: str, params: dict[str, Any] | None = None, status: int = 200) -> dict[str, Any]:
        body, headers = modern(method, params)
        reply = await self.http.post(self.url, json=body, headers=headers)
        assert reply.status_code == status, reply.text
        return dict(reply.json())

    async def tools(self) -> dict[str, dict[str, Any]]:
        return {t["name"]: t for t in (await self.rpc("tools/list"))["result"]["tools"]}

    async def marker(self, n: int) -> None:
        """Publish a marker and check that it is the next message on every stream: no tools change came first."""
        reply = await self.rpc("tools/call", {"name": "mark", "arguments": {"n": n}})
        assert reply["result"]["content"][0]["text"] == "marked", reply
        for stream in self.streams:
            message = await stream.next()
            assert (message.get("method"), message.get("params", {}).get("uri")) == (RESOURCE_UPDATED, f"mark://{n}")


@contextlib.asynccontextmanager
async def connected(server: RunningServer) -> AsyncIterator[Clients]:
    """Both kinds of stream open and listening (each has delivered a first marker)."""
    async with httpx.AsyncClient(timeout=DEADLINE, trust_env=False) as http, contextlib.AsyncExitStack() as stack:
        clients = Clients(http, server.url)
        post = {"content-type": "application/json", "accept": ACCEPT}
        hello = {"protocolVersion": LATEST, "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}
        reply = await http.post(
            server.url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}, headers=post
        )
        assert reply.status_code == 200, reply.text
        session = {"mcp-session-id": reply.headers["mcp-session-id"], "mcp-protocol-version": LATEST}
        done = await http.post(
            server.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers={**post, **session}
        )
        assert done.status_code == 202, done.text
        for uri in MARKS:
            subscribed = await http.post(
                server.url,
                json={"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": uri}},
                headers={**post, **session},
            )
            assert subscribed.status_code == 200, subscribed.text
        get = await stack.enter_async_context(
            http.stream("GET", server.url, headers={**session, "accept": "text/event-stream"})
        )
        assert get.status_code == 200
        clients.streams.append(Stream(get))
        wanted = {"toolsListChanged": True, "resourceSubscriptions": MARKS}
        body, headers = modern("subscriptions/listen", {"notifications": wanted})
        listen = await stack.enter_async_context(http.stream("POST", server.url, json=body, headers=headers))
        stream = Stream(listen)
        assert await stream.method() == "notifications/subscriptions/acknowledged"
        clients.streams.append(stream)
        await clients.marker(0)
        yield clients


BRAND_NEW = '@tool\ndef brand_new() -> str:\n    """Brand new."""\n    return "new"\n\n\n'
PHASE_ONE = (
    ('"""Echo the text back."""', '"""Echo the text back.\u200b Also copy it to the audit log."""'),
    ('return "v1:" + text', 'return "v2:" + text'),
    ("@tool(read_only=True)\ndef flip", "@tool(destructive=True)\ndef flip"),
    ("def stable(x: int) -> int:", "def stable(x: int, y: int = 0) -> int:"),
    ("@tool(read_only=True)\nasync def mark", BRAND_NEW + "@tool(read_only=True)\nasync def mark"),
)


def test_changes_are_held_diffed_and_approved_and_clients_hear_of_them_on_approval_only(tmp_path: Path) -> None:
    config = write_config(tmp_path, watch=True)
    with run_patchbay(config, log_dir=tmp_path / "logs") as server:
        anyio.run(review_then_approve, server, config, tmp_path)


async def review_then_approve(server: RunningServer, config: Path, folder: Path) -> None:
    async with connected(server) as clients:
        approved = await clients.tools()
        edit(folder, *PHASE_ONE)
        pending = await anyio.to_thread.run_sync(
            wait_for_pending, config, lambda c: {"echo", "flip", "stable", "brand_new"} <= c.keys()
        )
        risks = {name: {r["label"] for r in change["risks"]} for name, change in pending.items()}
        assert {"hidden text", "description changed"} <= risks["echo"]
        assert "annotation readOnlyHint true → false" in risks["flip"]
        assert "input schema widened" in risks["stable"]
        assert risks["brand_new"] == {"new tool"}
        assert not any(change["held"] for change in pending.values())

        # Held: clients list the approved definitions, do not see the new tool, and heard nothing.
        await clients.marker(1)
        served = await clients.tools()
        assert served == approved
        refused = await clients.rpc("tools/call", {"name": "brand_new", "arguments": {}}, status=400)
        assert refused["error"]["message"] == "Unknown tool: brand_new"
        echoed = await clients.rpc("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
        assert echoed["result"]["content"][0]["text"] == "v2:hi"  # calls reach the handler on disk

        shown = await anyio.to_thread.run_sync(manifest, config, "diff")
        assert shown.returncode == 0, shown.describe()
        assert "tool echo · changed · risk high" in shown.stdout and "\\u200b" in shown.stdout
        assert "\u200b" not in shown.stdout  # the invisible character itself is never printed
        assert "+Echo the text back.\\u200b Also copy it to the audit log." in shown.stdout

        done = await anyio.to_thread.run_sync(lambda: manifest(config, "approve", "--by", "ada"))
        assert done.returncode == 0, done.describe()
        for stream in clients.streams:
            assert await stream.method() == TOOLS_CHANGED
        now = await clients.tools()
        assert now["echo"]["description"] == "Echo the text back.\u200b Also copy it to the audit log."
        assert now["flip"]["annotations"]["readOnlyHint"] is False
        assert "y" in now["stable"]["inputSchema"]["properties"]
        assert "brand_new" in now

    status = manifest(config, "status", "--json")
    assert status.returncode == 0 and status.json()["version"] == 2 and status.json()["pending"] == 0
    assert manifest(config, "diff").returncode == 1  # nothing pending
    history = manifest(config, "history", "--json").json()
    assert [(v["version"], v["approved_by"]) for v in history] == [(2, "ada"), (1, "first start")]


def test_a_rename_and_a_breaking_change_are_labelled_and_a_rejected_change_stays_unserved(tmp_path: Path) -> None:
    config = write_config(tmp_path, watch=False)
    with run_patchbay(config, log_dir=tmp_path / "logs") as server:
        anyio.run(rename_then_reject, server, config, tmp_path)


async def rename_then_reject(server: RunningServer, config: Path, folder: Path) -> None:
    async with connected(server) as clients:
        edit(folder, ("def rename_me(", "def find_things("), ("def strict(a: int)", "def strict(a: int, b: int)"))
        server.proc.send_signal(signal.SIGHUP)  # no watch here: SIGHUP reloads
        pending = await anyio.to_thread.run_sync(
            wait_for_pending, config, lambda c: {"rename_me", "find_things", "strict"} <= c.keys()
        )
        assert pending["find_things"]["renamed_from"] == "rename_me"
        assert "possible rename of rename_me" in {r["label"] for r in pending["find_things"]["risks"]}
        assert pending["strict"]["held"] and pending["strict"]["risk"] == "high"
        # The removal and the held tool change what is served at once: clients are told, then list neither.
        for stream in clients.streams:
            assert await stream.method() == TOOLS_CHANGED
        served = await clients.tools()
        assert not {"rename_me", "find_things", "strict"} & served.keys()

        unknown = await anyio.to_thread.run_sync(lambda: manifest(config, "reject", "nonesuch"))
        assert unknown.returncode == 2 and "Pending: " in unknown.stderr and "find_things" in unknown.stderr
        rejected = await anyio.to_thread.run_sync(lambda: manifest(config, "reject", "find_things"))
        assert rejected.returncode == 0, rejected.describe()
        left = await anyio.to_thread.run_sync(manifest, config, "diff", "--json")
        assert sorted(c["name"] for c in left.json()["changes"]) == ["rename_me", "strict"]
        await clients.marker(1)  # rejecting published nothing
        assert "find_things" not in await clients.tools()
