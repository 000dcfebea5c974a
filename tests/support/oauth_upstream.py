"""A second, real Patchbay with the built-in OAuth server, as the upstream of a ``user_oauth`` mcp connector.

It serves the auth test tools (``whoami`` says whose token a call carried) to local accounts created with the
same password, so tests can link those accounts like a person would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support.servers import RunningServer, run_patchbay
from tests.support.user_tokens import add_user

PASSWORD = "links password 123"
TOOLS = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "auth_tools.py"


def oauth_upstream_config(folder: Path, people: Sequence[str] = ("alice", "bob")) -> Path:
    """``folder/patchbay.toml`` for the upstream, its store in ``folder``, with ``people`` as local accounts."""
    config = folder / "patchbay.toml"
    config.write_text(
        f'[server]\nname = "Upstream"\n[store]\nurl = "sqlite:///{folder / "up.db"}"\n[auth]\nmode = "oauth"\n'
        f'[[connectors]]\nname = "t"\ntype = "python"\npath = "{TOOLS}"\nprefix = ""\n',
        encoding="utf-8",
    )
    for person in people:
        add_user(config, person, PASSWORD)
    return config


@contextlib.contextmanager
def run_oauth_upstream(folder: Path, people: Sequence[str] = ("alice", "bob")) -> Iterator[RunningServer]:
    with run_patchbay(oauth_upstream_config(folder, people), log_dir=folder) as server:
        yield server
