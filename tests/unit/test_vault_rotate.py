"""``patchbay vault rotate`` on a real SQLite store: held calls' sealed arguments (context ``approval:<id>``) are
re-sealed with the new first key together with linked accounts, so the old key can be dropped and an approved
call still runs; without rotating, or rotating after the old key is gone, nothing is lost and the CLI says why."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from patchbay.auth.principal import Principal
from patchbay.gate import Decision
from patchbay.gate.approvals import META_KEY, Approvals
from patchbay.links.store import LinkStore, Tokens
from patchbay.protocol.scope import CallScope
from patchbay.settings import ApprovalsSettings
from patchbay.store import create_engine, upgrade
from patchbay.vault import Vault, key_id

DECISION = Decision("approve", "policy[0]", "approval required by policy[0]")
TOOL, DIGEST = "deploy", "d" * 64
ALICE = Principal("user:alice", "user", username="alice", client_id="client-1")
ARGUMENTS = {"service": "billing", "db_password": "hunter2-very-secret"}


def new_key() -> tuple[bytes, str]:
    raw = secrets.token_bytes(32)
    return raw, base64.urlsafe_b64encode(raw).decode()


def write_config(folder: Path, keys: list[str]) -> Path:
    path = folder / "patchbay.toml"
    listed = ", ".join(f'"{key}"' for key in keys)
    path.write_text(f'[store]\nurl = "sqlite:///{folder / "store.db"}"\n[vault]\nkeys = [{listed}]\n', "utf-8")
    return path


def rotate(config: Path) -> subprocess.CompletedProcess[str]:
    script = str(Path(sys.executable).with_name("patchbay"))
    return subprocess.run(
        [script, "vault", "rotate", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "400", "NO_COLOR": "1"},
    )


def gate(folder: Path, vault: Vault) -> Approvals:
    engine = create_engine(f"sqlite:///{folder / 'store.db'}")
    upgrade(engine)
    return Approvals(engine, ApprovalsSettings(ttl_seconds=900), "https://mcp.example.com", vault=vault)


def scope() -> CallScope:
    return CallScope("legacy", "2025-06-18", 1, "tools/call", {}, principal=ALICE)


def admit(approvals: Approvals, call: CallScope | None = None) -> Any:
    return asyncio.run(approvals.admit(TOOL, DIGEST, dict(ARGUMENTS), call or scope(), DECISION))


def sealed_arguments(folder: Path, approval_id: str) -> str:
    with sqlite3.connect(folder / "store.db") as conn:
        (text,) = conn.execute("SELECT arguments FROM gate_approvals WHERE id = ?", (approval_id,)).fetchone()
    return str(text)


@pytest.fixture
def held(tmp_path: Path) -> tuple[str, bytes, str]:
    """A call held and approved under key A, and a linked account sealed under A: (approval id, A, A as text)."""
    a, a_text = new_key()
    approvals = gate(tmp_path, Vault([a]))
    approval_id = admit(approvals)["_meta"][META_KEY]["approval_id"]
    approvals.store.approve(approval_id, "ada")
    LinkStore(approvals.store.engine, Vault([a])).save_account(
        "jira", "user:alice", "https://as.example.com", Tokens("access-1", "refresh-1", None)
    )
    approvals.close()
    return approval_id, a, a_text


def test_rotating_reseals_held_arguments_so_the_old_key_can_go_and_the_approved_call_runs(
    tmp_path: Path, held: tuple[str, bytes, str]
) -> None:
    approval_id, a, a_text = held
    b, b_text = new_key()
    assert sealed_arguments(tmp_path, approval_id).startswith(f"pbv1.{key_id(a)}.")

    done = rotate(write_config(tmp_path, [b_text, a_text]))
    assert done.returncode == 0, done.stderr
    assert f"Re-sealed 3 secret(s) with key {key_id(b)}" in done.stdout  # access + refresh token + arguments
    assert sealed_arguments(tmp_path, approval_id).startswith(f"pbv1.{key_id(b)}.")

    approvals = gate(tmp_path, Vault([b]))  # A dropped from [vault] keys
    call = scope()
    assert admit(approvals, call) is None  # the approval is redeemed: the call runs
    assert call.approved_arguments == ARGUMENTS
    account = LinkStore(approvals.store.engine, Vault([b])).account("jira", "user:alice")
    assert account is not None and account.tokens.refresh_token == "refresh-1"
    approvals.close()


def test_without_rotating_a_dropped_key_leaves_the_approved_call_unable_to_run_and_still_granted(
    tmp_path: Path, held: tuple[str, bytes, str]
) -> None:
    approval_id, _, _ = held
    b, _ = new_key()
    approvals = gate(tmp_path, Vault([b]))
    call = scope()
    result = admit(approvals, call)
    assert result["isError"] is True and "cannot be opened" in result["content"][0]["text"]
    assert call.approved_arguments is None
    assert approvals.store.get(approval_id).status == "approved"  # type: ignore[union-attr]
    approvals.close()


def test_rotating_after_the_old_key_is_gone_changes_nothing_and_says_which_secrets(
    tmp_path: Path, held: tuple[str, bytes, str]
) -> None:
    approval_id, a, a_text = held
    before = sealed_arguments(tmp_path, approval_id)
    _, b_text = new_key()
    done = rotate(write_config(tmp_path, [b_text]))
    assert done.returncode == 1
    assert "cannot re-seal linked accounts" in done.stderr and f"sealed under key {key_id(a)}" in done.stderr
    assert sealed_arguments(tmp_path, approval_id) == before
    # Once A is back, the rotation completes.
    assert rotate(write_config(tmp_path, [b_text, a_text])).returncode == 0
