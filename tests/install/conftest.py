"""Clean installs of the built wheel: what `pip install mcp-patchbay[...]` gives a user, without the dev extras.

`make install-venvs` builds the wheel once and installs it into one fresh virtualenv per variant under
build/install/: `base` (no extras) and one per optional extra of pyproject.toml. The fixtures here find those
venvs and bring them up to date through the same Makefile targets, so `pytest tests/install` works on its own.

Nothing in a clean install may see the repository: commands run from a temporary working directory with the venv's
bin first on PATH, no PYTHONPATH, no VIRTUAL_ENV of the dev venv and no user site-packages (see CleanInstall.env).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["BASE", "EXTRAS", "CleanInstall", "build_clean_install"]

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_DIR = REPO_ROOT / "build" / "install"
BASE = "base"
# The optional extras users install; `dev` is ours, not theirs.
EXTRAS: tuple[str, ...] = tuple(
    sorted(
        name
        for name in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        if name != "dev"
    )
)
BUILD_TIMEOUT = 1800.0  # seconds: the first build of the documents-embeddings venv installs torch
COMMAND_TIMEOUT = 120.0

# Variables through which the dev environment could leak into a clean install's processes.
_LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONSAFEPATH")


@dataclass(frozen=True)
class CleanInstall:
    """One clean virtualenv holding the wheel (`variant` is "base" or the name of the extra it was installed with)."""

    venv: Path
    variant: str = BASE

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    @property
    def patchbay(self) -> Path:
        """The console script pip generated from [project.scripts]."""
        return self.bin / "patchbay"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for commands in this install: its bin first on PATH, the dev venv's bin removed, and no
        variable (PYTHONPATH, VIRTUAL_ENV, ...) or user site-packages that could make the repository or the dev
        venv importable. `extra` is added last."""
        dev_bin = Path(sys.prefix, "bin").resolve()
        path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != dev_bin]
        env = {key: value for key, value in os.environ.items() if key not in _LEAKY_ENV}
        env.update(PATH=os.pathsep.join([str(self.bin), *path]), PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1")
        env.update(extra or {})
        return env

    def run(
        self,
        *args: str,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command of this install (`args[0]` is looked up in its bin first) in `cwd`; never raises on a
        non-zero exit, so tests can assert on the exit code and the output."""
        exe = self.bin / args[0]
        cmd = [str(exe) if exe.exists() else args[0], *args[1:]]
        return subprocess.run(
            cmd, cwd=cwd, env=self.env(env), input=input, capture_output=True, text=True, timeout=timeout, check=False
        )


def build_clean_install(variant: str) -> CleanInstall:
    """Bring the venv of `variant` up to date (`make` rebuilds the wheel and reinstalls it when src/ or
    pyproject.toml changed, and does nothing otherwise) and return it. A file lock keeps concurrent test runs from
    building the same venv at once."""
    if variant != BASE and variant not in EXTRAS:
        raise ValueError(f"unknown install variant {variant!r}; expected {BASE!r} or one of {EXTRAS}")
    venv = INSTALL_DIR / f"venv-{variant}"
    INSTALL_DIR.mkdir(parents=True, exist_ok=True)
    with (INSTALL_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(
            ["make", "--no-print-directory", "-C", str(REPO_ROOT), str((venv / ".installed").relative_to(REPO_ROOT))],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    if done.returncode != 0:
        pytest.fail(f"building the clean install {variant!r} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return CleanInstall(venv=venv, variant=variant)


@pytest.fixture(scope="session")
def clean_install() -> CleanInstall:
    """The wheel installed with no extras: exactly what `pip install mcp-patchbay` gives a user."""
    return build_clean_install(BASE)


@pytest.fixture(scope="session")
def clean_install_with() -> Iterator[Callable[[str], CleanInstall]]:
    """`clean_install_with("sql-postgres")`: the wheel installed with that one extra (built on first use)."""
    built: dict[str, CleanInstall] = {}

    def get(variant: str) -> CleanInstall:
        if variant not in built:
            built[variant] = build_clean_install(variant)
        return built[variant]

    yield get


def variants() -> Sequence[str]:
    return (BASE, *EXTRAS)
