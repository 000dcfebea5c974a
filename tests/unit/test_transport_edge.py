"""Every route the app exposes is held to /mcp's standard: a foreign Host is 421 with a JSON body naming the value
and the setting (DNS rebinding), and no route reads a body past server.max_body_bytes (413), declared or chunked.

The routes are enumerated from the app's router, so a route added later is covered without touching this file.
reference/mcp-requirements.md §3.6, R-016; the hardening issue's "Host checks" and "Body limits".
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from fixtures.wire import TOOLS_FILE, client_for, running

from patchbay.settings import Settings, from_dict
from patchbay.transport.edge import Edge
from patchbay.transport.security import HostGuard, Warnings, shown_value

pytestmark = pytest.mark.anyio

CAP = 1024  # the smallest server.max_body_bytes allowed: cheap to exceed
FOREIGN = "evil.example:8000"
MCP_METHODS = ("POST", "GET", "DELETE")
CONTENT_TYPES = ("application/json", "application/x-www-form-urlencoded")


def settings(tmp: Path, mode: str, **server: Any) -> Settings:
    data: dict[str, Any] = {
        "server": {"name": "edge-test", "max_body_bytes": CAP, **server},
        "store": {"url": f"sqlite:///{tmp / 'edge.db'}"},
        "auth": {"mode": mode},
        "connectors": [{"name": "fx", "type": "python", "path": str(TOOLS_FILE), "prefix": ""}],
    }
    return from_dict(data, base_dir=tmp)


MCP_TRANSPORTS = ("/mcp", "/sse", "/messages", "/messages/")


@contextlib.asynccontextmanager
async def serving(tmp: Path, mode: str, **server: Any) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The app and a client that signs its MCP transport requests in with an API key when sign-in is on."""
    async with running(settings(tmp, mode, **server)) as app, client_for(app) as http:
        if mode != "none":
            core = app.runtime.auth.core
            _, key = await core.run(core.keys.create, "edge", ["mcp"])

            async def sign(request: httpx.Request) -> None:
                if request.url.path in MCP_TRANSPORTS:
                    request.headers["authorization"] = f"Bearer {key}"

            http.event_hooks["request"].append(sign)
        yield app, http


def endpoints(app: Any) -> list[tuple[str, str]]:
    """(method, path) for every route of the router, plus /mcp (served beside it), with path parameters filled."""
    pairs = [(method, "/mcp") for method in MCP_METHODS]
    for route in app.router.routes:
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        pairs += [(method, path) for method in sorted(route.methods or ("GET",))]
    return pairs


def assert_json_refusal(response: httpx.Response, status: int, *needles: str) -> None:
    assert response.status_code == status, (response.request.method, response.request.url, response.text)
    if response.request.method == "HEAD":
        return
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    text = body["error"]["message"] if isinstance(body.get("error"), dict) else body["error"]
    for needle in needles:
        assert needle in text, (needle, text)


@pytest.mark.parametrize("mode", ["none", "api_key", "oauth"])
async def test_every_route_refuses_a_foreign_host_with_421_json(tmp_path: Path, mode: str) -> None:
    async with serving(tmp_path, mode) as (app, http):
        pairs = endpoints(app)
        assert ("GET", "/healthz") in pairs and ("POST", "/messages") in pairs
        if mode == "oauth":
            assert ("POST", "/token") in pairs and ("GET", "/.well-known/oauth-protected-resource") in pairs
        for method, path in [*pairs, ("GET", "/no-such-route")]:
            with anyio.fail_after(10):  # a route that let the request through might open an endless stream
                response = await http.request(method, path, headers={"host": FOREIGN})
            assert_json_refusal(response, 421, "'evil.example:8000'", "server.allowed_hosts")


@pytest.mark.parametrize("mode", ["none", "api_key", "oauth"])
async def test_every_route_refuses_a_declared_body_over_the_cap_with_413(tmp_path: Path, mode: str) -> None:
    async with serving(tmp_path, mode) as (app, http):
        for method, path in endpoints(app):
            if method == "HEAD" or (path == "/mcp" and method != "POST"):  # /mcp reads a body only on POST
                continue
            headers = {"content-type": "application/json"}
            response = await http.request(method, path, content=b"x" * (CAP + 1), headers=headers)
            assert "content-length" in response.request.headers
            assert_json_refusal(response, 413, str(CAP))


class Chunks:
    """A chunked request body (no Content-Length) that counts how much of it the server pulled."""

    def __init__(self, total: int, size: int = 256) -> None:
        self.total = total
        self.size = size
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            self.pulled += self.size
            yield b"y" * self.size


@pytest.mark.parametrize("mode", ["none", "api_key", "oauth"])
async def test_no_route_reads_a_chunked_body_past_the_cap(tmp_path: Path, mode: str) -> None:
    """A route that reads the body answers 413 once it passes the cap; one that refuses first reads no further."""
    async with serving(tmp_path, mode) as (app, http):
        readers = set()
        for method, path in endpoints(app):
            if method != "POST":
                continue
            for content_type in CONTENT_TYPES:  # the first type the route takes (415 means: try the next)
                body = Chunks(CAP * 64)
                response = await http.post(path, content=body, headers={"content-type": content_type})
                assert "content-length" not in response.request.headers
                if response.status_code != 415:
                    break
            assert body.pulled <= CAP + body.size, (path, body.pulled)
            if response.status_code == 413:
                assert_json_refusal(response, 413, str(CAP))
                readers.add(path)
        # The routes that must read a body do, and are stopped: the test cannot pass by nobody reading.
        assert {"/mcp", "/messages"} <= readers, readers
        if mode == "oauth":
            assert {"/token", "/register"} <= readers, readers


async def test_messages_takes_only_json(tmp_path: Path) -> None:
    async with serving(tmp_path, "none") as (_, http):
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            response = await http.post("/messages?session_id=x", content=b"{}", headers={"content-type": content_type})
            assert response.status_code == 415, response.text
            assert response.json()["error"]["code"] == -32600
        missing = await http.post("/messages?session_id=x", content=b"{}")
        assert missing.status_code == 415


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/sse"), ("POST", "/messages"), ("POST", "/mcp")], ids=["sse", "messages", "mcp"]
)
async def test_the_mcp_transports_refuse_a_foreign_origin_naming_the_setting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, method: str, path: str
) -> None:
    async with serving(tmp_path, "none") as (_, http):
        headers = {"origin": "https://evil.example", "content-type": "application/json"}
        with caplog.at_level(logging.WARNING, "patchbay.transport.security"), anyio.fail_after(10):
            response = await http.request(method, path, content=b"{}", headers=headers)
        assert_json_refusal(response, 403, "'https://evil.example'", "server.allowed_origins")
        assert response.json()["error"]["code"] == -32600
        assert any("https://evil.example" in r.getMessage() for r in caplog.records)


async def test_a_refused_host_is_logged_and_echoed_truncated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    long_host = "a" * 300 + ".example"
    async with serving(tmp_path, "none") as (_, http):
        with caplog.at_level(logging.WARNING, "patchbay.transport.security"):
            response = await http.get("/healthz", headers={"host": long_host})
    assert response.status_code == 421
    message = response.json()["error"]
    assert "a" * 80 + "'…" in message and "a" * 81 not in message
    assert [r for r in caplog.records if "refused Host" in r.getMessage() and "a" * 81 not in r.getMessage()]


def test_echoed_values_escape_what_is_not_printable_ascii() -> None:
    assert shown_value(b"evil.example") == "'evil.example'"
    assert shown_value(b"a'b\\c\x00\xff\x7f") == "'a\\x27b\\x5cc\\x00\\xff\\x7f'"
    assert shown_value(None) == "(none)"
    assert shown_value(b"x" * 500).endswith("…") and len(shown_value(b"x" * 500)) == 80 + 3


def test_refusal_warnings_are_rate_limited_and_count_what_was_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    warnings = Warnings(logging.getLogger("patchbay.test.edge"), per_minute=3, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "patchbay.test.edge"):
        for i in range(50):
            warnings.warn("refused %s", i)
        assert [r.getMessage() for r in caplog.records] == ["refused 0", "refused 1", "refused 2"]
        now[0] += 60
        warnings.warn("refused %s", "later")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[3:] == ["47 more refusals were not logged in the last minute", "refused later"]


async def test_health_probes_may_use_the_probe_hosts_and_nothing_else_may(tmp_path: Path) -> None:
    async with serving(tmp_path, "none", probe_hosts=["10.0.0.0/8", "lb.internal"]) as (_, http):
        for host in ("10.1.2.3:8000", "10.255.0.1", "lb.internal:9000", "LB.Internal"):
            assert (await http.get("/healthz", headers={"host": host})).status_code == 200, host
            assert (await http.get("/readyz", headers={"host": host})).status_code == 200, host
        for path in ("/mcp", "/sse", "/no-such-route"):
            with anyio.fail_after(10):  # /sse let through would be an endless stream
                refused = await http.get(path, headers={"host": "10.1.2.3:8000"})
            assert refused.status_code == 421, path
        outside = await http.get("/healthz", headers={"host": "11.0.0.1"})
        assert_json_refusal(outside, 421, "server.probe_hosts")


def test_probe_hosts_that_are_neither_names_nor_networks_are_config_errors(tmp_path: Path) -> None:
    from patchbay.errors import ConfigError

    with pytest.raises(ConfigError, match=r"server\.probe_hosts.*'http://x/'.*10\.0\.0\.0/8"):
        settings(tmp_path, "none", probe_hosts=["http://x/"])


async def test_a_route_that_swallows_the_overflow_still_answers_413() -> None:
    """Whatever a route does with the error (here: a 400 for an unreadable form), the client learns the truth."""

    async def forgiving(scope: Any, receive: Any, send: Any) -> None:
        try:
            while (await receive()).get("more_body"):
                pass
            status = 200
        except Exception:
            status = 400
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    edge = Edge(forgiving, HostGuard("http://127.0.0.1:8000"), max_body=CAP)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=edge), base_url="http://127.0.0.1:8000") as http:
        small = await http.post("/form", content=Chunks(CAP))
        assert small.status_code == 200
        big = Chunks(CAP * 8)
        response = await http.post("/form", content=big)
        assert_json_refusal(response, 413, str(CAP))
        assert big.pulled <= CAP + big.size
