"""The console's audit page against create_app: filters and pages, a record's redacted body shown as text, the live
tail over a real loopback server, exports and their escaping, and who may see any of it."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from tests.support.loopback_asgi import serving
from tests.support.waiting import until
from tests.unit.fixtures.authflow import call, client_for
from tests.unit.fixtures.console_admin import console_app, running, signed_in

from patchbay.gate.audit_store import write_now

pytestmark = pytest.mark.anyio
SEQ_LINK = re.compile(r'href="/admin/audit/(\d+)"')


def _records(app: Any, records: list[dict[str, Any]]) -> list[int]:
    engine = app.runtime.dispatcher.audit.engine
    return [seq for seq, _ in write_now(engine, records)]


def _call_record(name: str, subject: str, outcome: str = "ok", **extra: Any) -> dict[str, Any]:
    return {"kind": "call", "method": "tools/call", "name": name, "subject": subject, "outcome": outcome, **extra}


def _seqs(html: str) -> list[int]:
    return [int(s) for s in SEQ_LINK.findall(html)]


async def test_the_audit_page_filters_and_pages_newest_first(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await signed_in(http, app, "ada", ("admin",))
        seqs = _records(app, [_call_record(f"tool{i % 3}", f"user:u{i % 2}") for i in range(130)])
        wanted = [s for i, s in enumerate(seqs) if i % 3 == 1 and i % 2 == 0][::-1]
        first = await http.get("/admin/audit", params={"tool": "tool1", "user": "u0"})
        assert first.status_code == 200
        assert _seqs(first.text) == wanted
        everything = await http.get("/admin/audit")
        shown = _seqs(everything.text)
        assert len(shown) == 50 and shown == sorted(shown, reverse=True)
        older = re.search(r'href="(/admin/audit\?before=\d+)" rel="next"', everything.text)
        assert older is not None
        second = await http.get(older.group(1))
        assert _seqs(second.text)[0] < shown[-1] and len(_seqs(second.text)) == 50
        back = re.search(r'href="(/admin/audit\?after=\d+)" rel="prev"', second.text)
        assert back is not None and _seqs((await http.get(back.group(1))).text) == shown


async def test_a_bad_filter_is_refused_naming_the_field_and_keeps_what_was_typed(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await signed_in(http, app, "ada", ("admin",))
        answer = await http.get("/admin/audit", params={"since": "last tuesday", "tool": "crm_<b>"})
        assert answer.status_code == 400
        assert "since: &#39;last tuesday&#39; is not a time" in answer.text
        assert 'value="crm_&lt;b&gt;"' in answer.text and "<b>" not in answer.text


async def test_a_record_shows_its_arguments_as_recorded_with_secrets_redacted_and_as_text(tmp_path: Path) -> None:
    async with running(tmp_path, audit={"redact_fields": ["query"]}) as app, client_for(app) as http:
        await signed_in(http, app, "ada", ("admin",))
        _, key = app.runtime.auth.core.keys.create("ci", ["docs.write"])
        await call(http, key, "tools/call", {"name": "search", "arguments": {"query": "hunter2-the-secret"}})
        await call(http, key, "tools/call", {"name": "write_doc", "arguments": {"title": "<script>x()</script>"}})
        engine = app.runtime.dispatcher.audit.engine
        await _until_recorded(engine, 2)
        listing = await http.get("/admin/audit", params={"user": "key:ci"})
        pages = [(await http.get(f"/admin/audit/{seq}")).text for seq in _seqs(listing.text)]
        searched = next(p for p in pages if "&#34;search&#34;" in p or "&quot;search&quot;" in p)
        assert "[redacted]" in searched and "hunter2-the-secret" not in searched
        # the write's intent record holds its arguments: shown as text, never as markup
        assert any("&lt;script&gt;x()&lt;/script&gt;" in p for p in pages)
        assert not any("<script>x()" in p for p in pages)
        assert key not in "".join(pages) and key not in listing.text
        assert (await http.get("/admin/audit/999999")).status_code == 404


async def _until_recorded(engine: Any, count: int) -> None:
    from sqlalchemy import text

    with anyio.fail_after(20):
        while True:
            with engine.connect() as connection:
                found = connection.execute(text("SELECT count(*) FROM audit_records WHERE kind = 'call'")).scalar()
            if found >= count:
                return
            await anyio.sleep(0.02)


async def test_exports_stream_the_filter_as_csv_and_jsonl_with_formulas_defused(tmp_path: Path) -> None:
    async with running(tmp_path, console={"export_max_rows": 3}) as app, client_for(app) as http:
        await signed_in(http, app, "ada", ("admin",))
        _records(app, [_call_record("=HYPERLINK(1)", "user:eve", detail="@SUM(A1)") for _ in range(2)])
        _records(app, [_call_record("other", "user:bob")])
        exported = await http.get("/admin/audit/export.csv", params={"user": "eve"})
        assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
        assert "attachment" in exported.headers["content-disposition"]
        assert "x-patchbay-export-truncated" not in exported.headers
        table = list(csv.reader(io.StringIO(exported.text)))
        assert len(table) == 3 and table[0][:5] == ["seq", "time", "kind", "method", "name"]
        row = dict(zip(table[0], table[1], strict=True))
        assert row["name"] == "'=HYPERLINK(1)" and row["detail"] == "'@SUM(A1)" and row["subject"] == "user:eve"
        lines = (await http.get("/admin/audit/export.jsonl", params={"user": "eve"})).text.splitlines()
        assert [json.loads(line)["name"] for line in lines] == ["=HYPERLINK(1)"] * 2
        full = await http.get("/admin/audit/export.jsonl")  # the sign-in event and three calls, at least
        assert "only the newest 3 records" in full.headers["x-patchbay-export-truncated"]
        assert len(full.text.splitlines()) == 3
        assert (await http.get("/admin/audit/export.xml")).status_code == 404


async def test_a_person_without_the_admin_role_sees_no_audit_page_export_or_tail(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await signed_in(http, app, "carol", ("approver",))
        _records(app, [_call_record("secret_tool", "user:x")])
        for path in ("/admin/audit", "/admin/audit/1", "/admin/audit/live", "/admin/audit/export.csv"):
            answer = await http.get(path)
            assert answer.status_code == 403, path
            assert "secret_tool" not in answer.text


async def test_without_signing_in_the_audit_page_asks_for_a_sign_in(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        _records(app, [_call_record("secret_tool", "user:x")])
        for path in ("/admin/audit", "/admin/audit/live", "/admin/audit/export.jsonl"):
            answer = await http.get(path)
            assert answer.status_code == 401 and "secret_tool" not in answer.text


async def test_the_live_tail_delivers_a_record_written_after_it_opened(tmp_path: Path) -> None:
    app = console_app(tmp_path)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        await until(lambda: app.runtime.ready, "the server started")
        await signed_in(http, app, "ada", ("admin",))
        page = await http.get("/admin/audit", params={"tool": "watched"})
        live = re.search(r'data-live="([^"]+)"', page.text)
        assert live is not None
        address = live.group(1).replace("&amp;", "&")
        async with http.stream("GET", address) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["cache-control"] == "no-store"
            lines = stream.aiter_lines()
            assert await anext(lines) == "retry: 5000"
            (seq,) = _records(app, [_call_record("watched", "user:ada")])
            _records(app, [_call_record("unwatched", "user:ada")])
            with anyio.fail_after(20):
                async for line in lines:
                    if line.startswith("data: "):
                        message = json.loads(line[6:])
                        break
        assert message["href"] == f"/admin/audit/{seq}"
        assert message["cells"][0] == seq and message["cells"][3] == "watched"


async def test_the_live_tail_resumes_after_the_last_event_it_sent(tmp_path: Path) -> None:
    app = console_app(tmp_path)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        await until(lambda: app.runtime.ready, "the server started")
        await signed_in(http, app, "ada", ("admin",))
        first, second = _records(app, [_call_record("a", "user:ada"), _call_record("b", "user:ada")])
        headers = {"last-event-id": str(first)}
        async with http.stream("GET", "/admin/audit/live", headers=headers) as stream:
            with anyio.fail_after(20):
                async for line in stream.aiter_lines():
                    if line.startswith("id: "):
                        assert int(line[4:]) == second
                        break


async def test_with_the_audit_trail_off_the_page_says_so(tmp_path: Path) -> None:
    async with running(tmp_path, audit={"enabled": False}) as app, client_for(app) as http:
        await signed_in(http, app, "ada", ("admin",))
        answer = await http.get("/admin/audit")
        assert answer.status_code == 200 and "[audit] enabled = false" in answer.text
        assert (await http.get("/admin/audit/export.csv")).status_code == 404
