"""Whose linked account lists a ``user_oauth`` upstream, and the ``list_with`` key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from patchbay.connectors.mcp.linking import NobodyLinked, lister
from patchbay.connectors.mcp.options import McpOptions
from patchbay.links.hub import LinkHub
from patchbay.links.store import Tokens
from patchbay.settings import from_dict
from patchbay.store import upgrade

pytestmark = pytest.mark.anyio


def hub_in(folder: Path) -> LinkHub:
    settings = from_dict(
        {"store": {"url": f"sqlite:///{folder / 'links.db'}"}, "auth": {"mode": "oauth"}},
        source=str(folder / "patchbay.toml"),
        base_dir=folder,
    )
    upgrade(settings.store_url)
    return LinkHub(settings)


def link_at(hub: LinkHub, connector: str, subject: str, when: float) -> None:
    hub.store.clock = lambda: when
    hub.store.save_account(connector, subject, "https://as.example", Tokens(f"at-{subject}", None, None))


def test_list_with_is_refused_without_user_oauth() -> None:
    with pytest.raises(ValidationError, match="'list_with' applies to auth = \"user_oauth\" only"):
        McpOptions(url="https://mcp.example/mcp", list_with="ada")
    assert McpOptions(url="https://mcp.example/mcp", auth="user_oauth", list_with="ada").list_with == "ada"


async def test_the_most_recently_refreshed_link_of_this_connector_lists(tmp_path: Path) -> None:
    hub = hub_in(tmp_path)
    try:
        with pytest.raises(NobodyLinked, match="no account is linked yet"):
            await lister(hub, "jira", None)
        link_at(hub, "jira", "user:ada", 100.0)
        link_at(hub, "jira", "user:bob", 300.0)
        link_at(hub, "wiki", "user:cy", 900.0)  # another connector's link never lists this one
        assert (await lister(hub, "jira", None)).subject == "user:bob"
        link_at(hub, "jira", "user:ada", 500.0)  # ada's token was refreshed since
        chosen = await lister(hub, "jira", None)
        assert (chosen.subject, chosen.kind, chosen.username) == ("user:ada", "user", "ada")
        assert (await lister(hub, "jira", "bob")).subject == "user:bob"  # list_with wins
    finally:
        hub.close()
