"""A Hypothesis state machine over review mode (after mcpproxy's quarantine invariants): connectors publish, change,
hold and drop definitions at random, connectors go down and come back, operators approve all or some changes.

Invariants after every step:
- no unapproved definition is ever served: each served definition's digest is the approved one for its name;
- a new item is never served before it is approved, and a held one is never served;
- the approved manifest changes only by an approval.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from patchbay.catalog.changes import Item
from patchbay.catalog.digest import visible, wire_digest
from patchbay.catalog.manifest import Key, Manifest, Snapshot, apply, digest_of

NAMES = ["a", "b", "c", "d"]
CONNECTORS = {"a": "one", "b": "one", "c": "two", "d": "two"}


def wire(name: str, description: str, required: bool, read_only: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "string"}}}
    schema["required"] = ["x", "y"] if required else ["x"]
    annotations = {"readOnlyHint": read_only, "destructiveHint": not read_only}
    return {"name": name, "description": description, "inputSchema": schema, "annotations": annotations}


definitions = st.builds(
    wire,
    st.sampled_from(NAMES),
    st.sampled_from(["Look up.", "Look up.\u200b", "Delete.", "Look up a record."]),
    st.booleans(),
    st.booleans(),
)


class ReviewMode(RuleBasedStateMachine):
    @initialize(first=st.lists(definitions, unique_by=lambda w: w["name"]))
    def start(self, first: list[dict[str, Any]]) -> None:
        self.published: dict[str, dict[str, Any]] = {w["name"]: w for w in first}
        self.down: set[str] = set()
        self.manifest = Manifest("review")
        self.served: dict[Key, Any] = {}
        self.review()
        entries: dict[Key, Item] = {("tool", n): self.item(w) for n, w in self.published.items()}  # first start
        self.approve_entries(entries)

    def item(self, definition: dict[str, Any]) -> Item:
        name = definition["name"]
        return Item("tool", name, wire_digest(definition), visible(definition), CONNECTORS[name])

    def review(self) -> None:
        up = {n: w for n, w in self.published.items() if CONNECTORS[n] not in self.down}
        observed: dict[Key, tuple[Item, dict[str, Any]]] = {("tool", n): (self.item(w), w) for n, w in up.items()}
        self.approved_before = self.manifest.approved
        self.served = self.manifest.review(observed, frozenset(self.down))
        assert self.manifest.approved is self.approved_before, "reviewing never approves"

    def approve_entries(self, entries: dict[Key, Item]) -> None:
        previous = self.manifest.approved
        version = previous.version + 1 if previous is not None else 1
        self.manifest.approved = Snapshot(version, digest_of(entries.values()), "test", 0.0, "review", "", entries)
        self.review()

    @rule(definition=definitions)
    def publish(self, definition: dict[str, Any]) -> None:
        self.published[definition["name"]] = definition
        self.review()

    @rule(name=st.sampled_from(NAMES))
    def drop(self, name: str) -> None:
        self.published.pop(name, None)
        self.review()

    @rule(connector=st.sampled_from(["one", "two"]))
    def toggle_connector(self, connector: str) -> None:
        self.down ^= {connector}
        self.review()

    @rule()
    def approve_all(self) -> None:
        assert self.manifest.approved is not None
        self.approve_entries(apply(self.manifest.approved.entries, self.manifest.pending))
        assert self.manifest.pending == []

    @rule(name=st.sampled_from(NAMES))
    def approve_one(self, name: str) -> None:
        assert self.manifest.approved is not None
        chosen = [c for c in self.manifest.pending if c.name == name]
        self.approve_entries(apply(self.manifest.approved.entries, chosen))
        assert all(c.name != name for c in self.manifest.pending)

    @invariant()
    def only_approved_definitions_are_served(self) -> None:
        approved = self.manifest.approved.entries if self.manifest.approved is not None else {}
        for key, definition in self.served.items():
            assert key in approved, f"{key} served without approval"
            assert wire_digest(definition) == approved[key].digest, f"{key} served with an unapproved definition"

    @invariant()
    def held_and_new_items_are_not_served(self) -> None:
        for change in self.manifest.pending:
            key = (change.kind, change.name)
            if change.status == "new" or change.hold or change.status == "removed":
                assert key not in self.served, f"{key} ({change.status}, hold={change.hold}) is served"

    @invariant()
    def a_served_item_is_one_a_connector_publishes(self) -> None:
        for _, name in self.served:
            assert name in self.published and CONNECTORS[name] not in self.down


ReviewMode.TestCase.settings = settings(max_examples=150, stateful_step_count=25, deadline=None)
test_review_mode_serves_only_approved_definitions = ReviewMode.TestCase
