"""/metrics (docs/observability.md): scraped from a real server on loopback after real calls, parsed with
Prometheus' own text parser, and never readable without the token or off the configured listener."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fixtures.wire import JSON_POST, TOOLS_FILE, initialize_body, live_server, request
from prometheus_client.parser import text_string_to_metric_families

from patchbay.app import create_app
from patchbay.errors import ConfigError
from patchbay.settings import Settings, from_dict

TOKEN = "metrics-token-0123456789abcdef"
DEADLINE = 10.0  # seconds per HTTP exchange


def settings_with(tmp_path: Path, **extra: Any) -> Settings:
    data: dict[str, Any] = {
        "server": {"name": "patchbay-unit"},
        "store": {"url": "sqlite:///:memory:"},
        "connectors": [{"name": "fx", "type": "python", "path": str(TOOLS_FILE), "prefix": ""}],
        **extra,
    }
    return from_dict(data, base_dir=tmp_path)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def call_tools(base: str, names: list[str]) -> None:
    with httpx.Client(base_url=base, timeout=DEADLINE) as http:
        opened = http.post("/mcp", json=initialize_body(), headers=JSON_POST)
        headers = {**JSON_POST, "mcp-session-id": opened.headers["mcp-session-id"]}
        http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        for name in names:
            arguments = {"text": "hi"} if name == "echo" else {}
            answer = http.post(
                "/mcp", json=request("tools/call", {"name": name, "arguments": arguments}), headers=headers
            )
            assert answer.status_code == 200, answer.text


def test_scrape_counts_each_call_by_tool_and_outcome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PB_TEST_METRICS_TOKEN", TOKEN)
    settings = settings_with(
        tmp_path,
        metrics={"token_env": "PB_TEST_METRICS_TOKEN"},
        policy=[{"id": "no-add", "subjects": ["*"], "tools": ["add"], "effect": "deny"}],
        limits=[{"per": "global", "tools": ["scaled"], "rate": "1/hour"}],
    )
    with live_server(settings) as server:
        base = f"http://127.0.0.1:{server.port}"
        call_tools(base, ["echo", "echo", "echo", "refuse", "refuse", "explode", "add", "scaled", "scaled"])
        scraped = httpx.get(f"{base}/metrics", headers={"authorization": f"Bearer {TOKEN}"}, timeout=DEADLINE)
        # A read's audit record may trail its answer by [audit] read_window_ms: scrape until the writer caught up.
        deadline = time.monotonic() + DEADLINE
        while samples(scraped.text).get(("patchbay_audit_records_total", ()), 0) < 9 and time.monotonic() < deadline:
            time.sleep(0.02)
            scraped = httpx.get(f"{base}/metrics", headers={"authorization": f"Bearer {TOKEN}"}, timeout=DEADLINE)
    assert scraped.status_code == 200, scraped.text
    assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(scraped.text)
    calls = {k[1]: v for k, v in found.items() if k[0] == "patchbay_tool_calls_total"}
    assert calls == {
        (("outcome", "ok"), ("tool", "echo")): 3,
        (("outcome", "tool_error"), ("tool", "refuse")): 2,
        (("outcome", "error"), ("tool", "explode")): 1,
        (("outcome", "denied"), ("tool", "add")): 1,
        (("outcome", "ok"), ("tool", "scaled")): 1,
        (("outcome", "rate_limited"), ("tool", "scaled")): 1,
    }
    assert found[("patchbay_rate_limited_total", (("method", "tools/call"),))] == 1
    assert found[("patchbay_policy_decisions_total", (("effect", "allow"),))] == 8
    assert found[("patchbay_policy_decisions_total", (("effect", "deny"),))] == 1
    echo = (("tool", "echo"),)
    assert found[("patchbay_tool_call_duration_seconds_count", echo)] == 3
    buckets = sorted(
        (float(dict(k[1])["le"]), v)
        for k, v in found.items()
        if k[0] == "patchbay_tool_call_duration_seconds_bucket" and dict(k[1])["tool"] == "echo"
    )
    assert [le for le, _ in buckets] == [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, float("inf")]
    assert [v for _, v in buckets] == sorted(v for _, v in buckets) and buckets[-1][1] == 3
    assert found[("patchbay_connector_up", (("connector", "fx"),))] == 1
    assert found[("patchbay_sessions_active", (("transport", "streamable_http"),))] == 1
    assert ("patchbay_build_info", (("version", __import__("patchbay").__version__),)) in found
    # The audit trail is on by default: one record per call (reads and refusals).
    assert found[("patchbay_audit_records_total", ())] == 9
    assert found[("patchbay_audit_records_lost_total", ())] == 0


def test_metrics_on_the_main_port_need_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PB_TEST_METRICS_TOKEN", TOKEN)
    with live_server(settings_with(tmp_path, metrics={"token_env": "PB_TEST_METRICS_TOKEN"})) as server:
        url = f"http://127.0.0.1:{server.port}/metrics"
        missing = httpx.get(url, timeout=DEADLINE)
        wrong = httpx.get(url, headers={"authorization": f"Bearer {TOKEN}x"}, timeout=DEADLINE)
        right = httpx.get(url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=DEADLINE)
        foreign = httpx.get(url, headers={"authorization": f"Bearer {TOKEN}", "host": "evil.example"}, timeout=DEADLINE)
    for refused in (missing, wrong):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in refused.text and "patchbay_" not in refused.text
    assert right.status_code == 200 and "patchbay_build_info" in right.text
    assert foreign.status_code == 421  # the edge's Host check, as for every route but /mcp


def test_metrics_are_not_served_unless_configured(tmp_path: Path) -> None:
    app = create_app(settings_with(tmp_path))
    assert app.runtime.dispatcher.metrics is None
    with live_server(settings_with(tmp_path)) as server:
        response = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=DEADLINE)
    assert response.status_code == 404


def test_separate_listener_serves_metrics_only_there(tmp_path: Path) -> None:
    with live_server(settings_with(tmp_path, metrics={"listen": "127.0.0.1:0"})) as server:
        call_tools(f"http://127.0.0.1:{server.port}", ["echo"])
        port = server.app.observability.listener.bound_port
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE)
        rebound = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"host": "attacker.example"}, timeout=DEADLINE)
        other = httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=DEADLINE)
        main = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=DEADLINE)
    assert scraped.status_code == 200
    assert samples(scraped.text)[("patchbay_tool_calls_total", (("outcome", "ok"), ("tool", "echo")))] == 1
    assert rebound.status_code == 421  # DNS rebinding: a loopback listener answers only a loopback Host
    assert other.status_code == 404
    assert main.status_code == 404  # without token_env nothing is served on the public port


@pytest.mark.parametrize("value", [None, "s3cr3t-x9q"], ids=["unset", "too-short"])
def test_metrics_token_env_must_hold_a_real_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("PB_TEST_METRICS_TOKEN", raising=False)
    else:
        monkeypatch.setenv("PB_TEST_METRICS_TOKEN", value)
    with pytest.raises(ConfigError) as raised:
        create_app(settings_with(tmp_path, metrics={"token_env": "PB_TEST_METRICS_TOKEN"}))
    assert raised.value.key == "metrics.token_env"
    assert "PB_TEST_METRICS_TOKEN" in str(raised.value) and (value is None or value not in str(raised.value))


@pytest.mark.parametrize("listen", ["9464", "127.0.0.1:", "127.0.0.1:99999", ":9464"])
def test_bad_metrics_listen_names_the_key(tmp_path: Path, listen: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings_with(tmp_path, metrics={"listen": listen})
    assert "metrics.listen" in str(raised.value) and "host:port" in str(raised.value)


@pytest.mark.anyio
async def test_a_metrics_port_in_use_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = create_app(settings_with(tmp_path, metrics={"listen": f"127.0.0.1:{port}"}))
        with pytest.raises(ConfigError) as raised:
            await app.observability.start()
    assert raised.value.key == "metrics.listen"
    assert f"127.0.0.1:{port}" in str(raised.value)


def test_held_calls_show_as_pending_approvals(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path,
        store={"url": f"sqlite:///{tmp_path / 'store.db'}"},
        metrics={"listen": "127.0.0.1:0"},
        policy=[{"id": "ask-first", "subjects": ["*"], "tools": ["add"], "effect": "approve"}],
    )
    with live_server(settings) as server:
        port = server.app.observability.listener.bound_port
        before = samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE).text)
        call_tools(f"http://127.0.0.1:{server.port}", ["add"])
        after = samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE).text)
    assert before[("patchbay_approvals_pending", ())] == 0
    assert after[("patchbay_approvals_pending", ())] == 1
    assert after[("patchbay_tool_calls_total", (("outcome", "approval_pending"), ("tool", "add")))] == 1
    assert after[("patchbay_policy_decisions_total", (("effect", "approve"),))] == 1
