"""The running server's side of the manifest: load the approved version, write what it observes, and notice
approvals made elsewhere.

An approval is a new row in ``gate_manifest_versions``, written by ``patchbay manifest approve`` in another process
(or another replica). The keeper reads the newest version number every ``poll_seconds`` (one indexed query);
when it moved, it loads that version, and the runtime rebuilds the catalog and publishes ``list_changed`` to open
streams for every list whose served form changed. A change that is only proposed changes nothing served, so it
publishes nothing.

In a fleet the replica that loads a new version first tells the others at once (``announce``, a ``manifest``
notice on the fleet's bus, patchbay.fleet.notices); each then runs :meth:`ManifestKeeper.check` without waiting
for its poll. The poll stays, for approvals whose notice never came (the CLI, SQL by hand, Redis down).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio.to_thread

from patchbay.catalog.changes import Change
from patchbay.catalog.manifest import Manifest, Snapshot, apply, summary
from patchbay.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger("patchbay.manifest")
FIRST_START = "first start"
AUTO = "auto (open mode)"
T = TypeVar("T")


class ManifestKeeper:
    def __init__(self, manifest: Manifest, store_url: str, *, poll_seconds: float, rebuild: Callable[[], None]) -> None:
        self.manifest = manifest
        self.store_url = store_url
        self.poll_seconds = poll_seconds
        # Rebuilds the catalog and publishes list changes (Runtime.lists_changed).
        self.rebuild = rebuild
        self._engine: Engine | None = None
        self._task: asyncio.Task[None] | None = None
        self._synced: tuple[tuple[str, str, str], ...] | None = None
        self._failing = False
        # Tells the other replicas that a version was loaded here (None on a single node); never raises.
        self.announce: Callable[[int], Awaitable[None]] | None = None
        # One check at a time: a notice and the poll may both ask for one.
        self._checking = asyncio.Lock()

    @property
    def engine(self) -> Engine | None:
        """The store the versions are kept in; None before ``load``, or when it could not be opened."""
        return self._engine

    async def load(self) -> None:
        """Migrate the store and read the latest approved version.

        Raises:
            ConfigError: review mode and the store cannot be reached (open mode logs and serves without it).
        """
        try:
            self._engine = engine = await _run(self._open)
            self.manifest.approved = await _run(functools.partial(_read_latest, engine))
        except Exception as exc:
            if self.manifest.mode == "review":
                raise ConfigError(
                    f'[manifest] mode = "review" needs the store, which cannot be used: {_brief(exc)}', key="store.url"
                ) from None
            log.warning("manifest versions are not recorded: the store cannot be used: %s", _brief(exc))
            self._failing = True

    def _open(self) -> Engine:
        from patchbay.store import create_engine, upgrade

        engine = create_engine(self.store_url)
        try:
            upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        return engine

    async def settle(self) -> None:
        """After a rebuild: approve the first start (review), record a change (open), or store the proposals.

        Raises:
            ConfigError: review mode cannot record the first-start approval.
        """
        engine = self._engine
        if engine is None:
            return
        manifest = self.manifest
        pending = list(manifest.pending)
        try:
            if manifest.approved is None or (manifest.mode == "open" and pending):
                await self._record(engine)
                pending = []
            signature = tuple((c.kind, c.name, c.new.digest if c.new else "") for c in pending)
            if signature != self._synced:
                await _run(functools.partial(_sync, engine, pending))
                self._synced = signature
        except Exception as exc:
            if manifest.approved is None and manifest.mode == "review":
                raise ConfigError(
                    f"cannot record the first approved manifest: {_brief(exc)}", key="store.url"
                ) from None
            self._report(exc)

    async def _record(self, engine: Engine) -> None:
        from patchbay.catalog.manifest_store import VersionConflict, record_version

        manifest = self.manifest
        first = manifest.approved is None
        base = manifest.approved.entries if manifest.approved is not None else {}
        entries = apply(base, manifest.pending)
        by = FIRST_START if first and manifest.mode == "review" else AUTO
        previous = manifest.approved.version if manifest.approved is not None else 0
        # Another replica may record first (VersionConflict): then the version read below is theirs.
        with contextlib.suppress(VersionConflict):
            await _run(
                functools.partial(
                    record_version,
                    engine,
                    entries,
                    previous=previous,
                    by=by,
                    mode=by if by == FIRST_START else "open",
                    note=summary(manifest.pending),
                )
            )
        if by == FIRST_START:
            log.warning(
                "manifest review: no approved version yet; the %d definitions served now are approved (by first start)",
                len(entries),
            )
        manifest.approved = await _run(functools.partial(_read_latest, engine))
        self.rebuild()
        await self._announce()

    def start(self) -> None:
        """Poll for approvals made elsewhere until ``stop``."""
        if self._engine is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll(), name="patchbay-manifest")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.check()
            except Exception as exc:  # the store is down for a moment: keep serving what was approved
                self._report(exc)

    async def check(self, *, announce: bool = True) -> None:
        """Load a version approved elsewhere, then store what changed since the last settle.

        ``announce`` (not for a check another replica's notice asked for): tell the fleet when a version loaded.
        """
        from patchbay.catalog.manifest_store import latest_version

        engine = self._engine
        if engine is None:
            return
        async with self._checking:
            known = self.manifest.approved.version if self.manifest.approved is not None else 0
            moved = await _run(functools.partial(latest_version, engine)) != known
            if moved:
                self.manifest.approved = await _run(functools.partial(_read_latest, engine))
                log.info("manifest version %s approved; serving it", getattr(self.manifest.approved, "version", 0))
                self.rebuild()
            await self.settle()
            self._failing = False
        if moved and announce:
            await self._announce()

    async def _announce(self) -> None:
        if self.announce is not None and self.manifest.approved is not None:
            await self.announce(self.manifest.approved.version)

    def _report(self, exc: Exception) -> None:
        if not self._failing:  # once per outage, not once a second
            log.warning("manifest: the store cannot be used, serving the last approved version: %s", _brief(exc))
        self._failing = True


async def _run(fn: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(fn)


def _read_latest(engine: Engine) -> Snapshot | None:
    from patchbay.catalog.manifest_store import read_snapshot

    return read_snapshot(engine)


def _sync(engine: Engine, pending: list[Change]) -> None:
    from patchbay.catalog.manifest_store import sync_proposed

    sync_proposed(engine, pending)


def _brief(exc: BaseException) -> str:
    """The error's type and first line: driver messages can run on with SQL and parameters."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
