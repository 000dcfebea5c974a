"""Shared servers and client runners for the e2e tests: real `patchbay serve` processes, real third-party clients.

Servers are session-scoped: one demo (kanban) server and one conformance-fixture server serve every test that only
reads, or writes records of its own. Tests that need a server to themselves (shutdown, `patchbay init`) start one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
import pytest

from tests.support.node import NODE_MODULES, node22, node_env
from tests.support.postgres import PostgresMissing, PostgresServer, postgres_cluster
from tests.support.servers import LOOPBACK, RunningServer, ServerStartError, free_port, run_patchbay, wait_healthz

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parents[1]
FIXTURES = E2E_DIR / "fixtures"
SCRIPTS = E2E_DIR / "scripts"
CONFORMANCE_CONFIG = REPO_ROOT / "tests" / "conformance" / "patchbay.toml"

SCENARIO_TIMEOUT = 30.0  # seconds for one client scenario (connect, list, a few calls)
PROCESS_TIMEOUT = 60.0  # seconds for one client or CLI subprocess
STOP_TIMEOUT = 10.0

_T = TypeVar("_T")
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def run_scenario(scenario: Callable[[], Awaitable[_T]], timeout: float = SCENARIO_TIMEOUT) -> _T:
    """Run an async client scenario to completion, failing it if it takes longer than `timeout` seconds."""

    async def bounded() -> _T:
        with anyio.fail_after(timeout):
            return await scenario()

    return anyio.run(bounded)


# -- servers --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def run_demo(demo_dir: Path, log_dir: Path, start_timeout: float = 20.0) -> Iterator[RunningServer]:
    """`patchbay serve --demo` (PATCHBAY_DEMO_DIR=demo_dir) on a free loopback port; stopped with SIGTERM on exit.

    tests/support/servers.run_patchbay always passes --config, which the demo does not take, so this is its twin.

    Raises:
        ServerStartError: the server exited or did not answer GET /healthz in time.
    """
    port = free_port()
    log_path = log_dir / f"patchbay-demo-{port}.log"
    cmd = [sys.executable, "-m", "patchbay", "serve", "--demo", "--host", LOOPBACK, "--port", str(port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATCHBAY_DEMO_DIR": str(demo_dir)}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=log_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(proc=proc, host=LOOPBACK, port=port, log_path=log_path)
    try:
        wait_healthy(server, start_timeout)
        yield server
    finally:
        stop(server)


def wait_healthy(server: RunningServer, timeout: float) -> None:
    """Raises ServerStartError, with the tail of the server's log, unless GET /healthz answers 200 within `timeout`
    seconds."""
    try:
        wait_healthz(server.proc, server.base_url, timeout)
    except ServerStartError as exc:
        raise ServerStartError(f"{exc}:\n{server.log_tail()}") from None


def stop(server: RunningServer) -> None:
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The built-in kanban demo, seeded into a fresh PATCHBAY_DEMO_DIR."""
    base = tmp_path_factory.mktemp("demo")
    (base / "data").mkdir()
    with run_demo(base / "data", base) as server:
        yield server


@pytest.fixture(scope="session")
def conformance_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """tests/conformance/patchbay.toml: the "everything" tools (progress, logging, sampling, elicitation, ...)."""
    with run_patchbay(CONFORMANCE_CONFIG, log_dir=tmp_path_factory.mktemp("conformance")) as server:
        yield server


# -- wire capture ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentRequest:
    method: str
    session_id: str | None
    protocol_version: str | None
    body: Any  # the decoded JSON body, or None


@dataclass
class WireLog:
    """Every HTTP request an httpx2 client sent, recorded by an event hook (the client's own view of the wire)."""

    requests: list[SentRequest] = field(default_factory=list)

    async def record(self, request: httpx2.Request) -> None:
        raw = request.content
        body = json.loads(raw) if raw else None
        self.requests.append(
            SentRequest(
                method=request.method,
                session_id=request.headers.get("mcp-session-id"),
                protocol_version=request.headers.get("mcp-protocol-version"),
                body=body,
            )
        )

    def client(self) -> httpx2.AsyncClient:
        """An httpx2 client for `streamable_http_client(url, http_client=...)`; no proxies for loopback."""
        return httpx2.AsyncClient(event_hooks={"request": [self.record]}, trust_env=False)

    def rpc_methods(self) -> list[str]:
        return [r.body["method"] for r in self.requests if isinstance(r.body, dict) and "method" in r.body]

    def calls_to(self, tool: str) -> list[SentRequest]:
        return [
            r
            for r in self.requests
            if isinstance(r.body, dict)
            and r.body.get("method") == "tools/call"
            and (r.body.get("params") or {}).get("name") == tool
        ]


# -- subprocess clients ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Completed:
    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        command = " ".join(self.args)
        return f"$ {command}\nexit {self.returncode}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_process(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 60.0
) -> Completed:
    """Run a command to completion with stdin closed; `subprocess.run` kills it if it outlives `timeout`."""
    proc = subprocess.run(
        list(args),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Completed(args=list(args), returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)


def patchbay_cli(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Completed:
    """The `patchbay` console script of this venv. Wide COLUMNS: rich must not wrap messages the tests read."""
    script = Path(sys.executable).with_name("patchbay")
    full_env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1", **(env or {})}
    return run_process([str(script), *args], env=full_env, cwd=cwd, timeout=PROCESS_TIMEOUT)


def ts_client(url: str, calls: Sequence[Mapping[str, Any]]) -> Completed:
    """tests/e2e/scripts/ts_client.mjs: the official TypeScript SDK client on Node 22."""
    return run_process(
        [str(node22()), str(SCRIPTS / "ts_client.mjs"), url, json.dumps(list(calls))],
        env=node_env(),
        cwd=SCRIPTS,
        timeout=PROCESS_TIMEOUT,
    )


INSPECTOR_LAUNCHER = NODE_MODULES / "@modelcontextprotocol/inspector/clients/launcher/build/index.js"


def inspector_cli(url: str, *args: str, home: Path) -> Completed:
    """MCP Inspector v2 in CLI mode with JSON output; HOME is isolated because it writes ~/.mcp-inspector."""
    env = node_env({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")})
    return run_process(
        [str(node22()), str(INSPECTOR_LAUNCHER), "--cli", url, "--format", "json", "-q", *args],
        env=env,
        cwd=home,
        timeout=PROCESS_TIMEOUT,
    )


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster for one test module (Debian's initdb/pg_ctl; `make postgres` installs them).
    Modules that need their own schema in it override this fixture."""
    try:
        cluster = postgres_cluster()
        server = cluster.__enter__()
    except PostgresMissing as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        cluster.__exit__(None, None, None)
