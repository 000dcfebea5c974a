"""Step 9, timings: discovery hops and sample calls against the client's timeouts (field-problems F3, F4)."""

from __future__ import annotations

from urllib.parse import urlsplit

from patchbay.doctor.checks import calls
from patchbay.doctor.context import Context
from patchbay.doctor.model import Result

__all__ = ["CHECKS"]

_DISCOVERY_PATHS = ("/.well-known/", "/register", "/token")
_DISCOVERY_RPC = ("initialize", "server/discover", "tools/list")


async def check_discovery(ctx: Context) -> list[Result]:
    replies = [r for r in ctx.probe.log if r.status and _is_discovery(ctx, r.url, r.method, r.rpc)]
    if not replies:
        return [ctx.skip("timing.discovery", "no discovery requests were made")]
    slowest = max(replies, key=lambda r: r.elapsed)
    limit = min(ctx.options.slow_fail, ctx.profile.discovery_timeout_s)
    warn_at = min(ctx.options.slow_warn, limit / 2)
    where = f"{slowest.method} {urlsplit(slowest.url).path} took {slowest.elapsed:.2f} s"
    if slowest.elapsed > limit:
        return [ctx.fail("timing.discovery", f"{where}; {ctx.profile.title} gives up after about {limit:.0f} s")]
    if slowest.elapsed > warn_at:
        return [ctx.warn("timing.discovery", f"{where} (keep discovery under {warn_at:.0f} s)")]
    return [ctx.ok("timing.discovery", f"slowest of {len(replies)} discovery requests: {where}")]


def _is_discovery(ctx: Context, url: str, method: str, reply_rpc: str) -> bool:
    path = urlsplit(url).path
    if any(marker in path for marker in _DISCOVERY_PATHS):
        return True
    return url == ctx.target.url and method == "POST" and reply_rpc in _DISCOVERY_RPC


async def check_calls(ctx: Context) -> list[Result]:
    made, why = await calls.samples(ctx)
    if made is None:
        return [ctx.skip("timing.calls", why)]
    if not made:
        return [ctx.skip("timing.calls", "no read-only tool could be called without arguments")]
    slowest = max(made, key=lambda s: s.elapsed)
    where = f"{slowest.tool} took {slowest.elapsed:.2f} s"
    if slowest.elapsed > ctx.profile.call_timeout_s:
        return [
            ctx.fail("timing.calls", f"{where}; {ctx.profile.title} times out at {ctx.profile.call_timeout_s:.0f} s")
        ]
    if slowest.elapsed > 30:
        return [ctx.warn("timing.calls", f"{where} (aim for under 30 s)")]
    return [ctx.ok("timing.calls", f"slowest of {len(made)} sample calls: {where}")]


CHECKS = (check_discovery, check_calls)
