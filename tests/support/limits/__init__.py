"""Tools for the limits tests (unit and e2e): quick reads and writes, a search, calls that wait, a large result;
resources and a prompt (reads.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

TOOLS = Path(__file__).with_name("tools.py")
READS = Path(__file__).with_name("reads.py")


def tools_module(connector: str, file: str = "tools") -> ModuleType:
    """The copy of tools.py (or ``file``.py) the python connector named ``connector`` loaded (each app loads its
    own)."""
    return sys.modules[f"patchbay_user_{connector}_{file}"]
