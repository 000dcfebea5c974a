"""/readyz is public: a stdio upstream's stderr (which can hold paths, hostnames or secrets the child printed) is
shown only to a request carrying the ``[metrics]`` token, in each connector's ``operator`` part.

The upstream is a real child process that writes a marker to stderr and exits before it answers anything.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from tests.unit.fixtures.wire import client_for

from patchbay.app import create_app
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio

TOKEN = "readyz-operator-token-0123456789"
MARKER = "db-password=hunter2-at-internal-db.corp.example:/srv/secret"
# Writes the marker to stderr and exits with code 3 before writing anything to stdout: every start fails.
FAILING = f"import sys; sys.stderr.write({MARKER!r} + '\\n'); sys.stderr.flush(); sys.exit(3)"


def settings_for(tmp_path: Path, *, metrics: bool = True) -> Any:
    data: dict[str, Any] = {
        "server": {"connector_retry_max_seconds": 0.2},
        "store": {"url": f"sqlite:///{tmp_path / 'patchbay.db'}"},
        "connectors": [
            {"name": "kanban", "type": "kanban", "prefix": ""},
            {"name": "shaky", "type": "mcp", "command": [sys.executable, "-c", FAILING], "start_timeout": 20},
        ],
    }
    if metrics:
        data["metrics"] = {"token_env": "PATCHBAY_TEST_READYZ_TOKEN"}
    return from_dict(data, source="patchbay.toml", base_dir=tmp_path)


@pytest.fixture
async def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("PATCHBAY_TEST_READYZ_TOKEN", TOKEN)
    app = create_app(settings_for(tmp_path))
    await app.runtime.start()
    try:
        async with client_for(app) as http:
            yield http
    finally:
        await app.runtime.stop()


async def shaky_down(http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """/readyz once the stdio upstream has failed and its stderr was read (a deadline, no fixed wait)."""
    with anyio.fail_after(20):
        while True:
            reply = await http.get("/readyz", headers=headers)
            body: dict[str, Any] = reply.json()
            shaky = body.get("connectors", {}).get("shaky", {})
            seen = "operator" not in shaky or MARKER in (shaky["operator"].get("stderr") or "")
            if shaky.get("ok") is False and seen:
                assert reply.status_code == 503
                return body
            await anyio.sleep(0.05)


async def test_readyz_without_the_token_never_shows_the_childs_stderr(client: httpx.AsyncClient) -> None:
    with_token = await shaky_down(client, {"Authorization": f"Bearer {TOKEN}"})
    assert MARKER in with_token["connectors"]["shaky"]["operator"]["stderr"]  # it was there to leak
    body = await shaky_down(client)
    shaky = body["connectors"]["shaky"]
    assert "exited with code 3" in shaky["detail"], shaky  # the public reason still says what happened
    assert "operator" not in shaky and "operator" not in body["connectors"]["kanban"]
    reply = await client.get("/readyz")
    assert MARKER not in reply.text and "hunter2" not in reply.text


async def test_a_wrong_token_on_readyz_is_treated_as_none_not_refused(client: httpx.AsyncClient) -> None:
    for header in (f"Bearer {TOKEN[:-1]}x", f"Bearer {TOKEN}x", TOKEN, "Basic Zm9vOmJhcg=="):
        body = await shaky_down(client, {"Authorization": header})  # 503 degraded, never 401
        assert "operator" not in body["connectors"]["shaky"], header
        assert "hunter2" not in str(body)


async def test_readyz_with_the_token_shows_each_connectors_type_tools_and_a_stdio_upstreams_stderr(
    client: httpx.AsyncClient,
) -> None:
    body = await shaky_down(client, {"Authorization": f"Bearer {TOKEN}"})
    shaky = body["connectors"]["shaky"]["operator"]
    assert shaky["type"] == "mcp" and shaky["upstream"] == "stdio" and shaky["tools"] == 0
    assert shaky["era"] is None  # it never answered: no era known
    assert MARKER in shaky["stderr"]
    kanban = body["connectors"]["kanban"]["operator"]
    assert kanban["type"] == "kanban" and kanban["tools"] > 0 and "stderr" not in kanban


async def test_readyz_has_no_operator_part_without_a_metrics_token_configured(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path, metrics=False))
    await app.runtime.start()
    try:
        async with client_for(app) as http:
            body = await shaky_down(http, {"Authorization": "Bearer "})
            assert "operator" not in body["connectors"]["shaky"] and "hunter2" not in str(body)
    finally:
        await app.runtime.stop()
