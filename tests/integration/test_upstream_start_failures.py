"""A stdio upstream whose command fails every start reaches the crash-loop cap and is not started again, although
the connector lifecycle keeps opening the connector (a real `patchbay serve`, a command that exits at once)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.integration.test_upstream_mcp import readyz, toml_list, wait_for
from tests.support.servers import run_patchbay

pytestmark = pytest.mark.e2e

CONFIG = """
[server]
connector_retry_max_seconds = 1

[store]
url = "sqlite:///:memory:"

[[connectors]]
name = "broken"
type = "mcp"
command = __COMMAND__
"""
# Notes each start in a file, says why on stderr and exits before answering anything.
FAILING = "import sys; open(sys.argv[1], 'a').write('started\\n'); sys.stderr.write('fatal: no config\\n'); sys.exit(2)"


def test_a_command_that_fails_every_start_reaches_the_crash_loop_cap_and_stays_down(tmp_path: Path) -> None:
    starts = tmp_path / "starts.txt"
    config = tmp_path / "patchbay.toml"
    config.write_text(CONFIG.replace("__COMMAND__", toml_list([sys.executable, "-c", FAILING, str(starts)])))
    with run_patchbay(config, log_dir=tmp_path / "log") as server:
        looping = wait_for(
            lambda: "crash loop" in (d := readyz(server)["connectors"]["broken"])["detail"] and d,
            "the crash-loop cap",
            deadline=120,
        )
        started = starts.read_text().count("started")

        def failed_opens() -> int:
            lines = server.log_tail(5000).splitlines()
            return sum("connector 'broken' is down" in line and "crash loop" in line for line in lines)

        seen = failed_opens()
        wait_for(lambda: failed_opens() >= seen + 2, "two more opens of the connector", deadline=30)
        assert starts.read_text().count("started") == started  # opened again, never started again
        final = readyz(server)["connectors"]["broken"]
    assert looping["ok"] is False and final["ok"] is False
    assert started == 6  # max_restarts = 5: the sixth failure in the window is the crash loop
    assert "exited with code 2" in final["detail"] and "failed 6 times within 300 s" in final["detail"]
    assert "fatal: no config" not in final["detail"]  # stderr is for operators only
