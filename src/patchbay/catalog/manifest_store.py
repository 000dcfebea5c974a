"""Reading and writing the manifest tables (``patchbay.gate.manifest_models``), for the server and the CLI.

Reads use the engine's pool; every write is a job on the store's single writer path (``patchbay.store.writes``).
Functions here are synchronous: the keeper runs them in a worker thread or awaits the write path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, RowMapping, delete, func, insert, select, update

from patchbay.catalog.changes import Change, Item
from patchbay.catalog.digest import KINDS, Kind, canonical
from patchbay.catalog.manifest import Key, Snapshot, digest_of
from patchbay.gate.manifest_models import ManifestEntry, ManifestProposed, ManifestVersion
from patchbay.store.writes import write_path

PROPOSED, REJECTED = "proposed", "rejected"


class VersionConflict(Exception):
    """Someone approved another version first; read the manifest again and decide again."""


@dataclass(frozen=True, slots=True)
class Proposal:
    """One row of ``gate_manifest_proposed``: the observed item (None for a removal) and its state."""

    kind: Kind
    name: str
    connector: str
    item: Item | None
    state: str
    observed_at: float
    decided_by: str | None


def latest_version(engine: Engine) -> int:
    """The newest approved version number, 0 when none: one indexed read, what a server polls."""
    with engine.connect() as connection:
        return int(connection.execute(select(func.coalesce(func.max(ManifestVersion.version), 0))).scalar_one())


def read_snapshot(engine: Engine, version: int | None = None) -> Snapshot | None:
    """Version ``version`` (default: the latest) with all its entries; None when there is none."""
    with engine.connect() as connection:
        query = select(ManifestVersion).order_by(ManifestVersion.version.desc()).limit(1)
        if version is not None:
            query = select(ManifestVersion).where(ManifestVersion.version == version)
        row = connection.execute(query).mappings().first()
        if row is None:
            return None
        entries = connection.execute(select(ManifestEntry).where(ManifestEntry.version == row["version"]))
        items = {}
        for entry in entries.mappings():
            item = _item(entry["kind"], entry["name"], entry["connector"], entry["digest"], entry["definition"])
            items[item.kind, item.name] = item
    return Snapshot(
        row["version"], row["digest"], row["approved_by"], row["approved_at"], row["mode"], row["note"], items
    )


def history(engine: Engine) -> list[Snapshot]:
    """Every version, newest first, without entries."""
    with engine.connect() as connection:
        rows = connection.execute(select(ManifestVersion).order_by(ManifestVersion.version.desc())).mappings()
        return [
            Snapshot(r["version"], r["digest"], r["approved_by"], r["approved_at"], r["mode"], r["note"]) for r in rows
        ]


def read_proposed(engine: Engine) -> list[Proposal]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(ManifestProposed).order_by(ManifestProposed.kind, ManifestProposed.name)
        ).mappings()
        return [_proposal(r) for r in rows]


def record_version(engine: Engine, entries: Mapping[Key, Item], *, previous: int, by: str, mode: str, note: str) -> int:
    """Store ``entries`` as version ``previous + 1`` and drop the proposals it settles; return the new number.

    Raises:
        VersionConflict: the latest version is no longer ``previous`` (another approval came first).
    """
    digest = digest_of(entries.values())

    def job(connection: Connection) -> int:
        latest = connection.execute(select(func.coalesce(func.max(ManifestVersion.version), 0))).scalar_one()
        if latest != previous:
            raise VersionConflict(f"version {latest} was approved meanwhile (expected {previous})")
        version = previous + 1
        connection.execute(
            insert(ManifestVersion).values(
                version=version, digest=digest, approved_by=by, approved_at=time.time(), mode=mode, note=note
            )
        )
        if entries:
            connection.execute(insert(ManifestEntry), [_entry_row(version, item) for item in entries.values()])
        _settle(connection, entries)
        return version

    return write_path(engine).run_sync(job)


def _settle(connection: Connection, entries: Mapping[Key, Item]) -> None:
    """Drop proposals the new version made true: the definition is now approved, or the removal is."""
    for row in connection.execute(select(ManifestProposed)).mappings().all():
        approved = entries.get((row["kind"], row["name"]))
        done = approved.digest == row["digest"] if approved is not None else row["definition"] is None
        if done:
            connection.execute(
                delete(ManifestProposed).where(
                    ManifestProposed.kind == row["kind"], ManifestProposed.name == row["name"]
                )
            )


def sync_proposed(engine: Engine, pending: Iterable[Change]) -> None:
    """Make the proposals exactly ``pending``: new or different ones are (re)proposed, gone ones are dropped, and
    a rejection stands while the connector still publishes the very definition that was rejected."""
    wanted = {(c.kind, c.name): c for c in pending}

    def job(connection: Connection) -> None:
        now = time.time()
        stored = {(r["kind"], r["name"]): r for r in connection.execute(select(ManifestProposed)).mappings().all()}
        for key in stored.keys() - wanted.keys():
            connection.execute(
                delete(ManifestProposed).where(ManifestProposed.kind == key[0], ManifestProposed.name == key[1])
            )
        for key, change in wanted.items():
            row = stored.get(key)
            digest = change.new.digest if change.new is not None else ""
            if row is not None and row["digest"] == digest:
                continue
            if row is not None:
                connection.execute(
                    delete(ManifestProposed).where(ManifestProposed.kind == key[0], ManifestProposed.name == key[1])
                )
            connection.execute(insert(ManifestProposed).values(**_proposal_row(change, now)))

    write_path(engine).run_sync(job)


def reject(engine: Engine, keys: Iterable[Key], by: str) -> int:
    """Mark proposals rejected; they are proposed again only when the connector publishes something else."""
    chosen = list(keys)

    def job(connection: Connection) -> int:
        count = 0
        for kind, name in chosen:
            result = connection.execute(
                update(ManifestProposed)
                .where(ManifestProposed.kind == kind, ManifestProposed.name == name)
                .where(ManifestProposed.state == PROPOSED)
                .values(state=REJECTED, decided_by=by, decided_at=time.time())
            )
            count += result.rowcount
        return count

    return write_path(engine).run_sync(job)


def _entry_row(version: int, item: Item) -> dict[str, Any]:
    return {
        "version": version,
        "kind": item.kind,
        "name": item.name,
        "connector": item.connector,
        "digest": item.digest,
        "definition": canonical(item.definition).decode(),
    }


def _proposal_row(change: Change, now: float) -> dict[str, Any]:
    item = change.new
    return {
        "kind": change.kind,
        "name": change.name,
        "connector": change.connector,
        "digest": item.digest if item is not None else "",
        "definition": canonical(item.definition).decode() if item is not None else None,
        "state": PROPOSED,
        "observed_at": now,
        "decided_by": None,
        "decided_at": None,
    }


def _item(kind: str, name: str, connector: str, digest: str, definition: str) -> Item:
    if kind not in KINDS:
        raise ValueError(f"gate_manifest: unknown kind {kind!r} for {name!r}")
    return Item(kind, name, digest, orjson.loads(definition), connector)


def _proposal(row: RowMapping) -> Proposal:
    definition = row["definition"]
    item = (
        _item(row["kind"], row["name"], row["connector"], row["digest"], definition) if definition is not None else None
    )
    kind: Kind = row["kind"]
    return Proposal(kind, row["name"], row["connector"], item, row["state"], row["observed_at"], row["decided_by"])
