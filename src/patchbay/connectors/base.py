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


@runtime_checkable
class Connector(Protocol):
    Options: ClassVar[type[ConnectorOptions]]
    name: str

    async def open(self) -> None:
        """Connect to what the connector serves. Raises ConnectorError with a message a person can act on."""

    def tools(self) -> Sequence[Tool]: ...

    def resources(self) -> Sequence[Resource]: ...

    def resource_templates(self) -> Sequence[ResourceTemplate]: ...

    def prompts(self) -> Sequence[Prompt]: ...

    async def health(self) -> Health: ...

    async def close(self) -> None: ...
