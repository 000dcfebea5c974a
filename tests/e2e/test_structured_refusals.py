"""Tools that declare an ``outputSchema``, answered without running: held for approval, rate limited, timed out.

MCP (2025-06-18 server/tools, structured content): such a tool MUST return ``structuredContent`` unless the result
is an error, and the official SDK client refuses anything else. A real `patchbay serve` and the SDK client, in both
eras: every answer that did not run the tool is an ``isError`` result the client accepts, and the approved call then
returns its structured result.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.client import Client

from tests.e2e.conftest import run_scenario
from tests.support.servers import RunningServer, run_patchbay

pytestmark = pytest.mark.e2e

CONFIG = """
[server]
name = "Structured refusals"

[store]
url = "sqlite:///patchbay.db"

[[connectors]]
name = "shop"
type = "python"
path = "tools.py"
prefix = ""
tool_timeouts = { slow_quote = 0.5 }

[[policy]]
id = "price-changes"
subjects = ["*"]
tools = ["set_price"]
effect = "approve"

[[limits]]
id = "one-quote"
per = "tool"
tools = ["quote"]
rate = "1/hour"
"""
TOOLS = '''
import asyncio

from pydantic import BaseModel

from patchbay import tool


class Price(BaseModel):
    sku: str
    cents: int


@tool(destructive=False, idempotent=True, open_world=False)
def set_price(sku: str, cents: int) -> Price:
    """Set the price of a SKU."""
    return Price(sku=sku, cents=cents)


@tool(read_only=True, open_world=False)
def quote(sku: str) -> Price:
    """The price of a SKU."""
    return Price(sku=sku, cents=1250)


@tool(read_only=True, open_world=False)
async def slow_quote(sku: str) -> Price:
    """A price that takes longer than its timeout."""
    await asyncio.sleep(3600)
    return Price(sku=sku, cents=0)
'''
ERAS = ["legacy", "2026-07-28"]


def text_of(result: types.CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, types.TextContent))


def approve(config: Path, approval_id: str) -> None:
    command = [sys.executable, "-m", "patchbay", "approvals", "approve", approval_id, "--by", "ada"]
    done = subprocess.run(
        [*command, "-c", str(config)], capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("mode", ERAS)
def test_tools_with_an_output_schema_answer_refusals_as_errors_the_sdk_client_accepts(
    tmp_path: Path, mode: str
) -> None:
    config = tmp_path / "patchbay.toml"
    config.write_text(CONFIG)
    (tmp_path / "tools.py").write_text(TOOLS)

    async def scenario(server: RunningServer) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with Client(server.url, mode=mode) as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            assert all(listed[name].output_schema for name in ("set_price", "quote", "slow_quote"))
            # Held for approval: the SDK client would raise on a non-error result without structuredContent.
            held = await client.call_tool("set_price", {"sku": "B-200", "cents": 999})
            seen["held"] = held
            approval_id = (held.meta or {})["patchbay/approval"]["approval_id"]
            approve(config, approval_id)
            seen["approved"] = await client.call_tool("set_price", {"sku": "B-200", "cents": 999})
            seen["quote"] = await client.call_tool("quote", {"sku": "B-200"})
            seen["limited"] = await client.call_tool("quote", {"sku": "B-200"})
            seen["timed_out"] = await client.call_tool("slow_quote", {"sku": "B-200"})
        return seen

    with run_patchbay(config, log_dir=tmp_path, start_timeout=60) as server:
        seen = run_scenario(lambda: scenario(server), timeout=120)

    held = seen["held"]
    assert held.is_error is True and held.structured_content is None
    assert "Approval needed" in text_of(held) and "/approvals/" in text_of(held)
    assert seen["approved"].is_error is False
    assert seen["approved"].structured_content == {"sku": "B-200", "cents": 999}
    assert seen["quote"].structured_content == {"sku": "B-200", "cents": 1250}
    limited = seen["limited"]
    assert limited.is_error is True and "rate limited by one-quote" in text_of(limited)
    timed_out = seen["timed_out"]
    assert timed_out.is_error is True and "did not finish within 0.5 seconds" in text_of(timed_out)
