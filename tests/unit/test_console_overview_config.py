"""The console's Overview (connector health, counts, the last hour per minute from the audit trail) and
Configuration (every setting, no secret) pages, against a real SQLite store and create_app."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from tests.unit.fixtures.authflow import BASE, TOOLS

from patchbay.app import create_app
from patchbay.console.redact import HIDDEN, sections
from patchbay.console.traffic import HourCache, last_hour
from patchbay.gate.audit_store import write_now
from patchbay.settings import from_dict
from patchbay.store import create_engine, upgrade

pytestmark = pytest.mark.anyio
NOW = 1_800_000_000.0  # a fixed instant: the minute boundaries below are computed from it
HOUR_START = (int(NOW) // 60 + 1) * 60 - 3600


def _call(ts: float, outcome: str, latency: float | None = 10.0, kind: str = "call") -> dict[str, Any]:
    record: dict[str, Any] = {"kind": kind, "ts": ts, "method": "tools/call", "name": "t_echo", "outcome": outcome}
    if latency is not None:
        record["latency_ms"] = latency
    return record


def test_the_last_hour_counts_final_call_records_per_minute(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    upgrade(engine, "audit@head")
    write_now(
        engine,
        [
            _call(HOUR_START - 1, "ok"),  # a second before the hour: not counted
            _call(HOUR_START - 7200, "error"),  # two hours ago: not counted
            _call(HOUR_START + 5, "ok", 10.0),
            _call(HOUR_START + 50, "tool_error", 30.0),
            _call(HOUR_START + 55, "intent", None),  # a write's first record: not a call of its own
            _call(HOUR_START + 30 * 60 + 1, "denied", 2.0),
            _call(HOUR_START + 59 * 60 + 59, "timed_out", 5000.0),
            _call(HOUR_START + 120, "ok", kind="event"),  # events are not calls
        ],
    )
    minutes = last_hour(engine, now=NOW)
    engine.dispose()
    assert len(minutes) == 60 and minutes[0].start == HOUR_START
    first, middle, last = minutes[0], minutes[30], minutes[59]
    assert (first.calls, first.errors, first.refused) == (2, 1, 0)
    assert first.latency_avg == 20.0 and first.latency_max == 30.0
    assert (middle.calls, middle.errors, middle.refused) == (1, 0, 1)
    assert (last.calls, last.errors, last.latency_max) == (1, 1, 5000.0)
    assert sum(m.calls for m in minutes) == 4
    assert [m.label for m in minutes] == [dt.datetime.fromtimestamp(m.start, dt.UTC).strftime("%H:%M") for m in minutes]
    assert all(m.calls == 0 and m.latency_avg is None for m in minutes[1:30] + minutes[31:59])


def test_latency_comes_from_the_duration_column_and_a_record_without_it_counts_only_as_a_call(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    upgrade(engine, "audit@head")
    write_now(engine, [_call(HOUR_START + 5, "ok", 10.0), _call(HOUR_START + 6, "tool_error", 30.0)])
    with engine.begin() as connection:
        # seq 1 as written before audit_0005 (no column), seq 2's column alone says 50: the body is never read.
        connection.execute(text("UPDATE audit_records SET duration_ms = NULL WHERE seq = 1"))
        connection.execute(text("UPDATE audit_records SET duration_ms = 50 WHERE seq = 2"))
    first = last_hour(engine, now=NOW)[0]
    engine.dispose()
    assert (first.calls, first.errors) == (2, 1)
    assert (first.latency_avg, first.latency_max) == (50.0, 50.0)


def test_the_hour_cache_reads_only_minutes_that_may_still_change(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    upgrade(engine, "audit@head")
    write_now(engine, [_call(HOUR_START + 10 * 60, "ok"), _call(NOW - 30, "ok")])
    cache = HourCache(settle_seconds=120)
    before = cache.last_hour(engine, now=NOW)
    # Written late into a settled minute (never happens: the writer is seconds behind): the cache does not look.
    write_now(engine, [_call(HOUR_START + 10 * 60, "ok"), _call(NOW - 20, "tool_error")])
    after = cache.last_hour(engine, now=NOW)
    engine_view = last_hour(engine, now=NOW)
    engine.dispose()
    assert before[10].calls == 1 and after[10].calls == 1 and engine_view[10].calls == 2
    assert (before[58].calls, after[58].calls, after[58].errors) == (1, 2, 1)  # a recent minute is read again
    assert [m.start for m in after] == [m.start for m in engine_view]


@contextlib.asynccontextmanager
async def local_console(tmp: Path, extra: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    """An app with [auth] mode = "none" on loopback (its console needs no sign-in), started."""
    data = {"server": {"name": "Console test", "host": "127.0.0.1"}, "store": {"url": f"sqlite:///{tmp / 'p.db'}"}}
    app = create_app(from_dict({**data, **extra}, base_dir=tmp))
    await app.runtime.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=10) as http:
            http.app = app  # type: ignore[attr-defined]
            yield http
    finally:
        app.sessions.close_all()
        await app.runtime.stop()


async def test_the_overview_shows_each_connector_health_with_its_reason_and_the_counts(tmp_path: Path) -> None:
    connectors = [
        {"name": "t", "type": "python", "path": str(TOOLS), "prefix": ""},
        {"name": "gone", "type": "mcp", "command": [str(tmp_path / "no-such-server")]},
    ]
    async with local_console(tmp_path, {"connectors": connectors}) as http:
        app = http.app  # type: ignore[attr-defined]
        page = await http.get("/admin/")
        assert page.status_code == 200
        text = page.text
        assert '<code>t</code></td>\n  <td>python</td>\n  <td><span class="badge ok">up</span>' in text
        assert '<code>gone</code></td>\n  <td>mcp</td>\n  <td><span class="badge bad">down</span>' in text
        detail = app.runtime.supervisor.status["gone"].detail
        assert detail and detail.replace("'", "&#39;").replace('"', "&#34;") in text
        assert f'<span class="value">{len(app.runtime.catalog.tools)}</span> tools' in text
        assert '<span class="value">0</span> MCP sessions' in text


def _tools_module(count: int) -> str:
    lines = ["from patchbay import tool", ""]
    for index in range(count):
        lines += ["", "@tool(read_only=True)", f"def t{index}() -> str:", f'    """Tool {index}."""', "    return ''"]
    return "\n".join(lines)


async def test_the_overview_counts_each_connectors_tools_again_after_the_catalog_changes(tmp_path: Path) -> None:
    module = tmp_path / "counted.py"
    module.write_text(_tools_module(2), encoding="utf-8")
    connectors = [{"name": "counted", "type": "python", "path": str(module), "prefix": ""}]
    row = (
        '<code>counted</code></td>\n  <td>python</td>\n  <td><span class="badge ok">up</span></td>\n'
        '  <td class="num">{}<'
    )
    async with local_console(tmp_path, {"connectors": connectors}) as http:
        app = http.app  # type: ignore[attr-defined]
        assert row.format(2) in (await http.get("/admin/")).text
        module.write_text(_tools_module(3), encoding="utf-8")
        await app.runtime.reload()  # what SIGHUP does: the catalog rebuilds with the third tool
        page = (await http.get("/admin/")).text
        assert row.format(3) in page and '<span class="value">3</span> tools' in page


async def test_the_overview_charts_the_calls_recorded_in_the_last_hour(tmp_path: Path) -> None:
    connectors = [{"name": "t", "type": "python", "path": str(TOOLS), "prefix": ""}]
    async with local_console(tmp_path, {"connectors": connectors}) as http:
        app = http.app  # type: ignore[attr-defined]
        import time

        now = time.time()
        write_now(app.runtime.dispatcher.audit.engine, [_call(now - 1, "ok", 12.5), _call(now - 1, "tool_error", 1.5)])
        page = (await http.get("/admin/")).text
        assert page.count('<svg viewBox="0 0 600 136" role="img"') == 3
        assert "Calls, per minute over the last hour: peak 2 calls at" in page and "2 in all" in page
        assert "Errors, per minute over the last hour: peak 1 errors at" in page
        assert "Average latency, per minute over the last hour: peak 7 ms at" in page
        assert '<td class="num">2</td><td class="num">1</td><td class="num">0</td>' in page  # the table fallback
        label = dt.datetime.fromtimestamp(now - 1, dt.UTC).strftime("%H:%M")  # the records' minute
        assert f'height="106.0"><title>{label}: 2 calls</title></rect>' in page  # the tallest bar, scaled to the peak
        assert '<rect class="bar-bad" x="' in page and f"<title>{label}: 1 errors</title>" in page


async def test_without_an_audit_trail_the_overview_says_there_are_no_charts(tmp_path: Path) -> None:
    async with local_console(tmp_path, {"audit": {"enabled": False}}) as http:
        page = (await http.get("/admin/")).text
        assert "no audit trail ([audit] enabled = false)" in page and "<svg" not in page


SECRET = "pl4nted-" + secrets.token_hex(8)


def _secret_settings(tmp: Path) -> tuple[dict[str, Any], str]:
    """A setting for every place a secret can be written, each holding SECRET (or a key made from it)."""
    key = base64.b64encode(SECRET.encode().ljust(32, b"x")[:32]).decode()
    return {
        "server": {"name": "Console test", "host": "127.0.0.1", "secret": SECRET},
        "store": {"url": f"sqlite:///{tmp / 'p.db'}"},
        "vault": {"keys": [key]},
        "metrics": {"token_env": "METRICS_TOKEN_VAR"},
        "connectors": [
            {
                "name": "up",
                "type": "mcp",
                "url": f"https://user:{SECRET}@mcp.example.com/mcp",
                "headers": {"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET, "X-Ref": {"env": "UP_TOKEN"}},
                "client_secret_env": "UP_CLIENT_SECRET",
            },
            {"name": "child", "type": "mcp", "command": ["server"], "env": {"PLAIN": SECRET, "REF": {"env": "X"}}},
            {"name": "db", "type": "sql", "url": f"postgresql://reader:{SECRET}@db.example.com/crm"},
            {"name": "t", "type": "python", "path": str(TOOLS), "prefix": "", "api_token": SECRET},
        ],
    }, key


def test_no_secret_survives_in_the_configuration_sections(tmp_path: Path) -> None:
    data, key = _secret_settings(tmp_path)
    shown = "\n".join(f"{row.key}={row.value}" for s in sections(from_dict(data, base_dir=tmp_path)) for row in s.rows)
    assert SECRET not in shown and key not in shown
    for name in ("METRICS_TOKEN_VAR", "UP_TOKEN", "UP_CLIENT_SECRET", "mcp.example.com", "db.example.com"):
        assert name in shown, name  # where secrets come from is shown, and what is not secret
    assert f"secret={HIDDEN}" in shown and "keys=" in shown


async def test_the_configuration_page_shows_every_table_and_no_secret(tmp_path: Path, monkeypatch: Any) -> None:
    data, key = _secret_settings(tmp_path)
    data["connectors"] = [c for c in data["connectors"] if c["type"] == "mcp"]  # ones that start without a system
    for variable in ("METRICS_TOKEN_VAR", "UP_TOKEN", "X", "UP_CLIENT_SECRET"):
        monkeypatch.setenv(variable, SECRET + "-from-env")  # values of variables are never shown either
    async with local_console(tmp_path, data) as http:
        page = await http.get("/admin/config")
        assert page.status_code == 200
        assert SECRET not in page.text and key not in page.text
        for table in ("[server]", "[auth]", "[audit]", "[vault]", "[console]", "connectors[0] up (mcp)"):
            assert f"<code>{table}</code>" in page.text, table
        assert "METRICS_TOKEN_VAR" in page.text and HIDDEN in page.text
