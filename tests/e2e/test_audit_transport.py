"""Every call record names the transport the call came in on (issue 12, scope 1: "transport and era"): one call
through each real transport (the official SDK's Streamable HTTP, legacy HTTP+SSE and stdio clients against a real
`patchbay serve`, and `patchbay call` in-process), then `patchbay audit` shows and filters by it."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.conftest import patchbay_cli, run_scenario
from tests.support.servers import run_patchbay

pytestmark = pytest.mark.e2e

TOOLS = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "audit_tools.py"


def _config(folder: Path) -> Path:
    config = folder / "patchbay.toml"
    config.write_text(
        f"""
[store]
url = "sqlite:///{folder / "store.db"}"

[[connectors]]
name = "a"
type = "python"
path = "{TOOLS}"
prefix = ""
""",
        encoding="utf-8",
    )
    return config


async def _call_over(client_transport: Any, mode: str, q: str) -> None:
    async with Client(client_transport, mode=mode) as client:
        result = await client.call_tool("lookup", {"q": q})
        assert result.is_error is False, result


def _records(config: Path, *args: str) -> list[dict[str, Any]]:
    done = patchbay_cli("audit", "search", "--kind", "call", "--json", "--config", str(config), *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_each_transport_is_recorded_shown_and_searchable(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with run_patchbay(config, log_dir=tmp_path) as server:
        run_scenario(lambda: _call_over(streamable_http_client(server.url), "legacy", "via-http-legacy-era"))
        run_scenario(lambda: _call_over(streamable_http_client(server.url), "2026-07-28", "via-http-modern-era"))
        run_scenario(lambda: _call_over(sse_client(f"{server.base_url}/sse"), "legacy", "via-sse"))
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "patchbay", "serve", "--stdio", "--config", str(config)], cwd=tmp_path
    )

    async def over_stdio() -> None:
        with (tmp_path / "stdio.log").open("w") as errlog:
            await _call_over(stdio_client(params, errlog=errlog), "legacy", "via-stdio")

    run_scenario(over_stdio)
    called = patchbay_cli("call", "lookup", "--args", '{"q": "via-cli"}', "--config", str(config))
    assert called.returncode == 0, called.stderr

    by_query = {r["arguments"]["q"]: r for r in _records(config)}
    assert {q: (r["transport"], r["era"]) for q, r in by_query.items()} == {
        "via-http-legacy-era": ("streamable_http", "legacy"),
        "via-http-modern-era": ("streamable_http", "modern"),
        "via-sse": ("legacy_sse", "legacy"),
        "via-stdio": ("stdio", "legacy"),
        "via-cli": ("in_process", "legacy"),
    }
    for transport, queries in {
        "streamable_http": {"via-http-legacy-era", "via-http-modern-era"},
        "legacy_sse": {"via-sse"},
        "stdio": {"via-stdio"},
        "in_process": {"via-cli"},
    }.items():
        found = _records(config, "--transport", transport)
        assert {r["arguments"]["q"] for r in found} == queries, transport

    tail = patchbay_cli("audit", "tail", "-n", "5", "--config", str(config))
    assert tail.returncode == 0, tail.stderr
    assert [line.split()[-1] for line in tail.stdout.splitlines()] == [
        "streamable_http",
        "streamable_http",
        "legacy_sse",
        "stdio",
        "in_process",
    ]
    exported = patchbay_cli("audit", "export", "--format", "csv", "--kind", "call", "--config", str(config))
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [row["transport"] for row in rows] == [
        "streamable_http",
        "streamable_http",
        "legacy_sse",
        "stdio",
        "in_process",
    ]

    verified = patchbay_cli("audit", "verify", "--config", str(config))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_an_unknown_transport_is_refused_naming_the_allowed_ones(tmp_path: Path) -> None:
    config = _config(tmp_path)
    done = patchbay_cli("audit", "search", "--transport", "carrier-pigeon", "--config", str(config))
    assert done.returncode == 2
    for allowed in ("streamable_http", "legacy_sse", "stdio", "in_process"):
        assert allowed in done.stderr
