"""The doctor's pure parts: schema rules, challenge parsing, metadata URLs, address classes, profiles, catalogue,
and a run in-process over httpx's ASGI transport against a fixture server (no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from tests.e2e.doctor_fixtures.base import Server
from tests.e2e.doctor_support import serve_app

from patchbay.doctor import CATALOG, Options, run
from patchbay.doctor.checks import ALL
from patchbay.doctor.checks.auth import as_metadata_urls, parse_challenge
from patchbay.doctor.checks.schemas import input_schema_problems, output_schema_problems
from patchbay.doctor.checks.signin import jwt_claims
from patchbay.doctor.checks.url import classify_addresses
from patchbay.doctor.model import STEPS, Status
from patchbay.doctor.probe import parse_sse
from patchbay.doctor.profiles import PROFILE_NAMES, load_profiles
from patchbay.doctor.report import render_json

pytestmark = pytest.mark.anyio
DOCS = Path(__file__).resolve().parents[2] / "docs" / "doctor.md"


def test_every_profile_loads_with_its_limits() -> None:
    profiles = load_profiles()
    assert tuple(profiles) == PROFILE_NAMES
    assert profiles["claude"].tool_name_prefix == "mcp__{label}__"
    assert profiles["claude"].redirect_uris_for(5000)[-1] == "http://localhost:5000/callback"
    assert profiles["chatgpt"].annotations == "fail" and profiles["claude"].annotations == "warn"


def test_every_check_has_a_step_a_fix_and_a_section_in_the_docs() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for check in CATALOG.values():
        assert check.step in STEPS and check.fix and check.refs
        assert f"`{check.id}`" in text, f"docs/doctor.md does not describe {check.id}"


def test_input_schema_rules() -> None:
    good = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}}
    assert input_schema_problems(good, "openai") == ([], [])
    errors, _ = input_schema_problems({"type": "object", "properties": {"t": {"type": "array"}}}, "openai")
    assert errors == ["inputSchema #/properties/t: array without items"]
    errors, _ = input_schema_problems({"oneOf": [{"type": "object"}]}, "anthropic")
    assert "inputSchema root uses oneOf" in errors
    _, warnings = input_schema_problems({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}, "anthropic")
    assert warnings and "$ref" in warnings[0]
    assert input_schema_problems({"type": "object", "properties": {"a b": {}}}, "anthropic")[0]
    assert output_schema_problems({"type": "array"}) == ["outputSchema root has type 'array', not \"object\""]


def test_challenge_parsing_and_metadata_urls() -> None:
    params = parse_challenge('Bearer error="invalid_token", resource_metadata="https://x/.well-known/p", scope=mcp')
    assert params == {"error": "invalid_token", "resource_metadata": "https://x/.well-known/p", "scope": "mcp"}
    assert parse_challenge('Basic realm="x"') is None
    assert as_metadata_urls("https://as.example/tenant1") == [
        "https://as.example/.well-known/oauth-authorization-server/tenant1",
        "https://as.example/.well-known/openid-configuration/tenant1",
        "https://as.example/tenant1/.well-known/openid-configuration",
    ]
    assert as_metadata_urls("https://as.example")[0] == "https://as.example/.well-known/oauth-authorization-server"


def test_address_classes() -> None:
    assert classify_addresses(["93.184.216.34"]) is None
    why = "non-public address(es) {} (private, CGNAT, loopback or link-local)"
    assert classify_addresses(["93.184.216.34", "10.0.0.5"]) == why.format("10.0.0.5")
    assert classify_addresses(["100.64.1.1", "127.0.0.1"]) == why.format("100.64.1.1, 127.0.0.1")
    v6_only = "no IPv4 (A) address; hosted connectors connect over IPv4 only"
    assert classify_addresses(["2001:db8::1"]) == v6_only


def test_sse_parsing_and_jwt_claims() -> None:
    events, comments = parse_sse(': keep-alive\n\nid: 1\nevent: message\ndata: {"a":1}\n\n')
    assert events == [("message", '{"a":1}', "1")] and comments == 1
    assert jwt_claims("e30.eyJhdWQiOiJ4In0.sig") == {"aud": "x"}
    assert jwt_claims("opaque-token") is None


async def _report(url: str, options: Options, app: object, facts: dict[str, object] | None = None) -> object:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:  # type: ignore[arg-type]
        return await run(url, list(PROFILE_NAMES), options, http=http, facts=facts)


async def test_public_url_checks_fail_an_http_url_on_a_private_port() -> None:
    async def resolver(host: str) -> list[str]:
        return ["10.1.2.3"]

    report = await _report(
        "http://mcp.internal:8080/mcp", Options(stream_hold=0), Server().app(), {"resolver": resolver}
    )
    by = {(r.client, r.id): r.status for r in report.results}  # type: ignore[attr-defined]
    assert by[("claude", "url.https")] is Status.FAIL and by[("claude", "url.port")] is Status.FAIL
    assert by[("chatgpt", "url.port")] is Status.WARN
    assert by[("claude", "url.public")] is Status.FAIL
    assert by[("claude", "tools.list")] is Status.PASS


async def test_checks_run_in_process_and_the_json_names_every_check() -> None:
    report = await _report("http://127.0.0.1/mcp", Options(local=True, stream_hold=0), Server().app())
    data = report.as_json()  # type: ignore[attr-defined]
    ids = [c["id"] for c in data["clients"]["claude"]["checks"]]
    assert ids == list(CATALOG) and len(ALL) <= len(ids)
    assert data["exit_code"] == 0 and '"verdict": "pass"' in render_json(report)  # type: ignore[arg-type]


class StreamsEndWhenHeldTogether(Server):
    """Each idle GET event stream ends by itself once two are open at the same time, and stays open otherwise (until
    the doctor's hold ends it): only streams held together finish early. Counts what was opened."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = 0
        self.open = 0
        self.most_open = 0
        self.together = asyncio.Event()

    async def get(self, request: Request) -> Response:
        response = await super().get(request)
        if not isinstance(response, StreamingResponse):
            return response

        async def events() -> AsyncIterator[bytes]:
            self.opened += 1
            self.open += 1
            self.most_open = max(self.most_open, self.open)
            try:
                yield b"id: 0\ndata: \n\n"
                if self.open >= 2:
                    self.together.set()
                await self.together.wait()
                yield b": keep-alive\n\n"
            finally:
                self.open -= 1

        response.body_iterator = events()
        return response


async def test_the_stream_holds_of_every_profile_run_together_and_report_progress() -> None:
    server = StreamsEndWhenHeldTogether()
    said: list[str] = []
    with serve_app(server.app()) as url:
        async with httpx.AsyncClient(trust_env=False) as http:
            options = Options(local=True, stream_hold=5.0)
            report = await run(url, ["chatgpt", "claude"], options, http=http, progress=said.append)
    assert server.most_open == 2  # both profiles' streams were open at once
    assert server.opened == 2  # one hold per profile, shared by the checks that read it
    keepalive = {r.client: r for r in report.results if r.id == "edge.keepalive"}
    assert keepalive.keys() == {"chatgpt", "claude"}
    assert all("ended the stream" in r.why for r in keepalive.values()), keepalive
    assert any("2 event stream(s) held open" in line for line in said)
    assert any(line.startswith("checking as chatgpt") for line in said)
    assert any(line.startswith("checking as claude") for line in said)
