"""What a real `patchbay serve` with sign-in on loads at start-up: Alembic only when the store needs migrating,
httpx only once something is fetched. Each server is asked, through a tool, which modules it has imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2 as httpx
from alembic.script import ScriptDirectory
from fixtures.wire import modern_request
from tests.support.servers import RunningServer, run_patchbay

from patchbay.auth.keys import ApiKeys
from patchbay.store import alembic_config, create_engine, current_heads, upgrade

PROBE_TOOLS = '''
import sys

from patchbay import tool


@tool(read_only=True)
async def loaded(names: list[str]) -> list[str]:
    """Which of names the serving process has imported."""
    return [name for name in names if name in sys.modules]
'''
PROBED = ["alembic", "httpx", "sqlalchemy"]


def _config(folder: Path) -> Path:
    (folder / "probe_tools.py").write_text(PROBE_TOOLS, encoding="utf-8")
    config = folder / "patchbay.toml"
    config.write_text(
        f"""
[store]
url = "sqlite:///{folder / "store.db"}"

[auth]
mode = "api_key"

[[connectors]]
name = "probe"
type = "python"
path = "{folder / "probe_tools.py"}"
prefix = ""
""",
        encoding="utf-8",
    )
    return config


def _loaded(server: RunningServer, key: str) -> list[str]:
    body, headers = modern_request("tools/call", {"name": "loaded", "arguments": {"names": PROBED}})
    reply = httpx.post(
        server.url, json=body, headers={**headers, "authorization": f"Bearer {key}"}, trust_env=False, timeout=10
    )
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()["result"]
    assert not result.get("isError"), result
    names: list[str] = result["structuredContent"]["result"]
    return names


def test_a_server_starting_on_a_current_store_imports_neither_alembic_nor_httpx(tmp_path: Path) -> None:
    config = _config(tmp_path)
    made = subprocess.run(
        [sys.executable, "-m", "patchbay", "keys", "create", "--name", "probe", "--scopes", "mcp", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # in its own process, which migrates the store: the server finds it current
    assert made.returncode == 0, made.stderr

    with run_patchbay(config, log_dir=tmp_path / "logs") as server:
        assert _loaded(server, made.stdout.strip()) == ["sqlalchemy"]


def test_a_server_starting_on_an_old_store_migrates_it_and_serves_its_keys(tmp_path: Path) -> None:
    config = _config(tmp_path)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url, "auth_0001")  # written by a Patchbay from before the revocation generation (auth_0002)
    engine = create_engine(url)
    _, key = ApiKeys(engine).create("probe", ["mcp"])

    with run_patchbay(config, log_dir=tmp_path / "logs") as server:
        assert _loaded(server, key) == ["alembic", "sqlalchemy"]

    assert current_heads(engine) == set(ScriptDirectory.from_config(alembic_config()).get_heads())
    engine.dispose()
