"""The official MCP conformance suite (@modelcontextprotocol/conformance) against a real Patchbay server.

One server per module, started from tests/conformance/patchbay.toml (the "everything" fixture tools), and three legs:

* stable 0.1.16, `--suite all`: exit 0, and no check in any scenario is a FAILURE or a WARNING;
* alpha 0.2.0-alpha.12, `--requirements 2025-11-25` and `--requirements 2026-07-28`, each with
  `--expected-failures expected-failures.yml`: exit 0, and no check is a FAILURE or a WARNING in any scenario that
  ran (scored or not) except the tasks-* scenarios listed in that file.

The CLI's exit code alone is not enough: with `--requirements` the alpha ignores failures in unscored scenarios
(pending, extension, added after the release), and the stable CLI ignores warnings. So every leg also reads the
per-check JSON the CLI writes with `-o` (`<out>/server-<scenario>-<timestamp>/checks.json`).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from tests.support.node import conformance_cli, node_env, require_node_tools
from tests.support.servers import RunningServer, run_patchbay

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
CONFIG = HERE / "patchbay.toml"
EXPECTED_FAILURES = HERE / "expected-failures.yml"
LEG_TIMEOUT = 300  # seconds for one whole CLI run
SCENARIO_TIMEOUT_MS = 60_000  # alpha only (`--timeout`, default 30 s); stable has no such option

BAD_STATUSES = frozenset({"FAILURE", "WARNING"})
_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")
_RAN = re.compile(r"^=== Running scenario: (?P<scenario>\S+) ===$", re.MULTILINE)
_TOTAL = re.compile(r"^Total: (?P<passed>\d+) passed, (?P<failed>\d+) failed", re.MULTILINE)
_LISTED = re.compile(r"^  - (?P<scenario>\S+)", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Leg:
    """One run of the conformance CLI and the checks it wrote."""

    name: str
    command: list[str]
    returncode: int
    output: str
    out_dir: Path
    ran: list[str]
    checks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def problems(self, expected: frozenset[str] = frozenset()) -> list[str]:
        """`scenario:check-id [STATUS] message` for each FAILURE/WARNING not covered by an expected entry
        (`scenario` or `scenario:check-id`)."""
        found = []
        for scenario, checks in sorted(self.checks.items()):
            if scenario in expected:
                continue
            for check in checks:
                key = f"{scenario}:{check.get('id')}"
                if check.get("status") in BAD_STATUSES and key not in expected:
                    message = check.get("errorMessage") or check.get("description") or ""
                    found.append(f"{key} [{check['status']}] {message}")
        return found

    def without_results(self) -> list[str]:
        """Scenarios the CLI started but wrote no checks.json for (it crashed inside the harness)."""
        return [scenario for scenario in self.ran if scenario not in self.checks]

    def stale(self, expected: frozenset[str]) -> list[str]:
        """Expected-failure scenarios that ran and now pass (some SUCCESS, no FAILURE or WARNING)."""
        stale = []
        for scenario in sorted(expected & self.checks.keys()):
            statuses = {check.get("status") for check in self.checks[scenario]}
            if "SUCCESS" in statuses and not statuses & BAD_STATUSES:
                stale.append(scenario)
        return stale

    def explain(self, headline: str, items: list[str], server: RunningServer) -> str:
        listing = "\n".join(f"  - {item}" for item in items)
        return (
            f"{self.name}: {headline}\n{listing}\n"
            f"command: {' '.join(self.command)}\n"
            f"per-check results: {self.out_dir}\n"
            f"(the full conformance output is in the captured stdout)\n"
            f"--- patchbay log tail ({server.log_path}) ---\n{server.log_tail(40)}"
        )


def run_leg(channel: Literal["stable", "alpha"], server: RunningServer, out_dir: Path, *args: str) -> Leg:
    """Run `conformance server` against `server`, print its output (shown by pytest on failure), read the results."""
    name = f"conformance {channel} {' '.join(args)}"
    command = [*conformance_cli(channel), "server", "--url", server.url, "-o", str(out_dir), *args]
    try:
        proc = subprocess.run(
            command,
            cwd=out_dir,
            env=node_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=LEG_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        partial = exc.output if isinstance(exc.output, str) else (exc.output or b"").decode(errors="replace")
        print(_ANSI.sub("", partial))
        pytest.fail(
            f"{name}: no result within {LEG_TIMEOUT} s (partial output in captured stdout)\n"
            f"--- patchbay log tail ({server.log_path}) ---\n{server.log_tail(40)}"
        )
    output = _ANSI.sub("", proc.stdout)
    (out_dir / "conformance-output.txt").write_text(output)
    print(f"$ {' '.join(command)}\n{output}")
    ran = [m["scenario"] for m in _RAN.finditer(output)]
    return Leg(name, command, proc.returncode, output, out_dir, ran, read_checks(out_dir))


def read_checks(out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    checks: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(out_dir.glob("*/checks.json")):
        match = _RESULT_DIR.match(path.parent.name)
        if match:
            checks.setdefault(match["scenario"], []).extend(json.loads(path.read_text()))
    return checks


def listed_server_scenarios(channel: Literal["stable", "alpha"]) -> list[str]:
    proc = subprocess.run(
        [*conformance_cli(channel), "list", "--server"],
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [m["scenario"] for m in _LISTED.finditer(proc.stdout)]


def load_expected_failures() -> list[str]:
    data = yaml.safe_load(EXPECTED_FAILURES.read_text()) or {}
    assert isinstance(data, dict) and set(data) <= {"server"}, (
        f"{EXPECTED_FAILURES}: only a `server:` list is allowed, got keys {sorted(data)}"
    )
    entries = data.get("server") or []
    assert isinstance(entries, list) and all(isinstance(e, str) for e in entries), (
        f"{EXPECTED_FAILURES}: `server:` must be a list of scenario names"
    )
    return entries


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    require_node_tools()
    with run_patchbay(CONFIG, log_dir=tmp_path_factory.mktemp("patchbay-conformance")) as running:
        yield running


def test_expected_failures_lists_only_tasks_scenarios() -> None:
    entries = load_expected_failures()
    not_tasks = [e for e in entries if not e.startswith("tasks-") or ":" in e]
    assert not not_tasks, (
        f"{EXPECTED_FAILURES} may only list whole tasks-* scenarios (the tasks extension); "
        f"everything else must pass. Offending entries: {not_tasks}"
    )
    unknown = sorted(set(entries) - set(listed_server_scenarios("alpha")))
    assert not unknown, f"{EXPECTED_FAILURES} lists scenarios the pinned alpha does not have: {unknown}"


def test_stable_suite_all_passes_without_warnings(
    server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    leg = run_leg("stable", server, tmp_path_factory.mktemp("conformance-stable"), "--suite", "all")

    problems = leg.problems()
    assert not problems, leg.explain("failing or warning checks", problems, server)
    missing = leg.without_results()
    assert not missing, leg.explain("scenarios that wrote no checks.json", missing, server)
    not_run = sorted(set(listed_server_scenarios("stable")) - set(leg.ran))
    assert not not_run, leg.explain("scenarios of --suite all that did not run", not_run, server)
    total = _TOTAL.search(leg.output)
    assert total is not None and int(total["failed"]) == 0, leg.explain("summary is not `0 failed`", [], server)
    assert leg.returncode == 0, leg.explain(f"exit code {leg.returncode}", [], server)


def test_alpha_requirements_2025_11_25(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    _check_alpha_requirements("2025-11-25", server, tmp_path_factory.mktemp("conformance-alpha-2025-11-25"))


def test_alpha_requirements_2026_07_28(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    _check_alpha_requirements("2026-07-28", server, tmp_path_factory.mktemp("conformance-alpha-2026-07-28"))


def _check_alpha_requirements(revision: str, server: RunningServer, out_dir: Path) -> None:
    expected = frozenset(load_expected_failures())
    leg = run_leg(
        "alpha",
        server,
        out_dir,
        "--requirements", revision,
        "--expected-failures", str(EXPECTED_FAILURES),
        "--timeout", str(SCENARIO_TIMEOUT_MS),
    )  # fmt: skip

    assert leg.ran, leg.explain("no scenario ran", [], server)
    problems = leg.problems(expected)
    assert not problems, leg.explain(f"failing or warning checks outside {EXPECTED_FAILURES.name}", problems, server)
    missing = leg.without_results()
    assert not missing, leg.explain("scenarios that wrote no checks.json", missing, server)
    stale = leg.stale(expected)
    assert not stale, leg.explain(f"now passing: remove from {EXPECTED_FAILURES.name}", stale, server)
    assert leg.returncode == 0, leg.explain(f"exit code {leg.returncode}", [], server)
