"""Patchbay with sign-in on: `auth.mode = "api_key"`, a SQLite store in a temporary folder, and one API key that
every benchmark request sends as `Authorization: Bearer`. Made once per benchmark run, on first use."""

from __future__ import annotations

import functools
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent


@functools.cache
def _setup() -> tuple[Path, str]:
    folder = Path(tempfile.mkdtemp(prefix="patchbay-bench-signin-"))
    config = folder / "patchbay.toml"
    config.write_text(
        f"""# The benchmark's Patchbay configuration with sign-in on (API keys).
[server]
name = "bench"

[store]
url = "sqlite:///{folder / "store.db"}"

[auth]
mode = "api_key"

[[connectors]]
name = "bench"
type = "python"
path = "{BENCH / "tools.py"}"
prefix = ""
""",
        encoding="utf-8",
    )
    made = subprocess.run(
        [*_patchbay(), "keys", "create", "--name", "bench", "--scopes", "mcp", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if made.returncode != 0:
        raise RuntimeError(f"patchbay keys create failed: {made.stderr.strip()}")
    return config, made.stdout.strip()


def _patchbay() -> list[str]:
    script = Path(sys.executable).parent / "patchbay"
    return [str(script)] if script.exists() else [sys.executable, "-m", "patchbay"]


def config_path() -> Path:
    return _setup()[0]


def authorization() -> dict[str, str]:
    return {"Authorization": f"Bearer {_setup()[1]}"}
