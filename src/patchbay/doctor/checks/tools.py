"""Step 8, the tool list: names, schemas, descriptions, annotations, outputs, sizes, search/fetch, securitySchemes
(field-problems K1-K4, M1, M3, M4, O4; mcp-requirements §2.7, §5.3-§5.5, R-050-R-072)."""

from __future__ import annotations

import re
from typing import Any

from patchbay.doctor.checks import calls
from patchbay.doctor.checks.schemas import input_schema_problems, output_schema_problems
from patchbay.doctor.context import Context
from patchbay.doctor.model import Result, Status

__all__ = ["CHECKS", "list_tools"]

HINTS = ("readOnlyHint", "destructiveHint", "openWorldHint")


async def list_tools(ctx: Context) -> tuple[list[dict[str, Any]] | None, str]:
    """Every tool (following nextCursor), or None and why not."""
    key = f"tools:{ctx.profile.name}:{bool(ctx.token)}"
    if key not in ctx.facts:
        ctx.facts[key] = await _list(ctx)
    cached: tuple[list[dict[str, Any]] | None, str] = ctx.facts[key]
    return cached


async def _list(ctx: Context) -> tuple[list[dict[str, Any]] | None, str]:
    session = await ctx.session()
    if not session.ok:
        if session.reply.status == 401 and not ctx.token:
            return None, "the server requires sign-in (see auth.challenge); run with --token or --interactive"
        return None, "no MCP session (see transport.initialize)"
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    for page in range(50):
        params = {"cursor": cursor} if cursor else {}
        reply, message = await ctx.request(session, "tools/list", params, id=10 + page)
        result = message.get("result") if isinstance(message, dict) else None
        if not reply.ok or not isinstance(result, dict) or not isinstance(result.get("tools"), list):
            return None, f"tools/list failed: {reply.describe()}"
        tools.extend(t for t in result["tools"] if isinstance(t, dict))
        cursor = result.get("nextCursor")
        if not cursor:
            return tools, ""
    return None, "tools/list kept returning nextCursor (50 pages)"


async def check_list(ctx: Context) -> list[Result]:
    tools, why = await list_tools(ctx)
    if tools is None:
        status_skip = "sign-in" in why or "see transport" in why
        return [ctx.skip("tools.list", why) if status_skip else ctx.fail("tools.list", why)]
    if not tools:
        return [ctx.warn("tools.list", "the server lists no tools", "Expose at least one tool.")]
    return [ctx.ok("tools.list", f"{len(tools)} tools", count=len(tools))]


async def _tools_or_skip(ctx: Context, check_id: str) -> tuple[list[dict[str, Any]] | None, list[Result]]:
    tools, why = await list_tools(ctx)
    if tools is None:
        return None, [ctx.skip(check_id, why or "no tools")]
    if not tools:
        return None, [ctx.skip(check_id, "no tools")]
    return tools, []


async def check_names(ctx: Context) -> list[Result]:
    tools, skipped = await _tools_or_skip(ctx, "tools.names")
    if tools is None:
        return skipped
    profile = ctx.profile
    prefix = profile.tool_name_prefix.replace("{label}", ctx.label(await ctx.session()))
    pattern = re.compile(profile.tool_name_pattern)
    problems: list[str] = []
    names = [str(t.get("name", "")) for t in tools]
    for name in names:
        if not pattern.match(name):
            problems.append(f"{name!r} has characters outside {profile.tool_name_pattern}")
        if len(prefix + name) > profile.tool_name_max:
            problems.append(
                f"{name!r} is {len(prefix + name)} characters as {prefix + name!r} (max {profile.tool_name_max})"
                if prefix
                else f"{name!r} is {len(name)} characters (max {profile.tool_name_max})"
            )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    problems.extend(f"{n!r} is listed twice" for n in duplicates)
    if problems:
        return [ctx.fail("tools.names", "; ".join(problems[:6]) + (" …" if len(problems) > 6 else ""))]
    budget = profile.tool_name_max - len(prefix)
    return [ctx.ok("tools.names", f"{len(names)} names fit (budget {budget} characters after {prefix or 'no prefix'})")]


async def check_schemas(ctx: Context) -> list[Result]:
    tools, skipped = await _tools_or_skip(ctx, "tools.schemas")
    if tools is None:
        return skipped
    errors: list[str] = []
    warnings: list[str] = []
    for tool in tools:
        name = tool.get("name")
        errs, warns = input_schema_problems(tool.get("inputSchema"), ctx.profile.schema_rules)
        if "outputSchema" in tool:
            errs += output_schema_problems(tool["outputSchema"])
        errors += [f"{name}: {e}" for e in errs]
        warnings += [f"{name}: {w}" for w in warns]
    if errors:
        return [ctx.fail("tools.schemas", "; ".join(errors[:5]) + (" …" if len(errors) > 5 else ""), problems=errors)]
    if warnings:
        return [ctx.warn("tools.schemas", "; ".join(warnings[:5]), problems=warnings)]
    return [ctx.ok("tools.schemas", f"{len(tools)} tools have portable schemas")]


async def check_descriptions(ctx: Context) -> list[Result]:
    tools, skipped = await _tools_or_skip(ctx, "tools.descriptions")
    if tools is None:
        return skipped
    missing = [str(t.get("name")) for t in tools if not str(t.get("description") or "").strip()]
    if missing:
        return [ctx.fail("tools.descriptions", f"no description: {', '.join(missing)}")]
    return [ctx.ok("tools.descriptions", "every tool is described")]


async def check_annotations(ctx: Context) -> list[Result]:
    tools, skipped = await _tools_or_skip(ctx, "tools.annotations")
    if tools is None:
        return skipped
    lacking = []
    for tool in tools:
        raw = tool.get("annotations")
        annotations: dict[str, Any] = raw if isinstance(raw, dict) else {}
        absent = [h for h in HINTS if not isinstance(annotations.get(h), bool)]
        if absent:
            lacking.append(f"{tool.get('name')} ({', '.join(absent)})")
    if lacking:
        why = "missing explicit hints: " + "; ".join(lacking[:6]) + (" …" if len(lacking) > 6 else "")
        if ctx.profile.annotations == "fail":
            return [ctx.fail("tools.annotations", why + f"; {ctx.profile.title} treats this as a blocker")]
        return [ctx.warn("tools.annotations", why)]
    return [ctx.ok("tools.annotations", "every tool sets readOnlyHint, destructiveHint and openWorldHint")]


async def check_security_schemes(ctx: Context) -> list[Result]:
    tools, skipped = await _tools_or_skip(ctx, "tools.security_schemes")
    if tools is None:
        return skipped
    declaring = [t for t in tools if "securitySchemes" in t or "securitySchemes" in (t.get("_meta") or {})]
    if not declaring:
        return [ctx.ok("tools.security_schemes", "no tool declares securitySchemes (the server default applies)")]
    oauth_tools = [t for t in declaring if any(s.get("type") == "oauth2" for s in _schemes(t) if isinstance(s, dict))]
    if oauth_tools and not ctx.facts.get("auth:prm"):
        names = ", ".join(str(t.get("name")) for t in oauth_tools[:5])
        return [ctx.fail("tools.security_schemes", f"{names} declare oauth2 but the server offers no OAuth discovery")]
    unmirrored = [
        str(t.get("name"))
        for t in declaring
        if t.get("securitySchemes") != (t.get("_meta") or {}).get("securitySchemes")
    ]
    if unmirrored:
        return [
            ctx.warn("tools.security_schemes", f"securitySchemes not mirrored in _meta: {', '.join(unmirrored[:5])}")
        ]
    return [ctx.ok("tools.security_schemes", f"{len(declaring)} tools declare consistent securitySchemes")]


def _schemes(tool: dict[str, Any]) -> list[Any]:
    value = tool.get("securitySchemes", (tool.get("_meta") or {}).get("securitySchemes"))
    return value if isinstance(value, list) else []


async def check_output(ctx: Context) -> list[Result]:
    samples, why = await calls.samples(ctx)
    if samples is None:
        return [ctx.skip("tools.output", why)]
    problems, warnings, checked = [], [], 0
    for sample in samples:
        if sample.output_schema is None or sample.result is None or output_schema_problems(sample.output_schema):
            continue  # an unusable outputSchema is reported by tools.schemas
        checked += 1
        errs, warns = calls.output_problems(sample)
        problems += errs
        warnings += warns
    if not checked:
        return [ctx.skip("tools.output", "no sample call of a tool with an outputSchema")]
    if problems:
        return [ctx.fail("tools.output", "; ".join(problems[:4]))]
    if warnings:
        return [ctx.warn("tools.output", "; ".join(warnings[:4]))]
    return [ctx.ok("tools.output", f"{checked} sample result(s) match their outputSchema and carry a text copy")]


async def check_size(ctx: Context) -> list[Result]:
    samples, why = await calls.samples(ctx)
    if samples is None:
        return [ctx.skip("tools.size", why)]
    sized = [(s.tool, s.chars) for s in samples if s.result is not None]
    if not sized:
        return [ctx.skip("tools.size", "no sample results")]
    tool, biggest = max(sized, key=lambda item: item[1])
    limit, soft = ctx.profile.result_chars_max, ctx.profile.result_chars_warn
    why = f"the largest sample result ({tool}) is {biggest:,} characters"
    if biggest > limit:
        return [ctx.fail("tools.size", f"{why}; {ctx.profile.title} accepts about {limit:,}")]
    if biggest > soft:
        return [ctx.warn("tools.size", f"{why}; some {ctx.profile.title} surfaces cut at about {soft:,}")]
    return [ctx.ok("tools.size", f"{why} (limit {limit:,})")]


async def check_search_fetch(ctx: Context) -> list[Result]:
    level = ctx.profile.search_fetch
    if level == "off":
        return [ctx.skip("tools.search_fetch", f"{ctx.profile.title} does not need search/fetch")]
    tools, skipped = await _tools_or_skip(ctx, "tools.search_fetch")
    if tools is None:
        return skipped
    by_name = {t.get("name"): t for t in tools}
    if "search" not in by_name and "fetch" not in by_name:
        return [
            ctx.result(
                "tools.search_fetch",
                Status.WARN if level == "warn" else Status.FAIL,
                "no search/fetch tools: deep research and company knowledge will not use this server "
                "(developer mode works)",
            )
        ]
    problems = calls.search_fetch_definition_problems(by_name)
    if not problems:
        problems = await calls.search_fetch_call_problems(ctx)
    if problems:
        return [ctx.fail("tools.search_fetch", "; ".join(problems[:4]))]
    return [ctx.ok("tools.search_fetch", "search and fetch have the deep-research shape")]


CHECKS = (
    check_list,
    check_names,
    check_schemas,
    check_descriptions,
    check_annotations,
    check_security_schemes,
    check_output,
    check_size,
    check_search_fetch,
)
