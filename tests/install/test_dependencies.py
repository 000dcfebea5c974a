"""Every third-party package the installed code imports is declared by the wheel: in `dependencies` when the import
runs on module import, in `dependencies` or an extra when it runs only on use (inside a function, or for type
checking). A package that arrives only as someone else's dependency (or only with the dev extras) is not declared:
the next release of that someone may drop it.

Import names map to distributions through importlib.metadata.packages_distributions() in the clean installs.
"""

from __future__ import annotations

from tests.install.conftest import PackageFacts
from tests.install.inventory import ImportSite


def describe(site: ImportSite, facts: PackageFacts) -> str:
    dists = sorted(facts.distributions(site.name))
    found = f"from {', '.join(dists)}" if dists else "installed by no clean install"
    return f"  {site.where()}: import {site.name} ({found})"


def test_module_level_imports_are_declared_dependencies(package_facts: PackageFacts) -> None:
    meant_for = package_facts.extra_modules()
    undeclared = []
    for site in package_facts.sites:
        if site.lazy:
            continue
        allowed = set(package_facts.declared.base)
        if site.module in meant_for:
            allowed |= package_facts.declared.extras[meant_for[site.module]]
        if not package_facts.distributions(site.name) & allowed:
            undeclared.append(describe(site, package_facts))

    assert not undeclared, "module-level imports of packages [project] dependencies do not declare:\n" + "\n".join(
        undeclared
    )


def test_lazy_imports_are_declared_in_dependencies_or_an_extra(package_facts: PackageFacts) -> None:
    declared = set(package_facts.declared.base).union(*package_facts.declared.extras.values())
    undeclared = [
        describe(site, package_facts)
        for site in package_facts.sites
        if site.lazy and not package_facts.distributions(site.name) & declared
    ]

    assert not undeclared, "imports of packages neither dependencies nor an extra declares:\n" + "\n".join(undeclared)


def test_the_scan_sees_the_installed_package(package_facts: PackageFacts) -> None:
    # Guards the two tests above against passing vacuously (a wrong root, a scan that finds nothing).
    names = {site.name for site in package_facts.sites}
    assert {"starlette", "sqlalchemy", "pydantic"} <= names
    assert {"starlette", "sqlalchemy", "pydantic"} <= package_facts.declared.base
