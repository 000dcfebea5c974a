"""The console's framework in-process against create_app: sign-in, roles, CSRF, re-auth, headers, partial
rendering, the loopback rule with [auth] mode = "none", and the audit record of an action."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response
from tests.support.forms import next_form
from tests.support.waiting import until
from tests.unit.fixtures.authflow import BASE, PASSWORD, add_user, client_for, settings
from tests.unit.fixtures.console_admin import csrf_of, running, sign_in

from patchbay.app import create_app
from patchbay.console import Admin, Console, Form, Page, PageResult
from patchbay.console.security import CSP, SignInMark, csrf_token
from patchbay.console.signin import MARK_COOKIE
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio


def add_test_pages(app: Any) -> list[str]:
    """A page for approvers, an action and a dangerous action, served by the app; returns what the actions did."""
    console: Console = app.console
    done: list[str] = []
    before = len(console._routes)

    @console.page("/test", role="approver")
    async def page(request: Request, who: Admin) -> PageResult:
        return Page("error.html", {"title": "Test page", "text": f"hello {who.username}"})

    @console.action("/test/do")
    async def do(request: Request, who: Admin, form: Form) -> Response:
        done.append(form.get("what") or "")
        console.audit("console.test.do", by=who.username, subject=who.subject, outcome="ok")
        return console.redirect(request, "/test", "Done it.")

    @console.action("/test/danger", dangerous=True)
    async def danger(request: Request, who: Admin, form: Form) -> Response:
        done.append("danger")
        return console.redirect(request, "/test", "Dangerous thing done.")

    app.router.routes.extend(console._routes[before:])
    return done


async def test_a_console_page_asks_for_sign_in_and_returns_to_the_page_asked_for(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app, "ada", roles=("admin",))
        page = await http.get("/admin/config?x=1")
        assert page.status_code == 401 and "Sign in to the Patchbay test console" in page.text
        assert "Configuration" not in page.text  # nothing of the page before sign-in
        signed = await sign_in(http, "ada", "/admin/config?x=1", follow=False)
        assert signed.status_code == 303 and signed.headers["location"] == "/admin/config?x=1"
        shown = await http.get(signed.headers["location"])
        assert shown.status_code == 200 and "<h1>Configuration</h1>" in shown.text
        assert "Signed in as <strong>ada</strong>" in shown.text


async def test_a_signed_in_user_without_the_role_gets_403(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        add_test_pages(app)
        await add_user(app, "bob", roles=("viewer",))
        await sign_in(http, "bob", "/admin/config", follow=False)
        refused = await http.get("/admin/config")
        assert refused.status_code == 403 and "does not have the admin role" in refused.text
        assert (await http.get("/admin/test")).status_code == 403


async def test_an_approver_sees_approver_pages_only(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        add_test_pages(app)
        await add_user(app, "carol", roles=("approver",))
        await sign_in(http, "carol", "/admin/test", follow=False)
        shown = await http.get("/admin/test")
        assert shown.status_code == 200 and "hello carol" in shown.text
        assert (await http.get("/admin/config")).status_code == 403
        assert 'href="/admin/config"' not in shown.text  # the navigation offers only what she may open


async def test_a_form_with_a_missing_or_wrong_csrf_token_is_refused_and_nothing_is_done(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        done = add_test_pages(app)
        await add_user(app, "ada", roles=("admin",))
        await sign_in(http, "ada", "/admin/test", follow=False)
        token = csrf_of((await http.get("/admin/test")).text)
        missing = await http.post("/admin/test/do", data={"what": "a"})
        altered = token[:-1] + ("1" if token.endswith("0") else "0")
        wrong = await http.post("/admin/test/do", data={"what": "b", "csrf": altered})
        assert missing.status_code == 403 and wrong.status_code == 403 and "Form expired" in wrong.text
        assert done == []
        right = await http.post("/admin/test/do", data={"what": "c", "csrf": token})
        assert right.status_code == 303 and done == ["c"]


async def test_a_post_with_an_empty_form_is_refused_for_its_missing_token_not_its_media_type(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        done = add_test_pages(app)
        await add_user(app, "ada", roles=("admin",))
        await sign_in(http, "ada", "/admin/test", follow=False)
        bare = await http.post("/admin/test/do")  # no body, no Content-Type (curl -X POST, fetch without body)
        declared = await http.post("/admin/test/do", content=b"", headers={"content-length": "0"})
        for refused in (bare, declared):
            assert refused.status_code == 403 and "Form expired" in refused.text
        assert done == []
        # A body of another media type is still refused for that, before anything else.
        typed = await http.post("/admin/test/do", content=b"{}", headers={"content-type": "application/json"})
        assert typed.status_code == 415 and done == []


async def test_signing_out_ends_the_session_so_a_copy_of_its_cookie_signs_nobody_in(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http, client_for(app) as copy:
        await add_user(app, "ada", roles=("admin",))
        await sign_in(http, "ada", "/admin/", follow=False)
        cookie = http.cookies.get("patchbay_admin", path="/admin")
        assert cookie
        copy.cookies.set("patchbay_admin", cookie, path="/admin")
        assert (await copy.get("/admin/config")).status_code == 200  # the copy works while the session lives
        token = csrf_of((await http.get("/admin/")).text)
        out = await http.post("/admin/signout", data={"csrf": token})
        assert out.status_code == 303
        after = await copy.get("/admin/config")
        assert after.status_code == 401 and "Configuration</h1>" not in after.text
        users = app.runtime.auth.core.users
        assert users.browser_session_user(cookie) is None


async def test_a_token_of_another_session_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http, client_for(app) as other:
        done = add_test_pages(app)
        await add_user(app, "ada", roles=("admin",))
        await sign_in(http, "ada", "/admin/test", follow=False)
        await sign_in(other, "ada", "/admin/test", follow=False)
        theirs = csrf_of((await other.get("/admin/test")).text)
        refused = await http.post("/admin/test/do", data={"what": "x", "csrf": theirs})
        assert refused.status_code == 403 and done == []


async def test_a_form_posted_from_another_origin_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        done = add_test_pages(app)
        await add_user(app, "ada", roles=("admin",))
        await sign_in(http, "ada", "/admin/test", follow=False)
        token = csrf_of((await http.get("/admin/test")).text)
        refused = await http.post(
            "/admin/test/do", data={"what": "x", "csrf": token}, headers={"origin": "https://evil.example"}
        )
        assert refused.status_code == 403 and done == []


async def test_a_dangerous_action_without_a_recent_sign_in_asks_to_sign_in_again(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        done = add_test_pages(app)
        await add_user(app, "ada", roles=("admin",))
        await sign_in(http, "ada", "/admin/test", follow=False)
        http.cookies.delete(MARK_COOKIE, path="/admin")  # what the browser holds once the mark has expired
        token = csrf_of((await http.get("/admin/test")).text)
        asked = await http.post("/admin/test/danger", data={"csrf": token}, headers={"referer": f"{BASE}/admin/test"})
        assert asked.status_code == 401 and "sign-in within the last 10 minutes" in asked.text
        assert done == []
        login = next_form(asked.text)
        assert login is not None
        back = await http.post(login.action, data=login.filled("ada", PASSWORD, ""))
        assert back.status_code == 303 and back.headers["location"] == "/admin/test"
        token = csrf_of((await http.get("/admin/test")).text)  # a new session: a new token
        ran = await http.post("/admin/test/danger", data={"csrf": token})
        assert ran.status_code == 303 and done == ["danger"]


def test_the_sign_in_mark_lasts_reauth_minutes_and_only_for_its_session(tmp_path: Path) -> None:
    mark = SignInMark(from_dict({"console": {"reauth_minutes": 5}}, base_dir=tmp_path))
    value = mark.make("session-a", now=1000.0)
    assert mark.recent("session-a", value, now=1000.0 + 299)
    assert not mark.recent("session-a", value, now=1000.0 + 301)
    assert not mark.recent("session-b", value, now=1001.0)
    assert not mark.recent("session-a", value.replace(".", ".0", 1), now=1001.0)
    assert not mark.recent("session-a", "", now=1001.0)


async def test_every_console_response_carries_the_security_headers(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        add_test_pages(app)
        await add_user(app, "ada", roles=("admin",))
        await add_user(app, "bob", roles=())
        answers = [await http.get("/admin/"), await http.get("/admin")]  # sign-in page, redirect
        signed = await sign_in(http, "ada", "/admin/", follow=False)
        answers += [signed, await http.get("/admin/"), await http.get("/admin/config")]
        answers.append(await http.get("/admin/static/console.js"))
        answers.append(await http.post("/admin/test/do", data={}))  # refused: no token
        async with client_for(app) as other:
            await sign_in(other, "bob", "/admin/", follow=False)
            answers.append(await other.get("/admin/config"))  # 403
        for answer in answers:
            headers = answer.headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"], answer.url
            assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] in ("same-origin", "no-referrer")
            assert headers["cache-control"] == "no-store" or answer.url.path.startswith("/admin/static/")
        assert answers[3].headers["content-security-policy"] == CSP
        assert "unsafe-inline" not in answers[3].headers["content-security-policy"]


async def test_the_session_cookie_is_strict_httponly_scoped_and_secure_on_https(tmp_path: Path) -> None:
    data = settings(tmp_path).model_dump(mode="python", exclude_unset=True)
    data["server"]["public_url"] = "https://mcp.example.com"
    app = create_app(from_dict(data, base_dir=tmp_path))
    await app.runtime.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://mcp.example.com") as http:
            await add_user(app, "ada", roles=("admin",))
            signed = await sign_in(http, "ada", "/admin/", follow=False)
            cookies = [v.lower() for k, v in signed.headers.multi_items() if k == "set-cookie"]
            session = next(c for c in cookies if c.startswith("patchbay_admin="))
            for part in ("samesite=strict", "httponly", "path=/admin", "secure", "max-age=3600"):
                assert part in session, session
    finally:
        app.sessions.close_all()
        await app.runtime.stop()


async def test_a_partial_request_gets_only_the_main_block(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app, "ada", roles=("admin",))
        await sign_in(http, "ada", "/admin/", follow=False)
        whole = await http.get("/admin/config")
        part = await http.get("/admin/config", headers={"x-console-partial": "1"})
        frame = ("<html", 'aria-label="Console sections"', "Skip to content")
        assert all(piece in whole.text for piece in frame)
        assert part.status_code == 200 and part.text.lstrip().startswith("<h1>Configuration</h1>")
        assert not any(piece in part.text for piece in frame)


async def test_a_notice_after_an_action_is_shown_once(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        add_test_pages(app)
        await add_user(app, "ada", roles=("admin",))
        await sign_in(http, "ada", "/admin/test", follow=False)
        token = csrf_of((await http.get("/admin/test")).text)
        done = await http.post("/admin/test/do", data={"csrf": token}, follow_redirects=True)
        assert 'role="status">Done it.</p>' in done.text
        assert "Done it." not in (await http.get("/admin/test")).text


async def test_an_action_is_recorded_in_the_audit_trail(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        add_test_pages(app)
        await add_user(app, "ada", roles=("admin",))
        await sign_in(http, "ada", "/admin/test", follow=False)
        token = csrf_of((await http.get("/admin/test")).text)
        await http.post("/admin/test/do", data={"csrf": token})
        await http.post("/admin/test/do", data={"csrf": "forged"})
        engine = app.runtime.dispatcher.audit.engine

        def methods() -> list[tuple[str, str | None, str | None]]:
            with engine.connect() as connection:
                query = "SELECT method, subject, outcome FROM audit_records WHERE method LIKE 'console.%' ORDER BY seq"
                return [tuple(row) for row in connection.execute(text(query))]

        await until(lambda: len(methods()) >= 2, "both console records written")
        assert methods() == [("console.test.do", "user:ada", "ok"), ("console.refused", "user:ada", "refused")]


async def test_with_auth_none_the_console_is_off_unless_the_server_listens_on_loopback(tmp_path: Path) -> None:
    exposed = create_app(from_dict({"server": {"host": "0.0.0.0"}}, base_dir=tmp_path))
    transport = httpx.ASGITransport(app=exposed)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        for path in ("/admin", "/admin/", "/admin/config"):
            off = await http.get(path)
            assert off.status_code == 403 and "The console is off" in off.text and "0.0.0.0" in off.text
    local = create_app(from_dict({"server": {"host": "127.0.0.1"}}, base_dir=tmp_path))
    await local.runtime.start()
    try:
        done = add_test_pages(local)
        async with client_for(local) as http:
            assert (await http.get("/admin/config")).status_code == 200
            page = await http.get("/admin/test")
            assert page.status_code == 200 and "Local operator" in page.text and "hello local" in page.text
            token = csrf_token(http.cookies["patchbay_admin_local"])  # no sign-in: bound to the browser's cookie
            assert (await http.post("/admin/test/danger", data={"csrf": "wrong"})).status_code == 403
            assert done == []
            # Nobody signs in, so there is no sign-in to repeat: a dangerous action needs only the token.
            assert (await http.post("/admin/test/danger", data={"csrf": token})).status_code == 303
            assert done == ["danger"]
    finally:
        await local.runtime.stop()


async def test_a_disabled_console_serves_nothing(tmp_path: Path) -> None:
    async with running(tmp_path, console={"enabled": False}) as app, client_for(app) as http:
        assert app.console is None
        assert (await http.get("/admin/")).status_code == 404
