"""The `fleet` extra, installed on its own, runs a fleet: two `patchbay serve` processes of the clean install
sharing one real redis-server and one SQLite store, a 2025-era session opened on one and used on the other. Without
the extra, `[redis] url` is refused at start with the command that installs what is missing."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2

from tests.install.conftest import CleanInstall, probe
from tests.install.inventory import parse_requires
from tests.install.running import serve
from tests.support.redis_server import PASSWORD
from tests.support.servers import RunningServer

LATEST = "2025-11-25"
ACCEPT = "application/json, text/event-stream"
WAIT = 30.0  # seconds for the replicas to see each other's heartbeat (refreshed every 3 s)
TOOLS = '''
import os

from patchbay import tool


@tool(read_only=True, open_world=False)
def where(word: str) -> dict[str, object]:
    """Echo a word with the serving process."""
    return {"word": word, "pid": os.getpid()}
'''


def fleet_config(folder: Path, redis_url: str, prefix: str) -> Path:
    (folder / "tools.py").write_text(TOOLS, encoding="utf-8")
    config = folder / "patchbay.toml"
    config.write_text(
        textwrap.dedent(f"""
            [server]
            secret = "{secrets.token_urlsafe(32)}"

            [store]
            url = "sqlite:///{folder / "patchbay.db"}"

            [redis]
            url = "{redis_url}"
            key_prefix = "{prefix}"

            [[connectors]]
            name = "t"
            type = "python"
            path = "{folder / "tools.py"}"
            prefix = ""
        """),
        encoding="utf-8",
    )
    return config


@contextlib.contextmanager
def two_replicas(install: CleanInstall, config: Path, folder: Path) -> Iterator[tuple[RunningServer, RunningServer]]:
    # The first creates the store's schema; the second then finds it current.
    with (
        serve(install, "--config", str(config), cwd=folder) as first,
        serve(install, "--config", str(config), cwd=folder) as second,
    ):
        yield first, second


def post(http: httpx2.Client, server: RunningServer, body: dict[str, Any], session: str | None) -> httpx2.Response:
    headers = {"content-type": "application/json", "accept": ACCEPT}
    if session is not None:
        headers |= {"mcp-session-id": session, "mcp-protocol-version": LATEST}
    return http.post(server.url, json=body, headers=headers)


def result_of(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC result of a JSON body or of the last message of an SSE body."""
    assert response.status_code == 200, f"{response.status_code} {response.text}"
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        message: dict[str, Any] = json.loads(data[-1])
    else:
        message = response.json()
    assert "result" in message, message
    result: dict[str, Any] = message["result"]
    return result


def where_call(word: str) -> dict[str, Any]:
    params = {"name": "where", "arguments": {"word": word}}
    return {"jsonrpc": "2.0", "id": word, "method": "tools/call", "params": params}


def call_where(http: httpx2.Client, server: RunningServer, session: str, word: str) -> dict[str, Any]:
    result = result_of(post(http, server, where_call(word), session))
    assert result["isError"] is False, result
    structured: dict[str, Any] = result["structuredContent"]
    return structured


def wait_for_fleet_of_two(http: httpx2.Client, server: RunningServer) -> dict[str, Any]:
    """/readyz's `redis` entry once this replica sees both replicas alive."""
    deadline = time.monotonic() + WAIT
    while True:
        redis: dict[str, Any] = http.get(f"{server.base_url}/readyz").json().get("redis", {})
        if redis.get("ok") is True and redis.get("replicas") == 2:
            return redis
        assert time.monotonic() < deadline, f"/readyz of {server.base_url}: {redis}\n{server.log_tail()}"
        time.sleep(0.1)


def test_fleet_extra_serves_a_session_opened_on_one_replica_on_the_other(
    clean_install_with: Callable[[str], CleanInstall], redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    install = clean_install_with("fleet")
    config = fleet_config(tmp_path, redis_url, redis_prefix)

    with two_replicas(install, config, tmp_path) as (a, b), httpx2.Client(trust_env=False, timeout=30.0) as http:
        hello = {"protocolVersion": LATEST, "capabilities": {}, "clientInfo": {"name": "install", "version": "1"}}
        opened = post(http, a, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello}, None)
        assert result_of(opened)["protocolVersion"] == LATEST
        session = opened.headers["mcp-session-id"]
        initialized = post(http, b, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
        assert initialized.status_code == 202, initialized.text

        on_b = call_where(http, b, session, "bravo")
        on_a = call_where(http, a, session, "alpha")
        # DELETE on one replica ends the session on the other too: the ended-session list is in Redis.
        ended = http.delete(b.url, headers={"mcp-session-id": session, "mcp-protocol-version": LATEST})
        after = post(http, a, where_call("ended"), session)
        readiness = [wait_for_fleet_of_two(http, server) for server in (a, b)]
        logs = a.log_path.read_text(errors="replace") + b.log_path.read_text(errors="replace")

    assert on_b["word"] == "bravo" and on_a["word"] == "alpha"
    assert on_b["pid"] == b.proc.pid and on_a["pid"] == a.proc.pid  # each call ran where it landed
    assert ended.status_code in (200, 204), ended.text
    assert after.status_code == 404, after.text
    assert all("connected to" in redis["detail"] for redis in readiness), readiness
    assert PASSWORD not in logs and PASSWORD not in str(readiness)


def test_without_the_fleet_extra_a_redis_url_is_refused_naming_what_to_install(
    clean_install: CleanInstall, redis_url: str, tmp_path: Path
) -> None:
    declared = parse_requires(probe(clean_install, "metadata", cwd=tmp_path)["requires"])
    config = fleet_config(tmp_path, redis_url, "pb:")

    done = clean_install.run(
        "patchbay", "serve", "--host", "127.0.0.1", "--port", "0", "--config", str(config), cwd=tmp_path,
        env={"COLUMNS": "400"},
    )  # fmt: skip

    message = " ".join(done.stderr.split())
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"{config.name}: redis.url: [redis] url needs the redis package" in message, message
    # The command installs the extra's own requirements into this install's Python (patchbay.extras).
    command = message[message.index(f"{clean_install.python} -m pip install") :]
    named = {re.split(r"[\[<>=!~ ']", token.strip("'"))[0].lower() for token in command.split()[4:]}
    assert declared.extras["fleet"] <= named, command
    assert PASSWORD not in done.stdout + done.stderr
