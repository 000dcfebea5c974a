"""``patchbay doctor``: checks any MCP server the way ChatGPT, Claude and the vendor APIs connect to it.

Client profiles are data (profiles.toml); checks are small functions grouped by step (checks/); the runner runs
them per profile; report renders the terminal and JSON output. See docs/doctor.md.
"""

from patchbay.doctor.context import Options
from patchbay.doctor.model import CATALOG, Result, Status
from patchbay.doctor.runner import CouldNotRun, Report, run

__all__ = ["CATALOG", "CouldNotRun", "Options", "Report", "Result", "Status", "run"]
