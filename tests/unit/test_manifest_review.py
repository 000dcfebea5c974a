"""Review mode in one process: a python connector edited on disk and reloaded, a real SQLite store, approvals and
rejections written as the CLI writes them, and what clients are served meanwhile."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from patchbay.app import Runtime
from patchbay.catalog.changes import Item, diff
from patchbay.catalog.digest import visible, wire_digest
from patchbay.catalog.manifest import Key, Manifest, Snapshot, apply, digest_of, summary
from patchbay.catalog.manifest_store import (
    PROPOSED,
    REJECTED,
    history,
    read_proposed,
    read_snapshot,
    record_version,
    reject,
)
from patchbay.errors import ConfigError, RpcError
from patchbay.protocol.scope import CallScope
from patchbay.settings import from_dict
from patchbay.store import create_engine

pytestmark = pytest.mark.anyio

V1 = '''
from patchbay import tool


@tool(read_only=True)
def lookup(id: int) -> str:
    """Look a customer up by id."""
    return f"v1:{id}"


@tool(read_only=True)
def stable(x: int) -> str:
    """Never changes."""
    return "stable"
'''


def config(folder: Path, mode: str = "review", **extra: Any) -> dict[str, Any]:
    return {
        "store": {"url": f"sqlite:///{folder / 'store.db'}"},
        "manifest": {"mode": mode},
        "connectors": [{"name": "py", "type": "python", "path": str(folder / "tools.py"), "prefix": ""}],
        **extra,
    }


@pytest.fixture
async def review(tmp_path: Path) -> AsyncIterator[Runtime]:
    (tmp_path / "tools.py").write_text(V1, encoding="utf-8")
    runtime = Runtime(from_dict(config(tmp_path), base_dir=tmp_path))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


def edit(runtime: Runtime, old: str, new: str) -> None:
    path = Path(runtime.settings.connectors[0].options["path"])
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def listed(runtime: Runtime) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in runtime.catalog.tools_wire}


async def call(runtime: Runtime, name: str, arguments: dict[str, Any]) -> Any:
    scope = CallScope(era="legacy", version="2025-11-25", request_id=1, method="tools/call", client_caps={})
    result = await runtime.dispatcher.dispatch("tools/call", {"name": name, "arguments": arguments}, scope)
    return result["content"][0]["text"]


def published(runtime: Runtime) -> list[str]:
    seen: list[str] = []
    runtime.hub.add(lambda method, params: seen.append(method))
    return seen


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def engine_of(runtime: Runtime) -> Any:
    return create_engine(runtime.settings.store_url)


async def test_the_first_start_in_review_mode_approves_what_is_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "tools.py").write_text(V1, encoding="utf-8")
    runtime = Runtime(from_dict(config(tmp_path), base_dir=tmp_path))
    with caplog.at_level(logging.WARNING, "patchbay.manifest"):
        await runtime.start()
    try:
        assert sorted(listed(runtime)) == ["lookup", "stable"]
        snapshot = read_snapshot(engine_of(runtime))
        assert snapshot is not None and snapshot.version == 1 and snapshot.approved_by == "first start"
        assert sorted(name for _, name in snapshot.entries) == ["lookup", "stable"]
        assert snapshot.digest == runtime.catalog.manifest_hash
        assert "approved (by first start)" in caplog.text
    finally:
        await runtime.stop()


async def test_a_changed_tool_keeps_its_approved_definition_until_approved_and_then_the_list_changes(
    review: Runtime,
) -> None:
    seen = published(review)
    edit(
        review,
        '"""Look a customer up by id."""\n    return f"v1:{id}"',
        '"""Look up; also email it."""\n    return f"v2:{id}"',
    )
    await review.reload()
    await review.keeper.check()  # type: ignore[union-attr]

    assert listed(review)["lookup"]["description"] == "Look a customer up by id."
    assert await call(review, "lookup", {"id": 7}) == "v2:7"  # the handler is the one on disk
    assert seen == []  # only proposed: nothing published
    [proposal] = read_proposed(engine_of(review))
    assert (proposal.name, proposal.state) == ("lookup", PROPOSED)
    assert proposal.item is not None and proposal.item.definition["description"] == "Look up; also email it."

    engine = engine_of(review)
    snapshot = read_snapshot(engine)
    assert snapshot is not None
    new_entries = apply(snapshot.entries, review.catalog.manifest.pending)  # type: ignore[union-attr]
    record_version(engine, new_entries, previous=snapshot.version, by="ada", mode="review", note="~lookup")
    await review.keeper.check()  # type: ignore[union-attr]

    assert listed(review)["lookup"]["description"] == "Look up; also email it."
    assert seen == ["notifications/tools/list_changed"]
    assert read_proposed(engine) == []
    assert [v.approved_by for v in history(engine)] == ["ada", "first start"]


async def test_a_new_tool_is_invisible_and_refused_until_approved(review: Runtime) -> None:
    seen = published(review)
    edit(
        review,
        "@tool(read_only=True)\ndef stable",
        '@tool\ndef wipe() -> str:\n    """Wipe."""\n    return "wiped"\n\n\n@tool(read_only=True)\ndef stable',
    )
    await review.reload()
    await review.keeper.check()  # type: ignore[union-attr]

    assert "wipe" not in listed(review) and "wipe" not in review.catalog.tools
    with pytest.raises(RpcError, match="Unknown tool: wipe"):
        await call(review, "wipe", {})
    assert seen == []
    assert [p.name for p in read_proposed(engine_of(review))] == ["wipe"]


async def test_a_removed_tool_disappears_at_once(review: Runtime) -> None:
    seen = published(review)
    edit(review, "@tool(read_only=True)\ndef stable(x: int) -> str:", "def stable(x: int) -> str:")
    await review.reload()
    assert "stable" not in listed(review)
    with pytest.raises(RpcError, match="Unknown tool: stable"):
        await call(review, "stable", {"x": 1})
    assert seen == ["notifications/tools/list_changed"]


async def test_a_new_required_argument_holds_the_tool_back_until_reviewed(review: Runtime) -> None:
    edit(review, "def lookup(id: int) -> str:", "def lookup(id: int, reason: str) -> str:")
    await review.reload()
    await review.keeper.check()  # type: ignore[union-attr]
    assert "lookup" not in listed(review)
    with pytest.raises(RpcError, match="Unknown tool: lookup"):
        await call(review, "lookup", {"id": 1})
    [held] = review.catalog.manifest.held()  # type: ignore[union-attr]
    assert held.name == "lookup"


async def test_a_rejected_change_stays_rejected_until_the_connector_changes_again(review: Runtime) -> None:
    edit(review, "Never changes.", "Changes after all.")
    await review.reload()
    await review.keeper.check()  # type: ignore[union-attr]
    engine = engine_of(review)
    assert reject(engine, [("tool", "stable")], "ada") == 1

    await review.reload()  # the same definition again: not proposed anew
    await review.keeper.check()  # type: ignore[union-attr]
    [row] = read_proposed(engine)
    assert (row.state, row.decided_by) == (REJECTED, "ada")
    assert listed(review)["stable"]["description"] == "Never changes."

    edit(review, "Changes after all.", "Changes twice.")
    await review.reload()
    await review.keeper.check()  # type: ignore[union-attr]
    [row] = read_proposed(engine)
    assert row.state == PROPOSED and row.item is not None
    assert row.item.definition["description"] == "Changes twice."


async def test_open_mode_serves_changes_at_once_and_records_each_as_a_version(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(V1, encoding="utf-8")
    runtime = Runtime(from_dict(config(tmp_path, mode="open"), base_dir=tmp_path))
    await runtime.start()
    try:
        seen = published(runtime)
        edit(runtime, "Never changes.", "Changed.")
        await runtime.reload()
        assert listed(runtime)["stable"]["description"] == "Changed."
        assert seen == ["notifications/tools/list_changed"]
        await runtime.keeper.check()  # type: ignore[union-attr]
        versions = history(engine_of(runtime))
        assert [(v.version, v.approved_by, v.note) for v in versions] == [
            (2, "auto (open mode)", "~tool:stable"),
            (1, "auto (open mode)", "+tool:lookup +tool:stable"),
        ]
        assert read_proposed(engine_of(runtime)) == []
    finally:
        await runtime.stop()


async def test_open_mode_without_a_store_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(V1, encoding="utf-8")
    data = config(tmp_path, mode="open")
    del data["store"]
    runtime = Runtime(from_dict(data, base_dir=tmp_path))
    await runtime.start()
    try:
        assert runtime.keeper is None and sorted(listed(runtime)) == ["lookup", "stable"]
    finally:
        await runtime.stop()
    assert files_in(tmp_path) == ["tools.py"]


async def test_a_reload_that_fails_to_import_keeps_the_previous_definitions(
    review: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    edit(review, "def stable(x: int) -> str:", "def stable(x: int) -> str\n")
    with caplog.at_level(logging.ERROR, "patchbay.connectors.python"):
        await review.reload()
    assert sorted(listed(review)) == ["lookup", "stable"]
    assert await call(review, "lookup", {"id": 1}) == "v1:1"
    assert "reload failed, keeping the previous definitions" in caplog.text and "SyntaxError" in caplog.text


async def test_review_mode_refuses_to_start_without_a_usable_store(tmp_path: Path) -> None:
    (tmp_path / "tools.py").write_text(V1, encoding="utf-8")
    data = config(tmp_path)
    data["store"] = {"url": f"sqlite:///{tmp_path / 'missing' / 'store.db'}"}
    runtime = Runtime(from_dict(data, base_dir=tmp_path))
    with pytest.raises(ConfigError, match=r'\[manifest\] mode = "review" needs the store'):
        await runtime.start()


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"mode": "reviewed"}, "manifest.mode: Input should be 'open' or 'review' (got 'reviewed')"),
        (
            {"mdoe": "review"},
            "unknown key in [manifest] 'manifest.mdoe'. Did you mean 'mode'? Allowed: mode, poll_seconds.",
        ),
        ({"poll_seconds": 0}, "manifest.poll_seconds: Input should be greater than or equal to 0.1"),
    ],
)
def test_bad_manifest_settings_name_the_file_the_key_and_what_is_allowed(
    manifest: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        from_dict({"manifest": manifest}, source="patchbay.toml")
    assert str(caught.value).startswith("patchbay.toml: ") and message in str(caught.value)


def test_the_store_round_trips_versions_proposals_and_rejections(tmp_path: Path) -> None:
    from patchbay.catalog.manifest_store import VersionConflict, latest_version, sync_proposed
    from patchbay.store import upgrade

    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    approved: dict[Key, Item] = {
        ("tool", "a"): Item("tool", "a", "1" * 64, {"name": "a", "description": "é \u200b", "n": 1.5}, "c")
    }
    assert latest_version(engine) == 0 and read_snapshot(engine) is None
    assert record_version(engine, approved, previous=0, by="ada", mode="review", note="+tool:a") == 1
    with pytest.raises(VersionConflict, match=r"^version 1 was approved meanwhile \(expected 0\)$"):
        record_version(engine, approved, previous=0, by="bob", mode="review", note="")
    snapshot = read_snapshot(engine)
    assert snapshot is not None and snapshot.entries == approved and latest_version(engine) == 1

    changed = Item("tool", "a", "2" * 64, {"name": "a", "description": "new"}, "c")
    observed: dict[Key, Item] = {("tool", "a"): changed, ("tool", "b"): Item("tool", "b", "3" * 64, {"name": "b"}, "c")}
    pending = diff(approved, observed)
    sync_proposed(engine, pending)
    assert [(p.name, p.state, p.item) for p in read_proposed(engine)] == [
        ("a", PROPOSED, changed),
        ("b", PROPOSED, Item("tool", "b", "3" * 64, {"name": "b"}, "c")),
    ]
    reject(engine, [("tool", "a")], "ada")
    sync_proposed(engine, pending)  # observed again, unchanged: the rejection stands
    assert [(p.name, p.state) for p in read_proposed(engine)] == [("a", REJECTED), ("b", PROPOSED)]
    again = Item("tool", "a", "4" * 64, {"name": "a", "description": "newer"}, "c")
    later: dict[Key, Item] = {("tool", "a"): again}
    sync_proposed(engine, diff(approved, later))  # changed again; b is no longer observed
    assert [(p.name, p.state, p.item) for p in read_proposed(engine)] == [("a", PROPOSED, again)]
    record_version(engine, later, previous=1, by="ada", mode="review", note="~tool:a")
    assert read_proposed(engine) == []  # settled by the approval
    engine.dispose()


def observed_tool(
    name: str, description: str, connector: str = "one", required: tuple[str, ...] = ()
) -> tuple[Item, dict[str, Any]]:
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": list(required)}
    wire = {"name": name, "description": description, "inputSchema": schema}
    return Item("tool", name, wire_digest(wire), visible(wire), connector), wire


def approved_as_version_1(*pairs: tuple[Item, dict[str, Any]]) -> Snapshot:
    entries = {("tool", item.name): item for item, _ in pairs}
    return Snapshot(1, digest_of(entries.values()), "ada", 0.0, "review", "", entries)


def test_review_mode_serves_approved_definitions_in_the_published_order_and_hides_the_rest() -> None:
    kept, edited, held, gone = (
        observed_tool("kept", "Kept."),
        observed_tool("edited", "Old."),
        observed_tool("held", "Held."),
        observed_tool("gone", "Gone."),
    )
    manifest = Manifest("review")
    assert manifest.review({("tool", "kept"): kept}, frozenset()) == {}  # nothing approved yet: nothing served
    manifest.approved = approved_as_version_1(kept, edited, held, gone)
    observed = {
        ("tool", "new"): observed_tool("new", "New."),
        ("tool", "held"): observed_tool("held", "Held.", required=("x",)),
        ("tool", "edited"): observed_tool("edited", "New words."),
        ("tool", "kept"): kept,
    }
    served = manifest.review(observed, frozenset())
    assert list(served) == [("tool", "edited"), ("tool", "kept")]
    assert served[("tool", "edited")] == edited[0].definition and served[("tool", "kept")] is kept[1]
    assert [(c.name, c.status, c.hold) for c in manifest.pending] == [
        ("edited", "changed", False),
        ("gone", "removed", False),
        ("held", "changed", True),
        ("new", "new", False),
    ]
    assert [c.name for c in manifest.held()] == ["held"]


def test_open_mode_serves_what_is_published_in_its_order_and_lists_it_as_pending() -> None:
    manifest = Manifest("open")
    manifest.approved = approved_as_version_1(observed_tool("a", "A."))
    observed = {("tool", "b"): observed_tool("b", "B."), ("tool", "a"): observed_tool("a", "A, edited.")}
    served = manifest.review(observed, frozenset())
    assert list(served.items()) == [(key, wire) for key, (_, wire) in observed.items()]
    assert [(c.name, c.status) for c in manifest.pending] == [("a", "changed"), ("b", "new")]


def test_the_approved_items_of_a_connector_that_is_down_are_absent_not_removed() -> None:
    up, down = observed_tool("a", "A.", "one"), observed_tool("b", "B.", "two")
    manifest = Manifest("review")
    manifest.approved = approved_as_version_1(up, down)
    assert manifest.review({("tool", "a"): up}, frozenset({"two"})) == {("tool", "a"): up[1]}
    assert manifest.pending == [] and manifest.effective() == {("tool", "a"): up[0]}
    manifest.review({("tool", "a"): up}, frozenset())
    assert [(c.name, c.status) for c in manifest.pending] == [("b", "removed")]


def test_the_history_line_marks_new_changed_and_removed_items() -> None:
    a, b, c = observed_tool("a", "A."), observed_tool("b", "B."), observed_tool("c", "C.")
    approved = {("tool", "b"): b[0], ("tool", "c"): c[0]}
    observed = {("tool", "a"): a[0], ("tool", "b"): observed_tool("b", "B, edited.")[0]}
    assert summary(diff(approved, observed)) == "+tool:a ~tool:b -tool:c"


def test_a_manifest_not_reviewed_yet_has_nothing_observed_pending_or_held() -> None:
    manifest = Manifest("review")
    assert (manifest.observed, manifest.pending, manifest.held(), manifest.down) == ({}, [], [], frozenset())
    manifest.approved = approved_as_version_1(observed_tool("a", "A.", "one"))
    assert manifest.effective() == {("tool", "a"): manifest.approved.entries[("tool", "a")]}
