"""`patchbay store upgrade`: a deployment's migration step (compose's `migrate` service, the Helm hook Job)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine
from tests.support.servers import free_port
from typer.testing import CliRunner

from patchbay.cli import app
from patchbay.store.migrate import current_heads, is_current


def _config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "patchbay.toml"
    config.write_text(f'[store]\nurl = "{url}"\n')
    return config


def test_store_upgrade_brings_a_new_store_to_every_head_and_names_them(tmp_path: Path) -> None:
    config = _config(tmp_path, "sqlite:///patchbay.db")
    result = CliRunner().invoke(app, ["store", "upgrade", "--config", str(config)])
    assert result.exit_code == 0, result.output
    engine = create_engine(f"sqlite:///{tmp_path / 'patchbay.db'}")
    try:
        assert is_current(engine)
        heads = current_heads(engine)
    finally:
        engine.dispose()
    assert heads and result.output.strip() == f"store is current: {', '.join(sorted(heads))}"


def test_store_upgrade_on_a_current_store_changes_nothing_and_succeeds(tmp_path: Path) -> None:
    config = _config(tmp_path, "sqlite:///patchbay.db")
    first = CliRunner().invoke(app, ["store", "upgrade", "--config", str(config)])
    second = CliRunner().invoke(app, ["store", "upgrade", "--config", str(config)])
    assert first.exit_code == second.exit_code == 0
    assert first.output == second.output


def test_store_upgrade_of_an_unreachable_database_exits_2_without_its_password(tmp_path: Path) -> None:
    # Nothing listens on a port that was just free: the connection is refused at once.
    url = f"postgresql://patchbay:pw-never-shown@127.0.0.1:{free_port()}/patchbay"
    result = CliRunner().invoke(
        app, ["store", "upgrade", "--config", str(_config(tmp_path, url))], env={"COLUMNS": "400"}
    )
    assert result.exit_code == 2, result.output
    assert "store error" in result.output and "OperationalError" in result.output
    assert "pw-never-shown" not in result.output
