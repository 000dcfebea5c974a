"""The revision graph of Patchbay's migration scripts, read from the files' text without importing Alembic.

A server whose store is already current (every start but the first after an upgrade) has nothing to migrate;
importing Alembic only to learn that would keep about 9 MB resident for the life of the process. ``Scripts``
answers "is this database at ``target``?" from the scripts' own ``revision``/``down_revision``/``branch_labels``
assignments; only a "no" (or a script it cannot vouch for) makes ``patchbay.store.migrate`` load Alembic.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# The names Alembic reads from a revision script (alembic.script.base.Script).
_FIELDS = ("revision", "down_revision", "branch_labels", "depends_on")
_BRANCH_HEAD = "@head"


@dataclass(frozen=True, slots=True)
class Revision:
    id: str
    down: tuple[str, ...]
    labels: tuple[str, ...]
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class Scripts:
    """Every revision in the versions folder, by id."""

    revisions: dict[str, Revision]

    @functools.cached_property
    def heads(self) -> frozenset[str]:
        """Revisions no other revision builds on: one per branch, as Alembic stores them after ``heads``."""
        parents = {down for revision in self.revisions.values() for down in revision.down}
        return frozenset(self.revisions.keys() - parents)

    def branch_heads(self, label: str) -> frozenset[str]:
        """The heads of the branch ``label`` names (Alembic's ``label@head``); empty for an unknown label."""
        roots = {r.id for r in self.revisions.values() if label in r.labels}
        children: dict[str, set[str]] = {}
        for revision in self.revisions.values():
            for down in revision.down:
                children.setdefault(down, set()).add(revision.id)
        reached, todo = set(roots), list(roots)
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in reached:
                    reached.add(child)
                    todo.append(child)
        return frozenset(reached & self.heads)

    def is_current(self, stored: set[str], target: str) -> bool:
        """True when upgrading a database whose version table holds ``stored`` to ``target`` would do nothing.

        Only the targets Patchbay uses are judged (``heads``, ``label@head``); for anything else, or a
        graph with cross-branch ``depends_on`` (whose version-table rows are Alembic's to decide), or a
        stored revision these scripts do not know (a newer Patchbay's), the answer is False and Alembic
        decides, raising its own error where there is one.
        """
        if not stored or not stored <= self.revisions.keys():
            return False
        if any(r.depends_on for r in self.revisions.values()):
            return False
        if target == "heads":
            return stored == self.heads
        if target.endswith(_BRANCH_HEAD):
            wanted = self.branch_heads(target.removesuffix(_BRANCH_HEAD))
            # A branch with several heads makes Alembic refuse "label@head": let it say so.
            return len(wanted) == 1 and wanted <= stored
        return False


@functools.cache
def read_scripts(folder: Path) -> Scripts | None:
    """The revisions of the ``*.py`` scripts in ``folder`` (as Alembic lists them); None when a script is not
    one this reader can vouch for (no literal ``revision``, a value that is not a literal, a duplicate id, a
    ``down_revision`` that no script has)."""
    revisions: dict[str, Revision] = {}
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith(("__init__", ".#")):
            continue
        revision = _read_script(path)
        if revision is None or revision.id in revisions:
            return None
        revisions[revision.id] = revision
    known = revisions.keys()
    if not revisions or any(not set(r.down) <= known for r in revisions.values()):
        return None
    return Scripts(revisions)


def _read_script(path: Path) -> Revision | None:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    found: dict[str, object] = {}
    for node in tree.body:
        name, value = _assignment(node)
        if name in _FIELDS and value is not None:
            try:
                found[name] = ast.literal_eval(value)
            except ValueError:
                return None
    revision = found.get("revision")
    if not isinstance(revision, str) or not revision:
        return None
    fields = [_names(found.get(name)) for name in _FIELDS[1:]]
    if any(field is None for field in fields):
        return None
    down, labels, depends_on = (field or () for field in fields)
    return Revision(revision, down, labels, depends_on)


def _assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id, node.value
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    return None, None


def _names(value: object) -> tuple[str, ...] | None:
    """A script's ``None``, ``"id"`` or ``("a", "b")`` as a tuple; None for anything else."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Iterable) and not isinstance(value, bytes | dict):
        items = tuple(value)
        if all(isinstance(item, str) for item in items):
            return items
    return None
