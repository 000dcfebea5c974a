"""The Connect page's data: each client's steps from the settings, and the doctor run against the server's own
public URL on a real loopback socket (bounded in time, outbound requests under the SSRF guard)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from patchbay.app import create_app
from patchbay.connect_steps import client_setups, is_public_https, server_label
from patchbay.console.connect_doctor import run_doctor
from patchbay.settings import Settings, from_dict

pytestmark = pytest.mark.anyio


def _settings(
    tmp: Path,
    *,
    mode: str = "oauth",
    public_url: str | None = None,
    port: int = 8000,
    auth: dict[str, Any] | None = None,
) -> Settings:
    server: dict[str, Any] = {"name": "Acme Internal!", "port": port}
    if public_url:
        server["public_url"] = public_url
    data = {"server": server, "store": {"url": f"sqlite:///{tmp / 'c.db'}"}, "auth": {"mode": mode, **(auth or {})}}
    return from_dict(data, base_dir=tmp)


def _by_id(settings: Settings) -> dict[str, Any]:
    return {setup.id: setup for setup in client_setups(settings)}


def test_every_client_is_given_the_exact_mcp_url(tmp_path: Path) -> None:
    setups = _by_id(_settings(tmp_path, public_url="https://mcp.example.com"))
    assert list(setups) == ["chatgpt", "claude", "claude-code", "responses", "messages", "inspector"]
    url = "https://mcp.example.com/mcp"
    assert any(url in step for step in setups["chatgpt"].steps)
    assert any(url in step for step in setups["claude"].steps)
    assert setups["claude-code"].snippet == f"claude mcp add --transport http acme-internal {url}"
    assert url in setups["inspector"].snippet
    assert not any(setup.blocker for setup in setups.values())


def test_the_api_snippets_are_the_shapes_the_vendor_apis_take(tmp_path: Path) -> None:
    setups = _by_id(_settings(tmp_path, public_url="https://mcp.example.com"))
    tool = json.loads(setups["responses"].snippet)["tools"][0]
    assert tool["type"] == "mcp" and tool["server_url"] == "https://mcp.example.com/mcp"
    assert tool["server_label"] == "acme-internal" and "authorization" in tool
    body = json.loads(setups["messages"].snippet)
    assert body["mcp_servers"][0] == {
        "type": "url",
        "url": "https://mcp.example.com/mcp",
        "name": "acme-internal",
        "authorization_token": "<an API key from patchbay keys create>",
    }
    assert body["tools"] == [{"type": "mcp_toolset", "mcp_server_name": "acme-internal"}]
    assert any("mcp-client-2025-11-20" in step for step in setups["messages"].steps)


def test_without_sign_in_the_api_snippets_carry_no_credential(tmp_path: Path) -> None:
    setups = _by_id(_settings(tmp_path, mode="none", public_url="https://mcp.example.com"))
    assert "authorization" not in json.loads(setups["responses"].snippet)["tools"][0]
    assert "authorization_token" not in json.loads(setups["messages"].snippet)["mcp_servers"][0]
    assert any("Anyone who can reach the URL" in step for step in setups["chatgpt"].steps)


def test_a_loopback_url_is_flagged_for_hosted_clients_only(tmp_path: Path) -> None:
    setups = _by_id(_settings(tmp_path))
    for hosted in ("chatgpt", "claude", "responses", "messages"):
        assert setups[hosted].blocker == "http://127.0.0.1:8000/mcp is not a public HTTPS URL, which this client needs."
    assert setups["claude-code"].blocker == "" and setups["inspector"].blocker == ""


@pytest.mark.parametrize(
    ("url", "public"),
    [
        ("https://mcp.example.com/mcp", True),
        ("http://mcp.example.com/mcp", False),
        ("https://127.0.0.1/mcp", False),
        ("https://10.1.2.3/mcp", False),
        ("https://localhost:8443/mcp", False),
        ("https://8.8.8.8/mcp", True),
    ],
)
def test_only_https_on_a_public_address_counts_as_reachable_by_hosted_clients(url: str, public: bool) -> None:
    assert is_public_https(url) is public


def test_the_server_label_is_a_slug_of_the_server_name(tmp_path: Path) -> None:
    assert server_label(_settings(tmp_path)) == "acme-internal"
    nameless = from_dict({"server": {"name": "…"}}, base_dir=tmp_path)
    assert server_label(nameless) == "patchbay"


@contextlib.asynccontextmanager
async def _served(tmp: Path, mode: str, auth: dict[str, Any] | None = None) -> AsyncIterator[Settings]:
    """A real app on a loopback socket whose public URL is that socket's address."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    settings = _settings(tmp, mode=mode, port=sock.getsockname()[1], auth=auth)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        yield settings
    finally:
        server.should_exit = True
        await task


async def test_the_doctor_checks_the_servers_own_public_url_for_every_client(tmp_path: Path) -> None:
    async with _served(tmp_path, "oauth") as settings:
        outcome = await run_doctor(settings)
    assert outcome.error == "" and outcome.url == settings.mcp_url
    assert [c.title for c in outcome.clients] == ["ChatGPT", "Claude", "OpenAI Responses API", "Anthropic Messages API"]
    rows = {row.id: row for client in outcome.clients for row in client.rows}
    assert rows["auth.challenge"].status == "pass", rows["auth.challenge"]
    assert outcome.counts["pass"] > 0 and "skip" in outcome.counts


async def test_the_doctor_says_when_nothing_answers_at_the_public_url(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        outcome = await run_doctor(_settings(tmp_path, port=port))
    assert outcome.clients == () and outcome.error.startswith(f"nothing answers at http://127.0.0.1:{port}/mcp")


async def test_the_doctor_gives_up_at_its_deadline(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)  # accepts connections but never answers
        outcome = await run_doctor(_settings(tmp_path, port=sock.getsockname()[1]), deadline=0.5)
    assert outcome.clients == () and outcome.error == "the doctor did not finish within 0.5 s"


async def test_the_ssrf_guard_stops_the_doctor_at_a_private_address_the_server_points_it_to(tmp_path: Path) -> None:
    # The public URL is trusted as configured; the authorization server its metadata names is not: 10.x is private
    # and [outbound] does not allow it, so the doctor stops there instead of fetching it.
    external = {"external": {"issuer": "https://10.255.255.1"}}
    async with _served(tmp_path, "external", external) as settings:
        outcome = await run_doctor(settings, deadline=20)
    assert outcome.clients == ()
    assert outcome.error == (
        "an outbound request was stopped: 10.255.255.1 is a private (RFC 1918) address; only public addresses "
        "are fetched"
    )
