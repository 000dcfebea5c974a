"""Sample tool calls shared by the output, size, search/fetch and timing checks.

Only tools that say they are read-only (``readOnlyHint: true``) and need no arguments are called, plus ``search``
with a probe query and ``fetch`` with an id ``search`` returned. ``--no-calls`` turns all calls off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema  # type: ignore[import-untyped]

from patchbay.doctor.context import Context

__all__ = ["Sample", "output_problems", "samples", "search_fetch_call_problems", "search_fetch_definition_problems"]

MAX_SAMPLES = 8
PROBE_QUERIES = ("test", "the", "policy", "a")


@dataclass(frozen=True)
class Sample:
    tool: str
    output_schema: dict[str, Any] | None
    result: dict[str, Any] | None  # None when the call failed at the protocol level
    elapsed: float
    chars: int
    error: str = ""


def _read_only(tool: dict[str, Any]) -> bool:
    annotations = tool.get("annotations")
    return isinstance(annotations, dict) and annotations.get("readOnlyHint") is True


def _needs_arguments(tool: dict[str, Any]) -> bool:
    schema = tool.get("inputSchema")
    return isinstance(schema, dict) and bool(schema.get("required"))


async def call(ctx: Context, tool: dict[str, Any], arguments: dict[str, Any]) -> Sample:
    session = await ctx.session()
    name = str(tool.get("name"))
    reply, message = await ctx.request(session, "tools/call", {"name": name, "arguments": arguments}, id=500)
    result = message.get("result") if isinstance(message, dict) else None
    schema = tool.get("outputSchema") if isinstance(tool.get("outputSchema"), dict) else None
    if not isinstance(result, dict):
        return Sample(name, schema, None, reply.elapsed, 0, reply.describe())
    chars = sum(len(json.dumps(block, ensure_ascii=False)) for block in result.get("content") or [])
    return Sample(name, schema, result, reply.elapsed, chars)


async def samples(ctx: Context) -> tuple[list[Sample] | None, str]:
    """The run's sample calls (made once, through the first profile that asks), or None and why not."""
    if not ctx.options.calls:
        return None, "--no-calls"
    if "samples" not in ctx.facts:
        from patchbay.doctor.checks.tools import list_tools

        tools, why = await list_tools(ctx)
        if tools is None:
            return None, why
        chosen = [t for t in tools if _read_only(t) and not _needs_arguments(t)][:MAX_SAMPLES]
        made = [await call(ctx, tool, {}) for tool in chosen]
        by_name = {t.get("name"): t for t in tools}
        if isinstance(by_name.get("search"), dict) and isinstance(by_name.get("fetch"), dict):
            made.extend(await _search_and_fetch(ctx, by_name["search"], by_name["fetch"]))
        ctx.facts["samples"] = made
    return ctx.facts["samples"], ""


async def _search_and_fetch(ctx: Context, search: dict[str, Any], fetch: dict[str, Any]) -> list[Sample]:
    made: list[Sample] = []
    for query in PROBE_QUERIES:
        found = await call(ctx, search, {"query": query})
        made = [found]
        ids = [r.get("id") for r in _payload(found).get("results", []) if isinstance(r, dict)]
        if ids:
            made.append(await call(ctx, fetch, {"id": ids[0]}))
            break
    ctx.facts["search_fetch_samples"] = made
    return made


def _payload(sample: Sample) -> dict[str, Any]:
    """structuredContent, else the JSON in the first text block (the deep-research contract allows either)."""
    result = sample.result or {}
    if isinstance(result.get("structuredContent"), dict):
        return dict(result["structuredContent"])
    for block in result.get("content") or []:
        if isinstance(block, dict) and block.get("type") == "text":
            try:
                value = json.loads(block.get("text", ""))
            except ValueError:
                return {}
            return value if isinstance(value, dict) else {}
    return {}


def output_problems(sample: Sample) -> tuple[list[str], list[str]]:
    """(errors, warnings) for one result of a tool that declares outputSchema (K3)."""
    result = sample.result or {}
    if result.get("isError"):
        return [], []  # an error result carries no structured output
    structured = result.get("structuredContent")
    if structured is None:
        return [f"{sample.tool}: declares outputSchema but returned no structuredContent"], []
    validator = jsonschema.Draft202012Validator(sample.output_schema or {})
    error = next(iter(sorted(validator.iter_errors(structured), key=lambda e: list(e.path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.path) or "(root)"
        return [f"{sample.tool}: structuredContent does not match outputSchema at {where}: {error.message[:120]}"], []
    texts = [b for b in result.get("content") or [] if isinstance(b, dict) and b.get("type") == "text"]
    if not texts:
        return [], [f"{sample.tool}: no text copy of structuredContent (Claude Code shows only content)"]
    return [], []


def search_fetch_definition_problems(by_name: dict[Any, dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    for name, argument in (("search", "query"), ("fetch", "id")):
        tool = by_name.get(name)
        if tool is None:
            problems.append(f"{name} is missing (deep research needs both search and fetch)")
            continue
        raw = tool.get("inputSchema")
        schema: dict[str, Any] = raw if isinstance(raw, dict) else {}
        prop = (schema.get("properties") or {}).get(argument)
        if not isinstance(prop, dict) or prop.get("type") != "string":
            problems.append(f"{name} must take {argument}: string")
        elif argument not in (schema.get("required") or []):
            problems.append(f"{name} must require {argument}")
        if not _read_only(tool):
            problems.append(f"{name} must be annotated readOnlyHint: true")
    return problems


async def search_fetch_call_problems(ctx: Context) -> list[str]:
    made, _ = await samples(ctx)
    found = ctx.facts.get("search_fetch_samples") or []
    if made is None or not found:
        return []
    problems: list[str] = []
    search = found[0]
    results = _payload(search).get("results")
    if search.result is None or search.result.get("isError"):
        return [f"search failed: {search.error or 'isError result'}"]
    if not isinstance(results, list):
        return ['search must return {"results": [...]} (as structuredContent or JSON text)']
    for item in results[:5]:
        missing = [k for k in ("id", "title", "url") if not isinstance(item, dict) or not isinstance(item.get(k), str)]
        if missing:
            problems.append(f"search results need string {', '.join(missing)}")
            break
    if len(found) > 1:
        document = _payload(found[1])
        missing = [k for k in ("id", "title", "text", "url") if not isinstance(document.get(k), str)]
        if missing:
            problems.append(f"fetch must return string {', '.join(missing)}")
    return problems
