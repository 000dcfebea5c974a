"""The doctor against real servers on loopback: Patchbay itself (authless and signed in, every profile), a server
built on the official Python SDK, and the npm reference server `server-everything` in its Streamable HTTP mode."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from patchbay.doctor.model import Status
from tests.e2e.conftest import FIXTURES, patchbay_cli
from tests.e2e.doctor_support import TEST_OPTIONS, doctor, explain, failing
from tests.support.node import NODE_MODULES, node22, node_env
from tests.support.servers import free_port, run_patchbay

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "fixtures" / "documents" / "corpus"
AUTH_TOOLS = REPO / "tests" / "unit" / "fixtures" / "auth_tools.py"
HOSTED_ORIGINS = '["https://chatgpt.com", "https://claude.ai", "https://claude.com"]'


def patchbay_config(folder: Path, auth: str = "") -> Path:
    config = folder / "patchbay.toml"
    config.write_text(
        f"""
[server]
name = "Doctor e2e"
allowed_origins = {HOSTED_ORIGINS}
sse_keepalive_seconds = 0.5

[store]
url = "sqlite:///{folder / "patchbay.db"}"
{auth}
[[connectors]]
name = "board"
type = "kanban"

[[connectors]]
name = "kb"
type = "documents"
prefix = ""
url_template = "https://intranet.example.com/kb/{{path_noext}}"

[[connectors.sources]]
name = "kb"
folder = "{CORPUS}"
""",
        encoding="utf-8",
    )
    return config


def test_patchbay_passes_every_check_for_every_client(tmp_path: Path) -> None:
    with run_patchbay(patchbay_config(tmp_path), log_dir=tmp_path) as server:
        report = doctor(server.url)
    assert failing(report) == set(), explain(report)
    assert [r for r in report.results if r.status is Status.WARN] == [], explain(report)
    passed = {r.id for r in report.results if r.status is Status.PASS}
    assert {"transport.discover", "edge.keepalive", "tools.search_fetch", "tools.output", "session.unknown"} <= passed


def test_patchbay_in_oauth_mode_passes_signed_in(tmp_path: Path) -> None:
    config = patchbay_config(tmp_path, '\n[auth]\nmode = "oauth"\nscopes_supported = ["mcp"]\n')
    key = patchbay_cli("keys", "create", "--name", "doctor", "--scopes", "mcp", "-c", str(config))
    assert key.returncode == 0, key.describe()
    with run_patchbay(config, log_dir=tmp_path) as server:
        anonymous = doctor(server.url)
        signed_in = doctor(server.url, dataclasses.replace(TEST_OPTIONS, token=key.stdout.strip()))
    assert failing(anonymous) == set(), explain(anonymous)
    assert failing(signed_in) == set(), explain(signed_in)
    passed = {r.id for r in signed_in.results if r.status is Status.PASS}
    assert {
        "auth.challenge",
        "auth.prm",
        "auth.issuer",
        "auth.pkce",
        "registration.dcr",
        "registration.redirects",
        "registration.resource",
        "signin.token",
        "tools.list",
    } <= passed


@contextlib.contextmanager
def process(cmd: list[str], port: int, *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[str]:
    """Start a server process, wait until its port accepts a request, yield its MCP URL, stop it."""
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 30
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
            try:
                opener.open(urllib.request.Request(url, method="GET"), timeout=1)
                break
            except urllib.error.HTTPError:
                break  # any HTTP answer means it is serving
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_server_on_the_official_python_sdk_shows_its_known_field_problems() -> None:
    port = free_port()
    with process([sys.executable, str(FIXTURES / "sdk_server.py"), str(port)], port) as url:
        report = doctor(url)
    # The SDK's defaults hit four documented problems: the /mcp/ redirect (B1), 406 on a single Accept type (C1),
    # a localhost-only Origin guard (A4) and 400 on a newer MCP-Protocol-Version header (D3).
    assert failing(report) == {"edge.redirect", "transport.accept", "origin.accepted", "transport.version_header"}, (
        explain(report)
    )
    passed = {(r.client, r.id) for r in report.results if r.status is Status.PASS}
    assert ("claude", "transport.discover") in passed
    assert ("chatgpt", "tools.output") in passed  # get_weather's structuredContent matches its outputSchema


def test_the_npm_reference_server_everything_over_streamable_http() -> None:
    port = free_port()
    entry = NODE_MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
    env = node_env({"PORT": str(port)})
    with process([str(node22()), str(entry), "streamableHttp"], port, env=env, cwd=entry.parent) as url:
        report = doctor(url)
    results = {(r.client, r.id): r for r in report.results}
    assert results[("chatgpt", "tools.list")].status is Status.PASS, explain(report)
    assert results[("chatgpt", "tools.annotations")].status is Status.PASS
    # The TypeScript SDK 1.x transport behind it: 406 on a single Accept type (C1), 400 on a newer
    # MCP-Protocol-Version header (D3), 400 instead of 404 for an unknown session (E2).
    assert failing(report) == {"transport.accept", "transport.version_header", "session.unknown"}, explain(report)
    assert results[("claude", "transport.discover")].status is Status.WARN  # HTTP 400 to server/discover
    for result in report.failed():
        assert result.why and result.fix


def test_cli_prints_json_and_exits_1_on_a_failure_and_2_when_nothing_answers(tmp_path: Path) -> None:
    with run_patchbay(patchbay_config(tmp_path), log_dir=tmp_path) as server:
        ok = patchbay_cli("doctor", server.url, "--local", "--json", "--stream-hold", "1", "--client", "claude")
        broken = patchbay_cli(
            "doctor", server.url + "?api_key=x", "--local", "--client", "claude", "--stream-hold", "0"
        )
    assert ok.returncode == 0, ok.describe()
    data = json.loads(ok.stdout)
    assert data["clients"]["claude"]["verdict"] == "pass" and data["exit_code"] == 0
    assert broken.returncode == 1, broken.describe()
    assert "url.credentials" in broken.stdout and "fix:" in broken.stdout
    gone = patchbay_cli("doctor", f"http://127.0.0.1:{free_port()}/mcp", "--local")
    assert gone.returncode == 2 and "could not run" in gone.stderr, gone.describe()
    bad = patchbay_cli("doctor", "ftp://example.com/mcp")
    assert bad.returncode == 2, bad.describe()
