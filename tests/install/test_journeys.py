"""Real journeys against the wheel installed without extras (`pip install mcp-patchbay`): each starts the clean
install's own `patchbay` on a free loopback port, from a temporary folder, and talks to it over HTTP."""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import json
import secrets
import sqlite3
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx2
import pytest

from tests.install.conftest import CleanInstall
from tests.install.documents import WORDS, write_folder
from tests.install.running import call_tool, list_tools, mcp_request, serve
from tests.support.forms import next_form
from tests.support.servers import RunningServer, free_port

PASSWORD = "clean install pass 42"
WHOAMI_TOOL = '''
from patchbay import Context, tool


@tool(read_only=True, open_world=False)
async def whoami(ctx: Context) -> dict[str, object]:
    """Who is calling."""
    p = ctx.principal
    return {"subject": None if p is None else p.subject, "kind": None if p is None else p.kind}
'''


@pytest.fixture(scope="module")
def demo(clean_install: CleanInstall, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("demo")
    with serve(clean_install, "--demo", cwd=folder, env={"PATCHBAY_DEMO_DIR": str(folder / "data")}) as server:
        yield server


def test_demo_serves_kanban_handbook_and_crm_tools_over_http(demo: RunningServer) -> None:
    assert {"list_boards", "create_card", "search", "fetch", "crm_query"} <= set(list_tools(demo))

    boards = call_tool(demo, "list_boards", {})
    found = call_tool(demo, "search", {"query": "parental leave"})
    tickets = call_tool(demo, "crm_query", {"sql": "SELECT count(*) AS n FROM tickets"})

    assert boards["isError"] is False and boards["structuredContent"]["boards"][0]["name"] == "Product launch"
    assert found["isError"] is False and found["structuredContent"]["results"], found
    assert tickets["isError"] is False and tickets["structuredContent"]["rows"][0][0] > 0, tickets


def test_doctor_finds_the_demo_ready_for_api_clients(clean_install: CleanInstall, demo: RunningServer) -> None:
    done = clean_install.run(
        "patchbay", "doctor", demo.url, "--local", "--stream-hold", "0", "--client", "responses,messages", "--json",
        cwd=demo.log_path.parent,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert {name: client["verdict"] for name, client in report["clients"].items()} == {
        "responses": "pass",
        "messages": "pass",
    }


def test_doctor_exits_1_for_a_server_that_answers_html(clean_install: CleanInstall, tmp_path: Path) -> None:
    # A static web server where the MCP endpoint should be: every client would refuse it (docs/doctor.md: exit 1).
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as web:
        thread = threading.Thread(target=web.serve_forever, daemon=True)
        thread.start()
        try:
            done = clean_install.run(
                "patchbay", "doctor", f"http://127.0.0.1:{web.server_address[1]}/mcp", "--local",
                "--stream-hold", "0", "--json", cwd=tmp_path,
            )  # fmt: skip
        finally:
            web.shutdown()
            thread.join()

    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert {client["verdict"] for client in report["clients"].values()} == {"fail"}
    edge_html = [c for client in report["clients"].values() for c in client["checks"] if c["id"] == "edge.html"]
    assert edge_html and {c["status"] for c in edge_html} == {"fail"}


def test_doctor_exits_2_when_nothing_answers(clean_install: CleanInstall, tmp_path: Path) -> None:
    done = clean_install.run("patchbay", "doctor", f"http://127.0.0.1:{free_port()}/mcp", "--local", cwd=tmp_path)

    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr


# -- sign-in ----------------------------------------------------------------------------------------------------


def oauth_config(folder: Path) -> Path:
    (folder / "tools.py").write_text(WHOAMI_TOOL, encoding="utf-8")
    config = folder / "patchbay.toml"
    config.write_text(
        textwrap.dedent(f"""
            [store]
            url = "sqlite:///{folder / "patchbay.db"}"

            [auth]
            mode = "oauth"

            [[connectors]]
            name = "t"
            type = "python"
            path = "{folder / "tools.py"}"
            prefix = ""
        """),
        encoding="utf-8",
    )
    return config


@pytest.fixture(scope="module")
def oauth_server(clean_install: CleanInstall, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("oauth")
    config = oauth_config(folder)
    added = clean_install.run(
        "patchbay", "users", "add", "alice", "--password-stdin", "-c", str(config), cwd=folder, input=PASSWORD + "\n"
    )
    assert added.returncode == 0, added.stderr
    with serve(clean_install, "--config", str(config), cwd=folder) as server:
        yield server


def follow(http: httpx2.Client, response: httpx2.Response, stop_at: str) -> httpx2.Response:
    """Follow redirects within the server; stop at the first one to `stop_at` (the client's redirect URI)."""
    for _ in range(10):
        location = response.headers.get("location")
        if response.status_code not in (302, 303) or location is None:
            return response
        target = urljoin(str(response.url), location)
        if target.startswith(stop_at):
            return response
        response = http.get(target)
    raise AssertionError("redirect loop")


def submit(http: httpx2.Client, page: httpx2.Response, **values: str) -> httpx2.Response:
    form = next_form(page.text)
    assert form is not None and form.method == "post", f"no form on the page ({page.status_code}):\n{page.text[:2000]}"
    data = {**form.fields, **{name: values[kind] for name, kind in form.inputs if kind in values}}
    if form.is_consent:
        data["decision"] = values["decision"]
    response = http.post(urljoin(str(page.url), form.action), data=data)
    assert response.status_code < 500, f"POST {form.action} answered {response.status_code}:\n{response.text[:2000]}"
    return response


def test_oauth_sign_in_through_login_and_consent_pages_to_a_tool_call_then_revoke(oauth_server: RunningServer) -> None:
    base, redirect_uri = oauth_server.base_url, "http://127.0.0.1:33419/callback"
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    with httpx2.Client(trust_env=False, timeout=30.0) as http:
        registered = http.post(
            f"{base}/register",
            json={
                "client_name": "clean-install",
                "redirect_uris": [redirect_uri],
                "token_endpoint_auth_method": "none",
            },
        )
        assert registered.status_code == 201, registered.text
        client_id = registered.json()["client_id"]
        query = {
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": "s-1",
            "code_challenge": challenge, "code_challenge_method": "S256", "resource": oauth_server.url, "scope": "mcp",
        }  # fmt: skip
        login_page = follow(http, http.get(f"{base}/authorize?{urlencode(query)}"), redirect_uri)
        consent_page = follow(http, submit(http, login_page, text="alice", password=PASSWORD), redirect_uri)
        redirected = submit(http, consent_page, decision="allow")
        assert redirected.headers.get("location", "").startswith(redirect_uri), redirected.text[:2000]
        params = {k: v[0] for k, v in parse_qs(urlsplit(redirected.headers["location"]).query).items()}
        assert params["state"] == "s-1"
        grant = {
            "grant_type": "authorization_code", "code": params["code"], "redirect_uri": redirect_uri,
            "client_id": client_id, "code_verifier": verifier, "resource": oauth_server.url,
        }  # fmt: skip
        tokens = http.post(f"{base}/token", data=grant)
        assert tokens.status_code == 200, tokens.text
        access = tokens.json()["access_token"]

        called = call_tool(oauth_server, "whoami", {}, token=access)
        revoked = http.post(f"{base}/revoke", data={"token": access, "client_id": client_id})
        after = mcp_request(http, oauth_server.url, "tools/call", {"name": "whoami", "arguments": {}}, access)

    assert called["structuredContent"] == {"subject": "user:alice", "kind": "user"}
    assert revoked.status_code == 200, revoked.text
    assert after.status_code == 401, after.text


def test_api_key_from_the_cli_calls_a_tool(clean_install: CleanInstall, oauth_server: RunningServer) -> None:
    folder = oauth_server.log_path.parent
    created = clean_install.run(
        "patchbay", "keys", "create", "--name", "ci", "--scopes", "mcp", "-c", str(folder / "patchbay.toml"), cwd=folder
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()

    called = call_tool(oauth_server, "whoami", {}, token=key)

    assert called["structuredContent"] == {"subject": "key:ci", "kind": "api_key"}
    with httpx2.Client(trust_env=False, timeout=30.0) as http:
        refused = mcp_request(http, oauth_server.url, "tools/list", {}, token=key + "x")
    assert refused.status_code == 401


# -- connectors -------------------------------------------------------------------------------------------------


def test_documents_connector_indexes_word_pdf_html_and_markdown_then_serves_search_and_fetch(
    clean_install: CleanInstall, tmp_path: Path
) -> None:
    write_folder(tmp_path / "handbook")
    config = tmp_path / "patchbay.toml"
    config.write_text(
        '[[connectors]]\nname = "handbook"\ntype = "documents"\nprefix = ""\n'
        'url_template = "https://intranet.example.com/{path_noext}"\n'
        '[[connectors.sources]]\nname = "handbook"\nfolder = "./handbook"\n',
        encoding="utf-8",
    )
    indexed = clean_install.run("patchbay", "index", "-c", str(config), cwd=tmp_path)
    assert indexed.returncode == 0, indexed.stdout + indexed.stderr
    assert "4 added" in indexed.stdout + indexed.stderr, indexed.stdout + indexed.stderr

    with serve(clean_install, "--config", str(config), cwd=tmp_path) as server:
        hits = {
            word: call_tool(server, "search", {"query": word})["structuredContent"]["results"]
            for word in WORDS.values()
        }
        first = hits["passkeys"][0]
        fetched = call_tool(server, "fetch", {"id": first["id"]})["structuredContent"]

    for file, word in WORDS.items():
        assert [hit["url"] for hit in hits[word]] == [f"https://intranet.example.com/{Path(file).stem}"], hits[word]
    assert "passkeys" in fetched["text"]


def test_sql_connector_answers_queries_on_a_sqlite_file(clean_install: CleanInstall, tmp_path: Path) -> None:
    database = tmp_path / "shop.sqlite3"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL, qty INTEGER NOT NULL)")
        conn.executemany("INSERT INTO orders (item, qty) VALUES (?, ?)", [("bolts", 40), ("nuts", 12)])
    config = tmp_path / "patchbay.toml"
    config.write_text(f'[[connectors]]\nname = "shop"\ntype = "sql"\nurl = "sqlite:///{database}"\n', encoding="utf-8")

    with serve(clean_install, "--config", str(config), cwd=tmp_path) as server:
        tables = call_tool(server, "shop_list_tables", {})
        rows = call_tool(server, "shop_query", {"sql": "SELECT item, qty FROM orders ORDER BY qty DESC"})
        write = call_tool(server, "shop_query", {"sql": "DELETE FROM orders"})

    assert "orders" in json.dumps(tables["structuredContent"])
    assert rows["structuredContent"]["rows"] == [["bolts", 40], ["nuts", 12]]
    assert write["isError"] is True
