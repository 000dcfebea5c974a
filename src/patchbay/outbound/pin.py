"""``PinnedAddress``: the address of the one host the operator configured, resolved once and pinned.

The operator named that host, so whatever it resolves to is allowed (loopback and private addresses included), but
the answer is kept: no DNS lookup per request, and no second answer swapped in between requests. It is looked up
again after ``ttl`` seconds, or at once after ``forget()`` (a connection to the pinned address failed: the host may
have moved). Shared by :class:`patchbay.outbound.pinned.PinnedTransport` (httpx) and
:class:`patchbay.outbound.origin.OriginClient` (the lean HTTP/1.1 client).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

from patchbay.outbound.policy import HostError, literal_address
from patchbay.outbound.transport import FetchError, Refused, Resolver, system_resolver

DNS_TTL = 300.0


class PinnedAddress:
    """``host:port``'s pinned address; ``literal`` when the host is an IP address already (never looked up)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        resolve: Resolver = system_resolver,
        ttl: float = DNS_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Raises:
        Refused: ``host`` is an IP address in a form that is refused (``literal_address``).
        """
        self.host = host
        self.port = port
        try:
            literal = literal_address(host)
        except HostError as exc:
            raise Refused(str(exc)) from None
        self.literal = str(literal) if literal is not None else None
        self.resolve = resolve
        self.ttl = ttl
        self.clock = clock
        self.lookups = 0
        self._address: str | None = None
        self._expires = 0.0

    async def get(self, *, fresh: bool = False) -> str:
        """The pinned address: looked up when there is none yet, it expired, or ``fresh``.

        Raises:
            FetchError: the host does not resolve.
        """
        if self.literal is not None:
            return self.literal
        now = self.clock()
        if self._address is not None and not fresh and now < self._expires:
            return self._address
        self.lookups += 1
        try:
            answers = await self.resolve(self.host.removesuffix("."), self.port)
            address = ipaddress.ip_address(answers[0])
        except (OSError, IndexError, ValueError):
            raise FetchError(f"cannot resolve {self.host}") from None
        self._address = str(address)
        self._expires = now + self.ttl
        return self._address

    def forget(self) -> None:
        """Drop the pinned address (a connection to it was refused or unreachable): the next ``get`` looks up."""
        self._address = None
