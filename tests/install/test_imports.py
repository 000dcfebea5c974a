"""Every module of the installed wheel imports in a clean install: without extras, and with each extra.

A module that imports an extra's package at module level belongs to that extra (PackageFacts.extra_modules) and is
imported only where the extra is installed; every other module must import without any extra, so an optional
package is reached lazily, where the feature that needs it starts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.install.conftest import EXTRAS, CleanInstall, PackageFacts, probe
from tests.install.inventory import normalize


def failures(errors: dict[str, str]) -> str:
    return "\n".join(f"  {module}: {error}" for module, error in sorted(errors.items()))


def test_the_clean_install_imports_patchbay_from_its_own_site_packages(
    clean_install: CleanInstall, tmp_path: Path
) -> None:
    found = probe(clean_install, "modules", cwd=tmp_path)

    assert Path(found["prefix"]) == clean_install.venv
    assert Path(found["origin"]).is_relative_to(clean_install.venv / "lib"), found["origin"]


def test_every_module_imports_without_extras(
    clean_install: CleanInstall, package_facts: PackageFacts, tmp_path: Path
) -> None:
    meant_for_extras = package_facts.extra_modules()

    errors = probe(clean_install, "modules", cwd=tmp_path)["errors"]

    unexpected = {module: error for module, error in errors.items() if module not in meant_for_extras}
    assert not unexpected, (
        "modules that fail to import in `pip install mcp-patchbay` (no extras); an optional package must be imported "
        f"inside the function that needs it, with an error naming the extra:\n{failures(unexpected)}"
    )


@pytest.mark.parametrize("extra", EXTRAS)
def test_every_module_and_the_extras_packages_import_with_the_extra(
    extra: str,
    clean_install_with: Callable[[str], CleanInstall],
    package_facts: PackageFacts,
    tmp_path: Path,
) -> None:
    install = clean_install_with(extra)
    other_extras = {module for module, owner in package_facts.extra_modules().items() if owner != extra}
    # The import names of the extra's own distributions (psycopg for psycopg[binary], ...), which Patchbay or
    # SQLAlchemy import when the feature starts; a namespace package counts for the distributions named after it
    # (opentelemetry for opentelemetry-sdk).
    declared = package_facts.declared.extras[extra]
    provided = sorted(
        name
        for name, dists in package_facts.packages.items()
        if dists & declared
        and not name.startswith("_")
        and (normalize(name) in declared or any(d.startswith(f"{normalize(name)}-") for d in dists & declared))
    )
    assert provided, f"no importable package found for the distributions of [{extra}]: {sorted(declared)}"

    errors = probe(install, "modules", *provided, cwd=tmp_path)["errors"]

    unexpected = {module: error for module, error in errors.items() if module not in other_extras}
    assert not unexpected, f"imports failing in `pip install mcp-patchbay[{extra}]`:\n{failures(unexpected)}"
