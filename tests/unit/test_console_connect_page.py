"""The Connect page in-process: who may see it, the doctor button's CSRF check and audit record, and that the page
shows each client's steps for the configured public URL and nothing secret."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from tests.support.waiting import until
from tests.unit.fixtures.authflow import PASSWORD, add_user
from tests.unit.fixtures.console_admin import csrf_of, sign_in

from patchbay.app import create_app
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio

SECRET = "s3cret-server-key-that-must-not-show"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but never listening: the doctor's connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@contextlib.asynccontextmanager
async def running(tmp: Path, port: int) -> AsyncIterator[Any]:
    data = {
        "server": {"name": "Connect test", "public_url": f"http://127.0.0.1:{port}", "secret": SECRET},
        "store": {"url": f"sqlite:///{tmp / 'c.db'}"},
        "auth": {"mode": "oauth"},
    }  # fmt: skip
    app = create_app(from_dict(data, base_dir=tmp))
    await app.runtime.start()
    try:
        await add_user(app, "root", roles=("admin",))
        await add_user(app, "plain")
        yield app
    finally:
        app.sessions.close_all()
        await app.runtime.stop()


def browser(app: Any) -> httpx.AsyncClient:
    base = app.runtime.settings.public_url
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base, timeout=30)


async def test_an_admin_sees_every_clients_steps_for_the_public_url(tmp_path: Path, closed_port: int) -> None:
    async with running(tmp_path, closed_port) as app, browser(app) as http:
        page = await sign_in(http, "root", "/admin/connect")
        assert page.status_code == 200 and str(page.url).endswith("/admin/connect"), page.text[-1500:]
        for title in ("ChatGPT", "Claude (web and Desktop)", "Claude Code", "OpenAI Responses API",
                      "Anthropic Messages API", "MCP Inspector"):  # fmt: skip
            assert f">{title}</h2>" in page.text
        url = f"http://127.0.0.1:{closed_port}/mcp"
        assert f"claude mcp add --transport http connect-test {url}" in page.text
        assert f"&#34;server_url&#34;: &#34;{url}&#34;" in page.text  # JSON shown as text, escaped
        assert page.text.count(f"{url} is not a public HTTPS URL") == 4  # ChatGPT, Claude and both APIs
        assert SECRET not in page.text and PASSWORD not in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_a_user_without_the_admin_role_gets_403(tmp_path: Path, closed_port: int) -> None:
    async with running(tmp_path, closed_port) as app, browser(app) as http:
        page = await sign_in(http, "plain", "/admin/connect")
        assert page.status_code == 403 and "Run the doctor" not in page.text


async def test_the_doctor_button_refuses_a_missing_or_wrong_csrf_token_and_runs_nothing(
    tmp_path: Path, closed_port: int
) -> None:
    async with running(tmp_path, closed_port) as app, browser(app) as http:
        page = await sign_in(http, "root", "/admin/connect")
        token = csrf_of(page.text)
        for form in ({"go": "1"}, {"csrf": "0" * len(token)}, {"csrf": token[:-1]}):
            refused = await http.post("/admin/connect/doctor", data=form)
            assert refused.status_code == 403, refused.text
        shown = await http.get("/admin/connect")
        assert "Report for" not in shown.text


async def test_the_doctor_button_runs_the_doctor_shows_its_report_and_is_audited(
    tmp_path: Path, closed_port: int
) -> None:
    async with running(tmp_path, closed_port) as app, browser(app) as http:
        page = await sign_in(http, "root", "/admin/connect")
        ran = await http.post("/admin/connect/doctor", data={"csrf": csrf_of(page.text)})
        assert ran.status_code == 303 and ran.headers["location"] == "/admin/connect#doctor"
        shown = await http.get("/admin/connect")
        # Nothing listens at the public URL (the app is served in-process): the doctor says it could not run.
        url = f"http://127.0.0.1:{closed_port}/mcp"
        assert f"Report for <code>{url}</code>" in shown.text, shown.text
        assert f"The doctor could not run: nothing answers at {url}" in shown.text
        assert "Doctor: could not run" in shown.text
        again = await http.get("/admin/connect")
        assert "Doctor: could not run" not in again.text  # the notice is shown once, the report stays
        assert "Report for" in again.text
        db = tmp_path / "c.db"

        def recorded() -> list[tuple[str, str, str]]:
            with sqlite3.connect(db) as con:
                query = "SELECT subject, outcome, body FROM audit_records WHERE method = 'console.connect.doctor'"
                return list(con.execute(query))

        await until(recorded, "the doctor run is in the audit trail")
        ((subject, outcome, body),) = recorded()
        assert (subject, outcome) == ("user:root", "error") and '"by":"root"' in body.replace(" ", "")
