"""The contract every connector implements, built-in or third-party.

A connector type is a class registered under the entry-point group ``patchbay.connectors``::

    [project.entry-points."patchbay.connectors"]
    tickets = "acme_patchbay.tickets:TicketsConnector"

It declares ``Options``, a pydantic model of its own config keys (everything in its ``[[connectors]]`` table
besides ``name``, ``type``, ``prefix`` and ``enabled``), and is built as ``Type(name, options, env)``. It then
only *sources* definitions; names, policy and transport are applied outside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from patchbay.definitions import Prompt, Resource, ResourceTemplate, Tool


class ConnectorOptions(BaseModel):
    """Base for connector options: unknown keys are errors, so typos are caught at start-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str = ""


@dataclass(slots=True)
class ConnectorEnv:
    """What Patchbay gives a connector: where its config lives, the store, and a way to say its lists changed."""

    base_dir: Path
    store_url: str
    on_change: Callable[[], None] = field(default=lambda: None)
    extras: dict[str, Any] = field(default_factory=dict)
    # The prefix the catalog puts before this connector's tool and prompt names ("<name>_" by default), for
    # connectors that must check the final names (the 64-character limit clients enforce).
    prefix: str = ""
    # Tell clients subscribed to a (published) resource URI that it changed.
    on_resource_updated: Callable[[str], None] = field(default=lambda uri: None)
    # The server's upstream credential store (patchbay.links.hub.LinkHub): give it to patchbay.links.credentials_for.
    links: Any = None


@runtime_checkable
class Connector(Protocol):
    Options: ClassVar[type[ConnectorOptions]]
    name: str

    async def open(self) -> None:
        """Connect to what the connector serves, with messages a person can act on.

        A connector whose open() fails contributes nothing to the catalog; until it opens, tools() and the other
        lists are not asked for. After a failed open, close() is called (it must cope with a half-open state),
        and open() may be called again on the same object.

        Raises:
            ConfigError: the configuration is wrong (an invalid value, a missing secret variable, code that does
                not import). Retrying cannot help: the server refuses to start, naming the file and the key.
                Give ``key`` relative to the connector's table (``"url"``, ``"actions[0]"``).
            ConnectorError: the system behind it is unreachable (a database down, a folder missing). The server
                serves the other connectors, reports this one in /readyz and opens it again with backoff; its
                tools appear when it comes up. ``OSError`` and any other exception are treated the same way
                (the latter logged with a traceback, as a likely bug).
        """

    def tools(self) -> Sequence[Tool]: ...

    def resources(self) -> Sequence[Resource]: ...

    def resource_templates(self) -> Sequence[ResourceTemplate]: ...

    def prompts(self) -> Sequence[Prompt]: ...

    async def health(self) -> Health: ...

    async def close(self) -> None: ...


@runtime_checkable
class Subscribable(Protocol):
    """A connector whose resources can be subscribed to at their source (an upstream MCP server)."""

    name: str

    async def subscribe(self, uri: str) -> bool:
        """Ask the source for updates of ``uri``; False when ``uri`` is not this connector's.

        Raises:
            Exception: the source refused or cannot be reached (the client's subscribe fails with the reason).
        """
        ...


@runtime_checkable
class Diagnosable(Protocol):
    """A connector with details for its operator (``/readyz`` with the ``[metrics]`` token, ``patchbay doctor``).

    What ``diagnostics()`` returns is never shown without that token: it may hold what the system behind the
    connector printed (a child process's stderr), with paths, hostnames or secrets. It must be JSON-serialisable,
    cheap (no I/O) and must not raise; it is asked for whether the connector is up or down.
    """

    name: str

    def diagnostics(self) -> dict[str, Any]: ...


@runtime_checkable
class Reloadable(Protocol):
    """A connector that can read its definitions again without a restart (``patchbay serve`` on SIGHUP)."""

    name: str

    async def reload(self) -> bool:
        """Read the definitions again; True when they were replaced.

        A reload that fails keeps the previous definitions and logs why: it never raises, so one broken edit
        cannot take the server down.
        """
        ...
