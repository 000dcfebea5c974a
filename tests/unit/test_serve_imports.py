"""What a real `patchbay serve` loads at start-up when a feature is not configured, and that the feature still works
once it is used (docs/performance.md, idle memory). Each server is asked, through a tool, which modules it has
imported; every CLI command still answers --help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2 as httpx
import typer.main
from fixtures.wire import modern_request
from tests.support.servers import RunningServer, run_patchbay
from typer.testing import CliRunner

from patchbay.cli import COMMANDS, GROUPS, app

PROBE_TOOLS = '''
import sys

from patchbay import tool


@tool(read_only=True)
async def loaded(names: list[str]) -> list[str]:
    """Which of names the serving process has imported."""
    return [name for name in names if name in sys.modules]
'''
# Loaded only by the features that need them: the store and the audit trail (sqlalchemy, alembic), sealed secrets
# (cryptography), passwords (argon2), the console's pages (jinja2), the admin commands' tables (rich, their modules).
PROBED = [
    "alembic",
    "argon2",
    "cryptography",
    "jinja2",
    "rich",
    "sqlalchemy",
    "patchbay.auth.users",
    "patchbay.cli.audit",
    "patchbay.cli.users",
    "patchbay.console.audit_data",
    "patchbay.gate.approval_store",
    "patchbay.store.models",
    "patchbay.vault",
]


def _config(folder: Path) -> Path:
    (folder / "probe_tools.py").write_text(PROBE_TOOLS, encoding="utf-8")
    config = folder / "patchbay.toml"
    config.write_text(
        f"""
[[connectors]]
name = "probe"
type = "python"
path = "{folder / "probe_tools.py"}"
prefix = ""
""",
        encoding="utf-8",
    )
    return config


def _loaded(server: RunningServer) -> list[str]:
    body, headers = modern_request("tools/call", {"name": "loaded", "arguments": {"names": PROBED}})
    reply = httpx.post(server.url, json=body, headers=headers, trust_env=False, timeout=10)
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()["result"]
    assert not result.get("isError"), result
    names: list[str] = result["structuredContent"]["result"]
    return names


def _console_page(server: RunningServer, path: str) -> httpx.Response:
    return httpx.get(f"{server.base_url}/admin{path}", trust_env=False, timeout=10)


def test_a_server_without_sign_in_store_or_audit_loads_none_of_their_modules_until_the_console_is_opened(
    tmp_path: Path,
) -> None:
    with run_patchbay(_config(tmp_path), env={"PATCHBAY_AUDIT__ENABLED": "false"}, log_dir=tmp_path / "logs") as server:
        assert _loaded(server) == []

        overview = _console_page(server, "/")  # the console is on (loopback, no sign-in): its templates load now
        assert overview.status_code == 200, overview.text
        assert "Overview" in overview.text
        audit = _console_page(server, "/audit")
        assert audit.status_code == 200, audit.text
        assert "The audit trail is off" in audit.text
        assert _loaded(server) == ["jinja2", "sqlalchemy", "patchbay.console.audit_data", "patchbay.store.models"]


def test_a_server_keeping_its_audit_trail_in_memory_loads_sqlalchemy_but_no_sign_in_vault_or_console(
    tmp_path: Path,
) -> None:
    with run_patchbay(_config(tmp_path), env={"PATCHBAY_AUDIT__ENABLED": "true"}, log_dir=tmp_path / "logs") as server:
        # The in-memory trail is migrated at every start (alembic); the store's tables come with it.
        assert _loaded(server) == ["alembic", "sqlalchemy", "patchbay.store.models"]

        audit = _console_page(server, "/audit")
        assert audit.status_code == 200, audit.text
        assert "tools/call" in audit.text  # the probe's own calls, read back from the trail
        assert "jinja2" in _loaded(server)


def _command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    context = typer.Context(root)
    paths: list[list[str]] = []
    for name in root.list_commands(context):  # type: ignore[attr-defined]
        paths.append([name])
        command = root.get_command(context, name)  # type: ignore[attr-defined]
        if hasattr(command, "list_commands"):
            paths.extend([name, sub] for sub in command.list_commands(context))
    return paths


def test_the_top_level_help_lists_every_command_in_order() -> None:
    listed = [path[0] for path in _command_paths() if len(path) == 1]
    assert listed == [*COMMANDS, "version", *GROUPS]


def test_every_command_answers_help_in_its_own_process() -> None:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    for path in [[], *(p for p in _command_paths() if len(p) == 1)]:
        shown = subprocess.run(
            [sys.executable, "-m", "patchbay", *path, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
        assert shown.returncode == 0, (path, shown.stderr)
        assert f"patchbay {' '.join(path)}".strip() + " [OPTIONS]" in shown.stdout, (path, shown.stdout)


def test_every_subcommand_answers_help() -> None:
    runner = CliRunner()
    for path in _command_paths():
        shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
        assert shown.exit_code == 0, (path, shown.output)
        assert f"Usage: patchbay {' '.join(path)}" in shown.output, (path, shown.output)
