"""Revocation on a PostgreSQL store: the same triggers as on SQLite, and a server whose cache obeys them.

The store is a real throwaway cluster (tests/support/postgres.py); the revocation is made through a second engine,
as the CLI or another replica would.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from patchbay.app import create_app
from patchbay.auth.keys import ApiKeys
from patchbay.settings import from_dict
from patchbay.store import create_engine, upgrade
from tests.support.postgres import PostgresServer
from tests.support.revocation import HARMLESS, REVOKING, generation, seed
from tests.unit.fixtures.authflow import TOOLS, call, client_for

pytestmark = pytest.mark.e2e
_numbers = itertools.count()


@pytest.fixture
def store(pg: PostgresServer) -> Iterator[tuple[str, Engine]]:
    name = f"store{next(_numbers)}"
    pg.execute(f"CREATE DATABASE {name}")
    url = pg.url(name)
    engine = create_engine(url)
    upgrade(engine)
    yield url, engine
    engine.dispose()


@pytest.mark.parametrize("change", REVOKING)
def test_every_revoking_change_raises_the_generation_on_postgresql(store: tuple[str, Engine], change: str) -> None:
    _, engine = store
    seeded = seed(engine)
    before = generation(engine)
    REVOKING[change](seeded)
    assert generation(engine) > before


@pytest.mark.parametrize("change", HARMLESS)
def test_writes_that_revoke_nothing_leave_the_generation_alone_on_postgresql(
    store: tuple[str, Engine], change: str
) -> None:
    _, engine = store
    seeded = seed(engine)
    before = generation(engine)
    HARMLESS[change](seeded)
    assert generation(engine) == before


@pytest.mark.anyio
async def test_a_key_revoked_by_another_process_is_refused_on_the_next_request(
    store: tuple[str, Engine], tmp_path: Path
) -> None:
    url, other_process = store
    settings = from_dict(
        {
            "server": {"name": "Patchbay test"},
            "store": {"url": url},
            "auth": {"mode": "api_key"},
            "connectors": [{"name": "t", "type": "python", "path": str(TOOLS), "prefix": ""}],
        },
        base_dir=tmp_path,
    )
    app = create_app(settings)
    await app.runtime.start()
    try:
        async with client_for(app) as http:
            _, secret = ApiKeys(other_process).create("ci", ["mcp"])
            for _ in range(2):  # the second answer comes from the verified-token cache
                assert (await call(http, secret, "tools/list")).status_code == 200
            ApiKeys(other_process).revoke("ci")
            assert (await call(http, secret, "tools/list")).status_code == 401
    finally:
        app.sessions.close_all()
        await app.runtime.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
