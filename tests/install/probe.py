"""Run INSIDE a clean install (`python -I probe.py COMMAND`, stdlib only): report what that install holds as JSON.

    modules [EXTRA_MODULE ...]  import every module of the installed patchbay package, then each EXTRA_MODULE;
                                {"origin": patchbay.__file__, "prefix": sys.prefix, "errors": {module: error}}
    metadata                    {"root": the installed package folder, "packages": top-level import name →
                                distributions, "requires": the wheel's Requires-Dist}

`-I` keeps the script's folder, the working directory, PYTHON* variables and user site-packages off sys.path, so
only the venv's own site-packages can answer an import.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import pkgutil
import sys
import traceback


def _error(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def import_everything(extra_modules: list[str]) -> dict[str, object]:
    import patchbay

    errors: dict[str, str] = {}

    def walk_error(name: str) -> None:  # a package whose __init__ failed: its submodules cannot be listed
        errors[name] = _error(sys.exc_info()[1] or RuntimeError(name))

    for info in pkgutil.walk_packages(patchbay.__path__, "patchbay.", onerror=walk_error):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # `python -m patchbay` runs the CLI: it is a script, not a module to import
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            errors[info.name] = _error(exc)
    for name in extra_modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            errors[name] = _error(exc)
    return {"origin": patchbay.__file__, "prefix": sys.prefix, "errors": errors}


def metadata() -> dict[str, object]:
    spec = importlib.util.find_spec("patchbay")
    assert spec is not None and spec.submodule_search_locations is not None
    return {
        "root": next(iter(spec.submodule_search_locations)),
        "packages": importlib.metadata.packages_distributions(),
        "requires": importlib.metadata.requires("mcp-patchbay") or [],
    }


def main(argv: list[str]) -> None:
    command, *rest = argv
    if command == "modules":
        result = import_everything(rest)
    elif command == "metadata":
        result = metadata()
    else:
        raise SystemExit(f"unknown command {command!r}")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
