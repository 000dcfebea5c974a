"""A spec read from a URL the operator configured: its host is trusted (an internal API's own server) whatever it
resolves to, under the default ``[outbound]`` policy; a server on another origin that the spec names is data, held
to that policy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from patchbay.connectors.base import ConnectorEnv
from patchbay.connectors.openapi import OpenApiConnector
from patchbay.connectors.openapi.options import OpenApiOptions
from patchbay.context import Context
from patchbay.definitions import ToolResult
from patchbay.errors import ConfigError
from patchbay.protocol.scope import CallScope
from tests.support.loopback_asgi import serving

pytestmark = pytest.mark.anyio


def spec(server: str) -> dict[str, Any]:
    ok = {"200": {"description": "", "content": {"application/json": {"schema": {"type": "object"}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Internal", "version": "1"},
        "servers": [{"url": server}],
        "paths": {"/ping": {"get": {"operationId": "ping", "responses": ok}}},
    }


@pytest.fixture
async def site() -> AsyncIterator[tuple[str, list[str]]]:
    """One loopback server: the spec at /spec/<n>.json (its server given by the test) and the API under /v1."""
    pings: list[str] = []
    servers: dict[str, str] = {}

    async def document(request: Request) -> JSONResponse:
        return JSONResponse(spec(servers[request.path_params["n"]]))

    async def ping(request: Request) -> JSONResponse:
        pings.append(request.url.path)
        return JSONResponse({"pong": True})

    app = Starlette(routes=[Route("/spec/{n}.json", document), Route("/v1/ping", ping)])
    async with serving(app) as base:
        servers["relative"] = "/v1"
        servers["same"] = f"{base}/v1"
        port = base.rsplit(":", 1)[1]
        servers["other"] = f"http://localhost:{port}/v1"  # the same server under another origin
        servers["other_tls"] = f"https://localhost:{port}/v1"
        yield base, pings


async def call(connector: OpenApiConnector) -> ToolResult:
    (tool,) = connector.tools()
    scope = CallScope(era="legacy", version="2025-11-25", request_id=1, method="tools/call", client_caps={})
    return await tool.handler({}, Context(scope))


async def opened(tmp_path: Path, url: str) -> OpenApiConnector:
    # No links hub: the connector uses the default [outbound] policy (public addresses only).
    env = ConnectorEnv(base_dir=tmp_path, store_url=f"sqlite:///{tmp_path / 'p.db'}")
    connector = OpenApiConnector("internal", OpenApiOptions(spec=url, mode="tools"), env)
    await connector.open()
    return connector


@pytest.mark.parametrize("which", ["relative", "same"])
async def test_the_spec_host_and_servers_on_its_origin_are_called_under_the_default_policy(
    site: tuple[str, list[str]], tmp_path: Path, which: str
) -> None:
    base, pings = site
    connector = await opened(tmp_path, f"{base}/spec/{which}.json")
    try:
        result = await call(connector)
        assert not result.is_error, result.content
        assert pings == ["/v1/ping"]
    finally:
        await connector.close()


async def test_a_server_on_another_origin_named_by_the_spec_is_held_to_the_outbound_policy(
    site: tuple[str, list[str]], tmp_path: Path
) -> None:
    base, pings = site
    with pytest.raises(ConfigError, match=r"base_url: the spec's server http://localhost:\d+ is plain http"):
        await opened(tmp_path, f"{base}/spec/other.json")
    connector = await opened(tmp_path, f"{base}/spec/other_tls.json")
    try:
        result = await call(connector)
        assert result.is_error and "loopback" in str(result.content), result.content
    finally:
        await connector.close()
    assert pings == []
