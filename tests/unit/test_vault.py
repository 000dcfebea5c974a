"""The vault: sealed secrets open only under a configured key, for the context they were sealed for, unaltered."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

import pytest

from patchbay.errors import ConfigError
from patchbay.settings import from_dict, load
from patchbay.vault import Vault, VaultError


def _key() -> str:
    return secrets.token_urlsafe(32)


def test_a_sealed_secret_opens_for_its_own_context_only() -> None:
    vault = Vault.ephemeral()
    token = vault.seal(b"refresh-token-1", context="link:jira:user:alice:refresh")
    assert b"refresh-token-1" not in token.encode()
    assert vault.open(token, context="link:jira:user:alice:refresh") == b"refresh-token-1"
    with pytest.raises(VaultError, match="another context"):
        vault.open(token, context="link:jira:user:bob:refresh")


def test_an_altered_sealed_value_does_not_open() -> None:
    vault = Vault.ephemeral()
    token = vault.seal(b"secret", context="c")
    head, body = token.rsplit(".", 1)
    flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    with pytest.raises(VaultError):
        vault.open(f"{head}.{flipped}", context="c")
    with pytest.raises(VaultError, match="not a sealed value"):
        vault.open("plain text", context="c")


def test_rotation_seals_with_the_first_key_and_opens_with_every_key(tmp_path: Path) -> None:
    old, new = _key(), _key()
    before = Vault.from_settings(load(None, env={"PATCHBAY_VAULT__KEYS": f'["{old}"]'}))
    sealed = before.seal(b"token", context="c")
    after = Vault.from_settings(load(None, env={"PATCHBAY_VAULT__KEYS": f'["{new}", "{old}"]'}))
    assert after.open(sealed, context="c") == b"token"
    assert after.needs_reseal(sealed)
    resealed = after.reseal(sealed, context="c")
    assert not after.needs_reseal(resealed)
    only_new = Vault.from_settings(load(None, env={"PATCHBAY_VAULT__KEYS": f'["{new}"]'}))
    assert only_new.open(resealed, context="c") == b"token"
    with pytest.raises(VaultError, match="not among"):
        only_new.open(sealed, context="c")


def test_a_key_that_is_not_32_bytes_of_base64_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"vault\.keys\[0\]: must be base64 of 32 random bytes"):
        Vault.from_settings(load(None, env={"PATCHBAY_VAULT__KEYS": '["short"]'}))


def test_a_sqlite_store_gets_a_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    settings = from_dict({"store": {"url": f"sqlite:///{tmp_path / 'patchbay.db'}"}}, base_dir=tmp_path)
    first = Vault.from_settings(settings)
    key_file = tmp_path / "patchbay.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    sealed = first.seal(b"kept", context="c")
    assert Vault.from_settings(settings).open(sealed, context="c") == b"kept"
    assert [p.name for p in tmp_path.iterdir()] == ["patchbay.key"]  # no temporary file left behind


def test_a_postgresql_store_without_a_key_is_a_config_error_naming_vault_keys() -> None:
    settings = from_dict({"store": {"url": "postgresql://db.example/patchbay"}}, source="patchbay.toml")
    with pytest.raises(ConfigError, match=r"patchbay\.toml: vault\.keys: .*\[vault\] keys") as caught:
        Vault.from_settings(settings)
    assert caught.value.key == "vault.keys"


def test_a_postgresql_store_with_a_missing_key_file_is_not_given_a_new_one(tmp_path: Path) -> None:
    settings = from_dict(
        {"store": {"url": "postgresql://db.example/patchbay"}, "vault": {"key_file": "vault.key"}}, base_dir=tmp_path
    )
    with pytest.raises(ConfigError, match=r"vault\.key_file: .*does not exist"):
        Vault.from_settings(settings)
    assert not (tmp_path / "vault.key").exists()


def test_an_unknown_vault_key_is_refused_with_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="Allowed: keys, key_file"):
        from_dict({"vault": {"key": "x"}})
