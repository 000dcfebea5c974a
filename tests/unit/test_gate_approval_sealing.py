"""Held arguments at rest, on a real SQLite store: sealed with the vault, shown to approvers redacted the way the
audit trail redacts them, run unredacted once approved; a sealed value moved to another row does not open; rows
held before sealing (migration gate_0003) stay readable and still run."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from patchbay.auth.principal import Principal
from patchbay.gate import Decision
from patchbay.gate.approval_store import ApprovalStore, redactor
from patchbay.gate.approvals import META_KEY, Approvals, arguments_digest
from patchbay.protocol.scope import CallScope
from patchbay.settings import ApprovalsSettings
from patchbay.store import create_engine, upgrade
from patchbay.vault import Vault

DECISION = Decision("approve", "policy[0]", "approval required by policy[0]")
TOOL, DIGEST = "deploy", "d" * 64
ALICE = Principal("user:alice", "user", username="alice", client_id="client-1")
SCHEMA = {
    "type": "object",
    "properties": {
        "service": {"type": "string"},
        "db_password": {"type": "string", "format": "password"},
        "signing": {"type": "object", "properties": {"pem": {"type": "string", "writeOnly": True}}},
        "notes": {"type": "array", "items": {"type": "string"}},
    },
}
ARGUMENTS = {
    "service": "billing",
    "db_password": "hunter2-very-secret",
    "signing": {"pem": "-----BEGIN KEY----- s3cr3t", "label": "prod"},
    "deploy_token": "tok-0123456789",  # a name in [audit] redact_fields (FIELDS)
    "notes": ["ship it", "after lunch"],
}
FIELDS = ["deploy_token"]
SECRETS = ("hunter2-very-secret", "s3cr3t", "tok-0123456789")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "gate.db"


@pytest.fixture
def approvals(db: Path) -> Iterator[Approvals]:
    engine = create_engine(f"sqlite:///{db}")
    upgrade(engine)
    gate = Approvals(
        engine,
        ApprovalsSettings(ttl_seconds=900),
        "https://mcp.example.com",
        vault=Vault.ephemeral(),
        redact=redactor(FIELDS),
        schemas=lambda name: SCHEMA if name == TOOL else None,
    )
    yield gate
    engine.dispose()


def scope() -> CallScope:
    return CallScope("legacy", "2025-06-18", 1, "tools/call", {}, principal=ALICE)


def admit(gate: Approvals, arguments: dict[str, Any], call: CallScope | None = None) -> Any:
    return asyncio.run(gate.admit(TOOL, DIGEST, arguments, call or scope(), DECISION))


def raw_row(db: Path, approval_id: str) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM gate_approvals WHERE id = ?", (approval_id,)).fetchone()
    return dict(row)


def test_held_arguments_are_sealed_at_rest_and_shown_redacted_with_the_count(approvals: Approvals, db: Path) -> None:
    approval_id = admit(approvals, ARGUMENTS)["_meta"][META_KEY]["approval_id"]
    row = raw_row(db, approval_id)
    assert row["sealed"] == 1 and row["arguments"].startswith("pbv1.")
    whole_row = orjson.dumps(row).decode()
    assert not any(secret in whole_row for secret in SECRETS), "a secret is stored in clear"
    assert "billing" not in row["arguments"]  # everything is sealed, not only the secrets

    view = approvals.store.get(approval_id)
    assert view is not None and view.hidden == 3
    assert view.shown == {
        "service": "billing",
        "db_password": "[redacted]",
        "signing": {"pem": "[redacted]", "label": "prod"},
        "deploy_token": "[redacted]",
        "notes": ["ship it", "after lunch"],
    }


def test_the_approved_arguments_that_run_are_the_stored_ones_unredacted(approvals: Approvals) -> None:
    approval_id = admit(approvals, ARGUMENTS)["_meta"][META_KEY]["approval_id"]
    approvals.store.approve(approval_id, "ada")
    call = scope()
    assert admit(approvals, dict(reversed(list(ARGUMENTS.items()))), call) is None
    assert call.approved_arguments == ARGUMENTS


def test_sealed_arguments_moved_to_another_approval_do_not_open_and_nothing_runs(
    approvals: Approvals, db: Path
) -> None:
    first = admit(approvals, ARGUMENTS)["_meta"][META_KEY]["approval_id"]
    other = {**ARGUMENTS, "service": "payroll"}
    second = admit(approvals, other)["_meta"][META_KEY]["approval_id"]
    with sqlite3.connect(db) as conn:  # someone with write access to the store swaps the sealed arguments
        conn.execute(
            "UPDATE gate_approvals SET arguments = (SELECT arguments FROM gate_approvals WHERE id = ?) WHERE id = ?",
            (first, second),
        )
    approvals.store.approve(second, "ada")
    call = scope()
    result = admit(approvals, other, call)
    assert result["isError"] is True and "cannot be opened" in result["content"][0]["text"]
    assert call.approved_arguments is None
    assert approvals.store.get(second).status == "approved"  # type: ignore[union-attr]  # not spent


def test_a_row_held_before_sealing_stays_readable_redacted_and_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    upgrade(engine, "gate_0002")  # the store as it was before arguments were sealed
    arguments = {"service": "billing", "password": "old-secret"}
    digest = arguments_digest(arguments)
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute(
            "INSERT INTO gate_approvals (id, status, subject, username, client_id, tool, tool_digest, args_digest,"
            " arguments, rule, reason, approved_by, created_at, expires_at)"
            " VALUES ('old1', 'approved', 'user:alice', 'alice', 'client-1', ?, ?, ?, ?, 'r', 'r', 'ada', ?, ?)",
            (TOOL, DIGEST, digest, orjson.dumps(arguments).decode(), 1.0, 4e9),
        )
    upgrade(engine)
    view = ApprovalStore(engine, redact=redactor()).get("old1")
    assert view is not None and view.shown == {"service": "billing", "password": "[redacted]"} and view.hidden == 1
    gate = Approvals(engine, ApprovalsSettings(), "https://mcp.example.com")
    call = scope()
    assert admit(gate, arguments, call) is None
    assert call.approved_arguments == arguments
    engine.dispose()


def test_a_pending_row_held_before_sealing_can_be_approved_or_denied_and_is_shown_redacted(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "gate_0002")
    arguments = orjson.dumps({"service": "billing", "password": "old-secret"}).decode()
    with sqlite3.connect(tmp_path / "old.db") as conn:
        for approval_id in ("old1", "old2"):
            conn.execute(
                "INSERT INTO gate_approvals (id, status, subject, username, client_id, tool, tool_digest, args_digest,"
                " arguments, rule, reason, approved_by, created_at, expires_at)"
                " VALUES (?, 'pending', 'user:alice', 'alice', 'client-1', ?, ?, ?, ?, 'r', 'r', '', ?, ?)",
                (approval_id, TOOL, DIGEST, "0" * 64, arguments, 1.0, 4e9),
            )
    upgrade(engine)
    store = ApprovalStore(engine, redact=redactor())
    shown = {"service": "billing", "password": "[redacted]"}
    assert [(view.id, view.shown, view.hidden) for view in store.list()] == [("old2", shown, 1), ("old1", shown, 1)]
    approved, denied = store.approve("old1", "ada"), store.deny("old2", "ada")
    assert (approved.status, approved.shown, approved.hidden) == ("approved", shown, 1)
    assert (denied.status, denied.shown, denied.hidden) == ("denied", shown, 1)
    engine.dispose()
