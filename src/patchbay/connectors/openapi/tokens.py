"""How many tokens a ``tools/list`` costs a client's context: an estimate, one token per four bytes of compact JSON.

Tokenizers differ by model; JSON Schema text runs close to four bytes a token for the common ones, which is
accurate enough to choose between tool and search mode and to compare connectors (docs/openapi.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

BYTES_PER_TOKEN = 4


def estimate_tokens(wire_tools: Sequence[dict[str, Any]]) -> int:
    """The estimated token count of ``wire_tools`` (tools as ``tools/list`` sends them), rounded up."""
    size = len(orjson.dumps(list(wire_tools)))
    return -(-size // BYTES_PER_TOKEN)
