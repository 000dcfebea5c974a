"""API keys and grants on a real SQLite store, without an app: what is stored, when each credential stops
working (to the second), and what a replay or a revocation takes with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from patchbay.auth.crypto import KEY_PREFIX, digest
from patchbay.auth.keys import ApiKeys, KeyView
from patchbay.auth.principal import Principal
from patchbay.store import create_engine, upgrade
from patchbay.store.models import AuthApiKey

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[object]:
    made = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(made)
    yield made
    made.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(engine: object, clock: Clock) -> ApiKeys:
    return ApiKeys(engine, clock)  # type: ignore[arg-type]


def test_a_new_key_is_shown_once_and_stored_as_its_digest(keys: ApiKeys, engine: object) -> None:
    view, secret = keys.create("ci", ["mcp", "docs.write", "mcp"], ["robot", "ops", "robot"])
    assert secret.startswith(KEY_PREFIX) and len(secret) > len(KEY_PREFIX) + 40
    assert view == KeyView(
        name="ci",
        hint=secret[: len(KEY_PREFIX) + 4],
        scopes=("mcp", "docs.write"),
        roles=("robot", "ops"),
        created_at=NOW,
        expires_at=None,
        last_used_at=None,
        revoked=False,
    )
    with engine.connect() as connection:  # type: ignore[attr-defined]
        row = connection.execute(select(AuthApiKey)).one()
    assert row.key_hash == digest(secret) and secret not in tuple(str(v) for v in row)
    assert keys.list() == [view]


@pytest.mark.parametrize("name", ["", "-ci", ".ci", "ci key", "c" * 101, "ci/x", "ci\n"])
def test_a_key_name_must_be_1_to_100_safe_characters(keys: ApiKeys, name: str) -> None:
    with pytest.raises(ValueError) as refused:
        keys.create(name, ["mcp"])
    assert str(refused.value) == "a key name is 1-100 of A-Z a-z 0-9 _ . - (starting with a letter or digit)"
    assert keys.list() == []


def test_the_longest_and_odd_but_allowed_names_are_accepted(keys: ApiKeys) -> None:
    for name in ("c" * 100, "9", "a_b.c-d"):
        keys.create(name, ["mcp"])
    assert [k.name for k in keys.list()] == sorted(["c" * 100, "9", "a_b.c-d"])


def test_a_taken_name_is_refused_even_after_revocation(keys: ApiKeys) -> None:
    keys.create("ci", ["mcp"])
    keys.revoke("ci")
    with pytest.raises(ValueError, match="a key named 'ci' already exists"):
        keys.create("ci", ["mcp"])


def test_a_key_is_its_principal_and_records_when_it_was_last_used(keys: ApiKeys, clock: Clock) -> None:
    _, secret = keys.create("ci", ["mcp"], ["robot"], days=2)
    clock.now += 60
    assert keys.lookup(secret) == Principal(
        subject="key:ci",
        kind="api_key",
        scopes=frozenset({"mcp"}),
        roles=frozenset({"robot"}),
        username=None,
        client_id=None,
        expires_at=NOW + 2 * 86_400,
    )
    assert keys.list()[0].last_used_at == NOW + 60
    assert keys.lookup(secret + "x") is None
    assert keys.lookup("") is None


def test_a_key_stops_at_its_expiry_to_the_second(keys: ApiKeys, clock: Clock) -> None:
    _, secret = keys.create("ci", ["mcp"], days=1)
    clock.now = NOW + 86_400 - 0.001
    assert keys.lookup(secret) is not None
    clock.now = NOW + 86_400
    assert keys.lookup(secret) is None
    assert keys.list()[0].last_used_at == NOW + 86_400 - 0.001  # a refused lookup records nothing


def test_a_key_without_days_never_expires(keys: ApiKeys, clock: Clock) -> None:
    _, secret = keys.create("ci", ["mcp"], days=0)
    assert keys.list()[0].expires_at is None
    clock.now += 10 * 365 * 86_400
    assert keys.lookup(secret) is not None


def test_a_revoked_key_stops_and_is_revoked_once(keys: ApiKeys, clock: Clock) -> None:
    _, secret = keys.create("ci", ["mcp"])
    _, other = keys.create("other", ["mcp"])
    assert keys.revoke("ci") is True
    assert keys.revoke("ci") is False
    assert keys.revoke("nobody") is False
    assert keys.lookup(secret) is None
    assert keys.lookup(other) is not None
    assert [(k.name, k.revoked) for k in keys.list()] == [("ci", True), ("other", False)]
