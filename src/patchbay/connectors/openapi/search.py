"""Search mode: three tools instead of one per operation, for APIs whose tool list would flood a model's context.

``search_operations`` ranks the operations by BM25 (Robertson & Zaragoza, "The Probabilistic Relevance Framework")
over their name, operationId, summary, description, tags and path words, indexed once at build time, in process:
no embedding service. ``describe_operation`` gives one operation's title, description, method and path, input
schema and hints; ``call_operation`` checks the arguments against that operation's input schema and calls it
through the same ``invoke`` (and so the same auth, limits and audit) as a tool of its own would.

The gate sees ``call_operation`` as the tool called: its annotations are the worst case of the operations it can
reach (read-only only when all are), so write switches and approvals apply to it as to any write tool.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from patchbay.connectors.openapi.models import Plan
from patchbay.connectors.openapi.naming import snake
from patchbay.definitions import Tool, ToolAnnotations, ToolResult

if TYPE_CHECKING:
    from patchbay.connectors.openapi.checks import ArgumentCheck
    from patchbay.connectors.openapi.tools import Invoke
    from patchbay.context import Context

MAX_LIMIT = 20
DEFAULT_LIMIT = 8
MAX_INDEXED = 400  # characters of an operation's description indexed
# BM25's usual constants: term-frequency saturation and length normalisation.
K1 = 1.2
B = 0.75
# The search tools' arguments (shared by every build: nothing mutates a tool's input schema).
_SEARCH_ARGUMENTS = {
    "query": {"type": "string", "description": "Words of what you want to do."},
    "tag": {"type": "string", "description": "Only operations with this tag."},
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
}
_NAME = {"type": "string", "description": "The operation's name, as search_operations gives it."}
_ARGUMENTS = {"type": "object", "description": "The operation's arguments."}
# A word: an acronym (HTTP in HTTPStatus), a capitalised or lower-case run, or digits; camelCase splits itself.
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` (camelCase split), a plural ``s`` dropped so ``tickets`` finds ``ticket``."""
    if not text.isascii():
        text = snake(text).replace("_", " ")
    found = [word.lower() for word in _WORD.findall(text)]
    return [w[:-1] if len(w) > 3 and w[-1] == "s" and w[-2] != "s" else w for w in found]


class Index:
    """A BM25 index over the operations' text; name, summary and tags count twice (they say what it is)."""

    def __init__(self, documents: Sequence[tuple[str, list[str]]]) -> None:
        self.names = [name for name, _ in documents]
        self.counts = [Counter(terms) for _, terms in documents]
        self.lengths = [len(terms) for _, terms in documents]
        self.average = (sum(self.lengths) / len(self.lengths)) if self.lengths else 0.0
        frequency: Counter[str] = Counter()
        for counts in self.counts:
            frequency.update(counts.keys())
        total = len(documents)
        self.idf = {term: math.log(1 + (total - n + 0.5) / (n + 0.5)) for term, n in frequency.items()}

    def search(self, query: str, allowed: set[str] | None = None) -> list[tuple[str, float]]:
        """(name, score) of the documents matching any query word, best first; ties by name (stable)."""
        terms = [term for term in dict.fromkeys(words(query)) if term in self.idf]
        scored: list[tuple[str, float]] = []
        for index, counts in enumerate(self.counts):
            name = self.names[index]
            if allowed is not None and name not in allowed:
                continue
            score = 0.0
            norm = K1 * (1 - B + B * self.lengths[index] / (self.average or 1))
            for term in terms:
                tf = counts.get(term, 0)
                if tf:
                    score += self.idf[term] * tf * (K1 + 1) / (tf + norm)
            if score > 0:
                scored.append((name, score))
        scored.sort(key=lambda item: (-item[1], item[0]))
        return scored


def _document(tool: Tool, plan: Plan) -> list[str]:
    operation = plan.operation
    # The name is the snake_cased operationId (or method and path); the description's opening says what it does,
    # and indexing all of a long Markdown description would cost start-up time for little.
    strong = [tool.name, operation.summary or tool.title or "", *operation.tags]
    weak = [operation.description[:MAX_INDEXED], operation.path.replace("{", " ").replace("}", " ")]
    terms = [w for text in strong for w in words(text)]
    return terms + terms + [w for text in weak for w in words(text)]


def _json(value: Any) -> ToolResult:
    return ToolResult([{"type": "text", "text": orjson.dumps(value).decode()}], structured=value)


def _unknown(name: Any, plans: dict[str, Plan]) -> ToolResult:
    import difflib

    close = difflib.get_close_matches(str(name), list(plans), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; find names with search_operations"
    return ToolResult.error(f"no operation is named {name!r}{hint}")


def worst_case(tools: Sequence[Tool], open_world: bool) -> ToolAnnotations:
    """The hints of a tool that may run any of ``tools``: read-only or idempotent only if all are."""
    return ToolAnnotations(
        read_only=bool(tools) and all(t.annotations.read_only for t in tools),
        destructive=any(t.annotations.destructive and not t.annotations.read_only for t in tools),
        idempotent=all(t.annotations.idempotent or t.annotations.read_only for t in tools),
        open_world=open_world,
    )


class Search:
    """The three tools' handlers over one build's operations."""

    def __init__(
        self, tools: Sequence[Tool], plans: dict[str, Plan], checks: dict[str, ArgumentCheck], invoke: Invoke
    ) -> None:
        self.tools = {tool.name: tool for tool in tools}
        self.plans = plans
        self.checks = checks
        self.invoke = invoke
        self.index = Index([(tool.name, _document(tool, plans[tool.name])) for tool in tools])
        self.tags = sorted({tag for plan in plans.values() for tag in plan.operation.tags}, key=str.lower)

    def _lookup(self, name: Any) -> str | None:
        if isinstance(name, str) and name in self.plans:
            return name
        for local, plan in self.plans.items():  # the operationId or "METHOD /path" a model may have kept
            if name in (plan.operation.operation_id, plan.operation.key):
                return local
        return None

    async def search(self, arguments: dict[str, Any], ctx: Context) -> ToolResult:
        query = arguments.get("query")
        tag = arguments.get("tag")
        limit = arguments.get("limit", DEFAULT_LIMIT)
        if not isinstance(query, str):
            return ToolResult.error("argument 'query' must be a string: words of what you want to do")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            return ToolResult.error(f"argument 'limit' must be an integer from 1 to {MAX_LIMIT}")
        allowed: set[str] | None = None
        if tag is not None:
            wanted = str(tag).lower()
            allowed = {n for n, p in self.plans.items() if any(t.lower() == wanted for t in p.operation.tags)}
            if not allowed:
                return ToolResult.error(f"no operation has the tag {tag!r}; the tags are: {', '.join(self.tags)}")
        if query.strip():
            ranked = [name for name, _ in self.index.search(query, allowed)]
        else:
            ranked = sorted(allowed if allowed is not None else self.plans)
        found = [self._summary(name) for name in ranked[:limit]]
        return _json({"operations": found, "matched": len(ranked)})

    def _summary(self, name: str) -> dict[str, Any]:
        tool, operation = self.tools[name], self.plans[name].operation
        return {"name": name, "title": tool.title, "method": operation.method, "path": operation.path}

    async def describe(self, arguments: dict[str, Any], ctx: Context) -> ToolResult:
        name = self._lookup(arguments.get("name"))
        if name is None:
            return _unknown(arguments.get("name"), self.plans)
        tool, operation = self.tools[name], self.plans[name].operation
        described: dict[str, Any] = {
            **self._summary(name),
            "description": tool.description,
            "tags": list(operation.tags),
            "inputSchema": tool.input_schema,
            "annotations": tool.annotations.to_wire(None),
        }
        if tool.output_schema is not None:
            described["outputSchema"] = tool.output_schema
        return _json(described)

    async def call(self, arguments: dict[str, Any], ctx: Context) -> ToolResult:
        name = self._lookup(arguments.get("name"))
        if name is None:
            return _unknown(arguments.get("name"), self.plans)
        given = arguments.get("arguments", {})
        problem = self.checks[name].problem(given)
        if problem is not None:
            return ToolResult.error(f"{name}: {problem}")
        return await self.invoke(self.plans[name], given, ctx)


def search_tools(
    api_title: str,
    tools: Sequence[Tool],
    plans: dict[str, Plan],
    checks: dict[str, ArgumentCheck],
    invoke: Invoke,
    *,
    open_world: bool,
) -> list[Tool]:
    """``search_operations``, ``describe_operation`` and ``call_operation`` over ``tools``' operations."""
    search = Search(tools, plans, checks, invoke)
    api = (api_title.strip() or "the API")[:80]
    count = len(tools)
    local = ToolAnnotations(read_only=True, destructive=False, idempotent=True, open_world=False)
    return [
        Tool(
            name="search_operations",
            title=f"Search {api}",
            description=(
                f"Find operations of {api} ({count} in all) by what they do. Returns names, titles, methods "
                "and paths, best match first; then describe_operation for an operation's arguments."
            ),
            input_schema=_taking(_SEARCH_ARGUMENTS, "query"),
            handler=search.search,
            annotations=local,
        ),
        Tool(
            name="describe_operation",
            title="Describe an operation",
            description="One operation's description, method and path, input schema and annotations.",
            input_schema=_taking({"name": _NAME}, "name"),
            handler=search.describe,
            annotations=local,
        ),
        Tool(
            name="call_operation",
            title=f"Call an operation of {api}",
            description=(
                "Call one operation with its arguments, as describe_operation gives its input schema. "
                "Operations that change data are confirmed like any write."
            ),
            input_schema=_taking({"name": _NAME, "arguments": _ARGUMENTS}, "name"),
            handler=search.call,
            annotations=worst_case(tools, open_world),
        ),
    ]


def _taking(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    """The input schema of a tool taking ``properties`` and nothing else, ``required`` among them."""
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}
