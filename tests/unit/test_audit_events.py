"""Sign-in, token, client and admin events go into the audit trail, naming who and what but never a secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text
from typer.testing import CliRunner

from patchbay.cli import app as cli
from patchbay.store import create_engine


def _events(db: Path) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT body FROM audit_records WHERE kind = 'event' ORDER BY seq")).scalars()
        found = [orjson.loads(body) for body in rows]
    engine.dispose()
    return found


def _config(folder: Path) -> Path:
    config = folder / "patchbay.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{folder / "store.db"}"\n\n[auth]\nmode = "oauth"\n', encoding="utf-8")
    return config


def test_admin_commands_are_recorded_with_the_actor_and_never_the_key_or_password(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    runner = CliRunner()
    added = runner.invoke(
        cli, ["users", "add", "ada", "-r", "sales", "--password-stdin", "-c", config], input="pw-s3cret-1\n"
    )
    assert added.exit_code == 0, added.output
    created = runner.invoke(cli, ["keys", "create", "--name", "ci", "-c", config])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    revoked = runner.invoke(cli, ["keys", "revoke", "ci", "-c", config])
    assert revoked.exit_code == 0, revoked.output
    assert runner.invoke(cli, ["users", "disable", "ada", "-c", config]).exit_code == 0

    events = _events(tmp_path / "store.db")
    assert [e["method"] for e in events] == ["users.add", "keys.create", "keys.revoke", "users.disable"]
    assert events[0]["username"] == "ada" and events[0]["roles"] == ["sales"]
    assert events[1]["key_name"] == "ci" and all(e["via"] == "cli" and e["actor"] for e in events)
    assert secret.startswith("pb_")  # the key as printed, which the store must not hold anywhere
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("store.db"))
    assert secret.encode() not in raw and b"pw-s3cret-1" not in raw


def test_a_cli_event_continues_the_chain_the_server_started(tmp_path: Path) -> None:
    from patchbay.gate import audit_chain

    config = str(_config(tmp_path))
    runner = CliRunner()
    for name in ("one", "two"):
        assert runner.invoke(cli, ["keys", "create", "--name", name, "-c", config]).exit_code == 0
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with engine.connect() as connection:
        rows = list(connection.execute(text("SELECT seq, body, prev_hash, hash FROM audit_records ORDER BY seq")))
    engine.dispose()
    assert [r.seq for r in rows] == [1, 2]
    assert rows[0].prev_hash == audit_chain.GENESIS and rows[1].prev_hash == rows[0].hash
    assert rows[1].hash == audit_chain.link(rows[0].hash, 2, rows[1].body)
