"""A `patchbay serve` of a clean install on a free loopback port, and MCP calls to it over plain HTTP."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx2

from tests.install.conftest import CleanInstall
from tests.support.servers import LOOPBACK, RunningServer, ServerStartError, free_port, stop_process

__all__ = ["call_tool", "list_tools", "mcp_request", "serve"]

START_TIMEOUT = 60.0  # seconds; a hybrid-ranking start loads an embedding model
PROTOCOL = "2026-07-28"
# The 2026-07-28 envelope (docs/protocol.md): stateless, every request self-describing.
_META = {"io.modelcontextprotocol/protocolVersion": PROTOCOL, "io.modelcontextprotocol/clientCapabilities": {}}


@contextlib.contextmanager
def serve(
    install: CleanInstall, *args: str, cwd: Path, env: Mapping[str, str] | None = None
) -> Iterator[RunningServer]:
    """`<venv>/bin/patchbay serve --host 127.0.0.1 --port <free> *args` run from `cwd`; SIGTERM on exit.

    Raises:
        ServerStartError: the server exited, or did not answer GET /healthz with 200 within START_TIMEOUT.
    """
    port = free_port()
    log_path = cwd / f"patchbay-{port}.log"
    cmd = [str(install.patchbay), "serve", "--host", LOOPBACK, "--port", str(port), *args]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=install.env(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(proc=proc, host=LOOPBACK, port=port, log_path=log_path)
    try:
        _wait_healthy(server)
        yield server
    finally:
        stop_process(proc)


def _wait_healthy(server: RunningServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx2.Client(trust_env=False, timeout=2.0) as http:
        while True:
            if server.proc.poll() is not None:
                raise ServerStartError(f"patchbay exited with {server.proc.returncode}:\n{server.log_tail()}")
            with contextlib.suppress(httpx2.TransportError):
                if http.get(f"{server.base_url}/healthz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise ServerStartError(f"no healthy answer within {START_TIMEOUT:.0f} s:\n{server.log_tail()}")
            time.sleep(0.05)


def mcp_request(
    http: httpx2.Client, url: str, method: str, params: dict[str, Any], token: str | None = None
) -> httpx2.Response:
    """POST one 2026-07-28 request (routing headers and `_meta` included) and return the HTTP response."""
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": PROTOCOL,
        "Mcp-Method": method,
    }
    if "name" in params:
        headers["Mcp-Name"] = params["name"]
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": _META}}
    return http.post(url, json=body, headers=headers)


def call_tool(server: RunningServer, name: str, arguments: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    """The `result` of a successful tools/call (a tool error, isError, is a result too)."""
    with httpx2.Client(trust_env=False, timeout=60.0) as http:
        response = mcp_request(http, server.url, "tools/call", {"name": name, "arguments": arguments}, token)
    assert response.status_code == 200, f"{response.status_code} {response.text}\n{server.log_tail()}"
    body = response.json()
    assert "result" in body, body
    result: dict[str, Any] = body["result"]
    return result


def list_tools(server: RunningServer, token: str | None = None) -> list[str]:
    with httpx2.Client(trust_env=False, timeout=30.0) as http:
        response = mcp_request(http, server.url, "tools/list", {}, token)
    assert response.status_code == 200, f"{response.status_code} {response.text}"
    return [tool["name"] for tool in response.json()["result"]["tools"]]
