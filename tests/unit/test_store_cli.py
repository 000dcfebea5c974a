"""Every CLI command that opens the store says which folder is missing and which setting names it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from patchbay.cli import app

COMMANDS = [
    ["users", "add", "bob", "--password-stdin"],
    ["users", "list"],
    ["keys", "list"],
    ["clients", "list"],
    ["tokens", "revoke", "--user", "bob"],
    ["index"],
    ["serve"],
    ["store", "upgrade"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_missing_store_folder_is_named_with_its_setting(tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "patchbay.toml"
    config.write_text('[store]\nurl = "sqlite:///state/patchbay.db"\n[auth]\nmode = "oauth"\n')
    result = CliRunner().invoke(
        app, [*command, "--config", str(config)], input="pw-for-bob\n", env={"COLUMNS": "400", "NO_COLOR": "1"}
    )
    assert result.exit_code == 2, result.output
    assert "the folder of store.url does not exist" in result.output
    assert str(tmp_path / "state") in result.output
    assert "sqlite:///state/patchbay.db" in result.output
    assert "Traceback" not in result.output and "OperationalError" not in result.output
    assert not (tmp_path / "state").exists()  # nothing was created behind the person's back


def test_the_store_opens_once_its_folder_exists(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    config = tmp_path / "patchbay.toml"
    config.write_text('[store]\nurl = "sqlite:///state/patchbay.db"\n[auth]\nmode = "oauth"\n')
    added = CliRunner().invoke(
        app, ["users", "add", "bob", "--password-stdin", "--config", str(config)], input="correct horse\n"
    )
    assert added.exit_code == 0, added.output
    listed = CliRunner().invoke(app, ["users", "list", "--config", str(config)], env={"COLUMNS": "200"})
    assert "bob" in listed.output
    assert (tmp_path / "state" / "patchbay.db").is_file()
