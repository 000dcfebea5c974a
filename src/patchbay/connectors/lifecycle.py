"""Opening connectors, and retrying the ones whose system is down, so a broken source never stops the server.

What a failure in ``open()`` means (docs/connectors.md, "When a source is down"):

- ``ConfigError``: the configuration is wrong (an invalid option, a missing environment variable). Retrying
  cannot help, so the server refuses to start, naming the file and the connector's key.
- anything else (``ConnectorError``, ``OSError``, a driver error): the system behind the connector is
  unreachable. The connector is *down*: it contributes nothing to the catalog, ``/readyz`` reports it, and it is
  opened again with capped exponential backoff until it comes up. With ``strict`` the first such failure stops
  the start instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from patchbay.connectors.base import Connector
from patchbay.errors import ConfigError, ConnectorError

log = logging.getLogger("patchbay")

OnFailure = Literal["raise", "retry", "report"]
# user:password@ in any URL-shaped text: a third-party connector's message must not carry a password into logs.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*:)[^\s@/]+@")
# A float overflows past 2**1023; a delay is capped long before that.
_MAX_DOUBLINGS = 60


def redact(text: str) -> str:
    """``text`` with every ``scheme://user:password@`` password replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


class Clock(Protocol):
    """Time as the retry loop sees it; tests inject one that does not wait."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: ``initial``, doubling per failure, never more than ``cap`` seconds.

    Jitter takes up to ``jitter`` of each delay off, so replicas of a fleet that lost the same database do not
    all knock on it in the same second when it comes back.
    """

    initial: float = 1.0
    cap: float = 60.0
    jitter: float = 0.2

    def delay(self, failures: int, rand: float) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1-based); ``rand`` is uniform in [0, 1)."""
        doublings = min(max(failures - 1, 0), _MAX_DOUBLINGS)
        nominal = min(self.cap, self.initial * 2.0**doublings)
        return nominal * (1.0 - self.jitter * rand)


@dataclass(slots=True)
class Status:
    """Where one connector stands. ``retry_at`` is the clock time of the next attempt (None: none planned)."""

    up: bool = False
    detail: str = "not opened yet"
    failures: int = 0
    retry_at: float | None = None
    down_since: float | None = None


class Supervisor:
    """Opens connectors, keeps the status of each, and reopens the ones that are down until they come up.

    ``on_up`` is called (on the event loop) when a connector that was down has opened: the runtime rebuilds the
    catalog and tells clients. If it raises ConfigError (say, the new tools clash with another connector's), the
    connector is closed and reported down without further retries: only a configuration change can fix that.
    """

    def __init__(
        self,
        connectors: Sequence[Connector],
        *,
        source: str,
        keys: Mapping[str, str],
        on_up: Callable[[Connector], None] = lambda c: None,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.connectors = list(connectors)
        self.source = source
        self.keys = dict(keys)
        self.on_up = on_up
        self.backoff = backoff or Backoff()
        self.clock: Clock = clock or SystemClock()
        self.rand = rand
        self.status: dict[str, Status] = {c.name: Status() for c in self.connectors}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def is_up(self, name: str) -> bool:
        status = self.status.get(name)
        return status is not None and status.up

    @property
    def down(self) -> list[str]:
        return [c.name for c in self.connectors if not self.status[c.name].up]

    def retry_in(self, name: str) -> float | None:
        """Seconds until the next attempt to open ``name`` (0 while one is running); None when none is planned."""
        at = self.status[name].retry_at
        return None if at is None else max(0.0, at - self.clock.now())

    async def open_all(self, on_failure: OnFailure) -> None:
        """Open every connector once, in order.

        Raises:
            ConfigError: a connector's configuration is invalid (always), naming the file and the key.
            ConnectorError: with ``on_failure="raise"``, the first connector that could not open.
        """
        for connector in self.connectors:
            try:
                await self._open(connector)
            except ConfigError:
                await self.close_all()
                raise
            except Exception as exc:  # any other failure is the system, not the config
                if on_failure == "raise":
                    await self.close_all()
                    raise _as_connector_error(connector, exc) from None
                self._failed(connector, exc, plan_retry=on_failure == "retry")
        if on_failure == "retry":
            for name in self.down:
                self._spawn(name)

    async def _open(self, connector: Connector) -> None:
        try:
            await connector.open()
        except ConfigError as exc:
            raise self._config_error(connector.name, exc) from None
        self.status[connector.name] = Status(up=True, detail="")

    def _config_error(self, name: str, exc: ConfigError) -> ConfigError:
        base = self.keys.get(name, f"connectors[{name}]")
        key = f"{base}.{exc.key}" if exc.key else base
        # Connectors name keys relative to their table; a message that already names the file and the connector
        # (shared code such as patchbay.links says where itself) is kept as it is, not prefixed twice.
        location, text = f"{self.source}: connectors[{name}]", str(exc)
        return ConfigError(text if text.startswith(location) else f"{location}: {text}", file=self.source, key=key)

    def _failed(self, connector: Connector, exc: BaseException, *, plan_retry: bool) -> None:
        status = self.status[connector.name]
        now = self.clock.now()
        status.up = False
        status.failures += 1
        status.detail = _reason(connector, exc)
        status.down_since = status.down_since if status.down_since is not None else now
        delay = self.backoff.delay(status.failures, self.rand()) if plan_retry else None
        status.retry_at = None if delay is None else now + delay
        # One line per backoff step; a traceback only for what is not a known kind of failure (a connector bug).
        trace = not isinstance(exc, ConnectorError | OSError)
        then = f"; retrying in {delay:.1f} s" if delay is not None else ""
        log.warning("connector '%s' is down: %s%s", connector.name, status.detail, then, exc_info=trace)

    def _spawn(self, name: str) -> None:
        connector = next(c for c in self.connectors if c.name == name)
        self._tasks[name] = asyncio.create_task(self._retry(connector), name=f"patchbay-retry-{name}")

    async def _retry(self, connector: Connector) -> None:
        status = self.status[connector.name]
        while status.retry_at is not None:
            await self.clock.sleep(max(0.0, status.retry_at - self.clock.now()))
            try:
                await _close_quietly(connector)  # a failed open may have left something half-open
                await self._open(connector)
            except ConfigError as exc:
                self._give_up(connector, str(exc))
                return
            except Exception as exc:  # the system is still down: try again later
                self._failed(connector, exc, plan_retry=True)
                continue
            await self._came_up(connector, status)
            return

    async def _came_up(self, connector: Connector, before: Status) -> None:
        waited = self.clock.now() - (before.down_since if before.down_since is not None else self.clock.now())
        try:
            self.on_up(connector)
        except ConfigError as exc:
            self.status[connector.name] = before
            self._give_up(connector, str(exc))
            await _close_quietly(connector)
            return
        log.info(
            "connector '%s' is up after %d failed attempts (%.0f s down): %d tools",
            connector.name,
            before.failures,
            waited,
            len(connector.tools()),
        )

    def _give_up(self, connector: Connector, reason: str) -> None:
        status = self.status[connector.name]
        status.up, status.retry_at = False, None
        status.detail = f"{reason} (not retried: correct the configuration and restart)"
        log.error("connector '%s' stays down: %s", connector.name, status.detail)

    async def close_all(self) -> None:
        """Stop every retry, then close every connector (also the ones that are down: they may be half-open)."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for connector in reversed(self.connectors):
            status = self.status[connector.name]
            status.up, status.retry_at = False, None
            try:
                await connector.close()
            except Exception:
                log.exception("connector %s failed to close", connector.name)


def _reason(connector: Connector, exc: BaseException) -> str:
    """What went wrong, without the connector's name (the caller's context has it) and without passwords."""
    text = redact(str(exc).strip())
    text = text.removeprefix(f"connector '{connector.name}': ")
    if isinstance(exc, ConnectorError) and text:
        return text
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _as_connector_error(connector: Connector, exc: BaseException) -> ConnectorError:
    reason = _reason(connector, exc)
    named = f"'{connector.name}'" in reason  # e.g. "documents connector 'docs', source 'kb': ..."
    return ConnectorError(reason if named else f"connector '{connector.name}': {reason}")


async def _close_quietly(connector: Connector) -> None:
    try:
        await connector.close()
    except Exception:  # closing what never fully opened may fail; the next open starts afresh
        log.debug("connector %s: close after a failed open raised", connector.name, exc_info=True)
