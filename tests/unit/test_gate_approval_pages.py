"""The approval page in-process: a tool that disappears or changes while its approval is pending is refused, not
run; the page's headers and cookies; a wrong password is refused like on the sign-in page."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.forms import next_form
from tests.unit.fixtures.authflow import PASSWORD, TOOLS, add_user, client_for

from patchbay.app import create_app
from patchbay.auth.principal import Principal
from patchbay.errors import RpcError
from patchbay.gate.approval_store import HeldCall
from patchbay.protocol.scope import CallScope
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def running(tmp: Path) -> AsyncIterator[Any]:
    """The auth tests' app with a rule that holds write_doc for approval."""
    data = {
        "server": {"name": "Patchbay test"},
        "store": {"url": f"sqlite:///{tmp / 'auth.db'}"},
        "auth": {"mode": "oauth"},
        "connectors": [{"name": "t", "type": "python", "path": str(TOOLS), "prefix": ""}],
        "policy": [{"subjects": ["*"], "tools": ["write_doc"], "effect": "approve"}],
    }
    app = create_app(from_dict(data, base_dir=tmp))
    await app.runtime.start()
    try:
        yield app
    finally:
        app.sessions.close_all()
        await app.runtime.stop()


def _held(app: Any, tool: str, tool_digest: str) -> str:
    approvals = app.runtime.dispatcher.approvals
    call = HeldCall("user:alice", "alice", "c1", None, tool, tool_digest, "0" * 64, {"title": "x"}, "policy[0]", "r")
    view = approvals.store.create(call, 900.0)
    return str(view.id)


async def _approve_on_page(http: Any, approval_id: str, username: str = "ada") -> Any:
    page = await http.get(f"/approvals/{approval_id}")
    login = next_form(page.text)
    assert login is not None and login.has_password, page.text
    signed_in = await http.post(login.action, data=login.filled(username, PASSWORD, ""), follow_redirects=True)
    form = next_form(signed_in.text)
    assert form is not None and form.is_consent, signed_in.text
    return await http.post(form.action, data={**form.fields, "decision": "approve"})


async def test_a_tool_that_disappeared_while_pending_cannot_be_approved(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app, "ada", roles=("approver",))
        await app.runtime.dispatcher.approvals.run(lambda: None)  # migrates the approvals table
        approval_id = _held(app, "removed_tool", "a" * 64)
        answer = await _approve_on_page(http, approval_id)
        assert answer.status_code == 409 and "no longer exists" in answer.text
        assert app.runtime.dispatcher.approvals.store.get(approval_id).status == "void"


async def test_a_tool_that_changed_while_pending_cannot_be_approved(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app, "ada", roles=("approver",))
        await app.runtime.dispatcher.approvals.run(lambda: None)
        approval_id = _held(app, "write_doc", "not the digest of write_doc's definition")
        answer = await _approve_on_page(http, approval_id)
        assert answer.status_code == 409 and "has changed" in answer.text
        assert app.runtime.dispatcher.approvals.store.get(approval_id).status == "void"


async def test_the_approval_page_is_unframeable_uncached_and_its_cookie_strict(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app, "ada", roles=("approver",))
        await app.runtime.dispatcher.approvals.run(lambda: None)
        approval_id = _held(app, "write_doc", "a" * 64)
        page = await http.get(f"/approvals/{approval_id}")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        login = next_form(page.text)
        assert login is not None
        wrong = await http.post(login.action, data=login.filled("ada", "not the password", ""))
        assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
        login = next_form(wrong.text)
        assert login is not None
        right = await http.post(login.action, data=login.filled("ada", PASSWORD, ""))
        assert right.status_code == 303
        cookie = next(v for k, v in right.headers.multi_items() if k == "set-cookie" and "patchbay_approver=" in v)
        assert (
            "samesite=strict" in cookie.lower() and "httponly" in cookie.lower() and "path=/approvals" in cookie.lower()
        )
        shown = await http.get(f"/approvals/{approval_id}")
        assert shown.status_code == 200
        assert "&quot;title&quot;: &quot;x&quot;" in shown.text  # the exact arguments, escaped


async def test_an_unknown_approval_id_is_a_404_page(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await app.runtime.dispatcher.approvals.run(lambda: None)
        assert (await http.get("/approvals/nope")).status_code == 404


async def test_without_an_approve_rule_there_is_no_approval_page(tmp_path: Path) -> None:
    data = {"store": {"url": f"sqlite:///{tmp_path / 'p.db'}"}, "auth": {"mode": "oauth"}}
    app = create_app(from_dict(data, base_dir=tmp_path))
    assert app.runtime.dispatcher.approvals is None
    assert not [r for r in app.router.routes if getattr(r, "path", "").startswith("/approvals")]


TICKETS = '''
from patchbay import tool

CLOSED = []


@tool(destructive=True)
def close_ticket(id: int) -> str:
    """Close a ticket."""
    CLOSED.append(id)
    return f"closed {id}"


@tool(read_only=True)
def count_closed() -> int:
    """How many tickets were closed by this module."""
    return len(CLOSED)
'''


async def _call(app: Any, name: str, arguments: dict[str, Any]) -> Any:
    alice = Principal("user:alice", "user", username="alice", client_id="c1")
    scope = CallScope("legacy", "2025-06-18", 1, "tools/call", {}, principal=alice)
    return await app.runtime.dispatcher.dispatch("tools/call", {"name": name, "arguments": arguments}, scope)


async def test_a_tool_removed_from_its_module_while_pending_is_refused_on_the_page_and_never_runs(
    tmp_path: Path,
) -> None:
    module = tmp_path / "tickets.py"
    module.write_text(TICKETS, encoding="utf-8")
    data = {
        "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
        "auth": {"mode": "oauth"},
        "connectors": [{"name": "t", "type": "python", "path": str(module), "prefix": ""}],
        "policy": [{"subjects": ["*"], "tools": ["close_ticket"], "effect": "approve"}],
    }
    app = create_app(from_dict(data, base_dir=tmp_path))
    await app.runtime.start()
    try:
        async with client_for(app) as http:
            await add_user(app, "ada", roles=("approver",))
            held = await _call(app, "close_ticket", {"id": 7})
            approval_id = held["_meta"]["patchbay/approval"]["approval_id"]
            granted = await _call(app, "close_ticket", {"id": 8})  # a second one, granted before the tool goes
            granted_id = granted["_meta"]["patchbay/approval"]["approval_id"]
            app.runtime.dispatcher.approvals.store.approve(granted_id, "ada")

            module.write_text(TICKETS.replace("def close_ticket", "def _close_ticket_retired"), encoding="utf-8")
            await app.runtime.reload()
            assert "close_ticket" not in app.runtime.catalog.tools

            answer = await _approve_on_page(http, approval_id)
            assert answer.status_code == 409 and "no longer exists" in answer.text
            assert app.runtime.dispatcher.approvals.store.get(approval_id).status == "void"
            with pytest.raises(RpcError, match="Unknown tool: close_ticket"):  # the granted one is refused too
                await _call(app, "close_ticket", {"id": 8})
            assert app.runtime.dispatcher.approvals.store.get(granted_id).status == "approved"  # never redeemed
            assert (await _call(app, "count_closed", {}))["structuredContent"]["result"] == 0
    finally:
        app.sessions.close_all()
        await app.runtime.stop()


async def test_tries_from_a_throttled_address_are_refused_on_the_page_and_not_counted_again(tmp_path: Path) -> None:
    """The page's sign-in shares the sign-in page's per-address throttle: once an address has used its budget, the
    right password is refused too, and those refused tries do not prolong the throttle (docs/approvals.md)."""
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app, "ada", roles=("approver",))
        await app.runtime.dispatcher.approvals.run(lambda: None)
        approval_id = _held(app, "write_doc", "a" * 64)
        throttle = app.runtime.auth.authorization.throttle
        statuses = []
        for password in ["not the password"] * throttle.limit + [PASSWORD, PASSWORD]:
            page = await http.get(f"/approvals/{approval_id}")
            login = next_form(page.text)
            assert login is not None and login.has_password, page.text
            answer = await http.post(login.action, data=login.filled("ada", password, ""))
            statuses.append(answer.status_code)
        counted = {address: len(times) for address, times in throttle.failures.items()}
    assert statuses == [401] * (throttle.limit + 2)
    assert list(counted.values()) == [throttle.limit]
