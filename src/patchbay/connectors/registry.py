"""Maps a connector ``type`` to its class through the ``patchbay.connectors`` entry-point group."""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points
from typing import Any

from patchbay.errors import ConfigError

GROUP = "patchbay.connectors"


def connector_types() -> dict[str, Any]:
    """Every installed connector type, name → entry point (loaded only when used)."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_type(type_name: str, *, where: str) -> Any:
    """The connector class for ``type_name``.

    Raises:
        ConfigError: the type is not installed; the message lists the installed ones.
    """
    available = connector_types()
    entry = available.get(type_name)
    if entry is None:
        names = sorted(available)
        close = difflib.get_close_matches(type_name, names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"{where}: unknown connector type '{type_name}'.{hint} Installed types: {', '.join(names) or 'none'}."
        )
    try:
        return entry.load()
    except Exception as exc:  # a third-party plugin that fails to import
        raise ConfigError(f"{where}: connector type '{type_name}' failed to load: {exc}") from exc
