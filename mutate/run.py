"""`make mutate`: mutation testing with mutmut, one group of modules at a time, each judged by its own unit tests.

mutmut reads its settings from ./pyproject.toml and keeps its mutants and results in ./mutants, so each group gets
a workspace, build/mutate/<group>/, holding links to src/ and to the test folders it needs and a pyproject.toml that
is the repository's plus a [tool.mutmut] table for the group. Results are cached there between runs: a mutant is
tested again when its function changed, and every mutant that survived, timed out or had no test last time is
tested again (the tests may have changed since; when they have, mutmut first traces again which tests reach which
function). `FRESH=1` starts a workspace from nothing.

    python -m mutate.run [--modules sql-guard,auth/token.py] [--fresh] [--timeout SECONDS]

The summary (killed / survived / timeout / no tests / total, kill rate, per module; every module with results so
far) is printed and written to build/mutate/summary.md; the surviving mutants of each module are listed in
build/mutate/survivors.txt (`mutmut show <name>` in the group's workspace prints one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "patchbay"
WORK = ROOT / "build" / "mutate"
MODULES_FILE = Path(__file__).resolve().parent / "modules.toml"
# Test folders a unit test may import from (tests.support, the unit fixtures, the document fixtures).
TEST_FOLDERS = ("unit", "support", "fixtures")
TEST_FILES = ("__init__.py", "conftest.py")
# mutmut's exit codes (mutmut/stats.py), folded into the columns we report.
STATUS = {1: "killed", 3: "killed", 37: "killed", 0: "survived", 36: "timeout", 24: "timeout", -24: "timeout"}
STATUS |= {152: "timeout", 255: "timeout", 5: "no tests", 33: "no tests", 34: "skipped"}
RETRY = {"survived", "timeout", "suspicious"}
# Tested again on every run: the tests may have changed since (a "no tests" verdict is stale once a test reaches
# the function; mutmut itself never re-runs it).
RESET = RETRY | {"no tests"}


@dataclass(frozen=True)
class Group:
    name: str
    sources: tuple[str, ...]  # paths under src/patchbay, as in modules.toml
    tests: tuple[str, ...]

    def files(self) -> list[str]:
        """The group's source files as mutmut names them (src/patchbay/...)."""
        found: list[str] = []
        for source in self.sources:
            path = PACKAGE / source
            paths = sorted(path.glob("*.py")) if source.endswith("/") else [path]
            found += [str(p.relative_to(ROOT)) for p in paths if p.name != "__init__.py"]
        return found


def load_groups() -> dict[str, Group]:
    data = tomllib.loads(MODULES_FILE.read_text())
    groups = {}
    for name, table in data["groups"].items():
        groups[name] = Group(name, tuple(table["sources"]), tuple(table["tests"]))
    return groups


def select(groups: dict[str, Group], wanted: list[str]) -> list[tuple[Group, list[str]]]:
    """(group, files to mutate) for each name in ``wanted``: a group name or a module path under src/patchbay."""
    if not wanted:
        return [(g, g.files()) for g in groups.values()]
    chosen: dict[str, tuple[Group, list[str]]] = {}
    for item in wanted:
        if item in groups:
            chosen[item] = (groups[item], groups[item].files())
            continue
        module = f"src/patchbay/{item.removeprefix('src/patchbay/')}"
        owners = [g for g in groups.values() if module in g.files()]
        if not owners:
            names = ", ".join(groups)
            sys.exit(f"mutate: {item!r} is neither a group ({names}) nor a module listed in {MODULES_FILE.name}")
        group = owners[0]
        files = chosen.get(group.name, (group, []))[1]
        chosen[group.name] = (group, [*files, module])
    return list(chosen.values())


def prepare(group: Group, files: list[str], fresh: bool) -> Path:
    """The group's workspace, with its pyproject.toml written for ``files`` and the last doubtful verdicts reset."""
    work = WORK / group.name
    if fresh and work.exists():
        shutil.rmtree(work)
    (work / "tests").mkdir(parents=True, exist_ok=True)
    _link(work / "src", ROOT / "src")
    for folder in TEST_FOLDERS:
        _link(work / "tests" / folder, ROOT / "tests" / folder)
    # tests/conftest.py holds fixtures every suite shares (a real redis-server for the fleet's tests).
    for name in TEST_FILES:
        shutil.copy2(ROOT / "tests" / name, work / "tests" / name)
    settings = {
        "source_paths": ["src"],
        "only_mutate": files,
        "pytest_add_cli_args_test_selection": list(group.tests),
        "pytest_add_cli_args": ["-p", "no:cacheprovider"],
        "also_copy": [],
    }
    table = "\n".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())
    _drop_stale_stats(work, files, group)
    (work / "pyproject.toml").write_text(f"{(ROOT / 'pyproject.toml').read_text()}\n[tool.mutmut]\n{table}\n")
    for file in files:
        _drop_unmutated(work / "mutants" / file)
        _reset_doubtful(work / "mutants" / f"{file}.meta")
    return work


def _drop_stale_stats(work: Path, files: list[str], group: Group) -> None:
    """Remove mutmut's record of which tests reach which function when the last run mutated other modules, or when
    the group's tests changed since it was made.

    That record names only the functions of the modules mutated when it was made, and mutmut makes it again only
    for new tests: a run for other modules of the group would find no test reaching any of their functions, and a
    test extended since would never run against the functions it now reaches (its mutants would survive).
    """
    stats = work / "mutants" / "mutmut-stats.json"
    previous = work / "pyproject.toml"
    if previous.exists():
        last = tomllib.loads(previous.read_text()).get("tool", {}).get("mutmut", {}).get("only_mutate")
        if last != files:
            stats.unlink(missing_ok=True)
    mark = work / "tests.sha256"
    digest = _tests_digest(group)
    if not mark.exists() or mark.read_text() != digest:
        stats.unlink(missing_ok=True)
    mark.write_text(digest)


def _tests_digest(group: Group) -> str:
    """One digest of everything the group's tests are made of: its test files and the shared test code."""
    missing = [test for test in group.tests if not (ROOT / test).is_file()]
    if missing:
        listed = ", ".join(missing)
        sys.exit(f"mutate: group {group.name!r} in {MODULES_FILE.name} lists tests that do not exist: {listed}")
    shared = [ROOT / "tests" / name for name in TEST_FILES]
    for folder in ("support", "fixtures", "unit/fixtures"):
        shared += sorted((ROOT / "tests" / folder).rglob("*.py"))
    shared += [path for path in [ROOT / "tests" / "unit" / "conftest.py"] if path.exists()]
    digest = hashlib.sha256()
    for path in [*(ROOT / test for test in group.tests), *shared]:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _drop_unmutated(copy: Path) -> None:
    """Remove a plain copy of a module left by a run that mutated only other modules of its group.

    mutmut copies the modules it was not asked to mutate unchanged; a later run that does ask for them would take
    the copy as up to date, mutate nothing and record that no test reaches them.
    """
    if copy.exists() and "__mutmut_" not in copy.read_text():
        copy.unlink()
        copy.with_name(f"{copy.name}.meta").unlink(missing_ok=True)


def _link(link: Path, target: Path) -> None:
    if not link.is_symlink():
        link.symlink_to(os.path.relpath(target, link.parent), target_is_directory=True)


def _reset_doubtful(meta_path: Path) -> None:
    if not meta_path.exists():
        return
    meta = json.loads(meta_path.read_text())
    codes = meta["exit_code_by_key"]
    for key, code in codes.items():
        if STATUS.get(code, "suspicious") in RESET:
            codes[key] = None
    meta_path.write_text(json.dumps(meta, indent=4))


def run(work: Path, timeout: float) -> int:
    """Run mutmut in ``work`` with one worker at low priority; stops it after ``timeout`` seconds."""
    command = ["nice", "-n", "10", sys.executable, "-m", "mutmut", "run", "--max-children", "1"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        # A fixed command: only the interpreter running this script and mutmut's own arguments.
        return subprocess.run(command, cwd=work, env=env, timeout=timeout, check=False).returncode  # noqa: S603
    except subprocess.TimeoutExpired:
        print(f"mutate: {work.name} stopped after {timeout:.0f} s; its summary counts what finished", flush=True)
        return 124


def tally(work: Path, file: str) -> tuple[Counter[str], list[str]]:
    """Verdict counts for one module and the names of its surviving mutants."""
    meta_path = work / "mutants" / f"{file}.meta"
    counts: Counter[str] = Counter()
    survivors: list[str] = []
    if not meta_path.exists():
        return counts, survivors
    for key, code in json.loads(meta_path.read_text())["exit_code_by_key"].items():
        status = "not run" if code is None else STATUS.get(code, "suspicious")
        counts[status] += 1
        if status in RETRY:
            survivors.append(f"{key} ({status})")
    return counts, survivors


def summarise(results: list[tuple[str, str, Counter[str], list[str]]]) -> str:
    columns = ["killed", "survived", "timeout", "no tests", "not run", "suspicious"]
    lines = ["| module | group | " + " | ".join(columns) + " | total | kill rate |"]
    lines.append("|---" * (len(columns) + 4) + "|")
    for file, group, counts, _ in results:
        total = sum(counts.values())
        rate = f"{100 * counts['killed'] / total:.1f}%" if total else "-"
        cells = " | ".join(str(counts[c]) for c in columns)
        lines.append(f"| {file.removeprefix('src/patchbay/')} | {group} | {cells} | {total} | {rate} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", default="", help="comma-separated group names or module paths (default: all)")
    parser.add_argument("--fresh", action="store_true", help="discard cached results first")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds each group may run (default 3600)")
    args = parser.parse_args()
    wanted = [m.strip() for m in args.modules.replace(" ", ",").split(",") if m.strip()]
    groups = load_groups()
    failed = []
    for group, files in select(groups, wanted):
        print(f"mutate: {group.name}: {', '.join(files)}", flush=True)
        work = prepare(group, files, args.fresh)
        if run(work, args.timeout) not in (0, 124):
            failed.append(group.name)
    # The summary covers every module with results, from this run or an earlier one.
    results = [(file, g.name, *tally(WORK / g.name, file)) for g in groups.values() for file in g.files()]
    table = summarise([r for r in results if r[2]])
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "summary.md").write_text(table)
    (WORK / "survivors.txt").write_text("".join(f"{s}\n" for *_, survivors in results for s in survivors))
    print(table)
    if failed:
        print(f"mutate: mutmut failed for {', '.join(failed)} (see its output above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
