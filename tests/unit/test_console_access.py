"""The console's Access page against create_app: users, API keys, OAuth clients and their grants, linked
accounts, the policy playground; CSRF and role refusals; no secret on any page; every change in the audit trail."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from tests.support.waiting import until
from tests.unit.fixtures.authflow import PASSWORD, Flow, add_user, call, client_for
from tests.unit.fixtures.console_admin import csrf_of, running, signed_in

from patchbay.links.store import Tokens

pytestmark = pytest.mark.anyio
PAGES = (
    "/admin/access",
    "/admin/access/keys",
    "/admin/access/clients",
    "/admin/access/links",
    "/admin/access/policy",
)


async def _post(http: httpx.AsyncClient, page: str, action: str, **fields: str) -> httpx.Response:
    form = await http.get(page)
    return await http.post(action, data={"csrf": csrf_of(form.text), **fields})


def _events(app: Any, method: str) -> list[str]:
    with app.runtime.dispatcher.audit.engine.connect() as connection:
        rows = connection.execute(text("SELECT body FROM audit_records WHERE method = :m"), {"m": method})
        return [str(r[0]) for r in rows]


async def test_an_admin_adds_a_user_with_roles_and_the_change_is_audited(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await signed_in(http, app, "ada", ("admin",))
        added = await _post(
            http, "/admin/access", "/admin/access/users/add", username="bob", password=PASSWORD, roles="sales approver"
        )
        assert added.status_code == 303
        user = app.runtime.auth.core.users.by_name("bob")
        assert user is not None and user.roles == {"sales", "approver"}
        page = await http.get("/admin/access")
        assert "Added bob." in page.text and "approver sales" in page.text
        assert "argon2" not in page.text and PASSWORD not in page.text
        await until(lambda: _events(app, "console.access.user_add"), "the addition recorded")
        assert PASSWORD not in _events(app, "console.access.user_add")[0]


async def test_bad_roles_and_short_passwords_are_refused_with_the_reason(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await signed_in(http, app, "ada", ("admin",))
        await _post(http, "/admin/access", "/admin/access/users/add", username="x", password=PASSWORD, roles="<b>")
        page = await http.get("/admin/access")
        assert "is not a role name" in page.text and "&lt;b&gt;" in page.text
        await _post(http, "/admin/access", "/admin/access/users/add", username="y", password="short")
        assert "a password needs at least 8 characters" in (await http.get("/admin/access")).text
        assert app.runtime.auth.core.users.by_name("x") is None and app.runtime.auth.core.users.by_name("y") is None


async def test_every_access_form_refuses_a_missing_or_wrong_csrf_token(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await signed_in(http, app, "ada", ("admin",))
        await add_user(app, "bob")
        forms = {
            "/admin/access/users/add": {"username": "eve", "password": PASSWORD},
            "/admin/access/users/disable": {"username": "bob"},
            "/admin/access/users/roles": {"username": "bob", "roles": "admin"},
            "/admin/access/keys/create": {"name": "sneaky"},
        }
        for action, fields in forms.items():
            for token in ({}, {"csrf": "0" * 64}):
                answer = await http.post(action, data={**fields, **token})
                assert answer.status_code == 403, action
        core = app.runtime.auth.core
        bob = core.users.by_name("bob")
        assert core.users.by_name("eve") is None and bob is not None and not bob.disabled and not bob.roles
        assert core.keys.list() == []


async def test_a_person_without_the_admin_role_gets_403_on_every_access_page_and_form(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await signed_in(http, app, "carol", ("approver",))
        for page in PAGES:
            assert (await http.get(page)).status_code == 403, page
        approvals = await http.get("/admin/audit")
        token = csrf_of(approvals.text)  # carol's own valid token: the role, not the token, refuses
        answer = await http.post("/admin/access/keys/create", data={"csrf": token, "name": "mine"})
        assert answer.status_code == 403 and app.runtime.auth.core.keys.list() == []


async def test_a_created_key_is_shown_once_works_on_mcp_and_stops_when_revoked(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await signed_in(http, app, "ada", ("admin",))
        created = await _post(http, "/admin/access/keys", "/admin/access/keys/create", name="ci", roles="robot")
        assert created.status_code == 200 and created.headers["cache-control"] == "no-store"
        found = re.search(r'<pre id="created-secret">([^<]+)</pre>', created.text)
        assert found is not None
        key = found.group(1)
        assert (await call(http, key, "tools/list")).status_code == 200
        for page in PAGES:
            assert key not in (await http.get(page)).text, page
        await until(lambda: _events(app, "console.access.key_create"), "the key's creation recorded")
        assert key not in " ".join(_events(app, "console.access.key_create"))
        revoked = await _post(http, "/admin/access/keys", "/admin/access/keys/revoke", name="ci")
        assert revoked.status_code == 303
        assert (await call(http, key, "tools/list")).status_code == 401


async def test_a_revoked_clients_token_is_refused_by_mcp(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app, "alice")
        flow = Flow(http)
        await flow.register()
        tokens = await flow.tokens()
        access = tokens["access_token"]
        assert (await call(http, access, "tools/list")).status_code == 200
        await signed_in(http, app, "ada", ("admin",))
        detail = await http.get("/admin/access/client", params={"id": flow.client_id})
        assert "alice" in detail.text and access not in detail.text and tokens["refresh_token"] not in detail.text
        listing = await http.get("/admin/access/clients")
        assert flow.client_id in listing.text
        answer = await http.post(
            "/admin/access/clients/revoke", data={"csrf": csrf_of(listing.text), "client_id": flow.client_id}
        )
        assert answer.status_code == 303
        assert (await call(http, access, "tools/list")).status_code == 401
        refreshed = await flow.refresh(tokens["refresh_token"])
        assert refreshed.status_code in (400, 401)


async def test_revoking_a_clients_grants_keeps_the_client_but_ends_its_tokens(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app, "alice")
        flow = Flow(http)
        await flow.register()
        access = (await flow.tokens())["access_token"]
        await signed_in(http, app, "ada", ("admin",))
        page = f"/admin/access/client?id={flow.client_id}"
        answer = await _post(http, page, "/admin/access/clients/revoke-grants", client_id=flow.client_id)
        assert answer.status_code == 303
        assert (await call(http, access, "tools/list")).status_code == 401
        client = app.runtime.auth.core.clients.get(flow.client_id)
        assert client is not None and not client.revoked
        assert "No live grants." in (await http.get(page)).text


async def test_disabling_a_user_ends_their_tokens_and_enabling_restores_sign_in(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app, "alice")
        flow = Flow(http)
        await flow.register()
        access = (await flow.tokens())["access_token"]
        await signed_in(http, app, "ada", ("admin",))
        await _post(http, "/admin/access", "/admin/access/users/disable", username="alice")
        assert (await call(http, access, "tools/list")).status_code == 401
        assert "Disabled alice; revoked" in (await http.get("/admin/access")).text
        await _post(http, "/admin/access", "/admin/access/users/enable", username="alice")
        alice = app.runtime.auth.core.users.by_name("alice")
        assert alice is not None and not alice.disabled
        refused = await _post(http, "/admin/access", "/admin/access/users/disable", username="ada")
        assert refused.status_code == 303 and not app.runtime.auth.core.users.by_name("ada").disabled


async def test_unlocking_and_changing_roles(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        core = app.runtime.auth.core
        await add_user(app, "alice")
        for _ in range(core.users.max_attempts):
            core.users.verify("alice", "wrong password")
        assert core.users.by_name("alice").locked_until is not None
        await signed_in(http, app, "ada", ("admin",))
        assert "locked" in (await http.get("/admin/access")).text
        await _post(http, "/admin/access", "/admin/access/users/unlock", username="alice")
        assert core.users.by_name("alice").locked_until is None
        await _post(http, "/admin/access", "/admin/access/users/roles", username="alice", roles="sales, approver")
        assert core.users.by_name("alice").roles == {"sales", "approver"}
        await _post(http, "/admin/access", "/admin/access/users/roles", username="ada", roles="sales")
        assert "admin" in core.users.by_name("ada").roles  # nobody drops their own admin role here


async def test_a_dangerous_change_needs_a_recent_sign_in(tmp_path: Path) -> None:
    async with running(tmp_path, console={"reauth_minutes": 1}) as app, client_for(app) as http:
        await signed_in(http, app, "ada", ("admin",))
        await add_user(app, "bob")
        page = await http.get("/admin/access")
        http.cookies.delete("patchbay_admin_signed")  # as if the sign-in were older than reauth_minutes
        answer = await http.post("/admin/access/users/disable", data={"csrf": csrf_of(page.text), "username": "bob"})
        assert answer.status_code == 401 and "nothing was done" in answer.text
        assert not app.runtime.auth.core.users.by_name("bob").disabled


async def test_linked_accounts_are_listed_without_tokens_and_revoked(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await signed_in(http, app, "ada", ("admin",))
        store = app.runtime.links.store
        tokens = Tokens("upstream-access-secret", "upstream-refresh-secret", None, "read")
        await app.runtime.links.run(store.save_account, "jira", "user:alice", "https://idp.example", tokens)
        page = await http.get("/admin/access/links")
        assert "user:alice" in page.text and "jira" in page.text
        assert "upstream-access-secret" not in page.text and "upstream-refresh-secret" not in page.text
        await http.post(
            "/admin/access/links/revoke",
            data={"csrf": csrf_of(page.text), "subject": "user:alice", "connector": "jira"},
        )
        assert await app.runtime.links.run(store.accounts) == []


async def test_the_policy_playground_names_the_deciding_rule(tmp_path: Path) -> None:
    rules = [{"id": "no-writes-for-sales", "subjects": ["role:sales"], "tools": ["write_doc"], "effect": "deny"}]
    async with running(tmp_path, policy=rules, gate={"roles": ["sales"]}) as app, client_for(app) as http:
        await signed_in(http, app, "ada", ("admin",))
        await add_user(app, "sam", roles=("sales",))
        asked = {"kind": "user", "name": "sam", "tool": "write_doc", "args": '{"title": "x"}'}
        answer = await http.get("/admin/access/policy", params=asked)
        assert answer.status_code == 200
        assert "no-writes-for-sales" in answer.text and ">deny<" in answer.text
        bad = await http.get("/admin/access/policy", params={**asked, "args": "[1]"})
        assert bad.status_code == 400 and "must be a JSON object" in bad.text
        unknown = await http.get("/admin/access/policy", params={**asked, "name": "nobody"})
        assert unknown.status_code == 400 and "no user is named" in unknown.text
        missing = await http.get("/admin/access/policy", params={**asked, "tool": "no_such_tool"})
        assert missing.status_code == 400 and "no tool is named" in missing.text


def _insert(app: Any, table: str, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    with app.runtime.auth.core.engine.begin() as connection:
        connection.execute(text(sql), rows)


async def _walk(http: httpx.AsyncClient, first: str, pattern: str) -> list[list[str]]:
    """The names on each page from ``first`` following Next; checks Previous leads back to the same pages."""
    pages: list[list[str]] = []
    urls: list[str] = []
    url: str | None = first
    while url is not None:
        page = await http.get(url)
        assert page.status_code == 200, page.text
        pages.append(re.findall(pattern, page.text))
        urls.append(url)
        found = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        url = found.group(1).replace("&amp;", "&") if found else None
    for index in range(len(pages) - 1, 0, -1):
        shown = await http.get(urls[index])
        back = re.search(r'<a href="([^"]+)" rel="prev">', shown.text)
        assert back is not None, urls[index]
        earlier = await http.get(back.group(1).replace("&amp;", "&"))
        assert re.findall(pattern, earlier.text) == pages[index - 1]
    return pages


async def test_the_users_list_comes_50_a_page_in_name_order_with_a_filter(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await signed_in(http, app, "ada", ("admin",))
        people = [f"person-{n:03d}" for n in range(120)]
        rows = [{"username": p, "display_name": p, "roles": "", "disabled": False, "failed_logins": 0,
                 "created_at": 1.0} for p in people]  # fmt: skip
        _insert(app, "auth_users", rows)
        pages = await _walk(http, "/admin/access", r"<code>(person-\d+)</code>")
        assert [len(p) for p in pages] == [49, 50, 21]  # ada, the admin, is first on the first page
        assert [name for page in pages for name in page] == people
        filtered = await _walk(http, "/admin/access?q=PERSON-11", r"<code>(person-\d+)</code>")
        assert filtered == [[f"person-11{n}" for n in range(10)]]


async def test_api_keys_and_clients_come_a_page_at_a_time_clients_newest_first(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await signed_in(http, app, "ada", ("admin",))
        keys = [{"name": f"key-{n:03d}", "key_hash": f"{n:064d}", "hint": "pbk_", "scopes": "", "roles": "",
                 "created_at": 1.0} for n in range(75)]  # fmt: skip
        _insert(app, "auth_api_keys", keys)
        clients = [
            {
                "client_id": f"cid-{n:03d}",
                "kind": "dcr",
                "name": f"app {n % 3}",
                "auth_method": "none",
                "redirect_uris": "[]",
                "metadata_json": "{}",
                "created_at": 1000.0 + n // 2,
            }
            for n in range(110)
        ]  # fmt: skip; pairs share a created_at: the id breaks the tie
        _insert(app, "auth_clients", clients)
        key_pages = await _walk(http, "/admin/access/keys", r"<td><code>(key-\d+)</code></td>")
        assert [len(p) for p in key_pages] == [50, 25]
        assert [k for page in key_pages for k in page] == [k["name"] for k in keys]
        client_pages = await _walk(http, "/admin/access/clients", r'<code class="muted">(cid-\d+)</code>')
        assert [len(p) for p in client_pages] == [50, 50, 10]
        assert [c for page in client_pages for c in page] == [f"cid-{n:03d}" for n in range(109, -1, -1)]
        app_2 = await _walk(http, "/admin/access/clients?q=app+2", r'<code class="muted">(cid-\d+)</code>')
        assert [c for page in app_2 for c in page] == [f"cid-{n:03d}" for n in range(109, -1, -1) if n % 3 == 2]


async def test_a_damaged_page_link_is_refused_with_the_reason(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await signed_in(http, app, "ada", ("admin",))
        for path in ("/admin/access", "/admin/access/keys", "/admin/access/clients"):
            page = await http.get(path, params={"after": "not-a-cursor"})
            assert page.status_code == 400 and "this page link is damaged" in page.text, path
