"""Codes and API keys stop working when they expire (each breakage seen in the mutation audit fails here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.authflow import Flow, add_user, call, client_for, running

pytestmark = pytest.mark.anyio


async def test_an_authorization_code_expires_after_code_seconds(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    async with running(tmp_path, auth={"code_seconds": 60}) as app, client_for(app) as http:
        app.runtime.auth.core.clock = lambda: now[0]
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        code = await flow.code()
        now[0] += 60
        late = await flow.redeem(code)
        assert late.status_code == 400
        assert late.json() == {"error": "invalid_grant", "error_description": "the authorization code has expired"}
        code = await flow.code()
        now[0] += 59
        assert (await flow.redeem(code)).status_code == 200


async def test_an_api_key_stops_working_when_it_expires(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    async with running(tmp_path) as app, client_for(app) as http:
        core = app.runtime.auth.core
        core.clock = lambda: now[0]
        _, secret = await core.run(core.keys.create, "ci", ["mcp"], days=1)
        assert (await call(http, secret, "tools/list")).status_code == 200
        now[0] += 86_400
        expired = await call(http, secret, "tools/list")
        assert expired.status_code == 401
        assert 'error="invalid_token"' in expired.headers["www-authenticate"]
