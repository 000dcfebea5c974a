"""The serving side of the manifest and its tables: what the keeper records at a first start and in open mode, how
it follows versions approved elsewhere (a check, the poll, a fleet notice), what it does when the store is gone,
and the rows `patchbay manifest` reads: versions, their entries, proposals and rejections.

The keeper is driven as the runtime drives it (load, rebuild, settle, start), with a real Manifest and a real
SQLite store; the rebuild reviews the published tools again, as the catalog does."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from patchbay.catalog.changes import Item, diff
from patchbay.catalog.digest import visible, wire_digest
from patchbay.catalog.keeper import ManifestKeeper
from patchbay.catalog.manifest import Key, Manifest, Mode, digest_of
from patchbay.catalog.manifest_store import (
    PROPOSED,
    REJECTED,
    history,
    latest_version,
    read_proposed,
    read_snapshot,
    record_version,
    reject,
    sync_proposed,
)
from patchbay.errors import ConfigError
from patchbay.store import create_engine, upgrade

pytestmark = pytest.mark.anyio


def published(name: str, description: str, connector: str = "crm") -> tuple[Item, dict[str, Any]]:
    wire = {"name": name, "description": description, "inputSchema": {"type": "object"}}
    return Item("tool", name, wire_digest(wire), visible(wire), connector), wire


@dataclass
class Server:
    """What a runtime holds: its manifest, its keeper, what connectors publish and what clients are served."""

    manifest: Manifest
    keeper: ManifestKeeper
    tools: dict[Key, tuple[Item, dict[str, Any]]]
    served: dict[Key, Any] = field(default_factory=dict)
    rebuilds: int = 0
    announced: list[int] = field(default_factory=list)

    def rebuild(self) -> None:
        self.rebuilds += 1
        self.served = self.manifest.review(self.tools, frozenset())

    def publish(self, name: str, description: str) -> None:
        self.tools[("tool", name)] = published(name, description)
        self.rebuild()

    async def start(self) -> None:
        await self.keeper.load()
        self.rebuild()
        await self.keeper.settle()

    async def announce(self, version: int) -> None:
        self.announced.append(version)


def server_for(url: str, mode: Mode, *names: str, poll_seconds: float = 60) -> Server:
    manifest = Manifest(mode)
    server = Server(manifest, ManifestKeeper(manifest, url, poll_seconds=poll_seconds, rebuild=lambda: None), {})
    server.keeper.rebuild = server.rebuild
    server.keeper.announce = server.announce
    server.tools = {("tool", n): published(n, f"{n} v1") for n in names}
    return server


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def engine(url: str) -> Engine:
    created = create_engine(url)
    upgrade(created)
    return created


@pytest.fixture
async def review(url: str, engine: Engine) -> AsyncIterator[Server]:
    server = server_for(url, "review", "a", "b")
    await server.start()
    try:
        yield server
    finally:
        await server.keeper.stop()


async def wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)


def approve_elsewhere(engine: Engine, by: str = "ada") -> int:
    """What `patchbay manifest approve` does in another process: the latest version plus every proposal."""
    snapshot = read_snapshot(engine)
    assert snapshot is not None
    entries = dict(snapshot.entries)
    for proposal in read_proposed(engine):
        if proposal.item is None:
            entries.pop((proposal.kind, proposal.name), None)
        else:
            entries[proposal.kind, proposal.name] = proposal.item
    return record_version(engine, entries, previous=snapshot.version, by=by, mode="review", note="")


def rename_table(engine: Engine, old: str, new: str) -> None:
    with engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


async def test_the_first_start_in_review_mode_records_what_is_served_as_version_1(
    url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    server = server_for(url, "review", "a", "b")
    with caplog.at_level(logging.WARNING, "patchbay.manifest"):
        await server.start()
    try:
        snapshot = read_snapshot(engine)
        assert snapshot is not None and server.manifest.approved == snapshot
        assert (snapshot.version, snapshot.approved_by, snapshot.mode) == (1, "first start", "first start")
        assert snapshot.note == "+tool:a +tool:b"
        assert snapshot.entries == {k: item for k, (item, _) in server.tools.items()}
        assert list(server.served) == [("tool", "a"), ("tool", "b")]
        assert server.announced == [1]
        assert [r.getMessage() for r in caplog.records] == [
            "manifest review: no approved version yet; the 2 definitions served now are approved (by first start)"
        ]
    finally:
        await server.keeper.stop()


async def test_open_mode_records_the_first_start_and_each_change_as_an_automatic_version(
    url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    server = server_for(url, "open", "a", "b")
    with caplog.at_level(logging.WARNING, "patchbay.manifest"):
        await server.start()
    try:
        server.publish("a", "a v2")
        await server.keeper.settle()
        assert [(v.version, v.approved_by, v.mode, v.note) for v in history(engine)] == [
            (2, "auto (open mode)", "open", "~tool:a"),
            (1, "auto (open mode)", "open", "+tool:a +tool:b"),
        ]
        latest = read_snapshot(engine)
        assert latest is not None and latest.entries == {k: item for k, (item, _) in server.tools.items()}
        assert server.manifest.approved is not None and server.manifest.approved.version == 2
        assert server.manifest.pending == [] and read_proposed(engine) == []
        assert server.announced == [1, 2]
        assert caplog.records == []  # only review mode's first start warns
    finally:
        await server.keeper.stop()


async def test_open_mode_serves_the_version_another_replica_recorded_first(url: str, engine: Engine) -> None:
    server = server_for(url, "open", "a")
    await server.start()
    try:
        other = {("tool", "a"): published("a", "a by another replica")[0]}
        record_version(engine, other, previous=1, by="auto (open mode)", mode="open", note="~tool:a")
        server.publish("a", "a v2")
        await server.keeper.settle()  # its own record conflicts: it reads the other one instead
        assert server.manifest.approved is not None and server.manifest.approved.entries == other
        assert latest_version(engine) == 2
    finally:
        await server.keeper.stop()


async def test_review_mode_stores_a_change_as_a_proposal_and_serves_the_approved_definition(
    review: Server, engine: Engine
) -> None:
    approved = review.served[("tool", "a")]
    review.publish("a", "a v2")
    await review.keeper.settle()
    [proposal] = read_proposed(engine)
    assert (proposal.name, proposal.state, proposal.connector) == ("a", PROPOSED, "crm")
    assert proposal.item == review.tools[("tool", "a")][0]
    assert review.served[("tool", "a")] == approved and latest_version(engine) == 1
    del review.tools[("tool", "a")]
    review.rebuild()
    await review.keeper.settle()
    [proposal] = read_proposed(engine)
    assert (proposal.name, proposal.item) == ("a", None)


async def test_a_check_loads_a_version_approved_elsewhere_once_and_tells_the_fleet(
    review: Server, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    review.publish("a", "a v2")
    await review.keeper.settle()
    rebuilds = review.rebuilds
    assert approve_elsewhere(engine) == 2
    with caplog.at_level(logging.INFO, "patchbay.manifest"):
        await review.keeper.check()
    assert review.manifest.approved is not None and review.manifest.approved.version == 2
    assert review.served[("tool", "a")] == review.tools[("tool", "a")][1]
    assert (review.rebuilds, review.announced) == (rebuilds + 1, [1, 2])
    assert "manifest version 2 approved; serving it" in caplog.messages
    assert read_proposed(engine) == []

    await review.keeper.check()  # nothing new: no rebuild, nothing announced
    assert (review.rebuilds, review.announced) == (rebuilds + 1, [1, 2])


async def test_a_check_a_notice_asked_for_loads_the_version_without_announcing_it(
    review: Server, engine: Engine
) -> None:
    review.publish("b", "b v2")
    await review.keeper.settle()
    approve_elsewhere(engine)
    await review.keeper.check(announce=False)
    assert review.manifest.approved is not None and review.manifest.approved.version == 2
    assert review.announced == [1]


async def test_the_poll_serves_an_approval_made_elsewhere_until_stopped(url: str, engine: Engine) -> None:
    server = server_for(url, "review", "a", poll_seconds=0.05)
    await server.start()
    server.keeper.start()
    try:
        assert server.keeper._task is not None and server.keeper._task.get_name() == "patchbay-manifest"
        server.publish("a", "a v2")
        await wait_for(lambda: len(read_proposed(engine)) == 1)
        approve_elsewhere(engine)
        await wait_for(lambda: server.announced == [1, 2])  # loaded, served, then announced
        assert server.served[("tool", "a")] == server.tools[("tool", "a")][1]
    finally:
        await server.keeper.stop()
    assert server.keeper.engine is None
    server.keeper.start()  # without a store there is nothing to poll
    assert server.keeper._task is None


async def test_a_store_outage_is_logged_once_per_outage_and_the_approved_version_kept_serving(
    review: Server, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    served = dict(review.served)
    message = "manifest: the store cannot be used, serving the last approved version: OperationalError: no such table"
    with caplog.at_level(logging.WARNING, "patchbay.manifest"):
        for outage, description in enumerate(["a v2", "a v3"], start=1):
            review.publish("a", description)
            rename_table(engine, "gate_manifest_proposed", "away")
            for _ in range(3):
                await review.keeper.settle()
            assert caplog.messages == [f"{message}: gate_manifest_proposed"] * outage
            rename_table(engine, "away", "gate_manifest_proposed")
            await review.keeper.check()  # the store answers again: the next outage is logged again
            assert [p.item for p in read_proposed(engine)] == [review.tools[("tool", "a")][0]]
    assert review.served == served


async def test_the_poll_outlives_a_store_outage(url: str, engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    server = server_for(url, "review", "a", poll_seconds=0.02)
    await server.start()
    caplog.clear()
    with caplog.at_level(logging.WARNING, "patchbay.manifest"):
        server.keeper.start()
        try:
            rename_table(engine, "gate_manifest_versions", "away")
            await wait_for(lambda: len(caplog.records) == 1)
            rename_table(engine, "away", "gate_manifest_versions")
            server.publish("a", "a v2")
            await wait_for(lambda: len(read_proposed(engine)) == 1)
            approve_elsewhere(engine)
            await wait_for(lambda: server.served.get(("tool", "a")) == server.tools[("tool", "a")][1])
        finally:
            await server.keeper.stop()
    assert caplog.messages == [
        "manifest: the store cannot be used, serving the last approved version: "
        "OperationalError: no such table: gate_manifest_versions"
    ]


async def test_open_mode_without_a_usable_store_serves_and_records_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = server_for(f"sqlite:///{tmp_path / 'missing' / 'store.db'}", "open", "a")
    with caplog.at_level(logging.WARNING, "patchbay.manifest"):
        await server.start()
        server.keeper.start()
        await server.keeper.check()
    assert caplog.messages == [
        "manifest versions are not recorded: the store cannot be used: OperationalError: unable to open database file"
    ]
    assert server.keeper.engine is None and server.keeper._task is None
    assert list(server.served) == [("tool", "a")] and server.manifest.approved is None
    await server.keeper.stop()


async def test_review_mode_refuses_to_start_when_the_store_cannot_be_opened(tmp_path: Path) -> None:
    server = server_for(f"sqlite:///{tmp_path / 'missing' / 'store.db'}", "review", "a")
    with pytest.raises(ConfigError) as caught:
        await server.keeper.load()
    assert str(caught.value) == (
        '[manifest] mode = "review" needs the store, which cannot be used: '
        "OperationalError: unable to open database file"
    )
    assert caught.value.key == "store.url"


async def test_review_mode_refuses_to_start_when_the_first_version_cannot_be_recorded(url: str, engine: Engine) -> None:
    server = server_for(url, "review", "a")
    await server.keeper.load()
    server.rebuild()
    rename_table(engine, "gate_manifest_versions", "away")
    try:
        with pytest.raises(ConfigError) as caught:
            await server.keeper.settle()
    finally:
        await server.keeper.stop()
    assert str(caught.value) == (
        "cannot record the first approved manifest: OperationalError: no such table: gate_manifest_versions"
    )
    assert caught.value.key == "store.url"


def test_an_older_version_is_read_with_its_own_entries(engine: Engine) -> None:
    first = {("tool", "a"): published("a", "a v1")[0]}
    second = {("tool", "a"): published("a", "a v2")[0], ("tool", "b"): published("b", "b v1")[0]}
    before = time.time()
    record_version(engine, first, previous=0, by="ada", mode="review", note="+tool:a")
    record_version(engine, second, previous=1, by="bob", mode="open", note="~tool:a +tool:b")
    after = time.time()
    old = read_snapshot(engine, 1)
    assert old is not None and (old.version, old.approved_by, old.entries) == (1, "ada", first)
    assert old.digest == digest_of(first.values())
    assert read_snapshot(engine, 3) is None
    [newest, oldest] = history(engine)
    assert (newest.version, newest.digest, newest.mode, newest.note) == (
        2,
        digest_of(second.values()),
        "open",
        "~tool:a +tool:b",
    )
    assert (oldest.version, oldest.approved_by, oldest.entries) == (1, "ada", {})
    assert before <= oldest.approved_at <= newest.approved_at <= after
    assert old.approved_at == oldest.approved_at  # one version read alone keeps its approval time


def test_an_empty_manifest_is_a_version_too(engine: Engine) -> None:
    assert record_version(engine, {}, previous=0, by="ada", mode="review", note="") == 1
    snapshot = read_snapshot(engine)
    assert snapshot is not None and snapshot.entries == {} and snapshot.digest == digest_of([])


def test_proposals_are_read_by_kind_then_name_with_when_they_were_observed(engine: Engine) -> None:
    wires = {("tool", "b"): published("b", "B")[0], ("tool", "a"): published("a", "A")[0]}
    prompt = Item("prompt", "z", "9" * 64, {"name": "z"}, "docs")
    before = time.time()
    sync_proposed(engine, diff({}, {("tool", "b"): wires[("tool", "b")]}))  # stored before a
    sync_proposed(engine, diff({}, {**wires, ("prompt", "z"): prompt}))
    found = read_proposed(engine)
    assert [(p.kind, p.name, p.connector, p.state, p.decided_by) for p in found] == [
        ("prompt", "z", "docs", PROPOSED, None),
        ("tool", "a", "crm", PROPOSED, None),
        ("tool", "b", "crm", PROPOSED, None),
    ]
    assert all(before <= p.observed_at <= time.time() for p in found)


def test_approving_settles_the_proposals_it_makes_true_and_only_those(engine: Engine) -> None:
    a, b, c = (published(n, f"{n} v1")[0] for n in "abc")
    record_version(engine, {("tool", "a"): a, ("tool", "b"): b}, previous=0, by="ada", mode="review", note="")
    a2, b2 = published("a", "a v2")[0], published("b", "b v2")[0]
    sync_proposed(engine, diff({("tool", "a"): a, ("tool", "b"): b}, {("tool", "b"): b2, ("tool", "c"): c}))
    assert [(p.name, p.item) for p in read_proposed(engine)] == [("a", None), ("b", b2), ("c", c)]
    record_version(engine, {("tool", "b"): b, ("tool", "c"): c}, previous=1, by="ada", mode="review", note="")
    assert [(p.name, p.item) for p in read_proposed(engine)] == [("b", b2)]  # a's removal and c are approved
    record_version(engine, {("tool", "a"): a2, ("tool", "b"): b2}, previous=2, by="ada", mode="review", note="")
    assert read_proposed(engine) == []


def test_a_rejected_removal_stays_rejected_while_the_item_stays_gone(engine: Engine) -> None:
    a = published("a", "a v1")[0]
    record_version(engine, {("tool", "a"): a}, previous=0, by="ada", mode="review", note="")
    removal = diff({("tool", "a"): a}, {})
    sync_proposed(engine, removal)
    assert reject(engine, [("tool", "a")], "ada") == 1
    sync_proposed(engine, removal)
    assert [(p.name, p.item, p.state, p.decided_by) for p in read_proposed(engine)] == [("a", None, REJECTED, "ada")]


def test_rejecting_marks_only_pending_proposals_and_says_how_many(engine: Engine) -> None:
    sync_proposed(engine, diff({}, {("tool", n): published(n, n)[0] for n in "abc"}))
    before = time.time()
    assert reject(engine, [("tool", "a"), ("tool", "b"), ("tool", "zzz")], "ada") == 2
    assert reject(engine, [("tool", "a"), ("tool", "c")], "bob") == 1  # a was rejected already
    assert [(p.name, p.state, p.decided_by) for p in read_proposed(engine)] == [
        ("a", REJECTED, "ada"),
        ("b", REJECTED, "ada"),
        ("c", REJECTED, "bob"),
    ]
    with engine.connect() as connection:
        decided = connection.execute(text("SELECT decided_at FROM gate_manifest_proposed")).scalars().all()
    assert all(before <= when <= time.time() for when in decided)


def test_a_stored_entry_of_an_unknown_kind_is_refused_by_name(engine: Engine) -> None:
    record_version(engine, {("tool", "a"): published("a", "A")[0]}, previous=0, by="ada", mode="review", note="")
    with engine.begin() as connection:
        connection.execute(text("UPDATE gate_manifest_entries SET kind = 'widget'"))
    with pytest.raises(ValueError, match=r"^gate_manifest: unknown kind 'widget' for 'a'$"):
        read_snapshot(engine)


async def test_a_single_server_without_a_fleet_follows_approvals_made_elsewhere(url: str, engine: Engine) -> None:
    server = server_for(url, "review", "a")
    server.keeper.announce = None
    await server.start()
    try:
        server.publish("a", "a v2")
        await server.keeper.settle()
        approve_elsewhere(engine)
        await server.keeper.check()
        assert server.served[("tool", "a")] == server.tools[("tool", "a")][1]
        assert server.announced == []
    finally:
        await server.keeper.stop()


def test_rejecting_a_tool_leaves_a_prompt_of_the_same_name_proposed(engine: Engine) -> None:
    prompt = Item("prompt", "a", "9" * 64, {"name": "a"}, "docs")
    sync_proposed(engine, diff({}, {("tool", "a"): published("a", "A")[0], ("prompt", "a"): prompt}))
    assert reject(engine, [("tool", "a")], "ada") == 1
    assert [(p.kind, p.state) for p in read_proposed(engine)] == [("prompt", PROPOSED), ("tool", REJECTED)]


async def test_a_store_url_no_driver_reads_is_named_in_the_refusal() -> None:
    server = server_for("nosuchdb://host/patchbay", "review", "a")
    with pytest.raises(ConfigError) as caught:
        await server.keeper.load()
    assert str(caught.value) == (
        '[manifest] mode = "review" needs the store, which cannot be used: '
        "NoSuchModuleError: Can't load plugin: sqlalchemy.dialects:nosuchdb"
    )


def test_an_error_without_a_message_is_reported_by_its_type_alone() -> None:
    from patchbay.catalog.keeper import _brief

    assert _brief(TimeoutError()) == "TimeoutError: "
    assert _brief(OSError("disk full\nand more detail")) == "OSError: disk full"


async def test_open_mode_records_its_first_version_at_the_next_check_when_the_store_failed_at_start(
    url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    server = server_for(url, "open", "a")
    await server.keeper.load()
    server.rebuild()
    rename_table(engine, "gate_manifest_versions", "away")
    with caplog.at_level(logging.WARNING, "patchbay.manifest"):
        await server.keeper.settle()  # open mode serves on, without a version
    rename_table(engine, "away", "gate_manifest_versions")
    try:
        assert server.manifest.approved is None and list(server.served) == [("tool", "a")]
        assert len(caplog.records) == 1
        await server.keeper.check()
        assert [(v.version, v.note) for v in history(engine)] == [(1, "+tool:a")]
        assert server.announced == [1]
    finally:
        await server.keeper.stop()


async def test_a_restart_serves_the_stored_version_without_approving_a_first_start_again(
    url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    first = server_for(url, "review", "a", "b")
    await first.start()
    await first.keeper.stop()
    caplog.clear()
    again = server_for(url, "review", "a", "b")
    with caplog.at_level(logging.WARNING, "patchbay.manifest"):
        await again.keeper.load()
        assert again.manifest.approved is not None and again.manifest.approved == read_snapshot(engine)
        again.rebuild()
        await again.keeper.settle()
    try:
        assert list(again.served) == [("tool", "a"), ("tool", "b")]
        assert (caplog.records, again.announced, latest_version(engine)) == ([], [], 1)
    finally:
        await again.keeper.stop()


async def test_open_mode_warns_once_when_the_store_opens_but_its_versions_cannot_be_read(
    url: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    rename_table(engine, "gate_manifest_versions", "away")
    server = server_for(url, "open", "a")
    with caplog.at_level(logging.WARNING, "patchbay.manifest"):
        await server.start()
        await server.keeper.settle()  # the same outage: not logged again
    try:
        assert caplog.messages == [
            "manifest versions are not recorded: the store cannot be used: "
            "OperationalError: no such table: gate_manifest_versions"
        ]
        assert list(server.served) == [("tool", "a")] and server.manifest.approved is None
        rename_table(engine, "away", "gate_manifest_versions")
        await server.keeper.check()
        assert [(v.version, v.note) for v in history(engine)] == [(1, "+tool:a")]
    finally:
        await server.keeper.stop()


async def test_a_check_that_finds_nothing_new_reads_only_the_latest_version_number(
    review: Server, engine: Engine
) -> None:
    review.publish("a", "a v2")
    await review.keeper.settle()  # the proposal is stored once
    statements: list[str] = []

    def executed(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", executed)
    try:
        await review.keeper.check()
    finally:
        event.remove(Engine, "before_cursor_execute", executed)
    [query] = [s for s in statements if "gate_manifest" in s]  # nothing read or written about proposals
    assert "max(gate_manifest_versions.version)" in query
    assert len(read_proposed(engine)) == 1


def test_a_proposal_replaced_or_dropped_leaves_the_others_and_a_prompt_of_the_same_name_alone(engine: Engine) -> None:
    prompt = Item("prompt", "a", "9" * 64, {"name": "a"}, "docs")
    a, edited, b = published("a", "A")[0], published("a", "A, edited")[0], published("b", "B")[0]
    sync_proposed(engine, diff({}, {("tool", "a"): a, ("prompt", "a"): prompt, ("tool", "b"): b}))
    sync_proposed(engine, diff({}, {("tool", "a"): edited, ("prompt", "a"): prompt, ("tool", "b"): b}))
    assert [(p.kind, p.item) for p in read_proposed(engine)] == [("prompt", prompt), ("tool", edited), ("tool", b)]
    sync_proposed(engine, diff({}, {("prompt", "a"): prompt, ("tool", "b"): b}))  # tool a is no longer observed
    assert [(p.kind, p.item) for p in read_proposed(engine)] == [("prompt", prompt), ("tool", b)]


def test_approving_a_tool_settles_its_proposal_and_not_a_prompt_of_the_same_name(engine: Engine) -> None:
    prompt = Item("prompt", "a", "9" * 64, {"name": "a"}, "docs")
    tool = published("a", "A")[0]
    sync_proposed(engine, diff({}, {("tool", "a"): tool, ("prompt", "a"): prompt}))
    record_version(engine, {("tool", "a"): tool}, previous=0, by="ada", mode="review", note="+tool:a")
    assert [(p.kind, p.item) for p in read_proposed(engine)] == [("prompt", prompt)]
