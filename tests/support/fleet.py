"""A Patchbay fleet on loopback for the e2e tests: N `patchbay serve` processes sharing one config, one PostgreSQL
database and one Redis, behind HAProxy (Debian's `haproxy`, `make haproxy`) balancing round-robin.

HAProxy is configured the way a fleet's operator would, with nothing sticky: `balance roundrobin`, a new server
connection per request (`option http-server-close`, `http-reuse never`) so consecutive requests really alternate,
health checks on /healthz, a redispatch of a refused connection to the next server, and timeouts long enough for
SSE. It names the replica that answered in an `X-Served-By` response header (HAProxy's `%s`), so the product gets
nothing added for the tests. Every process is started in its own session, dies with the test run (PDEATHSIG) and
is stopped with a deadline on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from tests.support.postgres import PostgresServer, postgres_cluster
from tests.support.redis_server import TIMEOUT_MS, RedisServer, redis_server
from tests.support.servers import LOOPBACK, ServerStartError, _die_with_parent, free_port, stop_process, wait_healthz

__all__ = ["SERVED_BY", "Fleet", "Replica", "message_of", "modern_request", "open_session", "run_fleet", "tool_text"]

REPO_ROOT = Path(__file__).resolve().parents[2]
EVERYTHING = REPO_ROOT / "tests" / "conformance" / "everything.py"
FLEET_TOOLS = REPO_ROOT / "tests" / "e2e" / "fixtures" / "fleet_tools.py"
SERVED_BY = "x-served-by"
START_TIMEOUT = 60.0  # a replica's first start migrates the database; three start at once on two cores
WAIT_TIMEOUT = 30.0
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

CONFIG = """\
[server]
name = "patchbay-fleet"
public_url = "{public_url}"
secret = "{secret}"
sse_keepalive_seconds = 5

[store]
url = "{store_url}"

[redis]
url = "{redis_url}"
timeout_ms = {timeout_ms}

[auth]
mode = "oauth"

[manifest]
mode = "review"
poll_seconds = 1

[audit]
# A read's record may otherwise trail its response by up to 50 ms; a replica killed in that window would lose it,
# and the suite holds the fleet to "no audit record lost" (docs/audit.md: read_window_ms).
read_window_ms = 0

[[limits]]
id = "fleet-rate"
per = "global"
tools = ["limited"]
rate = "{rate}/minute"

[[connectors]]
name = "everything"
type = "python"
path = "{everything}"
prefix = ""

[[connectors]]
name = "fleet"
type = "python"
path = "{tools}"
prefix = ""
watch = true
watch_seconds = 0.2
"""

HAPROXY = """\
global
    maxconn 2000

defaults
    mode http
    retries 2
    option redispatch 1
    option http-server-close
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 1s
    timeout tunnel 120s

frontend mcp
    bind {host}:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    http-reuse never
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host {host}
    http-check expect status 200
    default-server inter 300ms fall 2 rise 1
    http-response set-header X-Served-By %s
{servers}
"""


@dataclass
class Replica:
    """One `patchbay serve` of the fleet, on a port of its own that it keeps across restarts."""

    name: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/mcp"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@dataclass
class Fleet:
    """The running fleet. Tests reach it through HAProxy (`url`) or one replica directly (`replicas[i].url`)."""

    folder: Path
    config: Path
    pg: PostgresServer
    database: str
    redis: RedisServer
    replicas: list[Replica]
    lb_port: int
    tools: Path
    haproxy: subprocess.Popen[bytes] | None = None
    _env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.lb_port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/mcp"

    @property
    def names(self) -> set[str]:
        return {r.name for r in self.replicas}

    def kill(self, index: int, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to replica ``index`` and wait (bounded) until it has exited."""
        replica = self.replicas[index]
        assert replica.proc is not None
        replica.proc.send_signal(sig)
        replica.proc.wait(WAIT_TIMEOUT)

    def restart(self, index: int) -> None:
        """Start replica ``index`` again on its port and wait until HAProxy sends it requests.

        Raises:
            ServerStartError: it did not come up within START_TIMEOUT.
        """
        replica = self.replicas[index]
        if replica.proc is not None:
            stop_process(replica.proc)
        self._start(replica)
        _wait_healthy(replica, START_TIMEOUT)
        self.wait_in_rotation({replica.name})

    def stop_redis(self) -> None:
        self.redis.stop()

    def start_redis(self) -> None:
        self.redis.start()

    def wait_in_rotation(self, names: set[str], timeout: float = WAIT_TIMEOUT) -> None:
        """Return once HAProxy has routed a /healthz to each of ``names`` (its health checks passed)."""
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while not names <= seen:
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                _opener.open(f"{self.base_url}/healthz", timeout=2.0) as resp,
            ):
                seen.add(resp.headers.get(SERVED_BY, ""))
            if time.monotonic() >= deadline:
                raise ServerStartError(f"HAProxy never routed to {sorted(names - seen)} within {timeout} s")
            time.sleep(0.02)

    def audit_refs(self) -> set[str]:
        """The request refs (X-Request-Id) of every audit record in the shared database."""
        rows = self.pg.fetch("SELECT request_ref FROM audit_records WHERE request_ref IS NOT NULL", self.database)
        return {str(row[0]) for row in rows}

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """`patchbay <args> --config <the fleet's config>` (an operator's command against the shared store)."""
        script = str(Path(sys.executable).with_name("patchbay"))
        env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1"}
        return subprocess.run(
            [script, *args, "--config", str(self.config)],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def api_key(self, name: str) -> str:
        """A new API key named ``name``, made with `patchbay keys create` against the shared store."""
        made = self.cli("keys", "create", "--name", name)
        assert made.returncode == 0, made.stderr
        return made.stdout.strip()

    def _start(self, replica: Replica) -> None:
        cmd = [sys.executable, "-m", "patchbay", "serve", "--config", str(self.config)]
        cmd += ["--host", LOOPBACK, "--port", str(replica.port)]
        with replica.log_path.open("ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            replica.proc = subprocess.Popen(
                cmd,
                cwd=self.folder,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self._env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def _start_haproxy(self) -> None:
        servers = "\n".join(f"    server {r.name} {LOOPBACK}:{r.port} check" for r in self.replicas)
        config = self.folder / "haproxy.cfg"
        config.write_text(HAPROXY.format(host=LOOPBACK, port=self.lb_port, servers=servers), encoding="utf-8")
        log = (self.folder / "haproxy.log").open("ab")
        with log:
            self.haproxy = subprocess.Popen(
                [_haproxy(), "-db", "-f", str(config)],
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def describe(self) -> str:
        """The tail of every replica's log, for an assertion message."""
        return "\n".join(f"--- {r.name} ({r.log_path}) ---\n{r.log_tail()}" for r in self.replicas)


def _haproxy() -> str:
    found = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(found).exists():
        raise ServerStartError("haproxy is not installed: run `make haproxy` (Debian package haproxy)")
    return found


def _wait_healthy(replica: Replica, timeout: float) -> None:
    try:
        wait_healthz(replica.proc, replica.base_url, timeout)
    except ServerStartError as exc:
        raise ServerStartError(f"{replica.name}: {exc}:\n{replica.log_tail()}") from None


def write_config(folder: Path, *, store_url: str, redis_url: str, public_url: str, rate: int) -> tuple[Path, Path]:
    """The one patchbay.toml every replica reads, and the fleet's own tools module (copied: tests edit it)."""
    tools = folder / "fleet_tools.py"
    tools.write_text(FLEET_TOOLS.read_text(encoding="utf-8"), encoding="utf-8")
    config = folder / "patchbay.toml"
    config.write_text(
        CONFIG.format(
            public_url=public_url,
            secret=secrets.token_urlsafe(32),
            store_url=store_url,
            redis_url=redis_url,
            timeout_ms=TIMEOUT_MS,
            rate=rate,
            everything=EVERYTHING,
            tools=tools,
        ),
        encoding="utf-8",
    )
    return config, tools


@contextlib.contextmanager
def run_fleet(folder: Path, *, replicas: int = 3, rate: int = 300) -> Iterator[Fleet]:
    """PostgreSQL, Redis, ``replicas`` Patchbay processes and HAProxy in front; all stopped on exit.

    The first replica starts alone (it creates the schema), the others together once it is healthy. ``rate`` is
    the fleet-wide budget of the ``limited`` tool per minute.

    Raises:
        ServerStartError: a replica or HAProxy did not come up in time.
    """
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(postgres_cluster())
        pg.execute("CREATE DATABASE fleet")
        redis = stack.enter_context(redis_server(folder / "redis"))
        lb_port = free_port()
        config, tools = write_config(
            folder, store_url=pg.url("fleet"), redis_url=redis.url, public_url=f"http://{LOOPBACK}:{lb_port}", rate=rate
        )
        members = [Replica(f"r{i}", free_port(), folder / f"r{i}.log") for i in range(replicas)]
        fleet = Fleet(folder, config, pg, "fleet", redis, members, lb_port, tools)
        stack.callback(_stop_all, fleet)
        fleet._start(members[0])
        _wait_healthy(members[0], START_TIMEOUT)
        for replica in members[1:]:
            fleet._start(replica)
        for replica in members[1:]:
            _wait_healthy(replica, START_TIMEOUT)
        fleet._start_haproxy()
        fleet.wait_in_rotation(fleet.names)
        yield fleet


def _stop_all(fleet: Fleet) -> None:
    """SIGTERM to all at once (each drains in parallel), then wait for each; stop_process kills a straggler."""
    procs = [p for p in (fleet.haproxy, *(r.proc for r in fleet.replicas)) if p is not None and p.poll() is None]
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        stop_process(proc)


# -- the wire, as a client without an SDK speaks it (load and failure tests) ------------------------------------

MODERN = "2026-07-28"
LATEST = "2025-11-25"
ACCEPT = "application/json, text/event-stream"


def modern_request(method: str, params: dict[str, Any], rid: int | str = 1) -> tuple[dict[str, Any], dict[str, str]]:
    """A 2026-07-28 request (no session: the version and client in _meta and headers) and its headers."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "fleet-e2e", "version": "1"},
    }
    body = {"jsonrpc": "2.0", "id": rid, "method": method, "params": {**params, "_meta": meta}}
    headers = {"content-type": "application/json", "accept": ACCEPT, "mcp-protocol-version": MODERN}
    headers["mcp-method"] = method
    if method == "tools/call":
        headers["mcp-name"] = str(params["name"])
    return body, headers


def legacy_headers(session: str) -> dict[str, str]:
    return {"content-type": "application/json", "accept": ACCEPT, "mcp-session-id": session,
            "mcp-protocol-version": LATEST}  # fmt: skip


def message_of(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC response in a JSON body, or the last message of an SSE body (notifications come before it)."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        messages = [json.loads(d) for d in data if d]
        return dict(messages[-1]) if messages else {}
    return dict(response.json())


async def open_session(http: httpx2.AsyncClient, url: str) -> str:
    """initialize + notifications/initialized (2025-11-25); the session id."""
    hello = {"protocolVersion": LATEST, "capabilities": {}, "clientInfo": {"name": "fleet-e2e", "version": "1"}}
    reply = await http.post(
        url,
        json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello},
        headers={"content-type": "application/json", "accept": ACCEPT},
    )
    assert reply.status_code == 200, reply.text
    session = reply.headers["mcp-session-id"]
    done = await http.post(
        url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=legacy_headers(session)
    )
    assert done.status_code == 202, done.text
    return session


def tool_text(message: dict[str, Any]) -> str:
    """The text of a successful tools/call response; AssertionError naming what came instead."""
    result = message.get("result")
    assert isinstance(result, dict) and result.get("isError") is False, message
    return str(result["content"][0]["text"])
