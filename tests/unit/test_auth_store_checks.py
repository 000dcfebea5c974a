"""API keys and grants on a real SQLite store, without an app: what is stored, when each credential stops
working (to the second), and what a replay or a revocation takes with it."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.support.clock import Clock

from patchbay.auth.clients import Client, Clients
from patchbay.auth.crypto import ACCESS_PREFIX, KEY_PREFIX, digest, new_secret, s256
from patchbay.auth.errors import OAuthError
from patchbay.auth.grants import AccessInfo, Grants, Lifetimes, Pending, TokenSet
from patchbay.auth.keys import ApiKeys, KeyView
from patchbay.auth.principal import Principal
from patchbay.auth.users import Users
from patchbay.store import create_engine, upgrade
from patchbay.store.models import AuthApiKey, AuthClient, AuthCode, AuthConsent, AuthRequest, AuthToken

NOW = 1_800_000_000.0


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[object]:
    made = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(made)
    yield made
    made.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def keys(engine: object, clock: Clock) -> ApiKeys:
    return ApiKeys(engine, clock)  # type: ignore[arg-type]


def test_a_secret_is_256_random_bits_in_43_url_safe_characters_behind_its_prefix() -> None:
    plain, tagged = new_secret(), new_secret(ACCESS_PREFIX)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", plain)
    assert tagged.startswith(ACCESS_PREFIX)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", tagged.removeprefix(ACCESS_PREFIX))
    assert new_secret() != plain


def test_a_secret_read_from_non_utf8_bytes_still_has_a_digest_of_its_own() -> None:
    # os.environ and sys.argv decode undecodable bytes to lone surrogates (PEP 383): a configured client secret
    # may hold one, and must not stop the server from starting.
    assert len(digest("pb_cs_\udcff")) == 64
    assert digest("pb_cs_\udcff") != digest("pb_cs_\udcfe")


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
    view, secret = keys.create("ci", ["mcp"], ["robot"], days=2)
    assert view.expires_at == NOW + 2 * 86_400 and keys.list()[0].expires_at == NOW + 2 * 86_400
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


# -- grants -------------------------------------------------------------------------------------------------------

MCP = "http://127.0.0.1:8000/mcp"
VERIFIER = "v" * 43
REDIRECT = "https://a.example/cb"
LIFE = Lifetimes(access=100, refresh=1000, code=10, request=50)


@pytest.fixture
def users(engine: object, clock: Clock) -> Users:
    return Users(engine, clock)  # type: ignore[arg-type]


@pytest.fixture
def grants(engine: object, clock: Clock) -> Grants:
    return Grants(engine, clock, LIFE)  # type: ignore[arg-type]


@pytest.fixture
def alice(users: Users) -> int:
    return users.add("alice", "correct horse battery", roles=("ops", "sales")).id


def pending(scope: str = "mcp", client_id: str = "app") -> Pending:
    return Pending(client_id, REDIRECT, "st", s256(VERIFIER), scope, MCP, csrf_hash="c" * 64)


def tokens(grants: Grants, user_id: int, scope: str = "mcp", refresh: bool = True) -> TokenSet:
    code = grants.issue_code(pending(scope), user_id)
    return grants.redeem_code(code, "app", REDIRECT, VERIFIER, MCP, refresh)


def grant_refused(call: Callable[[], object]) -> OAuthError:
    with pytest.raises(OAuthError) as refused:
        call()
    return refused.value


def rows(engine: object, model: type) -> list:  # type: ignore[type-arg]
    with engine.connect() as connection:  # type: ignore[attr-defined]
        return list(connection.execute(select(model)).all())


def test_a_pending_request_lives_for_its_lifetime_and_expired_ones_are_swept(
    grants: Grants, clock: Clock, engine: object, alice: int
) -> None:
    first = grants.open_request(pending())
    assert grants.request(first) == pending()
    clock.now = NOW + 49.999
    assert grants.request(first) == pending()
    grants.sign_in(first, alice)
    assert grants.request(first) == Pending(**{**_fields(pending()), "user_id": alice})
    clock.now = NOW + 50
    assert grants.request(first) is None
    second = grants.open_request(pending("other"))  # the first expired at NOW + 50, not before: kept
    assert len(rows(engine, AuthRequest)) == 2
    clock.now = NOW + 50.001
    grants.open_request(pending())
    assert [r.scope for r in rows(engine, AuthRequest)] == ["other", "mcp"]
    grants.close_request(second)
    assert grants.request(second) is None and len(rows(engine, AuthRequest)) == 1


def _fields(value: Pending) -> dict[str, object]:
    return {name: getattr(value, name) for name in Pending.__slots__}  # type: ignore[attr-defined]


def test_an_upstream_state_is_single_use_and_dies_with_its_request(grants: Grants, clock: Clock, alice: int) -> None:
    handle = grants.open_request(pending())
    grants.start_upstream(handle, "state-1", "verifier-1", "nonce-1")
    found = grants.upstream_request("state-1")
    assert found is not None
    id_hash, request, verifier, nonce = found
    assert id_hash == digest(handle) and request == pending() and (verifier, nonce) == ("verifier-1", "nonce-1")
    assert grants.upstream_request("state-1") is None
    grants.sign_in_by_hash(id_hash, alice)
    assert grants.request(handle) is not None and grants.request(handle).user_id == alice  # type: ignore[union-attr]
    grants.start_upstream(handle, "state-2", "verifier-2", "nonce-2")
    assert grants.upstream_request("nope") is None
    clock.now = NOW + 50
    assert grants.upstream_request("state-2") is None


@pytest.mark.parametrize(("verifier", "nonce"), [("", "n"), ("v", "")])
def test_an_upstream_request_without_its_verifier_or_nonce_is_not_found(
    grants: Grants, verifier: str, nonce: str
) -> None:
    handle = grants.open_request(pending())
    grants.start_upstream(handle, "state", verifier, nonce)
    assert grants.upstream_request("state") is None


def test_consent_covers_the_scopes_given_and_grows(grants: Grants, users: Users, alice: int) -> None:
    bob = users.add("bob", "correct horse battery").id
    assert not grants.consented(alice, "app", "mcp")
    grants.remember_consent(alice, "app", "mcp")
    assert grants.consented(alice, "app", "mcp") and grants.consented(alice, "app", "")
    assert not grants.consented(alice, "app", "mcp kb.read")
    assert not grants.consented(alice, "other", "mcp") and not grants.consented(bob, "app", "mcp")
    grants.remember_consent(alice, "app", "kb.read docs")
    assert grants.consented(alice, "app", "mcp kb.read docs")
    grants.remember_consent(alice, "other", "mcp")
    grants.remember_consent(bob, "app", "mcp")
    assert grants.forget_consent(alice, "other") == 1
    assert grants.consented(alice, "app", "mcp") and not grants.consented(alice, "other", "mcp")
    grants.remember_consent(alice, "other", "mcp")
    assert grants.forget_consent(alice) == 2
    assert not grants.consented(alice, "app", "mcp") and grants.consented(bob, "app", "mcp")


def test_remembered_scopes_are_stored_sorted_once(grants: Grants, engine: object, alice: int) -> None:
    grants.remember_consent(alice, "app", "mcp b")
    grants.remember_consent(alice, "app", "a mcp")
    assert [r.scope for r in rows(engine, AuthConsent)] == ["a b mcp"]


def test_a_code_is_redeemed_once_for_tokens_of_the_configured_lifetimes(
    grants: Grants, clock: Clock, engine: object, alice: int
) -> None:
    code = grants.issue_code(pending("mcp docs"), alice)
    (stored,) = rows(engine, AuthCode)
    assert stored.expires_at == NOW + 10 and stored.code_hash == digest(code) and len(stored.grant_id) == 32
    issued = grants.redeem_code(code, "app", None, VERIFIER, None, refresh=True)
    assert issued.expires_in == 100 and issued.scope == "mcp docs" and issued.refresh_token is not None
    assert issued.to_json() == {
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": 100,
        "scope": "mcp docs",
        "refresh_token": issued.refresh_token,
    }
    by_kind = {r.kind: r for r in rows(engine, AuthToken)}
    assert by_kind["access"].expires_at == NOW + 100 and by_kind["refresh"].expires_at == NOW + 1000
    assert by_kind["access"].token_hash == digest(issued.access_token)
    assert {r.grant_id for r in by_kind.values()} == {stored.grant_id}
    assert {(r.client_id, r.user_id, r.scope, r.resource, r.created_at) for r in by_kind.values()} == {
        ("app", alice, "mcp docs", MCP, NOW)
    }


def test_a_refresh_token_comes_only_for_the_refresh_grant_or_offline_access(grants: Grants, alice: int) -> None:
    plain = tokens(grants, alice, "mcp", refresh=False)
    assert plain.refresh_token is None and "refresh_token" not in plain.to_json()
    assert tokens(grants, alice, "mcp offline_access", refresh=False).refresh_token is not None


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            {"client_id": "other"},
            OAuthError("invalid_grant", "the authorization code is invalid or was issued to another client"),
        ),
        (
            {"code": "pb_ac_unknown"},
            OAuthError("invalid_grant", "the authorization code is invalid or was issued to another client"),
        ),
        (
            {"redirect_uri": REDIRECT + "/x"},
            OAuthError("invalid_grant", "redirect_uri differs from the one in the authorization request"),
        ),
        (
            {"verifier": "w" * 43},
            OAuthError("invalid_grant", "code_verifier does not match the code_challenge (PKCE S256)"),
        ),
        (
            {"resource": MCP + "/x"},
            OAuthError("invalid_target", "resource differs from the one in the authorization request"),
        ),
    ],
)
def test_a_code_redeemed_wrongly_is_refused_and_still_works(
    grants: Grants, alice: int, change: dict[str, str], error: OAuthError
) -> None:
    code = grants.issue_code(pending(), alice)
    asked = {"code": code, "client_id": "app", "redirect_uri": REDIRECT, "verifier": VERIFIER, "resource": MCP}
    assert grant_refused(lambda: grants.redeem_code(**{**asked, **change}, refresh=False)) == error
    assert grants.redeem_code(**asked, refresh=False).access_token


def test_a_code_expires_after_its_lifetime_to_the_second(grants: Grants, clock: Clock, alice: int) -> None:
    early, late = grants.issue_code(pending(), alice), grants.issue_code(pending(), alice)
    clock.now = NOW + 9.999
    assert grants.redeem_code(early, "app", None, VERIFIER, None, refresh=False)
    clock.now = NOW + 10
    refused = grant_refused(lambda: grants.redeem_code(late, "app", None, VERIFIER, None, refresh=False))
    assert refused == OAuthError("invalid_grant", "the authorization code has expired")


def test_a_replayed_code_revokes_every_token_of_its_grant_and_only_those(
    grants: Grants, engine: object, alice: int
) -> None:
    code = grants.issue_code(pending(), alice)
    first = grants.redeem_code(code, "app", None, VERIFIER, None, refresh=True)
    refreshed = grants.refresh(first.refresh_token or "", "app", None, None)
    bystander = tokens(grants, alice)
    replay = grant_refused(lambda: grants.redeem_code(code, "app", None, VERIFIER, None, refresh=True))
    assert replay == OAuthError("invalid_grant", "the authorization code was already used; its tokens are revoked")
    assert grants.access(first.access_token) is None and grants.access(refreshed.access_token) is None
    assert grants.access(bystander.access_token) is not None
    assert (
        grant_refused(lambda: grants.refresh(refreshed.refresh_token or "", "app", None, None)).error == "invalid_grant"
    )


def test_a_refresh_rotates_keeps_or_narrows_the_scopes_and_never_widens_them(
    grants: Grants, clock: Clock, engine: object, alice: int
) -> None:
    first = tokens(grants, alice, "mcp docs")
    clock.now += 5
    same = grants.refresh(first.refresh_token or "", "app", None, MCP)
    assert same.scope == "mcp docs" and same.refresh_token not in (None, first.refresh_token)
    assert same.expires_in == 100
    used = {r.token_hash: r.used_at for r in rows(engine, AuthToken)}
    assert used[digest(first.refresh_token or "")] == NOW + 5
    narrower = grants.refresh(same.refresh_token or "", "app", "docs", None)
    assert narrower.scope == "docs"
    wider = grant_refused(lambda: grants.refresh(narrower.refresh_token or "", "app", "docs mcp", None))
    assert wider == OAuthError("invalid_scope", "a refresh cannot add scopes that were not granted")
    other = grant_refused(lambda: grants.refresh(narrower.refresh_token or "", "app", None, MCP + "/x"))
    assert other == OAuthError("invalid_target", "resource differs from the one this grant was issued for")
    assert grants.refresh(narrower.refresh_token or "", "app", "docs", MCP).scope == "docs"


@pytest.mark.parametrize("token", ["access", "unknown", "other client"])
def test_only_the_clients_own_refresh_token_refreshes(grants: Grants, alice: int, token: str) -> None:
    issued = tokens(grants, alice)
    value = {"access": issued.access_token, "unknown": "pb_rt_x", "other client": issued.refresh_token or ""}
    client = "other" if token == "other client" else "app"
    refused = grant_refused(lambda: grants.refresh(value[token], client, None, None))
    assert refused == OAuthError("invalid_grant", "the refresh token is invalid or was issued to another client")
    assert grants.refresh(issued.refresh_token or "", "app", None, None).access_token


def test_a_refresh_token_expires_to_the_second_and_a_revoked_one_is_refused(
    grants: Grants, clock: Clock, alice: int
) -> None:
    early, late, revoked = tokens(grants, alice), tokens(grants, alice), tokens(grants, alice)
    assert grants.revoke(revoked.access_token, "app") is True
    assert grants.refresh(revoked.refresh_token or "", "app", None, None)  # revoking the access token alone
    clock.now = NOW + 999.999
    assert grants.refresh(early.refresh_token or "", "app", None, None)
    clock.now = NOW + 1000
    expired = OAuthError("invalid_grant", "the refresh token has expired or was revoked")
    assert grant_refused(lambda: grants.refresh(late.refresh_token or "", "app", None, None)) == expired


def test_a_reused_refresh_token_revokes_the_grant(grants: Grants, alice: int) -> None:
    first = tokens(grants, alice)
    second = grants.refresh(first.refresh_token or "", "app", None, None)
    reuse = grant_refused(lambda: grants.refresh(first.refresh_token or "", "app", None, None))
    assert reuse == OAuthError("invalid_grant", "the refresh token was already used; the grant is revoked")
    assert grants.access(second.access_token) is None
    revoked = OAuthError("invalid_grant", "the refresh token has expired or was revoked")
    assert grant_refused(lambda: grants.refresh(second.refresh_token or "", "app", None, None)) == revoked


def test_a_disabled_account_cannot_refresh_or_use_its_tokens(grants: Grants, users: Users, alice: int) -> None:
    issued = tokens(grants, alice)
    users.set_disabled("alice", True)
    disabled = OAuthError("invalid_grant", "the account behind this grant is disabled")
    assert grant_refused(lambda: grants.refresh(issued.refresh_token or "", "app", None, None)) == disabled
    assert grants.access(issued.access_token) is None
    info, active = grants.describe(issued.access_token) or (None, None)
    assert active is False and info is not None and info.username == "alice"


def test_an_access_token_describes_who_for_what_and_until_when(
    grants: Grants, clock: Clock, engine: object, alice: int
) -> None:
    clients = Clients(engine, clock)  # type: ignore[arg-type]
    clients.save(Client("app", "config", "The App", (REDIRECT,)))
    issued = tokens(grants, alice, "mcp docs")
    expected = AccessInfo(
        client_id="app",
        user_id=alice,
        username="alice",
        roles=frozenset({"ops", "sales"}),
        scope="mcp docs",
        resource=MCP,
        created_at=NOW,
        expires_at=NOW + 100,
        client_name="The App",
    )
    assert grants.access(issued.access_token) == expected
    assert grants.access(issued.refresh_token or "") is None
    assert grants.access("pb_at_unknown") is None
    clock.now = NOW + 99.999
    assert grants.access(issued.access_token) is not None
    clock.now = NOW + 100
    assert grants.access(issued.access_token) is None


def test_an_access_token_of_an_unregistered_client_has_no_client_name(grants: Grants, alice: int) -> None:
    info = grants.access(tokens(grants, alice).access_token)
    assert info is not None and info.client_name is None


def test_introspection_describes_both_kinds_and_says_which_are_active(grants: Grants, clock: Clock, alice: int) -> None:
    issued = tokens(grants, alice)
    access = grants.describe(issued.access_token)
    refresh = grants.describe(issued.refresh_token or "")
    assert access is not None and refresh is not None
    assert access == (
        AccessInfo("app", alice, "alice", frozenset({"ops", "sales"}), "mcp", MCP, NOW, NOW + 100, "access"),
        True,
    )
    assert refresh == (
        AccessInfo("app", alice, "alice", frozenset({"ops", "sales"}), "mcp", MCP, NOW, NOW + 1000, "refresh"),
        True,
    )
    assert grants.describe("pb_at_unknown") is None
    grants.refresh(issued.refresh_token or "", "app", None, None)
    assert grants.describe(issued.refresh_token or "") == (refresh[0], False)  # rotated: used
    assert grants.describe(issued.access_token) == access  # a used refresh token does not end its access token
    clock.now = NOW + 100
    assert grants.describe(issued.access_token) == (access[0], False)


def test_a_token_whose_account_was_deleted_by_hand_is_described_inactive_and_nobody(
    grants: Grants, tmp_path: Path, alice: int
) -> None:
    issued = tokens(grants, alice)
    # The sqlite3 shell leaves foreign keys off by default, so an operator's DELETE keeps the account's tokens.
    shell = sqlite3.connect(tmp_path / "store.db")
    with shell:
        shell.execute("DELETE FROM auth_users WHERE id = ?", (alice,))
    shell.close()
    assert grants.access(issued.access_token) is None
    described = grants.describe(issued.access_token)
    assert described == (AccessInfo("app", alice, "", frozenset(), "mcp", MCP, NOW, NOW + 100, "access"), False)


def test_revoking_a_refresh_token_revokes_its_grant_and_an_access_token_only_itself(
    grants: Grants, clock: Clock, engine: object, alice: int
) -> None:
    one, two, three = tokens(grants, alice), tokens(grants, alice), tokens(grants, alice)
    assert grants.revoke(one.refresh_token or "", "other") is False
    assert grants.revoke("pb_rt_unknown", "app") is False
    assert grants.access(one.access_token) is not None
    assert grants.revoke(one.refresh_token or "", "app") is True
    assert grants.access(one.access_token) is None
    clock.now += 7
    assert grants.revoke(two.access_token, "app") is True
    clock.now += 7
    assert grants.revoke(two.access_token, "app") is True  # again: still revoked, at the first time
    revoked = {r.token_hash: r.revoked_at for r in rows(engine, AuthToken)}
    assert revoked[digest(two.access_token)] == NOW + 7
    assert revoked[digest(two.refresh_token or "")] is None
    assert grants.access(three.access_token) is not None


def test_revoking_a_grant_keeps_the_time_a_token_of_it_was_first_revoked(
    grants: Grants, clock: Clock, engine: object, alice: int
) -> None:
    issued = tokens(grants, alice)
    clock.now += 7
    assert grants.revoke(issued.access_token, "app") is True
    clock.now += 7
    assert grants.revoke(issued.refresh_token or "", "app") is True  # the whole grant, the access token again
    revoked = {r.token_hash: r.revoked_at for r in rows(engine, AuthToken)}
    assert revoked[digest(issued.access_token)] == NOW + 7
    assert revoked[digest(issued.refresh_token or "")] == NOW + 14


def test_revoking_a_user_or_a_client_counts_what_was_still_live(
    grants: Grants, users: Users, engine: object, alice: int
) -> None:
    bob = users.add("bob", "correct horse battery").id
    tokens(grants, alice)
    tokens(grants, alice, refresh=False)
    kept = tokens(grants, bob)
    assert grants.grants_of([alice]) == 2
    assert grants.grants_of([alice, bob]) == 3
    assert grants.revoke_user(alice) == 3
    assert grants.revoke_user(alice) == 0
    assert grants.grants_of([alice]) == 0
    assert grants.access(kept.access_token) is not None
    assert grants.revoke_client("other") == 0
    assert grants.revoke_client("app") == 2
    assert grants.access(kept.access_token) is None
    assert grants.grants_of([bob]) == 0


def test_a_client_is_revoked_once_at_the_time_it_was_revoked(engine: object, clock: Clock) -> None:
    clients = Clients(engine, clock)  # type: ignore[arg-type]
    clients.save(Client("app", "config", "The App", (REDIRECT,)))
    assert clients.revoke("nobody") is False
    clock.now = NOW + 5
    assert clients.revoke("app") is True
    clock.now = NOW + 9
    assert clients.revoke("app") is False  # already revoked: keeps the first time
    with engine.connect() as connection:  # type: ignore[attr-defined]
        assert connection.execute(select(AuthClient.revoked_at)).scalar_one() == NOW + 5
    revoked = clients.get("app")
    assert revoked is not None and revoked.revoked


def test_deleting_clients_removes_exactly_those_named(engine: object, clock: Clock) -> None:
    clients = Clients(engine, clock)  # type: ignore[arg-type]
    for name in ("a", "b", "c"):
        clients.save(Client(name, "dcr", name, (REDIRECT,)))
    clients.delete(["a", "c", "unknown"])
    assert [c.client_id for c in clients.list()] == ["b"]


def test_clients_are_listed_oldest_first_whatever_order_they_were_saved_in(engine: object, clock: Clock) -> None:
    clients = Clients(engine, clock)  # type: ignore[arg-type]
    clients.save(Client("late", "config", "Late", (REDIRECT,), created_at=NOW + 10))
    clients.save(Client("early", "config", "Early", (REDIRECT,), created_at=NOW + 1))
    assert [c.client_id for c in clients.list()] == ["early", "late"]


def test_a_saved_client_reads_back_as_saved_and_a_second_save_keeps_its_creation_and_last_use(
    engine: object, clock: Clock
) -> None:
    clients = Clients(engine, clock)  # type: ignore[arg-type]
    assert clients.get("app") is None
    first = Client(
        "app",
        "cimd",
        "N" * 250,
        (REDIRECT, "http://127.0.0.1/cb"),
        auth_method="client_secret_post",
        secret_hash="ab" * 32,
        scopes=frozenset({"mcp", "docs.read"}),
        grant_types=("authorization_code",),
        metadata={"logo_uri": "https://a.example/logo.png"},
    )
    saved = clients.save(first)
    expected = Client(
        "app",
        "cimd",
        "N" * 200,
        (REDIRECT, "http://127.0.0.1/cb"),
        "client_secret_post",
        "ab" * 32,
        frozenset({"mcp", "docs.read"}),
        ("authorization_code",),
        revoked=False,
        created_at=NOW,
        last_used_at=None,
    )
    stored = {"logo_uri": "https://a.example/logo.png", "grant_types": ["authorization_code"]}
    assert saved == expected and saved.metadata == stored
    fetched = clients.get("app")
    assert fetched == expected and fetched is not None and fetched.metadata == stored
    with engine.connect() as connection:  # type: ignore[attr-defined]
        row = connection.execute(select(AuthClient)).one()
    assert row.scope == "docs.read mcp" and row.revoked_at is None
    clock.now = NOW + 3
    clients.touch("app")
    clients.touch("nobody")
    clock.now = NOW + 7
    again = clients.save(Client("app", "cimd", "Renamed", (REDIRECT,), revoked=True, created_at=NOW + 5))
    assert again.created_at == NOW and again.last_used_at == NOW + 3 and again.revoked
    assert again.scopes is None and again.secret_hash is None and again.auth_method == "none"
    assert again.grant_types == ("authorization_code", "refresh_token") and again.name == "Renamed"
    assert clients.get("app") == again
    with engine.connect() as connection:  # type: ignore[attr-defined]
        assert connection.execute(select(AuthClient.revoked_at, AuthClient.scope)).one() == (NOW + 7, None)


def test_a_client_saved_with_its_creation_time_keeps_it(engine: object, clock: Clock) -> None:
    clients = Clients(engine, clock)  # type: ignore[arg-type]
    assert clients.save(Client("app", "config", "App", (REDIRECT,), created_at=NOW - 60)).created_at == NOW - 60
    assert clients.save(Client("new", "config", "New", (REDIRECT,))).created_at == NOW


def test_only_registrations_never_used_and_older_than_the_age_are_pruned(engine: object, clock: Clock) -> None:
    clients = Clients(engine, clock)  # type: ignore[arg-type]
    for client_id, kind, age in [
        ("old", "dcr", 100),
        ("old-2", "dcr", 51),
        ("at-the-age", "dcr", 50),
        ("young", "dcr", 10),
        ("used", "dcr", 100),
        ("configured", "config", 100),
        ("https://a.example/client.json", "cimd", 100),
    ]:
        clients.save(Client(client_id, kind, client_id, (REDIRECT,), created_at=NOW - age))  # type: ignore[arg-type]
    clients.touch("used")
    assert clients.prune_unused(50) == 2
    left = {c.client_id for c in clients.list()}
    assert left == {"at-the-age", "young", "used", "configured", "https://a.example/client.json"}
    assert clients.prune_unused(50) == 0


def test_a_client_saved_without_grant_types_reads_back_with_the_default_pair(engine: object, clock: Clock) -> None:
    # A metadata document listing only grant types Patchbay does not offer is stored with none of them.
    clients = Clients(engine, clock)  # type: ignore[arg-type]
    assert clients.save(Client("app", "cimd", "App", (REDIRECT,), grant_types=())).grant_types == (
        "authorization_code",
        "refresh_token",
    )
    stored = clients.get("app")
    assert stored is not None and stored.grant_types == ("authorization_code", "refresh_token")
