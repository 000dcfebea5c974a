"""The docs' console blocks, run the way a new user runs them: in a clean install, from an empty folder.

The convention (docs/README.md, "Console blocks"): a ```console block holds commands after a `$ ` prompt (a line
ending in `\\` continues on the next), each followed by the output it prints, stdout and stderr together as a
terminal shows them; the commands of one block run in one shell, so a variable set by one is there for the next.
In the shown output, a line that is only `...` stands for any number of lines, and `...`
inside a line for any text: that is how pages leave out times, ids and long listings. Every command of a block
that shows output is run (with the clean install's bin first on PATH, in one temporary folder per page, in page
order) and its output must match. A command that names `127.0.0.1:8000` talks to a `patchbay serve --demo` this
test starts, on a free port that is written back as 8000 in what the command prints.

A ```python or ```toml block whose first line is a file name as a comment (`# tools.py`, `# patchbay.toml`) is
written to that file in the page's folder before the blocks after it run, as a reader following the page would.

Commands that show no output (they need a tunnel, a browser, a public server ...) are not run, but every
`patchbay` one among them must name a real subcommand and only options its `--help` lists.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.install.conftest import REPO_ROOT, CleanInstall
from tests.install.running import serve
from tests.support.servers import LOOPBACK, RunningServer

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
DOCUMENTED = f"{LOOPBACK}:8000"
COMMAND_TIMEOUT = 60.0
# Wide and plain, so that rich neither wraps nor colours what the pages show.
TERMINAL = {"COLUMNS": "10000", "NO_COLOR": "1", "TERM": "dumb"}
_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_FILE_COMMENT = re.compile(r"^# ([\w.-]+\.(?:py|toml))$")


@dataclass
class Command:
    line: int
    text: str
    output: list[str] = field(default_factory=list)


@dataclass
class Block:
    page: Path
    line: int
    commands: list[Command]

    @property
    def shows_output(self) -> bool:
        return any(c.output for c in self.commands)


@dataclass
class SourceFile:
    name: str
    text: str


def console_blocks(page: Path) -> list[Block]:
    """Every ```console block of ``page``, its commands and their shown output."""
    return [item for item in page_items(page) if isinstance(item, Block)]


def page_items(page: Path) -> list[Block | SourceFile]:
    """The console blocks of ``page`` and the files its code blocks name (first line `# tools.py`), in page order."""
    blocks: list[Block | SourceFile] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        indent, language, start = fence.group(1), fence.group(2), i + 1
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        if language == "console":
            blocks.append(Block(page, start, _commands(body, start + 1)))
        elif language in ("python", "toml") and body and (named := _FILE_COMMENT.match(body[0])):
            blocks.append(SourceFile(named.group(1), "\n".join(body[1:]) + "\n"))
    return blocks


def _commands(body: list[str], first_line: int) -> list[Command]:
    commands: list[Command] = []
    continuing = False
    for n, line in enumerate(body, first_line):
        if continuing:
            commands[-1].text += "\n" + line
        elif line.startswith("$ "):
            commands.append(Command(n, line[2:]))
        elif commands:
            commands[-1].output.append(line)
        else:
            raise AssertionError(f"line {n}: console blocks start with a `$ ` command; got {line!r}")
        continuing = line.endswith("\\")
    for command in commands:
        while command.output and not command.output[-1].strip():
            command.output.pop()
    return commands


def matches(shown: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` lines are what ``shown`` lines show, reading `...` as described in the module doc."""
    shown = [s.rstrip() for s in shown]
    actual = [a.rstrip() for a in actual]
    while actual and not actual[-1]:
        actual.pop()
    patterns = [None if s == "..." else re.compile(".*?".join(map(re.escape, s.split("...")))) for s in shown]

    def walk(i: int, j: int) -> bool:
        if i == len(patterns):
            return j == len(actual)
        pattern = patterns[i]
        if pattern is None:
            return any(walk(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and pattern.fullmatch(actual[j]) is not None and walk(i + 1, j + 1)

    return walk(0, 0)


# -- the convention itself ---------------------------------------------------------------------------------------


def test_a_block_splits_into_commands_and_their_output(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```console\n$ patchbay call \\\n  --demo list_boards\n{\n...\n}\n\n$ echo hi\nhi\n```\n\n"
        "```console\n$ patchbay doctor URL --local\n```\n"
    )
    first, second = console_blocks(page)
    assert page_items(page)[0] == first
    assert [(c.line, c.text, c.output) for c in first.commands] == [
        (4, "patchbay call \\\n  --demo list_boards", ["{", "...", "}"]),
        (10, "echo hi", ["hi"]),
    ]
    assert first.shows_output and not second.shows_output


def test_a_code_block_named_by_its_first_line_becomes_a_file(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```toml\n# patchbay.toml\n[server]\n```\n\n```python\nprint('not a file')\n```\n")
    assert page_items(page) == [SourceFile("patchbay.toml", "[server]\n")]


def test_ellipsis_lines_and_inline_ellipses_match_only_what_they_stand_for() -> None:
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "b"], ["a", "b"])
    assert matches(
        ["serving ... tools at http://127.0.0.1:8000/mcp"], ["serving 16 tools at http://127.0.0.1:8000/mcp"]
    )
    assert not matches(["a", "...", "d"], ["a", "b", "c"])
    assert not matches(["a", "b"], ["a", "b", "c"])
    assert not matches(["tools: 8"], ["tools: 16"])
    assert not matches(["x...y"], ["x", "y"])


# -- the pages -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(clean_install: CleanInstall, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("docs-demo")
    with serve(clean_install, "--demo", cwd=folder, env=TERMINAL) as server:
        yield server


def _page_id(page: Path) -> str:
    return str(page.relative_to(REPO_ROOT))


@pytest.mark.parametrize("page", [p for p in PAGES if any(b.shows_output for b in console_blocks(p))], ids=_page_id)
def test_console_blocks_print_what_the_page_shows(
    page: Path, clean_install: CleanInstall, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    failures = []
    for block in page_items(page):
        if isinstance(block, SourceFile):
            (tmp_path / block.name).write_text(block.text, encoding="utf-8")
            continue
        if not block.shows_output:
            continue
        server: RunningServer | None = None
        if any(DOCUMENTED in c.text for c in block.commands):
            server = request.getfixturevalue("demo")
        for command, printed in zip(block.commands, run_block(clean_install, block, tmp_path, server), strict=True):
            if not matches(command.output, printed.splitlines()):
                failures.append(
                    f"{_page_id(page)}:{command.line}: $ {command.text}\n--- the page shows:\n"
                    + "\n".join(command.output)
                    + f"\n--- it printed:\n{printed.rstrip()}"
                )
    assert not failures, "\n\n".join(failures)


def run_block(install: CleanInstall, block: Block, cwd: Path, server: RunningServer | None) -> list[str]:
    """What each command of ``block`` prints, run one after the other in one bash (so variables carry over)."""
    marker = "::docs-command-output::"
    script = ["exec 2>&1"]
    for command in block.commands:
        text = command.text
        if server is not None:
            text = text.replace(DOCUMENTED, f"{LOOPBACK}:{server.port}")
        script += [f"echo '{marker}'", text]
    done = install.run("bash", "-c", "\n".join(script), cwd=cwd, env=TERMINAL, timeout=COMMAND_TIMEOUT)
    printed = done.stdout
    if server is not None:
        printed = printed.replace(f"{LOOPBACK}:{server.port}", DOCUMENTED)
    outputs = printed.split(marker + "\n")[1:]
    assert len(outputs) == len(block.commands), (
        f"{_page_id(block.page)}:{block.line}: the block stopped early:\n{printed}"
    )
    return outputs


def _patchbay_commands(page: Path) -> Iterator[Command]:
    for block in console_blocks(page):
        for command in block.commands:
            if command.text.startswith("patchbay "):
                yield command


@pytest.mark.parametrize("page", [p for p in PAGES if any(_patchbay_commands(p))], ids=_page_id)
def test_documented_patchbay_commands_and_options_exist(
    page: Path, clean_install: CleanInstall, tmp_path: Path
) -> None:
    helps: dict[tuple[str, ...], str] = {}

    def help_of(path: tuple[str, ...]) -> str:
        if path not in helps:
            done = clean_install.run("patchbay", *path, "--help", cwd=tmp_path, env=TERMINAL)
            helps[path] = done.stdout if done.returncode == 0 else ""
        return helps[path]

    failures = []
    for command in _patchbay_commands(page):
        words = shlex.split(command.text.replace("\\\n", " "), comments=True)
        path = tuple(words[1:2])
        if not help_of(path):
            failures.append(f"{_page_id(page)}:{command.line}: `patchbay {path[0]}` is not a command")
            continue
        # A command group (`patchbay keys create`): the options belong to the subcommand.
        if len(words) > 2 and not words[2].startswith("-") and help_of((*path, words[2])):
            path = (*path, words[2])
        for word in words[len(path) + 1 :]:
            option = word.split("=", 1)[0]
            if option.startswith("--") and not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_of(path)):
                failures.append(f"{_page_id(page)}:{command.line}: `patchbay {' '.join(path)}` has no option {option}")
    assert not failures, "\n".join(failures)


def test_every_page_with_commands_is_checked() -> None:
    """A page that shows commands in ```bash blocks with their output in the next block would escape this test."""
    unconverted = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for found in re.finditer(r"```bash\n(?:(?!```).*\n)*?```\n\n```(?:text|json)\n", text):
            unconverted.append(f"{_page_id(page)}:{text[: found.start()].count(chr(10)) + 1}")
    assert not unconverted, f"output shown after a ```bash block (make it one ```console block): {unconverted}"
