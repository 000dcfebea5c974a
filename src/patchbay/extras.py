"""The command that installs an optional extra, for messages that say something is missing.

``pip install 'mcp-patchbay[extra]'`` only works once the package is on an index, so the command is built from
how this copy was installed: an editable install from a clone gets ``pip install -e '<clone>[extra]'``, anything
else gets the extra's own requirements, read from the installed metadata. Either way it names this interpreter,
so the packages land where Patchbay runs.
"""

from __future__ import annotations

import importlib.metadata
import json
import shlex
import sys
from urllib.parse import unquote, urlsplit

DISTRIBUTION = "mcp-patchbay"


def install_command(extra: str, dist: importlib.metadata.Distribution | None = None) -> str:
    """A shell command that installs ``extra`` into the running environment (``dist``: this package's metadata,
    found when not given)."""
    pip = f"{shlex.quote(sys.executable)} -m pip install"
    if dist is None:
        try:
            dist = importlib.metadata.distribution(DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            return f"{pip} {shlex.quote(f'{DISTRIBUTION}[{extra}]')}"
    clone = _editable_source(dist)
    if clone is not None:
        return f"{pip} -e {shlex.quote(f'{clone}[{extra}]')}"
    requirements = _requirements(dist, extra)
    if not requirements:
        return f"{pip} {shlex.quote(f'{DISTRIBUTION}[{extra}]')}"
    return f"{pip} {' '.join(shlex.quote(r) for r in requirements)}"


def _editable_source(dist: importlib.metadata.Distribution) -> str | None:
    # PEP 610 direct_url.json: {"url": "file:///…", "dir_info": {"editable": true}} for `pip install -e`.
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    url = info.get("url", "") if isinstance(info, dict) else ""
    editable = isinstance(info, dict) and bool((info.get("dir_info") or {}).get("editable"))
    if not editable or not url.startswith("file://"):
        return None
    return unquote(urlsplit(url).path)


def _requirements(dist: importlib.metadata.Distribution, extra: str) -> list[str]:
    found = []
    for requirement in dist.requires or ():
        spec, _, marker = requirement.partition(";")
        if marker.replace(" ", "").replace('"', "'") == f"extra=='{extra}'":
            found.append(spec.strip())
    return found
