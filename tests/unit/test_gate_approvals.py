"""Held calls and their approvals on a real SQLite store: digests, one-shot redemption, expiry, replay, changed
arguments, another caller, a changed tool, concurrent redeems, denials and the answer each client kind gets."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.clock import Clock

from patchbay.auth.principal import Principal
from patchbay.errors import RpcError
from patchbay.gate import Decision
from patchbay.gate.approval_store import ApprovalRefused
from patchbay.gate.approvals import META_KEY, URL_ELICITATION_REQUIRED, Approvals, arguments_digest
from patchbay.protocol.scope import CallScope, InputRequired
from patchbay.settings import ApprovalsSettings
from patchbay.store import create_engine, upgrade

DECISION = Decision("approve", "policy[0]", "approval required by policy[0] (card writes)")
TOOL, DIGEST = "create_card", "a" * 64
ALICE = Principal("user:alice", "user", username="alice", client_id="client-1")
BOB = Principal("user:bob", "user", username="bob", client_id="client-1")


@pytest.fixture
def clock() -> Clock:
    return Clock(1_000_000.0)


@pytest.fixture
def approvals(tmp_path: Path, clock: Clock) -> Iterator[Approvals]:
    engine = create_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    upgrade(engine)
    gate = Approvals(engine, ApprovalsSettings(ttl_seconds=900), "https://mcp.example.com", clock=clock)
    yield gate
    engine.dispose()


def scope(principal: Any = ALICE, *, era: str = "legacy", version: str = "2025-06-18", caps: Any = None) -> CallScope:
    return CallScope(era, version, 1, "tools/call", caps or {}, principal=principal)  # type: ignore[arg-type]


def admit(gate: Approvals, arguments: dict[str, Any], call: CallScope | None = None, digest: str = DIGEST) -> Any:
    return asyncio.run(gate.admit(TOOL, digest, arguments, call or scope(), DECISION))


def held_id(result: dict[str, Any]) -> str:
    approval_id: str = result["_meta"][META_KEY]["approval_id"]
    return approval_id


def test_argument_digest_ignores_key_order_and_whitespace_but_not_values() -> None:
    assert arguments_digest({"a": 1, "b": [1, 2]}) == arguments_digest({"b": [1, 2], "a": 1})
    assert arguments_digest({"a": 1}) != arguments_digest({"a": 2})
    assert arguments_digest({"a": 1.0}) == arguments_digest({"a": 1})  # RFC 8785 numbers: 1.0 is 1


def test_arguments_beyond_rfc8785_are_refused_with_a_reason() -> None:
    with pytest.raises(RpcError) as raised:
        arguments_digest({"n": 2**60})
    assert raised.value.code == -32602 and "2**53" in raised.value.message


def test_a_held_call_gets_a_link_in_an_ordinary_result_and_is_held_once(approvals: Approvals) -> None:
    first = admit(approvals, {"title": "Ship"})
    assert first["isError"] is False
    approval_id = held_id(first)
    assert f"https://mcp.example.com/approvals/{approval_id}" in first["content"][0]["text"]
    assert first["_meta"][META_KEY]["status"] == "pending"
    assert "structuredContent" not in first
    assert held_id(admit(approvals, {"title": "Ship"})) == approval_id
    assert [a.id for a in approvals.store.list()] == [approval_id]


def test_a_granted_call_runs_the_stored_arguments_once(approvals: Approvals) -> None:
    approval_id = held_id(admit(approvals, {"title": "Ship", "labels": ["x"]}))
    approvals.store.approve(approval_id, "ada")
    call = scope()
    assert admit(approvals, {"labels": ["x"], "title": "Ship"}, call) is None
    assert call.approved_arguments == {"title": "Ship", "labels": ["x"]}
    replay = scope()
    again = admit(approvals, {"title": "Ship", "labels": ["x"]}, replay)
    assert replay.approved_arguments is None
    assert held_id(again) != approval_id and "already run" in again["content"][0]["text"]
    assert approvals.store.get(approval_id).status == "used"  # type: ignore[union-attr]


def test_changed_arguments_need_their_own_approval(approvals: Approvals) -> None:
    approval_id = held_id(admit(approvals, {"title": "Ship"}))
    approvals.store.approve(approval_id, "ada")
    call = scope()
    other = admit(approvals, {"title": "Ship it all"}, call)
    assert call.approved_arguments is None and held_id(other) != approval_id
    assert approvals.store.get(approval_id).status == "approved"  # type: ignore[union-attr]


def test_another_caller_cannot_redeem_an_approval(approvals: Approvals) -> None:
    approval_id = held_id(admit(approvals, {"title": "Ship"}))
    approvals.store.approve(approval_id, "ada")
    call = scope(BOB)
    assert held_id(admit(approvals, {"title": "Ship"}, call)) != approval_id
    assert call.approved_arguments is None
    other_client = scope(Principal("user:alice", "user", username="alice", client_id="client-2"))
    assert held_id(admit(approvals, {"title": "Ship"}, other_client)) != approval_id


def test_an_expired_approval_is_not_run(approvals: Approvals, clock: Clock) -> None:
    approval_id = held_id(admit(approvals, {"title": "Ship"}))
    approvals.store.approve(approval_id, "ada")
    clock.now += 901
    call = scope()
    result = admit(approvals, {"title": "Ship"}, call)
    assert call.approved_arguments is None and "expired" in result["content"][0]["text"]
    assert approvals.store.get(approval_id).status == "expired"  # type: ignore[union-attr]


def test_an_expired_request_cannot_be_approved(approvals: Approvals, clock: Clock) -> None:
    approval_id = held_id(admit(approvals, {"title": "Ship"}))
    clock.now += 901
    with pytest.raises(ApprovalRefused, match="expired"):
        approvals.store.approve(approval_id, "ada")


def test_a_changed_tool_voids_its_approval_and_never_runs(approvals: Approvals) -> None:
    approval_id = held_id(admit(approvals, {"title": "Ship"}))
    approvals.store.approve(approval_id, "ada")
    call = scope()
    result = admit(approvals, {"title": "Ship"}, call, digest="b" * 64)
    assert result["isError"] is True and "changed after this call was approved" in result["content"][0]["text"]
    assert call.approved_arguments is None
    assert approvals.store.get(approval_id).status == "void"  # type: ignore[union-attr]
    assert admit(approvals, {"title": "Ship"}, scope(), digest=DIGEST)["_meta"][META_KEY]["status"] == "pending"


def test_concurrent_redeems_of_one_approval_run_it_exactly_once(approvals: Approvals) -> None:
    approval_id = held_id(admit(approvals, {"title": "Ship"}))
    approvals.store.approve(approval_id, "ada")
    barrier = threading.Barrier(8)
    won: list[dict[str, Any]] = []

    def redeem() -> None:
        barrier.wait(timeout=10)
        stored = approvals.store.consume(approval_id, DIGEST)
        if stored is not None:
            won.append(stored)

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert won == [{"title": "Ship"}]


def test_a_denied_call_is_refused_until_the_denial_lapses(approvals: Approvals, clock: Clock) -> None:
    approval_id = held_id(admit(approvals, {"title": "Ship"}))
    approvals.store.deny(approval_id, "ada")
    refused = admit(approvals, {"title": "Ship"})
    assert refused["isError"] is True and "ada denied" in refused["content"][0]["text"]
    with pytest.raises(ApprovalRefused, match="denied"):
        approvals.store.approve(approval_id, "ada")
    clock.now += 901
    assert held_id(admit(approvals, {"title": "Ship"})) != approval_id


def test_two_approvers_are_needed_when_required(approvals: Approvals) -> None:
    approval_id = held_id(admit(approvals, {"title": "Ship"}))
    assert approvals.store.approve(approval_id, "ada", required=2).status == "pending"
    with pytest.raises(ApprovalRefused, match="already"):
        approvals.store.approve(approval_id, "ada", required=2)
    assert admit(approvals, {"title": "Ship"})["_meta"][META_KEY]["status"] == "pending"
    done = approvals.store.approve(approval_id, "grace", required=2)
    assert done.status == "approved" and done.approved_by == ("ada", "grace")


def test_a_2025_11_25_client_declaring_url_elicitation_gets_32042(approvals: Approvals) -> None:
    call = scope(version="2025-11-25", caps={"elicitation": {"form": {}, "url": {}}})
    with pytest.raises(RpcError) as raised:
        admit(approvals, {"title": "Ship"}, call)
    error = raised.value.to_error()
    assert error["code"] == URL_ELICITATION_REQUIRED
    [elicitation] = error["data"]["elicitations"]
    assert elicitation["mode"] == "url" and elicitation["url"].endswith(f"/approvals/{elicitation['elicitationId']}")
    assert elicitation["message"]


def test_a_form_only_elicitation_client_gets_the_link_as_a_result(approvals: Approvals) -> None:
    call = scope(version="2025-11-25", caps={"elicitation": {}})
    assert admit(approvals, {"title": "Ship"}, call)["isError"] is False


def test_a_2026_client_declaring_url_elicitation_gets_an_input_request(approvals: Approvals) -> None:
    call = scope(era="modern", version="2026-07-28", caps={"elicitation": {"url": {}}})
    with pytest.raises(InputRequired) as raised:
        admit(approvals, {"title": "Ship"}, call)
    [(key, request)] = raised.value.requests.items()
    assert request["method"] == "elicitation/create" and request["params"]["mode"] == "url"
    answered = scope(era="modern", version="2026-07-28", caps={"elicitation": {"url": {}}})
    answered.input_responses = {key: {"action": "decline"}}
    result = admit(approvals, {"title": "Ship"}, answered)
    assert result["isError"] is True and "declined" in result["content"][0]["text"]


def test_a_bad_approvals_setting_names_the_file_the_key_and_what_is_allowed() -> None:
    from patchbay.errors import ConfigError
    from patchbay.settings import from_dict

    with pytest.raises(ConfigError) as raised:
        from_dict({"approvals": {"required_approvals": 0}}, source="patchbay.toml")
    assert "patchbay.toml: approvals.required_approvals" in str(raised.value)
    assert "greater than or equal to 1" in str(raised.value)
    with pytest.raises(ConfigError) as unknown:
        from_dict({"approvals": {"approver_role": ["x"]}}, source="patchbay.toml")
    assert "unknown key in [approvals] 'approvals.approver_role'. Did you mean 'approver_roles'?" in str(unknown.value)


def test_an_approval_id_never_starts_with_a_dash_so_the_cli_takes_it_as_an_argument(
    approvals: Approvals, monkeypatch: pytest.MonkeyPatch
) -> None:
    from patchbay.gate import approval_store

    drawn = iter(["-looks-like-an-option", "--another-one", "Xy3-fine-id"])
    monkeypatch.setattr(approval_store.secrets, "token_urlsafe", lambda n: next(drawn))
    assert held_id(admit(approvals, {"title": "Dash"})) == "Xy3-fine-id"
