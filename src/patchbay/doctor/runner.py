"""Runs every check for every selected client profile and collects a ``Report``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
from anyio.abc import TaskGroup

from patchbay.doctor.checks import ALL
from patchbay.doctor.checks.auth import discover
from patchbay.doctor.checks.edge import stream_reply
from patchbay.doctor.context import Context, Options, Target
from patchbay.doctor.model import Result, Status
from patchbay.doctor.oauth import SignInError, sign_in
from patchbay.doctor.probe import Probe
from patchbay.doctor.profiles import load_profiles
from patchbay.doctor.upstreams import UpstreamsReport, read_upstreams

__all__ = ["CouldNotRun", "Report", "run"]


class CouldNotRun(Exception):
    """The doctor could not check anything (bad URL, nothing answering, sign-in failed); exit code 2."""


@dataclass
class Report:
    url: str
    clients: dict[str, list[Result]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    upstreams: UpstreamsReport | None = None  # with the [metrics] token: a Patchbay's upstream MCP servers

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
            **({"upstreams": self.upstreams.as_json()} if self.upstreams is not None else {}),
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
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Check ``url`` as each client in ``clients`` connects to it. ``progress`` is told what the run is doing
    (for a status line on a terminal), about once a second while event streams are held open.

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
        contexts = {name: Context(target, profiles[name], probe, options, shared, token=token) for name in clients}
        state = _Progress(progress)
        async with anyio.create_task_group() as holds:
            # The keep-alive check holds each profile's idle event stream open for --stream-hold seconds: start
            # every hold now, so they run together and beside the other checks (which then share their replies).
            await _start_holds(list(contexts.values()), holds, state)
            for name, ctx in contexts.items():
                state.step = f"checking as {name}"
                state.show()
                report.clients[name] = [result for check in ALL for result in await check(ctx)]
            state.step = "waiting for the held event streams"
        if options.metrics_token:
            report.upstreams = await read_upstreams(probe, target, options.metrics_token)
    finally:
        if own:
            await client.aclose()
    return report


@dataclass
class _Progress:
    """What the run is doing, for the ``progress`` callback."""

    say: Callable[[str], None] | None
    step: str = "connecting"
    streams: int = 0
    until: float = 0.0
    done: anyio.Event = field(default_factory=anyio.Event)

    def show(self) -> None:
        if self.say is None:
            return
        text = self.step
        if self.streams:
            left = max(0.0, self.until - time.monotonic())
            text += f" · {self.streams} event stream(s) held open for the keep-alive check, {left:.0f} s left"
        self.say(text)

    async def tick(self) -> None:
        while not self.done.is_set():
            self.show()
            with anyio.move_on_after(1.0):
                await self.done.wait()


async def _start_holds(contexts: list[Context], group: TaskGroup, state: _Progress) -> None:
    hold = contexts[0].options.stream_hold if contexts else 0.0
    if hold > 0:
        for ctx in contexts:
            if (await ctx.session()).ok:
                state.streams += 1
                group.start_soon(_hold, ctx, state)
    state.until = time.monotonic() + hold
    if not state.streams:
        state.done.set()
    elif state.say is not None:
        group.start_soon(state.tick)


async def _hold(ctx: Context, state: _Progress) -> None:
    try:
        await stream_reply(ctx)
    finally:
        state.streams -= 1
        if not state.streams:
            state.done.set()


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
