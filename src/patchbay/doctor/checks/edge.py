"""Step 2, the network edge: HTML and challenge pages, redirects, buffered streams, keep-alives (A3, A6, B1, F1, F2)."""

from __future__ import annotations

import itertools
from urllib.parse import urljoin, urlsplit

from patchbay.doctor.context import Context
from patchbay.doctor.model import Result
from patchbay.doctor.probe import Reply

__all__ = ["CHECKS", "stream_reply"]

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
_COMPRESSED = ("gzip", "br", "deflate", "zstd", "compress")


async def check_html(ctx: Context) -> list[Result]:
    url = ctx.target.url
    replies = [
        await ctx.probe.send("GET", url, headers=ctx.headers(accept=BROWSER_ACCEPT)),
        await ctx.probe.send("HEAD", url, headers=ctx.headers(accept=BROWSER_ACCEPT)),
        (await ctx.session()).reply,
    ]
    bad = [r for r in replies if r.is_html or "cf-mitigated" in r.headers]
    if bad:
        worst = bad[0]
        why = f"{worst.method} {worst.url} answered {worst.status} with an HTML page" + (
            f" (cf-mitigated: {worst.headers['cf-mitigated']})" if "cf-mitigated" in worst.headers else ""
        )
        return [
            ctx.fail("edge.html", why + "; clients expect JSON and give up", details={"urls": [r.url for r in bad]})
        ]
    return [ctx.ok("edge.html", "GET, HEAD and POST on the MCP URL answer without HTML")]


async def check_redirect(ctx: Context) -> list[Result]:
    found: list[str] = []
    for url in (ctx.target.url, ctx.target.alternate):
        for method in ("POST", "GET", "HEAD"):
            body = PING if method == "POST" else None
            headers = ctx.headers(accept=None if method == "POST" else "text/event-stream")
            reply = await ctx.probe.send(method, url, headers=headers, json_body=body)
            if 300 <= reply.status < 400:
                location = urljoin(url, reply.headers.get("location", ""))
                found.append(f"{method} {urlsplit(url).path} → {reply.status} {location}")
    if found:
        return [ctx.fail("edge.redirect", "redirects: " + "; ".join(found), details={"redirects": found})]
    return [ctx.ok("edge.redirect", f"no redirects on {ctx.target.path} and {urlsplit(ctx.target.alternate).path}")]


async def stream_reply(ctx: Context) -> Reply | None:
    """The standalone GET event stream of the profile's session, held for --stream-hold seconds (None if none)."""
    session = await ctx.session()
    if not session.ok or ctx.options.stream_hold <= 0:
        return None
    hold = ctx.options.stream_hold
    reply = await ctx.probe.send(
        "GET", ctx.target.url, headers=ctx.headers(accept="text/event-stream", session=session), hold=hold
    )
    return reply if reply.status == 200 and reply.is_sse else None


async def _sse_replies(ctx: Context) -> list[Reply]:
    replies: list[Reply] = []
    session = await ctx.session()
    if session.reply.is_sse:
        replies.append(session.reply)
    only_sse = await ctx.initialize(accept="text/event-stream")
    if only_sse.reply.is_sse:
        replies.append(only_sse.reply)
    stream = await stream_reply(ctx)
    if stream is not None:
        replies.append(stream)
    return replies


async def check_sse_buffering(ctx: Context) -> list[Result]:
    replies = await _sse_replies(ctx)
    if not replies:
        return [ctx.skip("edge.sse_buffering", "the server answered no request with an event stream")]
    for reply in replies:
        encoding = reply.headers.get("content-encoding", "").lower()
        where = f"{reply.method} {urlsplit(reply.url).path}"
        if any(e in encoding for e in _COMPRESSED):
            return [
                ctx.fail(
                    "edge.sse_buffering",
                    f"{where}: the event stream is compressed ({encoding}), so it is "
                    "buffered until the compressor flushes",
                )
            ]
        if "content-length" in reply.headers:
            if reply.method == "GET":
                return [
                    ctx.fail(
                        "edge.sse_buffering",
                        f"{where}: the long-lived event stream arrived with a Content-Length: something buffered it",
                    )
                ]
            return [
                ctx.warn(
                    "edge.sse_buffering",
                    f"{where}: the reply stream was sent in one piece (Content-Length "
                    f"{reply.headers['content-length']}); progress sent before a result would arrive only "
                    "at the end",
                    "Write event-stream replies as they happen (chunked), not as one body.",
                )
            ]
        if (
            "no-transform" not in reply.headers.get("cache-control", "")
            and reply.headers.get("x-accel-buffering", "").lower() != "no"
        ):
            return [
                ctx.warn(
                    "edge.sse_buffering",
                    f"{where}: neither X-Accel-Buffering: no nor Cache-Control: "
                    "no-transform is set; a proxy in front may buffer the stream",
                )
            ]
    return [ctx.ok("edge.sse_buffering", f"{len(replies)} event stream(s) arrived unbuffered and uncompressed")]


async def check_keepalive(ctx: Context) -> list[Result]:
    if ctx.options.stream_hold <= 0:
        return [ctx.skip("edge.keepalive", "--stream-hold 0")]
    stream = await stream_reply(ctx)
    if stream is None:
        return [ctx.skip("edge.keepalive", "no standalone event stream (GET answered 405 or no session)")]
    hold = ctx.options.stream_hold
    if stream.error:
        return [ctx.fail("edge.keepalive", f"the event stream broke after {stream.elapsed:.1f} s: {stream.error}")]
    if stream.elapsed < hold - 0.5:
        return [
            ctx.ok("edge.keepalive", f"the server ended the stream after {stream.elapsed:.1f} s (clients reconnect)")
        ]
    times = sorted([*stream.comments_at, *(e.at for e in stream.events)])
    gaps = _gaps([0.0, *times, stream.elapsed])
    if max(gaps) > 30:
        return [ctx.fail("edge.keepalive", f"the idle event stream was silent for {max(gaps):.0f} s")]
    if not any(t > 0.5 for t in times):
        return [ctx.skip("edge.keepalive", f"no keep-alive within {hold:.0f} s; hold the stream ≥ 30 s to judge")]
    return [ctx.ok("edge.keepalive", f"keep-alives every ≤ {max(gaps):.1f} s over {hold:.0f} s")]


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)] or [0.0]


CHECKS = (check_html, check_redirect, check_sse_buffering, check_keepalive)
