"""Runs every check for every selected client profile and collects a ``Report``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from patchbay.doctor.checks import ALL
from patchbay.doctor.checks.auth import discover
from patchbay.doctor.context import Context, Options, Target
from patchbay.doctor.model import Result, Status
from patchbay.doctor.oauth import SignInError, sign_in
from patchbay.doctor.probe import Probe
from patchbay.doctor.profiles import load_profiles

__all__ = ["CouldNotRun", "Report", "run"]


class CouldNotRun(Exception):
    """The doctor could not check anything (bad URL, nothing answering, sign-in failed); exit code 2."""


@dataclass
class Report:
    url: str
    clients: dict[str, list[Result]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def results(self) -> list[Result]:
        return [r for results in self.clients.values() for r in results]

    def failed(self, client: str | None = None) -> list[Result]:
        pool = self.clients.get(client, []) if client else self.results
        return [r for r in pool if r.status is Status.FAIL]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed() else 0

    def as_json(self) -> dict[str, Any]:
        profiles = load_profiles()
        return {
            "url": self.url,
            "exit_code": self.exit_code,
            "notes": self.notes,
            "clients": {
                name: {
                    "title": profiles[name].title,
                    "verdict": "fail" if self.failed(name) else "pass",
                    "checks": [r.as_json() for r in results],
                }
                for name, results in self.clients.items()
            },
        }


def _validate(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CouldNotRun(
            f"{url!r} is not an http(s) URL; give the full MCP endpoint, e.g. https://mcp.example.com/mcp"
        )
    return Target(url)


async def run(
    url: str,
    clients: Sequence[str],
    options: Options,
    *,
    interactive: bool = False,
    show_url: Callable[[str], None] | None = None,
    http: httpx.AsyncClient | None = None,
    facts: dict[str, Any] | None = None,
) -> Report:
    """Check ``url`` as each client in ``clients`` connects to it.

    Raises:
        CouldNotRun: the URL is malformed, nothing answers at it, or the interactive sign-in failed.
    """
    target = _validate(url)
    profiles = load_profiles()
    own = http is None
    client = http or httpx.AsyncClient(trust_env=False, verify=True)
    probe = Probe(client)
    shared: dict[str, Any] = dict(facts or {})
    report = Report(url)
    try:
        first = Context(target, profiles[clients[0]], probe, options, shared, token=options.token)
        reachable = await probe.send(
            "POST", url, headers=first.headers(), json_body={"jsonrpc": "2.0", "id": 0, "method": "ping"}
        )
        if reachable.status == 0:
            raise CouldNotRun(f"nothing answers at {url}: {reachable.error}")
        token = options.token
        if interactive:
            token = await _sign_in(first, show_url or _print_url)
            report.notes.append("signed in interactively")
        for name in clients:
            ctx = Context(target, profiles[name], probe, options, shared, token=token)
            report.clients[name] = [result for check in ALL for result in await check(ctx)]
    finally:
        if own:
            await client.aclose()
    return report


def _print_url(url: str) -> None:
    print(f"Open this URL to sign in:\n{url}", file=sys.stderr, flush=True)


async def _sign_in(ctx: Context, show: Callable[[str], None]) -> str:
    facts = await discover(ctx)
    if facts.metadata is None:
        raise CouldNotRun(
            "cannot sign in: no authorization-server metadata was found (run without --interactive to see why)"
        )
    scopes = (facts.prm or {}).get("scopes_supported") or []
    if facts.params and facts.params.get("scope"):
        scopes = facts.params["scope"].split()
    try:
        signin = await sign_in(ctx.probe, facts.metadata, ctx.target.url, [str(s) for s in scopes], show)
    except SignInError as exc:
        raise CouldNotRun(f"sign-in failed: {exc}") from exc
    ctx.facts["signin"] = signin
    return signin.access_token
