"""Revocation takes effect on the next request, whoever revokes: this server, the CLI in another process, or SQL.

Each end-to-end case first uses the credential (so the server has verified and cached it), then revokes it, then
sends the very next request through the real /mcp path and expects 401. Nothing clears a cache by hand.
"""

from __future__ import annotations

import mmap
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from fixtures.authflow import ACCEPT, TOOLS, Flow, add_user, call, client_for, running
from sqlalchemy import Engine, text
from tests.support.revocation import HARMLESS, REVOKING, generation, seed

from patchbay.auth.core import TokenCache
from patchbay.auth.epoch import EngineEpoch, SqliteFileEpoch, epoch_for
from patchbay.auth.principal import Principal
from patchbay.store import create_engine, upgrade

pytestmark = pytest.mark.anyio

LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
PRINCIPAL = Principal("key:ci", "api_key", frozenset({"mcp"}), frozenset(), None, None, None)


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    made = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(made)
    yield made
    made.dispose()


@pytest.mark.parametrize("change", REVOKING)
def test_every_revoking_change_raises_the_generation(engine: Engine, change: str) -> None:
    seeded = seed(engine)
    before = generation(engine)
    REVOKING[change](seeded)
    assert generation(engine) > before


@pytest.mark.parametrize("change", HARMLESS)
def test_writes_that_revoke_nothing_leave_the_generation_alone(engine: Engine, change: str) -> None:
    seeded = seed(engine)
    before = generation(engine)
    HARMLESS[change](seeded)
    assert generation(engine) == before


def test_a_principal_verified_before_a_revocation_is_not_cached_after_it() -> None:
    cache = TokenCache()
    assert cache.get("k", 0.0, 1) is None
    cache.put("k", PRINCIPAL, 100.0, 1)
    assert cache.get("k", 0.0, 1) is PRINCIPAL
    assert cache.get("k", 0.0, 2) is None  # something was revoked: the whole cache goes
    cache.put("k", PRINCIPAL, 100.0, 1)  # verified under generation 1, stored after 2 was seen
    assert cache.get("k", 0.0, 2) is None
    cache.put("k", PRINCIPAL, 100.0, None)  # the generation could not be read: never cached
    assert cache.get("k", 0.0, None) is None


async def test_the_request_path_trusts_a_remembered_generation_only_while_the_store_shows_no_commit(
    engine: Engine, tmp_path: Path
) -> None:
    seeded = seed(engine)
    epoch = SqliteFileEpoch(str(tmp_path / "store.db"))
    try:
        assert epoch.unchanged() is None  # nothing read yet
        read = await epoch.current()
        assert read == generation(engine)
        assert epoch.unchanged() == read
        HARMLESS[next(iter(HARMLESS))](seeded)  # any commit, even one that revokes nothing
        assert epoch.unchanged() is None
        assert await epoch.current() == read
        REVOKING[next(iter(REVOKING))](seeded)
        assert epoch.unchanged() is None
        assert await epoch.current() == generation(engine) > read  # type: ignore[operator]
    finally:
        epoch.close()


@pytest.mark.parametrize("error", [OSError(19, "No such device"), ValueError("cannot mmap an empty file")])
async def test_a_store_whose_wal_index_cannot_be_mapped_is_read_on_every_request(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    # A file system without mmap (OSError), or a -shm file found empty (ValueError): no commit can be seen
    # cheaply, so nothing remembered is trusted and each request reads the generation.
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr("patchbay.auth.epoch.mmap", SimpleNamespace(mmap=refuse, ACCESS_READ=mmap.ACCESS_READ))
    seeded = seed(engine)
    epoch = SqliteFileEpoch(str(tmp_path / "store.db"))
    try:
        read = await epoch.current()
        assert read == generation(engine)
        assert epoch.unchanged() is None
        REVOKING[next(iter(REVOKING))](seeded)
        assert await epoch.current() == generation(engine) > read  # type: ignore[operator]
        assert epoch.unchanged() is None
    finally:
        epoch.close()


def _wal_files(path: str) -> list[str]:
    return [suffix for suffix in ("-wal", "-shm") if Path(path + suffix).exists()]


async def test_a_closed_reader_vouches_for_nothing_lets_go_of_the_store_and_opens_again_on_next_use(
    engine: Engine, tmp_path: Path
) -> None:
    seed(engine)
    path = str(tmp_path / "store.db")
    epoch = SqliteFileEpoch(path)
    try:
        read = await epoch.current()
        assert read is not None and epoch.unchanged() == read
        epoch.close()
        assert epoch.unchanged() is None
        engine.dispose()  # with the reader closed too, no connection is left: SQLite checkpoints and drops the WAL
        assert _wal_files(path) == []
        assert await epoch.current() == read == generation(engine)
        assert epoch.unchanged() == read
    finally:
        epoch.close()


async def test_a_sqlite_file_whose_generation_row_was_deleted_by_hand_trusts_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    seed(engine)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM auth_revocation_epoch"))
    epoch = SqliteFileEpoch(str(tmp_path / "store.db"))
    try:
        assert await epoch.current() is None
        assert epoch.unchanged() is None
        assert await epoch.current() is None
    finally:
        epoch.close()


async def test_an_engine_epoch_reads_the_generation_on_every_request_and_none_before_migration(
    engine: Engine, tmp_path: Path
) -> None:
    seeded = seed(engine)
    epoch = EngineEpoch(engine)
    read = await epoch.current()
    assert read == generation(engine) and epoch.unchanged() is None
    REVOKING[next(iter(REVOKING))](seeded)
    assert epoch.unchanged() is None
    assert await epoch.current() == generation(engine) > read  # type: ignore[operator]
    epoch.close()  # the engine is the caller's: still usable
    assert await epoch.current() == generation(engine)
    with engine.begin() as connection:  # a store whose generation row was deleted by hand: nothing is trusted
        connection.execute(text("DELETE FROM auth_revocation_epoch"))
    assert await epoch.current() is None
    bare = create_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    try:
        assert await EngineEpoch(bare).current() is None
        assert await SqliteFileEpoch(str(tmp_path / "bare.db")).current() is None
    finally:
        bare.dispose()


def test_a_sqlite_file_gets_the_file_reader_and_an_in_memory_store_the_engine_reader(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    file = create_engine(f"sqlite:///{path}")
    urls = (
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///m.db?mode=memory&uri=true",
        "sqlite:///file:store.db?uri=true",
    )
    memory = [create_engine(url) for url in urls]
    try:
        chosen = epoch_for(file)
        assert isinstance(chosen, SqliteFileEpoch) and chosen.path == path
        for engine in memory:
            reader = epoch_for(engine)
            assert isinstance(reader, EngineEpoch) and reader.engine is engine, engine.url
    finally:
        for engine in (file, *memory):
            engine.dispose()


async def test_the_same_key_written_differently_is_the_same_caller(tmp_path: Path) -> None:
    # The verified-token cache is keyed by the header as sent: each spelling is verified once, then remembered.
    async with running(tmp_path) as app, client_for(app) as http:
        _, secret = app.runtime.auth.core.keys.create("ci", ["mcp"])
        for header in (f"Bearer {secret}", f"bearer  {secret} ", f"Bearer {secret}"):
            answer = await http.post("/mcp", json=LIST, headers={**ACCEPT, "Authorization": header})
            assert answer.status_code == 200, (header, answer.text)
        app.runtime.auth.core.keys.revoke("ci")
        for header in (f"Bearer {secret}", f"bearer  {secret} "):
            answer = await http.post("/mcp", json=LIST, headers={**ACCEPT, "Authorization": header})
            assert answer.status_code == 401


async def test_a_cached_key_is_not_looked_up_again_until_something_is_revoked(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        core = app.runtime.auth.core
        _, secret = core.keys.create("ci", ["mcp"])
        _, other = core.keys.create("other", ["mcp"])
        lookups: list[str] = []
        real = core.keys.lookup

        def counting(token: str) -> Principal | None:
            lookups.append(token)
            return real(token)

        core.keys.lookup = counting
        for _ in range(3):
            assert (await call(http, secret, "tools/list")).status_code == 200
        assert lookups == [secret]
        core.keys.revoke("other")
        assert (await call(http, secret, "tools/list")).status_code == 200
        assert lookups == [secret, secret]
        assert (await call(http, other, "tools/list")).status_code == 401


async def test_revoking_an_access_token_at_the_revocation_endpoint_refuses_its_next_request(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register("none")
        tokens = await flow.tokens()
        assert (await call(http, tokens["access_token"], "tools/list")).status_code == 200
        done = await http.post("/revoke", data={"token": tokens["access_token"], "client_id": flow.client_id})
        assert done.status_code == 200
        assert (await call(http, tokens["access_token"], "tools/list")).status_code == 401


def _write_config(tmp_path: Path) -> Path:
    config = tmp_path / "patchbay.toml"
    config.write_text(
        f"""
[server]
name = "Patchbay test"

[store]
url = "sqlite:///{tmp_path / "auth.db"}"

[auth]
mode = "oauth"

[[connectors]]
name = "t"
type = "python"
path = "{TOOLS}"
prefix = ""
""",
        encoding="utf-8",
    )
    return config


Command = Callable[[str], list[str]]
CLI_REVOCATIONS: dict[str, tuple[str, Command]] = {
    "keys revoke": ("key", lambda client_id: ["keys", "revoke", "ci"]),
    "tokens revoke": ("oauth", lambda client_id: ["tokens", "revoke", "--user", "alice"]),
    "clients revoke": ("oauth", lambda client_id: ["clients", "revoke", client_id]),
    "users disable": ("oauth", lambda client_id: ["users", "disable", "alice"]),
}


@pytest.mark.parametrize("command", CLI_REVOCATIONS)
async def test_a_revocation_by_the_cli_in_another_process_refuses_the_next_request(
    tmp_path: Path, command: str
) -> None:
    config = _write_config(tmp_path)
    credential, argv = CLI_REVOCATIONS[command]
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register("none")
        if credential == "key":
            _, token = app.runtime.auth.core.keys.create("ci", ["mcp"])
        else:
            token = (await flow.tokens())["access_token"]
        for _ in range(2):  # the second answer comes from the verified-token cache
            assert (await call(http, token, "tools/list")).status_code == 200
        done = await anyio.run_process(
            [sys.executable, "-m", "patchbay", *argv(flow.client_id), "-c", str(config)], check=False
        )
        assert done.returncode == 0, done.stderr.decode()
        refused = await call(http, token, "tools/list")
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


async def test_the_revocation_endpoint_answers_every_token_alike_and_audits_without_it(tmp_path: Path) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    async with running(tmp_path) as app, client_for(app) as http:
        core = app.runtime.auth.core
        core.audit = lambda method, **fields: events.append((method, fields))
        await add_user(app)
        flow = Flow(http)
        await flow.register("none")
        tokens = await flow.tokens()
        other = Flow(http)
        await other.register("none")
        # RFC 7009 §2.2: someone else's token or an unknown one gets the same 200, and stays valid.
        foreign = await http.post("/revoke", data={"token": tokens["access_token"], "client_id": other.client_id})
        unknown = await http.post("/revoke", data={"token": "pb_at_nobody", "client_id": flow.client_id})
        assert (await call(http, tokens["access_token"], "tools/list")).status_code == 200
        empty = await http.post("/revoke", data={"token": "", "client_id": flow.client_id})
        mine = await http.post("/revoke", data={"token": tokens["access_token"], "client_id": flow.client_id})
        assert (await call(http, tokens["access_token"], "tools/list")).status_code == 401
    for answer in (foreign, unknown, mine):
        assert answer.status_code == 200 and answer.content == b""
        assert answer.headers["cache-control"] == "no-store" and answer.headers["access-control-allow-origin"] == "*"
    assert empty.status_code == 400 and empty.json() == {
        "error": "invalid_request",
        "error_description": "send the token to revoke in the token parameter",
    }
    revoked = [(m, f) for m, f in events if m == "auth.token_revoked"]
    assert revoked == [
        ("auth.token_revoked", {"client_id": other.client_id, "outcome": "ok"}),
        ("auth.token_revoked", {"client_id": flow.client_id, "outcome": "ok"}),
        ("auth.token_revoked", {"client_id": flow.client_id, "outcome": "ok"}),
    ]


async def test_a_revocation_form_holds_at_most_twenty_fields(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        flow = Flow(http)
        await flow.register("none")
        fields = {"token": "pb_at_x", "client_id": flow.client_id} | {f"x{i}": "1" for i in range(18)}
        twenty = await http.post("/revoke", data=fields)
        twenty_one = await http.post("/revoke", data={**fields, "x18": "1"})
    assert twenty.status_code == 200
    assert (
        twenty_one.status_code == 400 and twenty_one.json()["error_description"] == "the form has more than 20 fields"
    )
