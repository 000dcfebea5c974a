"""ChatGPT's search/fetch contract as documented (reference/mcp-requirements.md §5.3, R-070/R-071), verbatim.

Tests compare Patchbay's tools with these, not with the code's own schemas, so a change to the code that breaks the
documented contract fails a test.
"""

from __future__ import annotations

from typing import Any

SEARCH_INPUT: dict[str, Any] = {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}
FETCH_INPUT: dict[str, Any] = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
SEARCH_OUTPUT: dict[str, Any] = {
    "type": "object",
    "required": ["results"],
    "properties": {
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "title", "url"],
                "properties": {"id": {"type": "string"}, "title": {"type": "string"}, "url": {"type": "string"}},
            },
        }
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
HINTS: dict[str, bool] = {
    "readOnlyHint": True,
    "destructiveHint": False,
    "openWorldHint": False,
    "idempotentHint": True,
}
