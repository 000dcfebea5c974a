"""The account-link pages are served exactly when some enabled connector links accounts, in any config form."""

from __future__ import annotations

from typing import Any

import pytest

from patchbay.links.hub import links_wanted
from patchbay.settings import from_dict


def settings_with(connector: dict[str, Any]) -> Any:
    return from_dict({"connectors": [{"name": "api", **connector}]})


@pytest.mark.parametrize(
    "connector",
    [
        {"type": "mcp", "url": "https://mcp.example.com/mcp", "auth": "user_oauth"},
        {"type": "openapi", "spec": "api.yaml", "auth": "user_oauth"},
        {"type": "openapi", "spec": "api.yaml", "auth": {"type": "user_oauth"}},
        {"type": "openapi", "spec": "api.yaml", "security": {"oauth": {"type": "user_oauth"}}},
    ],
)
def test_a_connector_that_links_accounts_turns_the_link_pages_on(connector: dict[str, Any]) -> None:
    assert links_wanted(settings_with(connector))
    assert not links_wanted(settings_with({**connector, "enabled": False}))


@pytest.mark.parametrize(
    "connector",
    [
        {"type": "mcp", "url": "https://mcp.example.com/mcp", "auth": "headers", "headers": {"X": "y"}},
        {"type": "openapi", "spec": "api.yaml", "auth": {"type": "bearer", "token_env": "T"}},
        {"type": "openapi", "spec": "api.yaml", "security": {"key": {"type": "api_key", "value_env": "K"}}},
    ],
)
def test_other_credentials_leave_the_link_pages_off(connector: dict[str, Any]) -> None:
    assert not links_wanted(settings_with(connector))
