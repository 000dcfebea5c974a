"""`patchbay doctor` given a Patchbay's [metrics] token reports its upstream MCP servers from /readyz's operator
part: up or degraded, era, tool count, and a failing stdio upstream's last stderr lines.

A real `patchbay serve` with two stdio upstreams: one that works (tests/integration/crashing_upstream.py, an SDK
server, until its tool is called) and one that writes a marker to stderr and exits before answering anything.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import patchbay_cli
from tests.integration.test_upstream_mcp import readyz, toml_list, wait_for
from tests.support.servers import RunningServer, run_patchbay

pytestmark = pytest.mark.e2e

CRASHING = Path(__file__).resolve().parent / "crashing_upstream.py"
TOKEN = "doctor-upstreams-metrics-token-0123456789"
MARKER = "fatal: cannot reach db.internal.example with password hunter2"
FAILING = f"import sys; sys.stderr.write('starting\\n' + {MARKER!r} + '\\n'); sys.exit(4)"
CONFIG = """
[server]
connector_retry_max_seconds = 1

[metrics]
token_env = "PATCHBAY_TEST_DOCTOR_METRICS_TOKEN"

[[connectors]]
name = "steady"
type = "mcp"
command = __STEADY__

[[connectors]]
name = "broken"
type = "mcp"
command = __BROKEN__
"""
DOCTOR = ("--local", "--no-calls", "--stream-hold", "0", "--client", "claude")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("doctor-upstreams")
    config = folder / "patchbay.toml"
    steady = toml_list([sys.executable, str(CRASHING)])
    config.write_text(
        CONFIG.replace("__STEADY__", steady).replace("__BROKEN__", toml_list([sys.executable, "-c", FAILING]))
    )
    env = {"PATCHBAY_TEST_DOCTOR_METRICS_TOKEN": TOKEN}
    with run_patchbay(config, env=env, log_dir=folder, start_timeout=60) as server:
        # The broken one has failed at least once (its stderr is there), the steady one is up.
        wait_for(lambda: readyz(server)["connectors"]["steady"]["ok"], "the steady upstream to be up")
        wait_for(lambda: "retry_in" in readyz(server)["connectors"]["broken"], "the broken upstream to fail")
        yield server


def doctor_json(server: RunningServer, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = patchbay_cli("doctor", server.url, *DOCTOR, "--json", *args, env=env)
    assert done.returncode in (0, 1), done.describe()
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_doctor_with_the_metrics_token_reports_each_upstream_with_its_era_tools_and_stderr(
    served: RunningServer,
) -> None:
    report = doctor_json(served, env={"PATCHBAY_DOCTOR_METRICS_TOKEN": TOKEN})
    found = {u["name"]: u for u in report["upstreams"]["upstreams"]}
    assert set(found) == {"steady", "broken"} and "problem" not in report["upstreams"]
    steady = found["steady"]
    assert steady["state"] == "up" and steady["upstream"] == "stdio" and steady["tools"] == 1
    assert steady["era"] in ("2025", "2026-07-28") and steady["protocol_version"]
    assert "stderr" not in steady  # shown only for an upstream that is failing
    broken = found["broken"]
    assert broken["state"] == "degraded" and broken["tools"] == 0 and broken["era"] is None
    assert "exited with code 4" in broken["detail"] and MARKER not in broken["detail"]
    assert broken["stderr"].splitlines()[-2:] == ["starting", MARKER]


def test_doctor_prints_a_failing_upstreams_stderr_in_its_terminal_report(served: RunningServer) -> None:
    done = patchbay_cli("doctor", served.url, *DOCTOR, "--metrics-token", TOKEN)
    assert done.returncode in (0, 1), done.describe()
    assert "Upstream MCP servers" in done.stdout
    steady = next(line for line in done.stdout.splitlines() if "steady" in line)
    assert "up" in steady and "stdio" in steady and "1 tools" in steady
    assert "degraded" in next(line for line in done.stdout.splitlines() if "broken" in line)
    assert MARKER in done.stdout


def test_doctor_says_why_it_shows_no_upstreams_when_the_token_is_wrong_and_reads_none_without_one(
    served: RunningServer,
) -> None:
    wrong = doctor_json(served, "--metrics-token", TOKEN + "x")
    assert wrong["upstreams"]["upstreams"] == []
    assert "did not accept the token" in wrong["upstreams"]["problem"]
    assert MARKER not in json.dumps(wrong)
    assert "upstreams" not in doctor_json(served)
