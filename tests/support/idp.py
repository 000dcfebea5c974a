"""A real OpenID provider on loopback for tests: `oidc-provider` (npm, a certified OpenID Connect implementation) run
by tests/e2e/scripts/oidc_idp.mjs on Node 22, the ``[auth.upstream]`` section that points Patchbay at it, and a
person signing in to one of Patchbay's pages through it.

The provider's clients are ``patchbay`` (Patchbay's sign-in), ``agent`` (client credentials) and ``rs``
(introspection), each with a fresh secret; any password signs in at its development pages.
"""

from __future__ import annotations

import contextlib
import secrets
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx

from tests.support.browser import Browser
from tests.support.node import node22, node_env
from tests.support.servers import free_port

SCRIPT = Path(__file__).resolve().parents[1] / "e2e" / "scripts" / "oidc_idp.mjs"
START_TIMEOUT = 30.0


def _secrets() -> dict[str, str]:
    return {name: secrets.token_urlsafe(24) for name in ("patchbay", "agent", "rs")}


@dataclass(frozen=True)
class Provider:
    """Where the provider will listen and its clients' secrets: Patchbay's config can name it before it starts
    (Patchbay only contacts it when a token or a sign-in arrives)."""

    port: int = field(default_factory=free_port)
    secrets: dict[str, str] = field(default_factory=_secrets)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def upstream_section(self, username_claim: str = "email", more: str = "") -> str:
        """``[auth.upstream]`` for this provider (secret in $PATCHBAY_OIDC_SECRET), plus the TOML lines ``more``."""
        return f"""
[auth.upstream]
issuer = "{self.issuer}"
client_id = "patchbay"
client_secret_env = "PATCHBAY_OIDC_SECRET"
scopes = ["openid", "email", "profile", "groups"]
username_claim = "{username_claim}"
roles_claim = "groups"
display_name = "Example IdP"
allow_private_network = true
{more}"""

    @property
    def patchbay_env(self) -> dict[str, str]:
        """The environment of a Patchbay whose config has ``upstream_section``."""
        return {"PATCHBAY_OIDC_SECRET": self.secrets["patchbay"]}


@contextlib.contextmanager
def run_idp(provider: Provider, callback: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The provider, sending people back to ``callback``, until it prints its READY line; SIGTERM on exit."""
    env = {f"IDP_{name.upper()}_SECRET": value for name, value in provider.secrets.items()}
    with log.open("wb") as errors:
        proc = subprocess.Popen(
            [str(node22()), str(SCRIPT), str(provider.port), callback],
            env=node_env(env),
            stdout=subprocess.PIPE,
            stderr=errors,
            start_new_session=True,
        )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        line = b""
        while not line.startswith(b"READY "):
            remaining = deadline - time.monotonic()
            if proc.poll() is not None or remaining <= 0:
                raise AssertionError(f"the IdP did not start:\n{log.read_text(errors='replace')}")
            ready, _, _ = select.select([proc.stdout], [], [], remaining)
            if ready:
                line = proc.stdout.readline()
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def sign_in_through_idp(
    http: httpx.AsyncClient, base: str, issuer: str, page: str, account: str, password: str = "any password"
) -> Browser:
    """Open Patchbay's page at ``page`` (a path under ``base``), press "Sign in with Example IdP", sign in at the
    provider as ``account`` and come back to Patchbay's "Continue" link to the page: the browser, with every page
    it saw."""
    browser = Browser(http, (base, issuer), account, password, prefer=f"{page}/upstream")
    landed = await browser.authorize(page)
    assert landed.location is None and landed.status == 200, landed
    assert f'href="{page}"' in landed.html, landed.html
    return browser
