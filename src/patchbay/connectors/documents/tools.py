"""``search`` and ``fetch`` exactly as ChatGPT deep research and company knowledge expect them, and a resource
template for reading documents (reference/mcp-requirements.md §5.3, R-070, R-071).

Input schemas are the documented ones, unchanged ("company knowledge compatibility checks the input parameters
only"), so paging travels inside them: a search that matched more than one page returns ``next_cursor``, which
is passed back as the ``query``; a document longer than ``max_fetch_chars`` comes in parts, the next part's id
in ``metadata.next_id``. Both results are sent as ``structuredContent`` and as the same JSON in one text item.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import orjson

from patchbay.connectors.documents.access import may_read, principal_tokens
from patchbay.connectors.documents.index import Index, StoredDocument, query_terms
from patchbay.context import Context
from patchbay.definitions import ResourceTemplate, Tool, ToolAnnotations, ToolResult
from patchbay.errors import ToolError

if TYPE_CHECKING:
    from patchbay.connectors.documents.hybrid import HybridSearch

CURSOR_PREFIX = "cursor:"
PART_SEPARATOR = "@"
MAX_QUERY_CHARS = 2000
MAX_ID_CHARS = 1000
# Paging reaches this many results of one query; past it, a better query serves the model better than page 50.
# It also bounds the work a forged cursor can ask for (the index ranks offset + page size documents).
MAX_RESULTS = 1000
BAD_CURSOR = "This cursor is not one search returned; start again with a plain query."
# §5.4: every hint explicit. Read-only, so ChatGPT may call these without asking; only our own documents.
READ_ONLY = ToolAnnotations(read_only=True, destructive=False, idempotent=True, open_world=False)

SEARCH_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {"query": {"type": "string"}},
    "required": ["query"],
}
FETCH_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "string"}},
    "required": ["id"],
}
SEARCH_OUTPUT: dict[str, Any] = {
    "type": "object",
    "required": ["results"],
    "properties": {
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "title", "url"],
                "properties": {
                    "id": {"type": "string"},
                    "title": {"type": "string"},
                    "url": {"type": "string"},
                    "snippet": {"type": "string"},
                },
            },
        },
        "next_cursor": {"type": "string"},
    },
}
FETCH_OUTPUT: dict[str, Any] = {
    "type": "object",
    "required": ["id", "title", "text", "url"],
    "properties": {
        "id": {"type": "string"},
        "title": {"type": "string"},
        "text": {"type": "string"},
        "url": {"type": "string"},
        "metadata": {"type": ["object", "null"], "additionalProperties": True},
    },
}


class DocumentTools:
    """The handlers, bound to one index and the connector's limits."""

    def __init__(self, index: Index, *, page_size: int, max_chars: int, hybrid: HybridSearch | None = None) -> None:
        self.index = index
        self.page_size = page_size
        self.max_chars = max_chars
        self.hybrid = hybrid

    async def search(self, arguments: dict[str, Any], ctx: Context) -> ToolResult:
        query, offset = _query(arguments.get("query"))
        terms = query_terms(query)
        if not terms:
            raise ToolError("The query has no words to search for; use a few keywords, e.g. 'parental leave'.")
        tokens = principal_tokens(ctx.principal)
        if self.hybrid is not None:  # the query's vector is computed on the worker thread too (CPU-bound)
            hits, more = await anyio.to_thread.run_sync(
                self.hybrid.search, query, terms, tokens, self.page_size, offset
            )
        else:
            hits, more = await anyio.to_thread.run_sync(self.index.search, terms, tokens, self.page_size, offset)
        result: dict[str, Any] = {
            "results": [{"id": h.doc_id, "title": h.title, "url": h.url, "snippet": h.snippet} for h in hits]
        }
        if more and offset + self.page_size < MAX_RESULTS:
            result["next_cursor"] = encode_cursor(query, offset + self.page_size)
        return _both(result)

    async def fetch(self, arguments: dict[str, Any], ctx: Context) -> ToolResult:
        requested = arguments.get("id")
        if not isinstance(requested, str) or not requested.strip():
            raise ToolError("'id' must be a non-empty string: an id returned by search.")
        doc_id, start = _split_part(requested.strip())
        document = await self._readable(doc_id, ctx)
        if start > len(document.text):
            raise ToolError(f"Document '{doc_id}' has only {len(document.text)} characters; part {start} is past it.")
        text, end = _part(document.text, start, self.max_chars)
        metadata: dict[str, Any] = {
            "source": document.source,
            "type": document.kind,
            "updated_at": document.updated_at,
            "chars": len(document.text),
        }
        if start or end < len(document.text):
            metadata.update(part_start=start, part_end=end, truncated=end < len(document.text))
        if end < len(document.text):
            next_id = f"{doc_id}{PART_SEPARATOR}{end}"
            metadata["next_id"] = next_id
            text += (
                f"\n\n[Truncated: characters {start + 1:,}-{end:,} of {len(document.text):,}. "
                f'Call fetch with id "{next_id}" for the rest.]'
            )
        result: dict[str, Any] = {
            "id": requested.strip(),
            "title": document.title,
            "text": text,
            "url": document.url,
            "metadata": metadata,
        }
        return _both(result)

    async def read_resource(self, uri: str, params: dict[str, str], ctx: Context) -> list[dict[str, Any]]:
        document = await self._readable(params["id"], ctx)
        return [{"uri": uri, "mimeType": "text/markdown", "text": f"# {document.title}\n\n{document.text}"}]

    async def _readable(self, doc_id: str, ctx: Context) -> StoredDocument:
        """The document if the caller may read it. R-071: fetch re-checks access; a hidden document and a
        missing one get the same answer, so ids cannot be probed."""
        document = await anyio.to_thread.run_sync(self.index.get, doc_id)
        if document is None or not may_read(document.acl, document.public, principal_tokens(ctx.principal)):
            raise ToolError(f"No document with id '{doc_id[:200]}'. Use an id returned by search.")
        return document


def build_tools(tools: DocumentTools, *, title: str, description: str) -> list[Tool]:
    search = Tool(
        name="search",
        title=title,
        description=description,
        input_schema=SEARCH_INPUT,
        output_schema=SEARCH_OUTPUT,
        handler=tools.search,
        annotations=READ_ONLY,
    )
    fetch = Tool(
        name="fetch",
        title="Fetch a document",
        description=(
            "Retrieve the full text of a document by the id returned from search. Long documents come in parts: "
            "metadata.next_id is the id of the next part."
        ),
        input_schema=FETCH_INPUT,
        output_schema=FETCH_OUTPUT,
        handler=tools.fetch,
        annotations=READ_ONLY,
    )
    return [search, fetch]


def build_template(tools: DocumentTools, connector: str) -> ResourceTemplate:
    return ResourceTemplate(
        uri_template=f"documents://{connector}/{{id}}",
        name=f"{connector}-document",
        title="Document",
        description="A document's full text by the id search returns (access lists apply).",
        mime_type="text/markdown",
        handler=tools.read_resource,
    )


def search_description(sources: str) -> str:
    return (
        f"Search {sources} documents by keywords. Returns ids to pass to fetch, with titles, links and a snippet. "
        "If next_cursor is present, call search again with query set to next_cursor for more results."
    )


def encode_cursor(query: str, offset: int) -> str:
    raw = orjson.dumps({"q": query, "o": offset})
    return CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _query(value: Any) -> tuple[str, int]:
    if not isinstance(value, str) or not value.strip():
        raise ToolError("'query' must be a non-empty string: the words to look for, e.g. 'expense policy'.")
    if len(value) > MAX_QUERY_CHARS:
        raise ToolError(f"'query' is too long ({len(value)} characters); use at most {MAX_QUERY_CHARS}.")
    if not value.startswith(CURSOR_PREFIX):
        return value.strip(), 0
    encoded = value[len(CURSOR_PREFIX) :].strip()
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        query, offset = decoded["q"], decoded["o"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ToolError(BAD_CURSOR) from None
    # A cursor is not signed: it holds only a query and a position the caller could ask for anyway, and access
    # lists are applied on every page. What must hold is that the position is one search could have handed out.
    if not isinstance(query, str) or type(offset) is not int or not 0 < offset < MAX_RESULTS:
        raise ToolError(BAD_CURSOR)
    return query, offset


def _split_part(requested: str) -> tuple[str, int]:
    if len(requested) > MAX_ID_CHARS:
        raise ToolError(f"'id' is too long; ids from search are at most {MAX_ID_CHARS} characters.")
    doc_id, separator, start = requested.rpartition(PART_SEPARATOR)
    # ASCII digits only: str.isdigit() also accepts '²' and '٣', which int() refuses or reads differently.
    if separator and start.isascii() and start.isdigit():
        return doc_id, int(start)
    return requested, 0


def _part(text: str, start: int, limit: int) -> tuple[str, int]:
    """Up to ``limit`` characters from ``start``, ending at a paragraph or word boundary when one is near."""
    end = start + limit
    if end >= len(text):
        return text[start:], len(text)
    window = text[start:end]
    for boundary in ("\n\n", "\n", " "):
        cut = window.rfind(boundary)
        if cut > limit * 0.8:
            end = start + cut + len(boundary)
            break
    return text[start:end], end


def _both(result: dict[str, Any]) -> ToolResult:
    """§5.3: the object as structuredContent and, "for compatibility", JSON-encoded as one text item."""
    return ToolResult([{"type": "text", "text": orjson.dumps(result).decode()}], structured=result)
