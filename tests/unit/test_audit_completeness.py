"""Every call through a real server on loopback is in the audit trail exactly once, with the right fields, and no
secret is anywhere in the store's files (issue 12: "Completeness")."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from fixtures.wire import JSON_POST, initialize_body, live_server, modern_request
from sqlalchemy import text

from patchbay.settings import from_dict
from patchbay.store import create_engine

pytestmark = pytest.mark.anyio

TOOLS = Path(__file__).parent / "fixtures" / "audit_tools.py"
PIN = "pin-7c1d-never-stored"
N = 3


def _settings(tmp_path: Path) -> Any:
    return from_dict(
        {
            "server": {"name": "audit test"},
            "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
            "auth": {"mode": "oauth"},
            "connectors": [
                {"name": "a", "type": "python", "path": str(TOOLS), "prefix": "", "tool_timeouts": {"slow": 0.3}}
            ],
            "policy": [
                {"subjects": ["*"], "tools": ["forbidden"], "effect": "deny", "id": "no-forbidden"},
                {"subjects": ["*"], "tools": ["held"], "effect": "approve", "id": "hold-it"},
            ],
            "limits": [{"id": "one-only", "per": "user", "tools": ["limited"], "rate": "1/hour"}],
            "audit": {"checkpoint_every": 5},
        },
        base_dir=tmp_path,
    )


async def _call(http: httpx.AsyncClient, key: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    body, headers = modern_request("tools/call", {"name": name, "arguments": arguments})
    response = await http.post("/mcp", json=body, headers={**headers, "authorization": f"Bearer {key}"})
    assert response.status_code in (200, 429), response.text
    return {"id": body["id"], **response.json()}


async def _cancelled(http: httpx.AsyncClient, key: str, index: int) -> str:
    """A hanging call in a 2025 session, cancelled with notifications/cancelled; returns its request id."""
    auth = {"authorization": f"Bearer {key}"}
    opened = await http.post("/mcp", json=initialize_body(), headers={**JSON_POST, **auth})
    headers = {**JSON_POST, **auth, "mcp-session-id": opened.headers["mcp-session-id"]}
    headers["mcp-protocol-version"] = opened.json()["result"]["protocolVersion"]
    await http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    request_id = f"hang-{index}"
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": "hang", "arguments": {}}}
    call = asyncio.ensure_future(http.post("/mcp", json=body, headers=headers))
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}}
    deadline = time.monotonic() + 10
    while not call.done():  # the notification may arrive before the call: repeat it until the call ends
        assert time.monotonic() < deadline, "the hanging call was never cancelled"
        await http.post("/mcp", json=cancel, headers=headers)
        await asyncio.sleep(0.05)
    await call
    return request_id


def _records(db: Path) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT seq, kind, name, subject, outcome, body FROM audit_records ORDER BY seq")
        )
        found = [{"seq": r.seq, "row": r, **orjson.loads(r.body)} for r in rows]
    engine.dispose()
    return found


def _raw(folder: Path) -> bytes:
    """Every byte of the store: the database, its WAL and shared-memory files, the checkpoint file."""
    return b"".join(p.read_bytes() for p in folder.iterdir() if p.name.startswith("store.db"))


async def test_every_call_of_every_outcome_is_recorded_once_and_no_secret_is_stored(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with live_server(settings) as live:
        core = live.app.runtime.auth.core
        _view, key = core.keys.create("auditor", ["mcp"], roles=["staff"])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{live.port}", timeout=20) as http:
            registered = await http.post(
                "/register",
                json={
                    "client_name": "confidential",
                    "redirect_uris": ["http://127.0.0.1:9999/cb"],
                    "token_endpoint_auth_method": "client_secret_post",
                },
            )
            client_secret = registered.json()["client_secret"]
            plan = [
                *(("lookup", {"q": f"alpha-{i}"}) for i in range(N)),
                *(("oops", {}) for _ in range(N)),
                *(("forbidden", {}) for _ in range(N)),
                *(("held", {"note": f"n{i}"}) for i in range(N)),
                *(("limited", {}) for _ in range(N + 1)),
                *(("slow", {}) for _ in range(N)),
                *(("remember", {"name": f"ada-{i}", "pin": PIN}) for i in range(N)),
            ]
            answers = await asyncio.gather(*(_call(http, key, name, args) for name, args in plan))
            cancelled = await asyncio.gather(*(_cancelled(http, key, i) for i in range(N)))
    records = _records(tmp_path / "store.db")

    calls = [r for r in records if r["kind"] == "call" and r["phase"] == "done"]
    by_id = {r["jsonrpc_id"]: r for r in calls}
    assert len(by_id) == len(calls) == len(plan) + N  # one completion record per call, none twice
    assert {a["id"] for a in answers} | set(cancelled) == set(by_id)
    outcomes = collections.Counter((r["name"], r["outcome"]) for r in calls)
    assert outcomes == {
        ("lookup", "ok"): N,
        ("oops", "tool_error"): N,
        ("forbidden", "denied"): N,
        ("held", "approval_pending"): N,
        ("limited", "ok"): 1,
        ("limited", "rate_limited"): N,
        ("slow", "timed_out"): N,
        ("remember", "ok"): N,
        ("hang", "cancelled"): N,
    }
    for answer in answers:  # what the client saw is what the trail says
        record = by_id[answer["id"]]
        assert record["subject"] == "key:auditor" and record["principal_kind"] == "api_key"
        assert record["roles"] == ["staff"] and record["era"] == "modern" and record["request_ref"]
        assert record["tool_digest"] == live.app.runtime.catalog.digests[record["name"]]
        assert record["result_bytes"] > 0 and record["latency_ms"] >= 0
        assert record["row"].outcome == record["outcome"] and record["row"].subject == "key:auditor"
    assert {by_id[a["id"]]["decision"]["rule"] for a in answers if by_id[a["id"]]["name"] == "forbidden"} == {
        "no-forbidden"
    }
    assert all(by_id[a["id"]].get("approval_id") for a in answers if by_id[a["id"]]["name"] == "held")

    intents = [r for r in records if r["kind"] == "call" and r["phase"] == "intent"]
    assert sorted(r["arguments"]["name"] for r in intents) == [f"ada-{i}" for i in range(N)]
    assert all(r["arguments"]["pin"] == "[redacted]" for r in intents)
    done_of = {r["intent_seq"] for r in calls if r["name"] == "remember"}
    assert done_of == {r["seq"] for r in intents}  # each write's completion names its intent

    raw = _raw(tmp_path)
    for secret in (key, PIN, client_secret):
        assert secret.encode() not in raw, f"a secret ({secret[:4]}…) is in the store"
