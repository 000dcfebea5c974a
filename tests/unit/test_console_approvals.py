"""The console's Approvals page in-process: held calls with caller, client, tool and redacted arguments; approving
and denying by the approval page's own rules (approver roles, no self-approval, two approvers when configured),
and refusals without the CSRF token or the role."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from tests.support.waiting import until
from tests.unit.fixtures.console_admin import csrf_of, sign_in
from tests.unit.fixtures.console_review import audit_rows, browser, running

from patchbay.auth.principal import Principal
from patchbay.gate.approval_store import HeldCall
from patchbay.protocol.scope import CallScope

pytestmark = pytest.mark.anyio
ARGUMENTS = {"amount": 40, "secret": "hunter2-do-not-show"}


async def refund_as(app: Any, username: str) -> dict[str, Any]:
    """``username`` calls refund through the dispatcher, as a client's tools/call would."""
    principal = Principal(f"user:{username}", "user", frozenset({"mcp"}), frozenset(), username, "client-1")
    scope = CallScope(
        era="legacy",
        version="2025-11-25",
        request_id=1,
        method="tools/call",
        client_caps={},
        client_info={"name": "Test client"},
        principal=principal,
        runtime=app.runtime,
    )
    result: dict[str, Any] = await app.runtime.dispatcher.dispatch(
        "tools/call", {"name": "refund", "arguments": ARGUMENTS}, scope
    )
    return result


def held_id(result: dict[str, Any]) -> str:
    return str(result["_meta"]["patchbay/approval"]["approval_id"])


def status(app: Any, approval_id: str) -> str:
    return str(app.runtime.dispatcher.approvals.store.get(approval_id).status)


async def test_a_held_call_is_listed_with_caller_client_tool_and_redacted_arguments(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        approval_id = held_id(await refund_as(app, "alice"))
        page = await sign_in(http, "ada", "/admin/approvals")
        assert page.status_code == 200, page.text
        section = page.text.split('<section class="held"')[1]
        assert "<code>refund</code>" in section and "<dd>alice</dd>" in section and "<dd>Test client</dd>" in section
        assert "&#34;amount&#34;: 40" in section or "&quot;amount&quot;: 40" in section
        assert "hunter2" not in page.text and "[redacted]" in section and "1 field is hidden" in section
        assert f'action="/admin/approvals/{approval_id}/decide"' in section


async def test_an_approver_approves_a_held_call_and_it_then_runs_once(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        approval_id = held_id(await refund_as(app, "alice"))
        page = await sign_in(http, "ada", "/admin/approvals")
        answer = await http.post(
            f"/admin/approvals/{approval_id}/decide", data={"csrf": csrf_of(page.text), "decision": "approve"}
        )
        assert answer.status_code == 303 and status(app, approval_id) == "approved"
        after = await http.get("/admin/approvals")
        assert "refund: Approved." in after.text and "No call is waiting for approval." in after.text
        ran = await refund_as(app, "alice")
        assert ran["content"][0]["text"] == "refunded 40" and status(app, approval_id) == "used"
        await until(lambda: audit_rows(tmp_path, "console.approvals.decide"), "the decision is audited")
        body = json.loads(audit_rows(tmp_path, "console.approvals.decide")[0]["body"])
        assert (body["by"], body["decision"], body["outcome"]) == ("ada", "approve", "approved")
        await until(lambda: audit_rows(tmp_path, "approval.decided"), "the approval event is recorded as on the page")


async def test_an_approver_denies_a_held_call(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        approval_id = held_id(await refund_as(app, "alice"))
        page = await sign_in(http, "ada", "/admin/approvals")
        answer = await http.post(
            f"/admin/approvals/{approval_id}/decide", data={"csrf": csrf_of(page.text), "decision": "deny"}
        )
        assert answer.status_code == 303 and status(app, approval_id) == "denied"
        again = await refund_as(app, "alice")
        assert again["isError"] and "denied this call" in again["content"][0]["text"]


async def test_nobody_approves_their_own_call(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        approval_id = held_id(await refund_as(app, "ada"))
        page = await sign_in(http, "ada", "/admin/approvals")
        assert "You made this call" in page.text
        answer = await http.post(
            f"/admin/approvals/{approval_id}/decide", data={"csrf": csrf_of(page.text), "decision": "approve"}
        )
        assert answer.status_code == 403 and "another approver must approve it" in answer.text
        assert status(app, approval_id) == "pending"


async def test_two_approvers_are_needed_when_configured(tmp_path: Path) -> None:
    async with running(tmp_path, approvals={"required_approvals": 2}) as app:
        approval_id = held_id(await refund_as(app, "alice"))
        for approver, expected in (("ada", "pending"), ("bob", "approved")):
            async with browser(app) as http:
                page = await sign_in(http, approver, "/admin/approvals")
                answer = await http.post(
                    f"/admin/approvals/{approval_id}/decide", data={"csrf": csrf_of(page.text), "decision": "approve"}
                )
                assert answer.status_code == 303 and status(app, approval_id) == expected


async def test_an_admin_without_an_approver_role_sees_the_queue_but_cannot_decide(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        approval_id = held_id(await refund_as(app, "alice"))
        page = await sign_in(http, "root", "/admin/approvals")
        assert page.status_code == 200 and "<code>refund</code>" in page.text
        answer = await http.post(
            f"/admin/approvals/{approval_id}/decide", data={"csrf": csrf_of(page.text), "decision": "approve"}
        )
        assert answer.status_code == 403 and "none of the approver roles" in answer.text
        assert status(app, approval_id) == "pending"


async def test_a_decision_without_csrf_or_without_a_role_changes_nothing(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http, browser(app) as other:
        approval_id = held_id(await refund_as(app, "alice"))
        await sign_in(http, "ada", "/admin/approvals")
        for token in ("", "a" * 64):
            refused = await http.post(
                f"/admin/approvals/{approval_id}/decide", data={"csrf": token, "decision": "approve"}
            )
            assert refused.status_code == 403
        plain = await sign_in(other, "plain", "/admin/approvals")
        assert plain.status_code == 403 and "refund" not in plain.text
        refused = await other.post(
            f"/admin/approvals/{approval_id}/decide", data={"csrf": csrf_of(plain.text), "decision": "approve"}
        )
        assert refused.status_code == 403
        assert status(app, approval_id) == "pending"


async def test_an_unknown_approval_or_decision_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        approval_id = held_id(await refund_as(app, "alice"))
        page = await sign_in(http, "ada", "/admin/approvals")
        token = csrf_of(page.text)
        unknown = await http.post("/admin/approvals/nope/decide", data={"csrf": token, "decision": "approve"})
        assert unknown.status_code == 404
        odd = await http.post(f"/admin/approvals/{approval_id}/decide", data={"csrf": token, "decision": "maybe"})
        assert odd.status_code == 400 and status(app, approval_id) == "pending"


async def test_the_queue_pages_fifty_at_a_time_newest_first(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        approvals = app.runtime.dispatcher.approvals
        for i in range(55):
            call = HeldCall(f"user:u{i}", f"u{i}", "c", None, "refund", "d" * 64, f"{i:064d}", {"amount": i}, "r", "r")
            await approvals.run(approvals.store.create, call, 900.0)
        page = await sign_in(http, "ada", "/admin/approvals")
        first = re.findall(r"<dt>Caller</dt><dd>(u\d+)</dd>", page.text)
        assert len(first) == 50 and first[0] == "u54"  # newest first
        more = await http.get(re.search(r'href="([^"]+)" rel="next"', page.text).group(1))
        rest = re.findall(r"<dt>Caller</dt><dd>(u\d+)</dd>", more.text)
        assert len(rest) == 5 and set(first) | set(rest) == {f"u{i}" for i in range(55)}
        assert 'rel="next"' not in more.text and 'href="/admin/approvals" rel="prev"' in more.text
