"""The approvals' exact promises on a real SQLite store (docs/approvals.md): what a caller, an approver and an operator
are told, word for word; what is recorded for a held call; expiry at its boundary; one redemption even when another
call redeems first; voiding, denying and approving by the rules; listing, paging and statuses; the sealed arguments'
vault context and re-sealing; and when approvals exist at all."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from patchbay.auth.principal import Principal
from patchbay.errors import RpcError
from patchbay.gate import Decision, approvals_wanted
from patchbay.gate.approval_store import ApprovalRefused, ApprovalStore, HeldCall, hidden_note, redactor
from patchbay.gate.approvals import INPUT_KEY, META_KEY, Approvals, arguments_digest
from patchbay.observe.wiring import _pending_counter
from patchbay.protocol.scope import CallScope, InputRequired
from patchbay.settings import ApprovalsSettings, from_dict
from patchbay.store import create_engine, upgrade
from patchbay.transport.sessions import Session
from patchbay.vault import Vault

DECISION = Decision("approve", "policy[0]", "approval required by policy[0] (card writes)")
TOOL, DIGEST, OTHER_DIGEST = "create_card", "a" * 64, "b" * 64
ALICE = Principal("user:alice", "user", username="alice", client_id="client-1")
START = 1_000_000.0  # 1970-01-12 13:46 UTC; a request held then expires at 14:01 UTC (ttl 900 s)
URL = "https://mcp.example.com/approvals/"


class Clock:
    """The store's clock; ``before_next`` runs once, inside the next reading (another request acting meanwhile)."""

    def __init__(self) -> None:
        self.now = START
        self.before_next: Any = None

    def __call__(self) -> float:
        hook, self.before_next = self.before_next, None
        if hook is not None:
            hook()
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def audited() -> list[tuple[str, dict[str, Any]]]:
    return []


@pytest.fixture
def approvals(tmp_path: Path, clock: Clock, audited: list[tuple[str, dict[str, Any]]]) -> Iterator[Approvals]:
    engine = create_engine(f"sqlite:///{tmp_path / 'gate.db'}")  # not migrated: the first use migrates it
    gate = Approvals(
        engine,
        ApprovalsSettings(ttl_seconds=900),
        "https://mcp.example.com",
        clock=clock,
        audit=lambda method, **fields: audited.append((method, fields)),
    )
    yield gate
    gate.close()
    engine.dispose()


def scope(principal: Any = ALICE, *, era: str = "legacy", version: str = "2025-06-18", caps: Any = None) -> CallScope:
    return CallScope(era, version, 1, "tools/call", caps or {}, {"name": "Claude"}, principal=principal)  # type: ignore[arg-type]


def admit(gate: Approvals, arguments: dict[str, Any], call: CallScope | None = None, digest: str = DIGEST) -> Any:
    return asyncio.run(gate.admit(TOOL, digest, arguments, call or scope(), DECISION))


def held_id(result: dict[str, Any]) -> str:
    approval_id: str = result["_meta"][META_KEY]["approval_id"]
    return approval_id


def needed(approval_id: str, note: str = "") -> str:
    return (
        f"{note}Approval needed (approval required by policy[0] (card writes)): a person with an approver role must "
        f"approve this exact call of 'create_card' at {URL}{approval_id} before 1970-01-12 14:01 UTC."
    )


def held_result(approval_id: str, note: str = "") -> dict[str, Any]:
    text = f"{needed(approval_id, note)} Once it is approved, call create_card again with exactly the same arguments."
    return {
        "content": [{"type": "text", "text": text}],
        "isError": False,
        "_meta": {META_KEY: {"approval_id": approval_id, "status": "pending", "url": URL + approval_id}},
    }


def refusal(approval_id: str, status: str, text: str) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": text}],
        "isError": True,
        "_meta": {META_KEY: {"approval_id": approval_id, "status": status}},
    }


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "patchbay.gate"]


# What the caller is told


def test_a_held_call_is_answered_word_for_word_and_migrates_the_store_on_first_use(approvals: Approvals) -> None:
    result = admit(approvals, {"title": "Ship"})
    assert result == held_result(held_id(result))


def test_times_are_told_in_utc_whatever_the_servers_time_zone(
    approvals: Approvals, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # UTC+05:30
    time.tzset()
    try:
        result = admit(approvals, {"title": "Ship"})
    finally:
        monkeypatch.undo()
        time.tzset()
    assert result == held_result(held_id(result))  # "before 1970-01-12 14:01 UTC", not 19:31


def test_a_held_call_records_who_called_through_which_client_and_is_audited_and_logged(
    approvals: Approvals, audited: list[tuple[str, dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "patchbay.gate")
    call = scope()
    call.client_info = {"name": "C" * 300}
    approval_id = held_id(admit(approvals, {"title": "Ship"}, call))
    view = approvals.store.get(approval_id)
    assert view is not None
    assert (view.subject, view.username, view.client_id, view.client_name) == (
        "user:alice",
        "alice",
        "client-1",
        "C" * 200,
    )
    assert (view.tool, view.tool_digest, view.args_digest) == (TOOL, DIGEST, arguments_digest({"title": "Ship"}))
    assert (view.rule, view.reason) == ("policy[0]", DECISION.reason)
    assert (view.status, view.created_at, view.expires_at) == ("pending", START, START + 900)
    assert (view.approved_by, view.decided_by, view.decided_at, view.used_at) == ((), None, None, None)
    assert view.shown == {"title": "Ship"} and view.hidden == 0
    assert len(approval_id) == 22  # 128 random bits, base64url
    fields = {"approval_id": approval_id, "name": TOOL, "subject": "user:alice", "client_id": "client-1"}
    assert audited == [("approval.requested", {**fields, "rule": "policy[0]", "outcome": "pending"})]
    assert logged(caplog) == [("INFO", f"approval {approval_id} requested: create_card by user:alice (policy[0])")]


def test_a_caller_without_sign_in_is_held_as_anonymous_and_a_client_without_a_name_as_none(
    approvals: Approvals, audited: list[tuple[str, dict[str, Any]]]
) -> None:
    call = scope(None)
    call.client_info = {"name": 42}
    view = approvals.store.get(held_id(admit(approvals, {"title": "Ship"}, call)))
    assert view is not None
    assert (view.subject, view.username, view.client_id, view.client_name) == ("anonymous", None, "", None)
    assert audited[0][1]["client_id"] is None
    no_client = scope(Principal("key:ci", "api_key"))
    no_client.client_info = None
    view = approvals.store.get(held_id(admit(approvals, {"title": "Ship"}, no_client)))
    assert view is not None and (view.subject, view.client_id, view.client_name) == ("key:ci", "", None)


def test_only_a_2025_11_25_session_declaring_url_elicitation_gets_32042_and_hears_of_the_decision(
    approvals: Approvals,
) -> None:
    async def scenario() -> None:
        session = Session("s1", "2025-11-25", {"elicitation": {"url": {}}}, None)
        session.standalone = asyncio.Queue(maxsize=10)
        call = scope(version="2025-11-25", caps={"elicitation": {"url": {}}})
        call.session = session
        with pytest.raises(RpcError) as raised:
            await approvals.admit(TOOL, DIGEST, {"title": "Ship"}, call, DECISION)
        [elicitation] = raised.value.data["elicitations"]
        approval_id = elicitation["elicitationId"]
        assert raised.value.code == -32042 and raised.value.message == "This call needs approval"
        assert elicitation == {
            "mode": "url",
            "elicitationId": approval_id,
            "url": URL + approval_id,
            "message": needed(approval_id),
        }
        assert approvals.elicitations.waiting == 1
        approvals.decided(approval_id)
        assert approvals.elicitations.waiting == 0 and session.standalone.qsize() == 1

    asyncio.run(scenario())


def test_a_decision_made_outside_this_process_reaches_the_waiting_session_through_the_poll(
    approvals: Approvals,
) -> None:
    async def scenario() -> None:
        session = Session("s2", "2025-11-25", {"elicitation": {"url": {}}}, None)
        session.standalone = asyncio.Queue(maxsize=10)
        call = scope(version="2025-11-25", caps={"elicitation": {"url": {}}})
        call.session = session
        approvals.elicitations.poll_seconds = 0.01
        with pytest.raises(RpcError) as raised:
            await approvals.admit(TOOL, DIGEST, {"title": "Ship"}, call, DECISION)
        approval_id = raised.value.data["elicitations"][0]["elicitationId"]
        approvals.store.deny(approval_id, "ada")  # as `patchbay approvals deny` does, in another process
        frame = await asyncio.wait_for(session.standalone.get(), 10)
        assert b'"elicitationId":"' + approval_id.encode() + b'"' in frame

    asyncio.run(scenario())


def test_url_elicitation_declared_on_an_older_version_or_without_url_mode_gets_the_link_as_a_result(
    approvals: Approvals,
) -> None:
    older = admit(approvals, {"title": "Ship"}, scope(version="2025-06-18", caps={"elicitation": {"url": {}}}))
    assert older == held_result(held_id(older))
    modern_form_only = scope(era="modern", version="2026-07-28", caps={"elicitation": {"form": {}}})
    assert admit(approvals, {"title": "Ship"}, modern_form_only) == older
    not_a_dict = scope(version="2025-11-25", caps={"elicitation": True})
    assert admit(approvals, {"title": "Ship"}, not_a_dict) == older


def test_a_2026_client_is_asked_to_open_the_link_and_told_when_it_cancelled_or_is_still_waiting(
    approvals: Approvals,
) -> None:
    caps = {"elicitation": {"url": {}}}
    with pytest.raises(InputRequired) as raised:
        admit(approvals, {"title": "Ship"}, scope(era="modern", version="2026-07-28", caps=caps))
    approval_id = approvals.store.list()[0].id
    params = {"mode": "url", "message": needed(approval_id), "url": URL + approval_id}
    assert raised.value.requests == {INPUT_KEY: {"method": "elicitation/create", "params": params}}
    cancelled = scope(era="modern", version="2026-07-28", caps=caps)
    cancelled.input_responses = {INPUT_KEY: {"action": "cancel"}}
    text = f"Not run: the approval link was cancelled in the client. The request stays open at {URL}{approval_id}."
    assert admit(approvals, {"title": "Ship"}, cancelled) == refusal(approval_id, "pending", text)
    declined = scope(era="modern", version="2026-07-28", caps=caps)
    declined.input_responses = {INPUT_KEY: {"action": "decline"}}
    text = text.replace("was cancelled", "was declined")
    assert admit(approvals, {"title": "Ship"}, declined) == refusal(approval_id, "pending", text)
    for answer in ({"action": "accept"}, "not an object"):
        accepted = scope(era="modern", version="2026-07-28", caps=caps)
        accepted.input_responses = {INPUT_KEY: answer}
        assert admit(approvals, {"title": "Ship"}, accepted) == held_result(approval_id)


def test_a_denial_names_who_denied_when_and_until_when_and_lapses_exactly_at_expiry(
    approvals: Approvals, clock: Clock
) -> None:
    approval_id = held_id(admit(approvals, {"title": "Ship"}))
    clock.now = START + 120
    approvals.store.deny(approval_id, "ada")
    text = (
        f"Not run: ada denied this call of 'create_card' on 1970-01-12 13:48 UTC (approval {approval_id}). "
        "The same call can be asked for again after 1970-01-12 14:01 UTC."
    )
    assert admit(approvals, {"title": "Ship"}) == refusal(approval_id, "denied", text)
    clock.now = START + 900
    again = admit(approvals, {"title": "Ship"})
    assert held_id(again) != approval_id
    assert again["content"][0]["text"].startswith("The earlier denial of this call has lapsed. Approval needed (")


def test_another_tool_called_with_the_same_arguments_needs_its_own_approval(approvals: Approvals) -> None:
    approval_id = held_id(admit(approvals, {"title": "Ship"}))
    approvals.store.approve(approval_id, "ada")
    call = scope()
    other = asyncio.run(approvals.admit("delete_card", DIGEST, {"title": "Ship"}, call, DECISION))
    assert call.approved_arguments is None and held_id(other) != approval_id
    assert approvals.store.get(approval_id).status == "approved"  # type: ignore[union-attr]


def test_a_granted_call_whose_tool_changed_is_refused_voided_and_logged(
    approvals: Approvals, caplog: pytest.LogCaptureFixture
) -> None:
    approval_id = held_id(admit(approvals, {"title": "Ship"}))
    approvals.store.approve(approval_id, "ada")
    caplog.set_level(logging.INFO, "patchbay.gate")
    call = scope()
    text = (
        f"Not run: the tool 'create_card' changed after this call was approved (approval {approval_id}), so that "
        "approval no longer applies. Call it again to ask for a new approval."
    )
    assert admit(approvals, {"title": "Ship"}, call, digest=OTHER_DIGEST) == refusal(approval_id, "void", text)
    assert call.approved_arguments is None
    assert logged(caplog) == [
        ("WARNING", f"approval {approval_id} of create_card voided: the tool changed after approval")
    ]
    again = admit(approvals, {"title": "Ship"}, digest=OTHER_DIGEST)
    note = "The tool changed since this call was last held, so it needs a new approval. "
    assert again == held_result(held_id(again), note)


def test_a_pending_request_for_an_older_tool_definition_is_voided_and_the_new_one_is_found_next_time(
    approvals: Approvals, clock: Clock
) -> None:
    old = held_id(admit(approvals, {"title": "Ship"}))
    clock.now = START + 1
    new = admit(approvals, {"title": "Ship"}, digest=OTHER_DIGEST)
    note = "The tool changed since this call was last held, so it needs a new approval. "
    assert new == held_result(held_id(new), note)
    view = approvals.store.get(old)
    assert view is not None and (view.status, view.decided_by, view.decided_at) == (
        "void",
        "patchbay (the tool changed)",
        START + 1,
    )
    assert held_id(admit(approvals, {"title": "Ship"}, digest=OTHER_DIGEST)) == held_id(new)  # the newest is found


def test_an_expired_or_used_request_is_asked_for_again_saying_why(approvals: Approvals, clock: Clock) -> None:
    expired = held_id(admit(approvals, {"title": "Ship"}))
    clock.now = START + 900  # exactly at expiry
    assert approvals.store.get(expired).status == "expired"  # type: ignore[union-attr]
    again = admit(approvals, {"title": "Ship"})
    assert again["content"][0]["text"].startswith("The earlier approval request for this call expired. Approval")
    assert approvals.store.get(expired).status == "expired"  # type: ignore[union-attr]  # left as it was, not voided

    used = held_id(admit(approvals, {"title": "Used"}))
    approvals.store.approve(used, "ada")
    assert admit(approvals, {"title": "Used"}) is None
    replay = admit(approvals, {"title": "Used"})
    assert replay["content"][0]["text"].startswith(
        "This exact call was approved once and has already run; running it again needs a new approval. Approval"
    )


def test_a_granted_call_redeemed_by_another_request_first_does_not_run_again(
    approvals: Approvals, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    approval_id = held_id(admit(approvals, {"title": "Ship"}))
    approvals.store.approve(approval_id, "ada")
    caplog.set_level(logging.INFO, "patchbay.gate")
    first = scope()
    assert admit(approvals, {"title": "Ship"}, first) is None and first.approved_arguments == {"title": "Ship"}
    assert logged(caplog) == [("INFO", f"approval {approval_id} used: running create_card for user:alice")]

    other = held_id(admit(approvals, {"title": "Again"}))
    approvals.store.approve(other, "ada")
    # latest() reads the clock once (the approval is still granted); consume() reads it next: the other request
    # redeems the approval just before.
    clock.before_next = lambda: setattr(clock, "before_next", lambda: approvals.store.consume(other, DIGEST))
    late = scope()
    result = admit(approvals, {"title": "Again"}, late)
    assert late.approved_arguments is None and held_id(result) != other
    assert result["content"][0]["text"].startswith("This exact call was approved once and has already run. Approval")


def test_a_granted_call_whose_arguments_do_not_open_is_refused_stays_granted_and_runs_once_the_key_is_back(
    approvals: Approvals, caplog: pytest.LogCaptureFixture
) -> None:
    approval_id = held_id(admit(approvals, {"title": "Ship"}))
    approvals.store.approve(approval_id, "ada")
    key = approvals.store.vault
    approvals.store.vault = Vault.ephemeral()  # the operator replaced the vault key without keeping the old one
    caplog.set_level(logging.INFO, "patchbay.gate")
    text = (
        f"Not run: the approved arguments of approval {approval_id} cannot be opened with this server's [vault] keys."
        " Ask the operator to restore the key it was sealed with."
    )
    assert admit(approvals, {"title": "Ship"}) == refusal(approval_id, "approved", text)
    assert logged(caplog) == [
        ("ERROR", f"approval {approval_id}: its sealed arguments do not open with this server's vault keys")
    ]
    approvals.store.vault = key
    call = scope()
    assert admit(approvals, {"title": "Ship"}, call) is None and call.approved_arguments == {"title": "Ship"}


def test_the_argument_digest_is_sha256_of_the_rfc8785_text_and_a_refusal_says_why() -> None:
    expected = hashlib.sha256(b'{"a":"x","b":[1,2.5]}').hexdigest()
    assert arguments_digest({"b": [1, 2.5], "a": "x"}) == expected
    with pytest.raises(RpcError) as raised:
        arguments_digest({"n": 2**60})
    assert raised.value.message.startswith("These arguments cannot be approved: ")
    assert raised.value.message.endswith(" (RFC 8785 JSON allows integers up to 2**53 and no NaN)")


# The store: deciding, expiry, listing


def store(tmp_path: Path, clock: Clock, vault: Vault | None = None) -> ApprovalStore:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    return ApprovalStore(engine, clock, vault=vault or Vault.ephemeral())


def hold(approvals: ApprovalStore, n: int = 0, *, rule: str = "policy[0]", arguments: Any = None) -> str:
    call = HeldCall(
        "user:alice", "alice", "c1", None, TOOL, DIGEST, f"{n:064d}", arguments or {"n": n}, rule, "because"
    )
    return approvals.create(call, 900.0).id


def test_deciding_refuses_unknown_expired_decided_and_repeated_approvals_in_words(tmp_path: Path, clock: Clock) -> None:
    approvals = store(tmp_path, clock)
    with pytest.raises(ApprovalRefused, match=r"^There is no such approval request\.$"):
        approvals.approve("nope", "ada")
    twice = hold(approvals, 1)
    approvals.approve(twice, "ada", required=2)
    with pytest.raises(ApprovalRefused, match=r"^You approved this call already; it needs 2 different approvers\.$"):
        approvals.approve(twice, "ada", required=2)
    clock.now = START + 30
    done = approvals.approve(hold(approvals, 2), "ada")  # one approver by default
    assert (done.status, done.approved_by, done.decided_by, done.decided_at) == (
        "approved",
        ("ada",),
        "ada",
        START + 30,
    )
    with pytest.raises(ApprovalRefused, match=r"^This approval request is approved; nothing was changed\.$"):
        approvals.deny(done.id, "grace")
    denied = approvals.deny(hold(approvals, 3), "grace")
    assert (denied.status, denied.decided_by, denied.decided_at, denied.approved_by) == (
        "denied",
        "grace",
        START + 30,
        (),
    )
    with pytest.raises(ApprovalRefused, match=r"^This approval request is denied; nothing was changed\.$"):
        approvals.deny(denied.id, "grace")
    late = hold(approvals, 4)
    clock.now += 900  # exactly at its expiry
    with pytest.raises(ApprovalRefused, match=r"^This approval request is expired; nothing was changed\.$"):
        approvals.approve(late, "ada")


def test_a_grant_is_redeemed_only_before_expiry_for_its_tool_definition_and_records_when(
    tmp_path: Path, clock: Clock
) -> None:
    approvals = store(tmp_path, clock)
    approval_id = hold(approvals, arguments={"title": "Ship"})
    approvals.approve(approval_id, "ada")
    assert approvals.consume(approval_id, OTHER_DIGEST) is None
    assert approvals.consume("nope", DIGEST) is None
    clock.now = START + 900
    assert approvals.consume(approval_id, DIGEST) is None  # at expiry: too late
    clock.now = START + 899
    assert approvals.consume(approval_id, DIGEST) == {"title": "Ship"}
    view = approvals.get(approval_id)
    assert view is not None and (view.status, view.used_at) == ("used", START + 899)
    assert approvals.consume(approval_id, DIGEST) is None


def test_only_a_pending_or_granted_request_is_voided(tmp_path: Path, clock: Clock) -> None:
    approvals = store(tmp_path, clock)
    pending, granted, denied = hold(approvals, 1), hold(approvals, 2), hold(approvals, 3)
    approvals.approve(granted, "ada")
    approvals.deny(denied, "ada")
    clock.now = START + 5
    assert approvals.void(pending) is True and approvals.void(granted) is True
    assert approvals.void(denied) is False and approvals.void("nope") is False
    assert [approvals.get(i).status for i in (pending, granted, denied)] == ["void", "void", "denied"]  # type: ignore[union-attr]
    assert approvals.get(granted).decided_at == START + 5  # type: ignore[union-attr]


def test_the_pending_list_leaves_out_decided_and_expired_requests_and_pages_by_time_then_id(
    tmp_path: Path, clock: Clock
) -> None:
    approvals = store(tmp_path, clock)
    same_time = sorted(hold(approvals, n) for n in range(3))  # created at the same moment
    decided = hold(approvals, 3)
    approvals.deny(decided, "ada")
    clock.now = START + 10
    newer = hold(approvals, 4)
    assert [a.id for a in approvals.list()] == [newer, *reversed(same_time)]
    assert [a.id for a in approvals.list(include_all=True)] == [newer, *sorted([*same_time, decided], reverse=True)]
    assert [a.id for a in approvals.list(before=(START + 10, newer))] == list(reversed(same_time))
    assert [a.id for a in approvals.list(before=(START, same_time[1]))] == [same_time[0]]
    assert [a.id for a in approvals.list(limit=2)] == [newer, same_time[2]]
    clock.now = START + 900  # the first three expire now; the newer one 10 s later
    assert [a.id for a in approvals.list()] == [newer]
    assert approvals.statuses([newer, same_time[0], decided, "nope"]) == {
        newer: "pending",
        same_time[0]: "expired",
        decided: "denied",
    }


def test_the_pending_list_returns_200_at_most_by_default(tmp_path: Path, clock: Clock) -> None:
    approvals = store(tmp_path, clock)
    for n in range(201):
        hold(approvals, n)
    assert len(approvals.list()) == 200


# What is stored and shown


def test_an_id_drawn_again_after_a_leading_dash_has_128_random_bits_too(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from patchbay.gate import approval_store

    draw = approval_store.secrets.token_urlsafe
    drawn = iter(["-looks-like-an-option"])
    monkeypatch.setattr(approval_store.secrets, "token_urlsafe", lambda n: next(drawn, None) or draw(n))
    approval_id = hold(store(tmp_path, clock))
    assert len(approval_id) == 22 and not approval_id.startswith("-")


def test_the_rule_is_kept_to_200_characters_and_nothing_shown_is_ever_cut(tmp_path: Path, clock: Clock) -> None:
    approvals = store(tmp_path, clock)
    long = "x" * 100_000
    view = approvals.get(hold(approvals, rule="r" * 300, arguments={"note": long, "token": "t"}))
    assert view is not None and view.rule == "r" * 200
    assert view.shown == {"note": long, "token": "[redacted]"} and view.hidden == 1


def test_the_hidden_count_skips_values_the_caller_sent_as_redacted_and_looks_inside_lists(
    tmp_path: Path, clock: Clock
) -> None:
    approvals = store(tmp_path, clock)
    arguments = {"password": "[redacted]", "items": [{"token": "a"}, {"token": "b", "name": "n"}], "plain": "p"}
    view = approvals.get(hold(approvals, arguments=arguments))
    assert view is not None and view.hidden == 2
    assert view.shown["items"] == [{"token": "[redacted]"}, {"token": "[redacted]", "name": "n"}]
    assert hidden_note(1) == (
        "1 field is hidden as [redacted] (secrets: format password, writeOnly, or named in [audit] redact_fields). "
        "They run exactly as the caller sent them."
    )
    assert hidden_note(2).startswith("2 fields are hidden as [redacted] (secrets: ")
    assert redactor(["custom"])({"custom": "x", "password": "y"}, None) == {"custom": "[redacted]", "password": "y"}


def test_held_arguments_are_sealed_under_the_approval_id_and_can_be_resealed_under_a_new_key(
    tmp_path: Path, clock: Clock
) -> None:
    old_key, new_key = secrets.token_bytes(32), secrets.token_bytes(32)
    old, new = Vault([old_key]), Vault([new_key])
    approvals = store(tmp_path, clock, old)
    approval_id = hold(approvals, arguments={"title": "Ship"})
    approvals.approve(approval_id, "ada")
    approvals.deny(hold(approvals, 1), "ada")  # decided rows are re-sealed too
    with sqlite3.connect(tmp_path / "store.db") as conn:
        (sealed,) = conn.execute("SELECT arguments FROM gate_approvals WHERE id = ?", (approval_id,)).fetchone()
    assert old.open(sealed, context=f"approval:{approval_id}") == b'{"title":"Ship"}'  # the documented context
    approvals.vault = Vault([new_key, old_key])
    assert approvals.reseal() == 2 and approvals.reseal() == 0
    approvals.vault = new
    assert approvals.consume(approval_id, DIGEST) == {"title": "Ship"}


def test_a_store_opened_without_a_vault_lists_but_cannot_hold(tmp_path: Path, clock: Clock) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    approvals = ApprovalStore(engine, clock)
    assert approvals.list() == []
    message = "this approval store was opened without a vault: it cannot hold or redeem calls"
    with pytest.raises(RuntimeError, match=f"^{message}$"):
        hold(approvals)


def test_the_pending_approvals_gauge_counts_the_stores_pending_unexpired_calls(tmp_path: Path, clock: Clock) -> None:
    # patchbay_approvals_pending (docs/observability.md) counts through the store's own engine and clock.
    approvals = store(tmp_path, clock)
    pending = _pending_counter(approvals)
    assert pending() == 0
    denied, granted, waiting = hold(approvals, 1), hold(approvals, 2), hold(approvals, 3)
    assert pending() == 3
    approvals.deny(denied, "ada")
    approvals.approve(granted, "ada")
    assert pending() == 1
    clock.now = START + 900  # the waiting one's expiry
    assert pending() == 0 and approvals.get(waiting).status == "expired"  # type: ignore[union-attr]


# When approvals exist at all, and closing


@pytest.mark.parametrize(
    "data",
    [
        {"gate": {"writes": "approve"}},
        {"policy": [{"subjects": ["*"], "tools": ["x"], "effect": "approve"}]},
        {"connectors": [{"name": "t", "type": "python", "path": "t.py", "writes": "approve"}]},
    ],
)
def test_approvals_are_wanted_when_a_rule_or_a_writes_switch_says_approve(data: dict[str, Any], tmp_path: Path) -> None:
    assert approvals_wanted(from_dict(data, base_dir=tmp_path))
    none = {
        "gate": {"writes": "on"},
        "policy": [{"subjects": ["*"], "tools": ["x"], "effect": "deny"}],
        "connectors": [{"name": "t", "type": "python", "path": "t.py", "writes": "off"}],
    }
    assert not approvals_wanted(from_dict(none, base_dir=tmp_path))


def test_closing_disposes_the_engine_only_when_it_owns_it(tmp_path: Path) -> None:
    for owns in (False, True):
        engine = create_engine(f"sqlite:///{tmp_path / 'own.db'}")
        pool = engine.pool
        Approvals(engine, ApprovalsSettings(), "https://mcp.example.com", owns_engine=owns).close()
        assert (engine.pool is not pool) is owns
        engine.dispose()


def test_approvals_made_at_the_same_instant_give_latest_the_one_the_list_shows_first(
    tmp_path: Path, clock: Clock
) -> None:
    approvals = store(tmp_path, clock)
    made = {hold(approvals, 7) for _ in range(12)}  # one call held 12 times, the clock standing still
    first = approvals.list()[0]
    latest = approvals.latest("user:alice", "c1", TOOL, f"{7:064d}")
    assert len(made) == 12 and latest is not None and latest.id == first.id == max(made)
