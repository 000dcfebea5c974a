"""A real `patchbay serve` with a source that is down: it serves the rest, says so in /readyz, and publishes the
source's tools (with list_changed) once it is back. `--strict` and configuration errors still refuse to start."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client

from tests.e2e.conftest import PROCESS_TIMEOUT, STOP_TIMEOUT, run_scenario
from tests.support.postgres import PASSWORD, PostgresMissing, PostgresServer, postgres_cluster
from tests.support.servers import LOOPBACK, RunningServer, free_port, run_patchbay

pytestmark = pytest.mark.e2e
PASSWORD_ENV = "PB_TEST_PG_PASSWORD"
DEADLINE = 60.0  # the cluster starting, then at most one capped backoff step (1 s) before the retry that finds it
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def stopped_cluster() -> Iterator[PostgresServer]:
    """A cluster holding a `crm` database with one table, stopped: the database behind the connector is down."""
    try:
        cluster = postgres_cluster()
        server = cluster.__enter__()
    except PostgresMissing as exc:
        pytest.fail(str(exc))
    try:
        server.execute("CREATE DATABASE crm")
        server.execute(
            "CREATE TABLE customers (id int PRIMARY KEY, name text); INSERT INTO customers VALUES (1, 'Ada')", "crm"
        )
        server.stop()
        yield server
    finally:
        cluster.__exit__(None, None, None)


@pytest.fixture
def down_cluster(stopped_cluster: PostgresServer) -> PostgresServer:
    """The module's cluster, stopped again if a test before this one started it."""
    if (stopped_cluster.datadir / "postmaster.pid").exists():
        stopped_cluster.stop()
    return stopped_cluster


def write_config(folder: Path, sql_url: str, *, password: bool = True) -> Path:
    secret = f'password_env = "{PASSWORD_ENV}"\n' if password else ""
    config = folder / "patchbay.toml"
    config.write_text(
        "[server]\nconnector_retry_max_seconds = 1\n\n"
        '[store]\nurl = "sqlite:///patchbay.db"\n\n'
        '[[connectors]]\nname = "kanban"\ntype = "kanban"\nprefix = ""\n\n'
        f'[[connectors]]\nname = "crm"\ntype = "sql"\nurl = "{sql_url}"\n{secret}'
    )
    return config


def readyz(server: RunningServer, query: str = "") -> tuple[int, dict[str, Any]]:
    try:
        with _opener.open(f"{server.base_url}/readyz{query}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def serve_once(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`patchbay serve` that is expected to refuse to start (bounded by PROCESS_TIMEOUT)."""
    cmd = [sys.executable, "-m", "patchbay", "serve", "--config", str(config), "--host", LOOPBACK]
    cmd += ["--port", str(free_port()), *args]
    env = {"PB_TEST_PG_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        cmd, cwd=config.parent, env=env, capture_output=True, text=True, timeout=PROCESS_TIMEOUT, check=False
    )


def method_of(message: Any) -> str | None:
    return getattr(getattr(message, "root", message), "method", None)


def test_a_database_that_is_down_at_start_is_served_once_it_is_back(
    tmp_path: Path, down_cluster: PostgresServer
) -> None:
    stopped_cluster = down_cluster
    config = write_config(tmp_path, stopped_cluster.url("crm", with_password=False))
    with run_patchbay(config, env={PASSWORD_ENV: PASSWORD}, log_dir=tmp_path) as server:
        status, body = readyz(server)
        assert status == 503 and body["status"] == "degraded", body
        crm = body["connectors"]["crm"]
        assert crm["ok"] is False and "unreachable" in crm["detail"], crm
        assert f"postgres:***@{LOOPBACK}:{stopped_cluster.port}/crm" in crm["detail"]
        assert isinstance(crm["retry_in"], float) and body["connectors"]["kanban"]["ok"] is True
        assert readyz(server, "?degraded=ok")[0] == 200

        async def scenario() -> list[str]:
            changed = anyio.Event()
            methods: list[str] = []

            async def on_message(message: Any) -> None:
                method = method_of(message)
                if method is not None:
                    methods.append(method)
                if method == "notifications/tools/list_changed":
                    changed.set()

            # A 2025-era client: initialize handshake, then its GET stream is open for server notifications.
            async with Client(server.url, mode="legacy", message_handler=on_message) as client:
                before = {t.name for t in (await client.list_tools()).tools}
                assert "list_boards" in before and not any(n.startswith("crm_") for n in before), before
                assert (await client.call_tool("list_boards", {})).is_error is False
                await anyio.to_thread.run_sync(stopped_cluster.start)
                with anyio.fail_after(DEADLINE):
                    await changed.wait()
                after = {t.name for t in (await client.list_tools()).tools}
                assert {"crm_query", "crm_list_tables"} <= after, after
                result = await client.call_tool("crm_query", {"sql": "SELECT name FROM customers"})
                assert result.is_error is False and result.structured_content["rows"] == [["Ada"]]
            return methods

        methods = run_scenario(scenario, timeout=DEADLINE + 30)
        assert "notifications/tools/list_changed" in methods
        status, body = readyz(server)
        assert status == 200 and body["status"] == "ok" and body["connectors"]["crm"]["ok"] is True, body
        log = server.log_path.read_text()
        assert "connector 'crm' is down: " in log and "retrying in" in log
        assert "connector 'crm' is up after" in log
        assert PASSWORD not in log and PASSWORD.split(":")[0] not in log


def test_strict_refuses_to_start_while_a_database_is_down(tmp_path: Path, down_cluster: PostgresServer) -> None:
    config = write_config(tmp_path, down_cluster.url("crm", with_password=False))
    done = serve_once(config, "--strict")
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "connector 'crm': cannot open" in output and "unreachable" in output, output
    assert "serving" not in output and PASSWORD not in output


def test_a_configuration_error_refuses_to_start_naming_the_file_and_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, "postgresql+psycopg://reader@127.0.0.1:9/crm?x=${PB_TEST_UNSET_CRM_HOST}")
    done = serve_once(config)  # not --strict: a configuration error is never "down, retrying"
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert f"{config}: connectors[crm]: url: environment variable PB_TEST_UNSET_CRM_HOST is not set" in output, output
    assert "retrying" not in output


def test_sigterm_while_a_connector_is_being_retried_exits_0(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", password=False)
    with run_patchbay(config, log_dir=tmp_path) as server:
        status, body = readyz(server)
        assert status == 503 and "does not exist" in body["connectors"]["crm"]["detail"], body
        server.proc.send_signal(signal.SIGTERM)
        try:
            returncode = server.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_TIMEOUT} s after SIGTERM:\n{server.log_tail()}")
    assert returncode == 0, server.log_tail()


def test_tools_and_call_name_the_connector_that_is_down(tmp_path: Path) -> None:
    # A SQLite file that is not there yet: the connector is down, not misconfigured.
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", password=False)
    env = {"PATH": "/usr/bin:/bin"}
    base = [sys.executable, "-m", "patchbay"]
    listed = subprocess.run(
        [*base, "tools", "--json", "-c", str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )
    assert listed.returncode == 1, listed.stderr
    names = {t["name"] for t in json.loads(listed.stdout)["tools"]}
    assert "list_boards" in names and not any(n.startswith("crm_") for n in names)
    assert "connector 'crm' is down" in listed.stderr and "crm.db (connectors[crm].url) does not exist" in listed.stderr
    called = subprocess.run(
        [*base, "call", "crm_query", "-a", '{"sql": "SELECT 1"}', "-c", str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )
    assert called.returncode == 2 and "connector 'crm' is down" in called.stderr, called.stderr
    assert "Traceback" not in called.stderr
