"""The console's Tools page in-process: the list (annotations, policy, digest, token cost, filter, 50 a page), one
tool's detail with untrusted text shown as text, and trying a tool as a user through the real call path (policy,
audit, CSRF, roles, re-authentication for write tools)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tests.support.waiting import until
from tests.unit.fixtures.console_admin import csrf_of, sign_in
from tests.unit.fixtures.console_review import audit_rows, browser, running

from patchbay.connectors.openapi.tokens import estimate_tokens

pytestmark = pytest.mark.anyio

MANY = "".join(
    f'''

@tool(read_only=True, open_world=False)
def bulk_{i:03d}(x: int) -> int:
    """Bulk tool number {i}."""
    return x
'''
    for i in range(120)
)
POISONED = '''

@tool(read_only=True, open_world=False)
def poisoned() -> str:
    """Reads <script>alert(1)</script> and <b>bold</b>\u200b claims."""
    return "<img src=x onerror=alert(1)>"
'''


def rows(html: str) -> list[str]:
    return re.findall(r'<th scope="row"><a href="/admin/tools/([^"]+)">', html)


async def test_the_tools_page_shows_annotations_policy_digest_and_token_cost(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        page = await sign_in(http, "root", "/admin/tools")
        assert page.status_code == 200, page.text
        assert set(rows(page.text)) == {"lookup", "secret_report", "whoami", "delete_customer", "refund"}
        catalog = app.runtime.catalog
        report = page.text.split('href="/admin/tools/secret_report"')[1].split("</tr>")[0]
        assert "finance-only: deny" in report and "read-only" in report
        assert f'<code title="{catalog.digests["secret_report"]}">' in report
        wire = next(t for t in catalog.tools_wire if t["name"] == "secret_report")
        assert f'<td class="num">{estimate_tokens([wire]):,}</td>' in report
        delete = page.text.split('href="/admin/tools/delete_customer"')[1].split("</tr>")[0]
        assert "may write" in delete and "destructive" in delete
        refund = page.text.split('href="/admin/tools/refund"')[1].split("</tr>")[0]
        assert "policy[1]: approve" in refund


async def test_the_tools_page_filters_by_name_and_pages_fifty_at_a_time(tmp_path: Path) -> None:
    async with running(tmp_path, extra_tools=MANY) as app, browser(app) as http:
        await sign_in(http, "root", "/admin/tools")
        first = await http.get("/admin/tools", params={"q": "BULK_"})
        names = rows(first.text)
        assert names == [f"bulk_{i:03d}" for i in range(50)]
        assert "120 tools whose name contains" in first.text and 'rel="prev"' not in first.text
        second = await http.get(re.search(r'href="([^"]+)" rel="next"', first.text).group(1).replace("&amp;", "&"))
        assert rows(second.text) == [f"bulk_{i:03d}" for i in range(50, 100)]
        third = await http.get(re.search(r'href="([^"]+)" rel="next"', second.text).group(1).replace("&amp;", "&"))
        assert rows(third.text) == [f"bulk_{i:03d}" for i in range(100, 120)] and 'rel="next"' not in third.text
        back = await http.get(re.search(r'href="([^"]+)" rel="prev"', third.text).group(1).replace("&amp;", "&"))
        assert rows(back.text) == rows(second.text)
        none = await http.get("/admin/tools", params={"q": "no such tool"})
        assert rows(none.text) == [] and "No tool matches." in none.text


async def test_a_tool_page_shows_untrusted_text_as_text_with_hidden_characters_escaped(tmp_path: Path) -> None:
    async with running(tmp_path, extra_tools=POISONED) as app, browser(app) as http:
        await sign_in(http, "root", "/admin/tools")
        page = await http.get("/admin/tools/poisoned")
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<b>bold" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "\\u200b" in page.text
        token = csrf_of(page.text)
        tried = await http.post("/admin/tools/poisoned/try", data={"csrf": token, "user": "alice", "arguments": ""})
        assert tried.status_code == 200 and "<img" not in tried.text and "&lt;img src=x" in tried.text


async def test_a_tool_page_shows_the_input_schema_and_an_unknown_tool_is_404(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        await sign_in(http, "root", "/admin/tools")
        page = await http.get("/admin/tools/lookup")
        assert "&#34;required&#34;: [" in page.text or "&quot;required&quot;: [" in page.text
        assert app.runtime.catalog.digests["lookup"] in page.text
        assert (await http.get("/admin/tools/nothing_here")).status_code == 404


async def test_trying_a_tool_runs_it_as_the_chosen_user_and_records_both_in_the_audit_trail(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        page = await sign_in(http, "root", "/admin/tools/whoami")
        answer = await http.post(
            "/admin/tools/whoami/try", data={"csrf": csrf_of(page.text), "user": "alice", "arguments": "{}"}
        )
        assert answer.status_code == 200, answer.text
        assert "user:alice" in answer.text and "patchbay-console" in answer.text
        await until(lambda: audit_rows(tmp_path, "console.tools.try"), "the console event is recorded")
        await until(lambda: audit_rows(tmp_path, "tools/call"), "the call is recorded")
        (call,) = audit_rows(tmp_path, "tools/call")
        assert (call["subject"], call["client_id"], call["name"]) == ("user:alice", "patchbay-console", "whoami")
        (event,) = audit_rows(tmp_path, "console.tools.try")
        body = json.loads(event["body"])
        assert (body["by"], body["as_user"], body["name"]) == ("root", "alice", "whoami")
        assert event["request_ref"] == call["request_ref"]


async def test_trying_a_denied_tool_is_refused_with_the_deciding_rule(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        page = await sign_in(http, "root", "/admin/tools/secret_report")
        answer = await http.post(
            "/admin/tools/secret_report/try", data={"csrf": csrf_of(page.text), "user": "alice", "arguments": "{}"}
        )
        assert answer.status_code == 200
        assert "policy decision: <strong>deny</strong>" in answer.text and "<code>finance-only</code>" in answer.text
        assert "You may not call" in answer.text and "the report" not in answer.text
        await until(lambda: audit_rows(tmp_path, "tools/call"), "the refused call is recorded")
        assert audit_rows(tmp_path, "tools/call")[0]["outcome"] == "denied"


async def test_try_arguments_must_be_a_json_object_with_a_precise_error(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        page = await sign_in(http, "root", "/admin/tools/lookup")
        token = csrf_of(page.text)
        broken = await http.post("/admin/tools/lookup/try", data={"csrf": token, "user": "alice", "arguments": '{"id"'})
        assert broken.status_code == 400 and "not valid JSON" in broken.text and "line 1, column" in broken.text
        assert "{&#34;id&#34;" in broken.text or "{&quot;id&quot;" in broken.text  # what was typed is kept
        listed = await http.post("/admin/tools/lookup/try", data={"csrf": token, "user": "alice", "arguments": "[1]"})
        assert listed.status_code == 400 and "must be a JSON object" in listed.text and "not array" in listed.text
        nobody = await http.post("/admin/tools/lookup/try", data={"csrf": token, "user": "nobody", "arguments": "{}"})
        assert nobody.status_code == 400 and "no local user named" in nobody.text
        wrong = await http.post(
            "/admin/tools/lookup/try", data={"csrf": token, "user": "alice", "arguments": '{"id": "x"}'}
        )
        assert wrong.status_code == 200 and "badge bad" in wrong.text  # the tool's own validation answers


async def test_a_try_without_the_csrf_token_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        page = await sign_in(http, "root", "/admin/tools/delete_customer")
        for token in ("", "0" * 64):
            refused = await http.post(
                "/admin/tools/delete_customer/try-write",
                data={"csrf": token, "user": "alice", "arguments": '{"id": 1}'},
            )
            assert refused.status_code == 403
        assert not (tmp_path / "effects.log").exists()
        done = await http.post(
            "/admin/tools/delete_customer/try-write",
            data={"csrf": csrf_of(page.text), "user": "alice", "arguments": '{"id": 2}'},
        )
        assert done.status_code == 200 and (tmp_path / "effects.log").read_text() == "deleted 2\n"


async def test_trying_a_write_tool_needs_a_recent_sign_in_and_its_own_form(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        page = await sign_in(http, "root", "/admin/tools/delete_customer")
        token = csrf_of(page.text)
        assert 'action="/admin/tools/delete_customer/try-write"' in page.text
        sideways = await http.post(
            "/admin/tools/delete_customer/try", data={"csrf": token, "user": "alice", "arguments": '{"id": 1}'}
        )
        assert sideways.status_code == 409
        http.cookies.delete("patchbay_admin_signed")
        stale = await http.post(
            "/admin/tools/delete_customer/try-write", data={"csrf": token, "user": "alice", "arguments": '{"id": 1}'}
        )
        assert stale.status_code == 401 and 'type="password"' in stale.text
        assert not (tmp_path / "effects.log").exists()


async def test_someone_without_the_admin_role_gets_403_on_the_tools_pages(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        page = await sign_in(http, "plain", "/admin/tools")
        assert page.status_code == 403
        assert (await http.get("/admin/tools/lookup")).status_code == 403
        tried = await http.post(
            "/admin/tools/lookup/try", data={"csrf": csrf_of(page.text), "user": "plain", "arguments": "{}"}
        )
        assert tried.status_code == 403 and "customer" not in tried.text


async def test_a_disabled_user_cannot_be_tried_as(tmp_path: Path) -> None:
    async with running(tmp_path) as app, browser(app) as http:
        core = app.runtime.auth.core
        await core.run(core.users.set_disabled, "alice", True)
        page = await sign_in(http, "root", "/admin/tools/lookup")
        assert '<option value="alice"' not in page.text
        answer = await http.post(
            "/admin/tools/lookup/try", data={"csrf": csrf_of(page.text), "user": "alice", "arguments": '{"id": 1}'}
        )
        assert answer.status_code == 400 and "is disabled" in answer.text
