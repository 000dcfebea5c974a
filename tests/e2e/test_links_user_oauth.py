"""Account linking (auth = "user_oauth") against a second, real Patchbay with OAuth on as the upstream.

The upstream runs in its own process on loopback; the linking Patchbay's pages run in-process. A person signs in to
the linking Patchbay, is sent to the upstream's sign-in and consent pages, comes back to /links/callback, and from
then on ``headers_for`` gives that person's own upstream token, which the upstream accepts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette

from patchbay.app import create_app
from patchbay.auth.principal import Principal
from patchbay.connectors.base import ConnectorEnv
from patchbay.links import AuthOptions, LinkRequired, LinkUnavailable, credentials_for
from patchbay.links import pages as links_pages
from patchbay.links.hub import LinkHub
from patchbay.settings import Settings, from_dict
from patchbay.store import upgrade
from tests.e2e.conftest import patchbay_cli, run_scenario
from tests.support.browser import Browser
from tests.support.oauth_upstream import PASSWORD, run_oauth_upstream
from tests.support.servers import RunningServer

DOWNSTREAM = "http://127.0.0.1:9"  # nothing listens here: requests to it are served in-process


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_oauth_upstream(tmp_path_factory.mktemp("upstream")) as server:
        yield server


@dataclass
class Linker:
    settings: Settings
    config: Path
    hub: LinkHub
    credentials: Any
    app: Starlette


def linker(folder: Path, upstream: RunningServer) -> Linker:
    config = folder / "patchbay.toml"
    config.write_text(
        f'[server]\npublic_url = "{DOWNSTREAM}"\n[store]\nurl = "sqlite:///{folder / "down.db"}"\n'
        '[auth]\nmode = "oauth"\n[outbound]\nallow_private_network = true\n',
        encoding="utf-8",
    )
    settings = from_dict(
        {
            "server": {"public_url": DOWNSTREAM},
            "store": {"url": f"sqlite:///{folder / 'down.db'}"},
            "auth": {"mode": "oauth"},
            "outbound": {"allow_private_network": True},
        },
        source=str(config),
        base_dir=folder,
    )
    upgrade(settings.store_url)
    auth = create_app(settings).runtime.auth
    for user in ("alice", "bob"):
        auth.core.users.add(user, PASSWORD)
    hub = LinkHub(settings)
    env = ConnectorEnv(base_dir=folder, store_url=settings.store_url, links=hub)
    credentials = credentials_for("up", AuthOptions(auth="user_oauth"), env, upstream_url=upstream.url)
    app = Starlette(routes=links_pages.build(hub, auth, None).routes())
    return Linker(settings, config, hub, credentials, app)


def person(name: str) -> Principal:
    return Principal(subject=f"user:{name}", kind="user", username=name)


async def link(target: Linker, upstream: RunningServer, name: str) -> str:
    """Drive the link flow like a person; the final page's text."""
    mounts = {DOWNSTREAM: httpx2.ASGITransport(app=target.app)}
    async with httpx2.AsyncClient(mounts=mounts, trust_env=False) as http:
        browser = Browser(http, (DOWNSTREAM, upstream.base_url), name, PASSWORD)
        outcome = await browser.authorize(f"{DOWNSTREAM}/links/to/up")
    assert outcome.location is None, f"left the flow at {outcome.location}"
    return outcome.html


async def upstream_accepts(upstream: RunningServer, headers: dict[str, str]) -> int:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    request_headers = {**headers, "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
    async with httpx2.AsyncClient(trust_env=False) as http:
        return (await http.post(upstream.url, json=body, headers=request_headers)).status_code


def test_a_person_links_their_account_and_only_they_get_its_token(upstream: RunningServer, tmp_path: Path) -> None:
    target = linker(tmp_path, upstream)

    async def scenario() -> None:
        with pytest.raises(LinkRequired) as before:
            await target.credentials.headers_for(person("alice"))
        assert before.value.url == f"{DOWNSTREAM}/links/to/up"  # Patchbay's own page, never the upstream's
        page = await link(target, upstream, "alice")
        assert "Linked" in page and "alice" in page
        identity, headers = await target.credentials.headers_for(person("alice"))
        assert identity == "user:alice"
        assert set(headers) == {"Authorization"}
        stored = target.hub.store.account("up", "user:alice")
        assert stored is not None and headers["Authorization"] == f"Bearer {stored.tokens.access_token}"
        assert await upstream_accepts(upstream, headers) == 200
        assert await upstream_accepts(upstream, {}) == 401
        # bob signed in to the same Patchbay has no link: he is asked to link, never handed alice's token.
        with pytest.raises(LinkRequired):
            await target.credentials.headers_for(person("bob"))
        # An API key or anonymous caller cannot use a per-person connector at all.
        with pytest.raises(LinkUnavailable, match="each person's own account"):
            await target.credentials.headers_for(Principal(subject="key:ci", kind="api_key"))

    run_scenario(scenario)


def test_a_401_refreshes_the_token_and_stores_the_rotated_refresh_token(
    upstream: RunningServer, tmp_path: Path
) -> None:
    target = linker(tmp_path, upstream)

    async def scenario() -> None:
        await link(target, upstream, "alice")
        _, first = await target.credentials.headers_for(person("alice"))
        before = target.hub.store.account("up", "user:alice")
        target.credentials.invalidate("user:alice")
        _, second = await target.credentials.headers_for(person("alice"))
        after = target.hub.store.account("up", "user:alice")
        assert before is not None and after is not None
        assert second["Authorization"] != first["Authorization"]
        assert after.tokens.refresh_token != before.tokens.refresh_token  # rotated upstream, replaced here
        assert await upstream_accepts(upstream, second) == 200

    run_scenario(scenario)


def test_revoking_a_link_from_the_cli_asks_the_person_to_link_again(upstream: RunningServer, tmp_path: Path) -> None:
    target = linker(tmp_path, upstream)
    run_scenario(lambda: link(target, upstream, "alice"))
    listed = patchbay_cli("links", "list", "--user", "alice", "-c", str(target.config))
    assert listed.returncode == 0, listed.describe()
    assert "user:alice" in listed.stdout and "up" in listed.stdout
    revoked = patchbay_cli("links", "revoke", "--user", "alice", "-c", str(target.config))
    assert revoked.returncode == 0, revoked.describe()
    again = patchbay_cli("links", "revoke", "--user", "alice", "-c", str(target.config))
    assert again.returncode == 1
    # A server that did not cache the link (another replica, or after a restart) asks for a new link at once.
    fresh = LinkHub(target.settings)
    env = ConnectorEnv(base_dir=tmp_path, store_url=target.settings.store_url, links=fresh)
    credentials = credentials_for("up", AuthOptions(auth="user_oauth"), env, upstream_url=upstream.url)

    async def scenario() -> None:
        with pytest.raises(LinkRequired):
            await credentials.headers_for(person("alice"))

    run_scenario(scenario)


def test_a_link_revoked_from_the_cli_stops_being_used_on_the_next_call_of_a_server_that_cached_it(
    upstream: RunningServer, tmp_path: Path
) -> None:
    target = linker(tmp_path, upstream)  # its pages share the sign-in store's revocation generation
    run_scenario(lambda: link(target, upstream, "alice"))

    def generation() -> int:
        with sqlite3.connect(tmp_path / "down.db") as db:
            (value,) = db.execute("SELECT generation FROM auth_revocation_epoch WHERE id = 1").fetchone()
        return int(value)

    async def cached_then_refreshed() -> None:
        await target.credentials.headers_for(person("alice"))  # opened and kept in memory
        target.credentials.invalidate("user:alice")
        await target.credentials.headers_for(person("alice"))  # refreshed: the row is rewritten, not removed

    before = generation()
    run_scenario(cached_then_refreshed)
    assert generation() == before  # a refresh revokes nothing
    revoked = patchbay_cli("links", "revoke", "--user", "alice", "-c", str(target.config))
    assert revoked.returncode == 0, revoked.describe()
    assert generation() > before

    async def next_call() -> None:
        with pytest.raises(LinkRequired):
            await target.credentials.headers_for(person("alice"))

    run_scenario(next_call)
