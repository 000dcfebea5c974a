"""A fleet: replicas of one server sharing Redis (``[redis] url``), so any replica serves any request.

Without ``[redis] url`` :func:`build_fleet` returns None and nothing here is imported beyond this module: a
single node pays nothing for the fleet. With it, :class:`Fleet` holds the Redis link (outage handling), the bus
(fan-out between replicas) and the heartbeat (how many replicas are alive). docs/deploy.md describes a fleet.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from patchbay.errors import ConfigError

if TYPE_CHECKING:
    from patchbay.fleet.bus import Bus
    from patchbay.fleet.link import RedisLink
    from patchbay.fleet.replicas import Replicas
    from patchbay.settings import RedisSettings, Settings

__all__ = ["Fleet", "build_fleet", "new_replica_id"]


def new_replica_id() -> str:
    """``r-`` and 10 random hex digits: this process's name in the fleet, new at every start."""
    return "r-" + secrets.token_hex(5)


class Fleet:
    """This replica's membership of the fleet: ``link`` to Redis, the ``bus`` and the ``replicas`` heartbeat."""

    def __init__(self, settings: RedisSettings, replica_id: str | None = None) -> None:
        from patchbay.fleet.bus import Bus
        from patchbay.fleet.link import RedisLink
        from patchbay.fleet.replicas import Replicas

        if settings.url is None:
            raise ValueError("a fleet needs [redis] url")
        self.settings = settings
        self.replica_id = replica_id or new_replica_id()
        self.link: RedisLink = RedisLink(
            settings.url.get_secret_value(), key_prefix=settings.key_prefix, timeout_ms=settings.timeout_ms
        )
        self.bus: Bus = Bus(self.link, self.replica_id)
        self.replicas: Replicas = Replicas(self.link, self.replica_id)

    @property
    def up(self) -> bool:
        """Whether Redis answered the last command (False from the first failure until a probe succeeds)."""
        return self.link.up

    async def start(self) -> None:
        """Join the fleet. Redis being down is no error: the link keeps probing and readiness reports it."""
        await self.link.start()
        await self.replicas.start()
        await self.bus.start()

    async def stop(self) -> None:
        await self.bus.stop()
        await self.replicas.stop()
        await self.link.close()

    def health(self) -> dict[str, Any]:
        """For /readyz: ``ok``, a ``detail`` naming Redis without its password, and the live ``replicas``."""
        link = self.link
        if link.up:
            detail = f"connected to {link.where} as {self.replica_id}"
        else:
            detail = f"unreachable at {link.where}: {link.last_error or 'no answer'}; retrying every second"
        return {"ok": link.up, "detail": detail, "replicas": self.replicas.live()}


def build_fleet(settings: Settings) -> Fleet | None:
    """The fleet for ``settings``, or None on a single node (no ``[redis] url``).

    Raises:
        ConfigError: ``[redis] url`` is set but the redis package (the ``fleet`` extra) is not installed.
    """
    if settings.redis.url is None:
        return None
    try:
        import redis.asyncio  # noqa: F401 - only to say what is missing before anything starts
    except ImportError:
        from patchbay.extras import install_command

        raise ConfigError(
            f"{settings.source}: redis.url: [redis] url needs the redis package: {install_command('fleet')}",
            file=settings.source,
            key="redis.url",
        ) from None
    return Fleet(settings.redis)
