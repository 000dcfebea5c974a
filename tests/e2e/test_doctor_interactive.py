"""`patchbay doctor --interactive` against Patchbay's own authorization server, with the test acting as the person:
it reads the printed sign-in URL, signs in and consents through the real pages, and lands on the doctor's loopback
callback; the doctor then exchanges the code (PKCE S256 + resource), runs the signed-in checks and refreshes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import httpx2
import pytest

from tests.e2e.test_doctor_servers import patchbay_config
from tests.support.browser import Browser
from tests.support.servers import run_patchbay
from tests.support.user_tokens import add_user

pytestmark = pytest.mark.e2e

PASSWORD = "doctor password 123"


def test_interactive_sign_in_runs_the_signed_in_checks(tmp_path: Path) -> None:
    config = patchbay_config(tmp_path, '\n[auth]\nmode = "oauth"\nscopes_supported = ["mcp"]\n')
    script = str(Path(sys.executable).with_name("patchbay"))
    add_user(config, "alice", PASSWORD)
    with run_patchbay(config, log_dir=tmp_path) as server:
        cmd = [
            script,
            "doctor",
            server.url,
            "--interactive",
            "--no-browser",
            "--json",
            "--local",
            "--client",
            "claude",
            "--stream-hold",
            "0",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            assert line.startswith("Open this URL to sign in"), line
            url = proc.stderr.readline().strip()

            async def person() -> int:
                async with httpx2.AsyncClient(trust_env=False) as http:
                    outcome = await Browser(http, (server.base_url,), "alice", PASSWORD).authorize(url)
                    assert outcome.location and outcome.location.startswith("http://127.0.0.1:"), outcome
                    assert "code" in outcome.params
                    return (await http.get(outcome.location)).status_code

            assert anyio.run(person) == 200
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    checks = {c["id"]: c for c in json.loads(out)["clients"]["claude"]["checks"]}
    assert checks["signin.token"]["status"] == "pass", checks["signin.token"]
    assert checks["signin.refresh"]["status"] == "pass", checks["signin.refresh"]
    assert checks["tools.list"]["status"] == "pass"
