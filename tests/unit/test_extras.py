"""The install command that messages about a missing extra give: one that works where Patchbay is installed."""

from __future__ import annotations

import importlib.metadata
import shlex
import sys
import tomllib
from pathlib import Path

from patchbay.extras import install_command

REPO = Path(__file__).resolve().parents[2]


def dist_at(folder: Path, requires: list[str], direct_url: str | None = None) -> importlib.metadata.Distribution:
    info = folder / "mcp_patchbay-0.1.0.dist-info"
    info.mkdir(parents=True)
    lines = [
        "Metadata-Version: 2.3",
        "Name: mcp-patchbay",
        "Version: 0.1.0",
        *(f"Requires-Dist: {r}" for r in requires),
    ]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(direct_url)
    return importlib.metadata.PathDistribution(info)


def test_an_editable_clone_gets_pip_install_e_of_the_clone_with_this_interpreter() -> None:
    words = shlex.split(install_command("sql-postgres"))
    assert words[:5] == [sys.executable, "-m", "pip", "install", "-e"]
    folder, _, extra = words[5].partition("[")
    assert extra == "sql-postgres]"
    project = tomllib.loads((Path(folder) / "pyproject.toml").read_text())["project"]
    assert project["name"] == "mcp-patchbay" and "sql-postgres" in project["optional-dependencies"]
    assert Path(folder).resolve() == REPO


def test_an_installed_wheel_gets_the_extras_own_requirements(tmp_path: Path) -> None:
    dist = dist_at(
        tmp_path,
        [
            "orjson<4,>=3.10",
            "pymysql<2,>=1.1; extra == 'sql-mysql'",
            'psycopg[binary]<4,>=3.2; extra == "sql-postgres"',
        ],
        direct_url='{"url": "file:///somewhere/mcp_patchbay-0.1.0-py3-none-any.whl", "archive_info": {}}',
    )
    assert shlex.split(install_command("sql-postgres", dist)) == [
        sys.executable, "-m", "pip", "install", "psycopg[binary]<4,>=3.2"
    ]  # fmt: skip
    assert shlex.split(install_command("sql-mysql", dist))[4:] == ["pymysql<2,>=1.1"]


def test_the_published_form_is_the_fallback_when_the_metadata_names_nothing(tmp_path: Path) -> None:
    dist = dist_at(tmp_path, ["orjson<4,>=3.10"])
    assert shlex.split(install_command("sql-postgres", dist))[4:] == ["mcp-patchbay[sql-postgres]"]


def test_a_clone_path_with_spaces_stays_one_argument(tmp_path: Path) -> None:
    clone = tmp_path / "my clone"
    dist = dist_at(tmp_path, [], direct_url=f'{{"url": "{clone.as_uri()}", "dir_info": {{"editable": true}}}}')
    assert shlex.split(install_command("sql-mysql", dist))[4:] == ["-e", f"{clone}[sql-mysql]"]
