"""What the package imports (read from its source with ast) and what its wheel declares (Requires-Dist), so tests
can hold one against the other.

An import is *lazy* when it runs only on use: inside a function, or under ``if TYPE_CHECKING:``. Module-level imports
run when the module is imported, so they must be satisfied by the install the module is meant for.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Declared", "ImportSite", "import_sites", "normalize", "parse_requires"]

# importlib calls whose first argument names a module that will be imported (or looked up for it).
_DYNAMIC_IMPORTS = {"import_module", "find_spec", "__import__"}
_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def normalize(distribution: str) -> str:
    """PEP 503 name normalisation: `Python_Docx` and `python-docx` are one distribution."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


@dataclass(frozen=True)
class ImportSite:
    module: str  # the patchbay module holding the import, dotted
    path: Path
    line: int
    name: str  # the top-level name imported: `sqlalchemy` for `from sqlalchemy.orm import Session`
    lazy: bool

    def where(self) -> str:
        return f"{self.module} (line {self.line})"


@dataclass
class Declared:
    """The wheel's Requires-Dist: distributions every install gets, and those each extra adds."""

    base: set[str] = field(default_factory=set)
    extras: dict[str, set[str]] = field(default_factory=dict)

    def extras_declaring(self, distribution: str) -> list[str]:
        return sorted(extra for extra, names in self.extras.items() if normalize(distribution) in names)


def parse_requires(lines: Iterable[str]) -> Declared:
    """Requires-Dist lines, e.g. `psycopg[binary]<4,>=3.2; extra == "sql-postgres"`."""
    declared = Declared()
    for line in lines:
        name = _REQUIREMENT_NAME.match(line)
        if name is None:
            raise ValueError(f"unreadable Requires-Dist line: {line!r}")
        extra = _EXTRA_MARKER.search(line)
        target = declared.extras.setdefault(extra.group(1), set()) if extra else declared.base
        target.add(normalize(name.group(1)))
    return declared


class _Visitor(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[tuple[int, str, bool]] = []
        self._lazy = 0

    def _nested(self, node: ast.AST) -> None:
        self._lazy += 1
        self.generic_visit(node)
        self._lazy -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _nested

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        type_checking = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        )
        if not type_checking:
            self.generic_visit(node)
            return
        self._lazy += 1
        for child in node.body:
            self.visit(child)
        self._lazy -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node.lineno, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self._add(node.lineno, node.module)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        first = node.args[0] if node.args else None
        if called in _DYNAMIC_IMPORTS and isinstance(first, ast.Constant) and isinstance(first.value, str):
            self._add(node.lineno, first.value)
        self.generic_visit(node)

    def _add(self, line: int, dotted: str) -> None:
        self.found.append((line, dotted.split(".")[0], self._lazy > 0))


def _module_name(root: Path, path: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_sites(root: Path, own: str = "patchbay") -> Iterator[ImportSite]:
    """Every import of a third-party module in the package at `root` (stdlib and the package itself left out)."""
    for path in sorted(root.rglob("*.py")):
        visitor = _Visitor()
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for line, name, lazy in visitor.found:
            if name != own and name not in sys.stdlib_module_names:
                yield ImportSite(_module_name(root, path), path, line, name, lazy)


def distributions_of(name: str, packages: Mapping[str, list[str]]) -> set[str]:
    return {normalize(d) for d in packages.get(name, [])}
