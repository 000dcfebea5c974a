"""``patchbay tools`` prints what each connector's part of the tool list costs a model's context, in tokens."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from patchbay.cli import app
from patchbay.connectors.openapi.tokens import estimate_tokens

ENV = {"COLUMNS": "200", "NO_COLOR": "1"}
LINE = re.compile(r"^(\S+): (\d+) tools, ≈ ([\d,]+) tokens$")


def test_the_tools_table_ends_with_each_connectors_estimated_tokens_and_the_total() -> None:
    table = CliRunner().invoke(app, ["tools", "--demo"], env=ENV)
    listed = json.loads(CliRunner().invoke(app, ["tools", "--demo", "--json"], env=ENV).stdout)["tools"]
    assert table.exit_code == 0, table.output
    lines = {m.group(1): m for m in map(LINE.match, table.stdout.splitlines()) if m}
    total = lines.pop("total")
    assert int(total.group(2)) == len(listed)
    assert int(total.group(3).replace(",", "")) == estimate_tokens(listed)
    assert len(lines) >= 2 and sum(int(m.group(2)) for m in lines.values()) == len(listed)
    for owner, found in lines.items():
        tokens = int(found.group(3).replace(",", ""))
        assert 0 < tokens < estimate_tokens(listed), owner


def test_estimated_tokens_are_a_quarter_of_the_compact_json_rounded_up() -> None:
    assert estimate_tokens([]) == 1  # "[]"
    assert estimate_tokens([{"name": "abc"}]) == 4  # '[{"name":"abc"}]' is 16 bytes
    assert estimate_tokens([{"name": "abcd"}]) == 5  # 17 bytes
