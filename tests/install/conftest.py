"""Clean installs of the built wheel: what `pip install mcp-patchbay[...]` gives a user, without the dev extras.

`make install-venvs` builds the wheel once and installs it into one fresh virtualenv per variant under
build/install/: `base` (no extras) and one per optional extra of pyproject.toml. The fixtures here find those
venvs and bring them up to date through the same Makefile targets, so `pytest tests/install` works on its own.

Nothing in a clean install may see the repository: commands run from a temporary working directory with the venv's
bin first on PATH, no PYTHONPATH, no VIRTUAL_ENV of the dev venv and no user site-packages (see CleanInstall.env).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.install.inventory import Declared, ImportSite, distributions_of, import_sites, parse_requires

__all__ = ["BASE", "EXTRAS", "CleanInstall", "PackageFacts", "build_clean_install", "probe"]

INSTALL_TESTS = Path(__file__).resolve().parent
REPO_ROOT = INSTALL_TESTS.parents[1]
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


def probe(install: CleanInstall, *args: str, cwd: Path) -> Any:
    """Run tests/install/probe.py with the install's Python in isolated mode (-I) and return its JSON."""
    done = install.run("python", "-I", str(INSTALL_TESTS / "probe.py"), *args, cwd=cwd)
    assert done.returncode == 0, f"probe {args} in {install.variant} failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout)


@dataclass(frozen=True)
class PackageFacts:
    """The installed package's third-party imports against what its wheel declares."""

    root: Path  # the package folder in the no-extras install's site-packages
    declared: Declared
    packages: dict[str, set[str]]  # import name -> distributions providing it, over every clean install
    sites: tuple[ImportSite, ...]

    def distributions(self, name: str) -> set[str]:
        return self.packages.get(name, set())

    def extra_of(self, site: ImportSite) -> str | None:
        """The one extra declaring the distribution behind this import, when no base dependency provides it."""
        dists = self.distributions(site.name)
        if dists & self.declared.base:
            return None
        extras = {extra for dist in dists for extra in self.declared.extras_declaring(dist)}
        return min(extras) if extras else None

    def extra_modules(self) -> dict[str, str]:
        """Modules that import an extra's package at module level, and so are meant for that extra's install."""
        return {s.module: extra for s in self.sites if not s.lazy and (extra := self.extra_of(s)) is not None}


@pytest.fixture(scope="session")
def package_facts(
    clean_install: CleanInstall,
    clean_install_with: Callable[[str], CleanInstall],
    tmp_path_factory: pytest.TempPathFactory,
) -> PackageFacts:
    cwd = tmp_path_factory.mktemp("probe")
    base = probe(clean_install, "metadata", cwd=cwd)
    packages: dict[str, set[str]] = {}
    for install in (clean_install, *(clean_install_with(extra) for extra in EXTRAS)):
        found = base if install is clean_install else probe(install, "metadata", cwd=cwd)
        for name in found["packages"]:
            packages.setdefault(name, set()).update(distributions_of(name, found["packages"]))
    root = Path(base["root"])
    return PackageFacts(root, parse_requires(base["requires"]), packages, tuple(import_sites(root)))
