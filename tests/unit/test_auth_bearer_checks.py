"""The resource server's checks (``Authenticator``) on a real SQLite store, without an app: the exact challenges,
the Bearer parsing, what each kind of token becomes, and what the verified-token cache keeps and for how long."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.authflow import MCP, settings

from patchbay.auth.bearer import ANONYMOUS_METHODS, Authenticator
from patchbay.auth.clients import Client
from patchbay.auth.core import CACHE_SECONDS, AuthConfig, Core, TokenCache
from patchbay.auth.crypto import s256
from patchbay.auth.grants import Pending
from patchbay.auth.principal import Principal, Rejection
from patchbay.store import create_engine, upgrade

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0
PRM = "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"
VERIFIER = "v" * 43
BEARER_ONLY = "Use the Bearer scheme: Authorization: Bearer <token>"
INVALID = "The access token is invalid, expired, revoked or was issued for another server"


@pytest.fixture
def make_core(tmp_path: Path) -> Iterator[Any]:
    made: list[Core] = []

    def make(**auth: Any) -> Core:
        config = AuthConfig.from_settings(settings(tmp_path, auth=auth))
        engine = create_engine(f"sqlite:///{tmp_path / f'store{len(made)}.db'}")
        upgrade(engine)
        core = Core(config, engine, clock=lambda: NOW)
        made.append(core)
        return core

    yield make
    for core in made:
        core.close()


def own(core: Core, **kw: Any) -> Authenticator:
    return Authenticator(core, own_tokens=kw.pop("own_tokens", True), api_keys=kw.pop("api_keys", True), **kw)


def access_token(core: Core, scope: str = "mcp") -> str:
    user = core.users.add("alice", "correct horse battery", roles=("sales", "ops"))
    core.clients.save(Client(client_id="app-1", kind="config", name="The App", redirect_uris=("https://a.example/cb",)))
    pending = Pending("app-1", "https://a.example/cb", None, s256(VERIFIER), scope, MCP)
    code = core.grants.issue_code(pending, user.id)
    return core.grants.redeem_code(code, "app-1", None, VERIFIER, None, refresh=False).access_token


def test_the_oauth_challenge_points_at_the_metadata_and_names_the_default_scopes(make_core: Any) -> None:
    core = make_core(scopes_supported=["mcp", "kb.read"], default_scopes=["mcp", "kb.read"])
    auth = own(core)
    assert auth.challenge() == f'Bearer resource_metadata="{PRM}", scope="mcp kb.read"'
    assert auth.challenge("invalid_token", "no good") == (
        f'Bearer resource_metadata="{PRM}", scope="mcp kb.read", error="invalid_token", error_description="no good"'
    )
    assert auth.challenge("insufficient_scope", scope="x") == (
        f'Bearer resource_metadata="{PRM}", scope="x", error="insufficient_scope"'
    )
    assert auth.challenge(scope="") == f'Bearer resource_metadata="{PRM}"'


def test_quotes_and_backslashes_are_escaped_in_the_challenge(make_core: Any) -> None:
    auth = own(make_core())
    challenge = auth.challenge("invalid_token", 'say "no" \\ twice', scope='a"b\\c')
    assert challenge == (
        f'Bearer resource_metadata="{PRM}", scope="a\\"b\\\\c", error="invalid_token", '
        'error_description="say \\"no\\" \\\\ twice"'
    )


def test_an_api_key_server_answers_with_a_plain_realm(make_core: Any) -> None:
    auth = own(make_core(mode="api_key"))
    assert auth.challenge() == 'Bearer realm="patchbay"'
    assert auth.challenge("invalid_token", "d", "ignored") == (
        'Bearer realm="patchbay", error="invalid_token", error_description="d"'
    )
    assert auth.missing() == Rejection(
        401, 'Bearer realm="patchbay"', "Authentication required: send Authorization: Bearer <token>"
    )


def test_an_external_server_points_at_its_metadata_too(make_core: Any) -> None:
    core = make_core(mode="external", external={"issuer": "https://idp.example"})
    assert own(core).challenge() == f'Bearer resource_metadata="{PRM}", scope="mcp"'


async def test_no_header_is_no_principal_and_not_a_refusal(make_core: Any) -> None:
    assert await own(make_core()).authenticate(None) is None


@pytest.mark.parametrize("header", [b"Basic abc", b"Bearer", b"Bearer    ", b"Token pb_key_x", b"", b"Bearerpb_key_x"])
async def test_a_header_that_is_not_a_bearer_token_is_refused(make_core: Any, header: bytes) -> None:
    auth = own(make_core())
    assert await auth.authenticate(header) == Rejection(401, auth.challenge("invalid_token", BEARER_ONLY), BEARER_ONLY)


async def test_an_unknown_token_is_invalid_and_not_cached(make_core: Any) -> None:
    core = make_core()
    auth = own(core)
    for token in ("pb_at_unknown", "pb_key_unknown", "something-else"):
        answer = await auth.authenticate(f"Bearer {token}".encode())
        assert answer == Rejection(401, auth.challenge("invalid_token", INVALID), INVALID)
    assert core.cache.entries == {}


async def test_an_api_key_in_any_spelling_of_the_header_is_its_principal(make_core: Any) -> None:
    core = make_core()
    _, secret = core.keys.create("ci", ["mcp", "docs.write"], ["robot"])
    expected = Principal("key:ci", "api_key", frozenset({"mcp", "docs.write"}), frozenset({"robot"}))
    for header in (f"Bearer {secret}", f"  bearer   {secret}  ", f"BEARER {secret}"):
        assert await own(core).authenticate(header.encode()) == expected


async def test_an_access_token_becomes_the_users_principal(make_core: Any) -> None:
    core = make_core()
    token = access_token(core)
    principal = await own(core).authenticate(f"Bearer {token}".encode())
    assert principal == Principal(
        subject="user:alice",
        kind="user",
        scopes=frozenset({"mcp"}),
        roles=frozenset({"sales", "ops"}),
        username="alice",
        client_id="app-1",
        expires_at=NOW + 3600,
        client_name="The App",
    )


async def test_an_access_token_for_another_resource_is_invalid(make_core: Any) -> None:
    core = make_core()
    token = access_token(core)
    core.config = dataclasses.replace(core.config, resource="https://other.example/mcp")
    assert await own(core).verify(token) is None


async def test_each_kind_of_token_is_accepted_only_when_the_server_takes_it(make_core: Any) -> None:
    core = make_core()
    token = access_token(core)
    _, key = core.keys.create("ci", ["mcp"])
    assert await own(core, own_tokens=False).verify(token) is None
    assert await own(core, api_keys=False).verify(key) is None
    assert (await own(core).verify(token)) is not None
    assert (await own(core).verify(key)) is not None


async def test_an_external_verifier_gets_every_token_this_server_does_not_take_itself(make_core: Any) -> None:
    core = make_core()
    seen: list[str] = []
    theirs = Principal("idp-user", "external")

    async def external(token: str) -> Principal | None:
        seen.append(token)
        return theirs

    auth = own(core, own_tokens=False, api_keys=False, external=external)
    assert await auth.verify("pb_at_x") is theirs
    assert await auth.verify("pb_key_x") is theirs
    assert await auth.verify("eyJ.jwt") is theirs
    assert seen == ["pb_at_x", "pb_key_x", "eyJ.jwt"]


async def test_a_verified_header_is_cached_for_ten_seconds_under_the_generation_read_first(make_core: Any) -> None:
    core = make_core()
    _, secret = core.keys.create("ci", ["mcp"])
    header = f"Bearer {secret}".encode()
    auth = own(core)
    principal = await auth.authenticate(header)
    assert core.cache.entries == {header: (principal, NOW + CACHE_SECONDS)}
    lookups: list[str] = []
    core.keys.lookup = lambda token: lookups.append(token)  # type: ignore[assignment, func-returns-value]
    assert await auth.authenticate(header) == principal
    assert lookups == []


async def test_a_key_expiring_sooner_is_cached_only_until_it_expires(make_core: Any) -> None:
    core = make_core()
    _, secret = core.keys.create("ci", ["mcp"], days=4 / 86_400)
    header = f"Bearer {secret}".encode()
    principal = await own(core).authenticate(header)
    assert isinstance(principal, Principal)
    assert core.cache.entries == {header: (principal, NOW + 4)}


async def test_a_token_without_the_required_scopes_is_403_naming_what_to_ask_for(make_core: Any) -> None:
    core = make_core(scopes_supported=["mcp", "admin", "audit"], required_scopes=["admin", "audit"])
    _, weak = core.keys.create("weak", ["mcp", "audit"])
    _, strong = core.keys.create("strong", ["admin", "audit"])
    auth = own(core)
    for _ in range(2):  # verified, then from the cache: the scope check applies to both
        refused = await auth.authenticate(f"Bearer {weak}".encode())
        description = "This server needs the scopes: admin audit"
        assert isinstance(refused, Rejection)
        assert refused.status == 403 and refused.message == description
        assert refused.challenge.startswith(
            f'Bearer resource_metadata="{PRM}", scope="admin audit mcp", error="insufficient_scope", '
        )
        assert refused.challenge.endswith(f'error_description="{description}"')
        assert isinstance(await auth.authenticate(f"Bearer {strong}".encode()), Principal)


@pytest.mark.parametrize("method", sorted(ANONYMOUS_METHODS))
def test_an_anonymous_caller_may_discover_and_call_tools_only_when_some_are_public(make_core: Any, method: str) -> None:
    core = make_core()
    assert own(core, has_public_tools=lambda: True).anonymous_allowed(method)
    assert not own(core, has_public_tools=lambda: False).anonymous_allowed(method)
    assert not own(core).anonymous_allowed(method)


def test_the_anonymous_methods_are_these(make_core: Any) -> None:
    assert {"initialize", "ping", "server/discover", "tools/list", "tools/call"} == ANONYMOUS_METHODS
    assert not own(make_core(), has_public_tools=lambda: True).anonymous_allowed("resources/list")


async def test_a_cached_header_is_trusted_until_its_deadline_and_not_at_it(make_core: Any) -> None:
    now = [NOW]
    core = make_core()
    core.clock = lambda: now[0]
    _, secret = core.keys.create("ci", ["mcp"])
    header = f"Bearer {secret}".encode()
    auth = own(core)
    principal = await auth.authenticate(header)
    lookups: list[str] = []
    lookup = core.keys.lookup
    core.keys.lookup = lambda token: lookups.append(token) or lookup(token)  # type: ignore[assignment, func-returns-value]
    now[0] = NOW + CACHE_SECONDS - 0.5
    assert await auth.authenticate(header) == principal and lookups == []
    now[0] = NOW + CACHE_SECONDS
    assert await auth.authenticate(header) == principal and lookups == [secret]


def test_a_full_cache_is_emptied_before_it_takes_one_more() -> None:
    cache = TokenCache(size=2)
    assert cache.get(b"a", NOW, 7) is None  # the first read adopts the store's generation
    who = Principal("key:ci", "api_key")
    for key in (b"a", b"b", b"c"):
        cache.put(key, who, NOW + 10, 7)
    assert cache.entries == {b"c": (who, NOW + 10)}


@pytest.mark.parametrize(
    ("value", "same"),
    [
        ("https://mcp.example.com/mcp", True),
        ("https://mcp.example.com/mcp/", True),
        (" HTTPS://MCP.Example.COM/mcp ", True),
        ("https://mcp.example.com", True),  # the bare origin, as in OpenAI's examples
        ("https://MCP.example.com/", True),
        ("https://mcp.example.com/MCP", False),  # the path is compared exactly
        ("https://mcp.example.com/mcp/X", False),
        ("http://mcp.example.com/mcp", False),
        ("https://mcp.example.com.evil.example/mcp", False),
        ("https://other.example/mcp", False),
    ],
)
def test_the_resource_is_this_servers_mcp_url_up_to_a_trailing_slash_and_the_case_of_scheme_and_host(
    tmp_path: Path, value: str, same: bool
) -> None:
    base = settings(tmp_path)
    public = base.model_copy(
        update={"server": base.server.model_copy(update={"public_url": "https://mcp.example.com"})}
    )
    assert AuthConfig.from_settings(public).resource_matches(value) is same


async def test_a_closed_core_lets_go_of_the_store_and_trusts_no_generation_it_read_before(make_core: Any) -> None:
    core = make_core()
    read = await core.generation()
    assert read is not None and core.known_generation() == read  # no commit since: answered from the -shm header
    core.close()
    assert core.known_generation() is None
