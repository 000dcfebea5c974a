"""The admin commands read the store of the running demo with --demo: `patchbay serve --demo` serves a call, and
`audit`, `manifest`, `approvals`, `users` and `policy explain` see the demo's trail, manifest and settings."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest

from tests.e2e.conftest import patchbay_cli, run_demo, run_scenario

pytestmark = pytest.mark.e2e
MODERN = "2026-07-28"


async def _list_boards(base_url: str) -> None:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {"jsonrpc": "2.0", "id": "demo-1", "method": "tools/call"}
    body["params"] = {"name": "list_boards", "arguments": {}, "_meta": meta}
    headers = {
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": "list_boards",
    }
    async with httpx2.AsyncClient(base_url=base_url, timeout=10) as client:
        response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 200 and response.json()["result"]["isError"] is False, response.text


def test_admin_commands_read_the_demo_store_with_demo(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    env = {"PATCHBAY_DEMO_DIR": str(demo_dir)}
    with run_demo(demo_dir, tmp_path) as server:
        run_scenario(lambda: _list_boards(server.base_url))
    elsewhere = tmp_path / "elsewhere"  # no patchbay.toml here: only --demo can find the store
    elsewhere.mkdir()

    def cli(*args: str) -> str:
        done = patchbay_cli(*args, "--demo", cwd=elsewhere, env=env)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    records = [json.loads(line) for line in cli("audit", "search", "--tool", "list_boards", "--json").splitlines()]
    assert [(r["jsonrpc_id"], r["transport"], r["outcome"]) for r in records] == [("demo-1", "streamable_http", "ok")]
    assert "list_boards" in cli("audit", "tail")
    assert "intact" in cli("audit", "verify")
    status = json.loads(cli("manifest", "status", "--json"))
    assert status["mode"] == "open" and status["version"] >= 1 and status["pending"] == 0  # the demo's manifest
    cli("approvals", "list")
    cli("users", "list")
    explained = cli("policy", "explain", "--tool", "list_boards", "--anonymous", "--json")
    assert json.loads(explained)["effect"] == "allow", explained


def test_demo_without_a_demo_store_or_with_config_is_refused(tmp_path: Path) -> None:
    env = {"PATCHBAY_DEMO_DIR": str(tmp_path / "never-served")}
    missing = patchbay_cli("audit", "tail", "--demo", cwd=tmp_path, env=env)
    assert missing.returncode == 2
    assert "no demo store" in missing.stderr and str(tmp_path / "never-served" / "demo.db") in missing.stderr
    assert not (tmp_path / "never-served").exists()  # a mistyped folder is not created
    config = tmp_path / "patchbay.toml"
    config.write_text("[server]\nname = 'x'\n")
    both = patchbay_cli("users", "list", "--demo", "--config", str(config), cwd=tmp_path, env=env)
    assert both.returncode == 2 and "--demo and --config" in both.stderr
