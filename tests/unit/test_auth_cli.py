"""The sign-in command groups as people read them."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from patchbay.cli.users import app


def test_users_add_help_names_the_store_table() -> None:
    result = CliRunner().invoke(app, ["add", "--help"], env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert result.exit_code == 0
    text = re.sub(r"\s+", " ", result.output.replace("│", " "))
    assert "its [store] table is used" in text
