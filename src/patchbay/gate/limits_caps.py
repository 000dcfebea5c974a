"""Result-size caps per client: which client is calling, its documented limit, and cutting a result to fit.

The limits are what the clients document (shared/reference mcp-requirements §5.9 and §6.4; the doctor's
profiles.toml holds the same numbers): ChatGPT ~100,000 characters (cited for GPT Actions; not documented for MCP),
claude.ai and Claude Desktop ~150,000 characters, Claude Code 25,000 tokens (``MAX_MCP_OUTPUT_TOKENS``). A client
over its limit does not cut cleanly: Claude replaces the result with a file pointer, others cut silently. So
Patchbay cuts first, on block boundaries, and says what it left out.

Sizes are UTF-8 bytes of the JSON the client receives for ``content`` and ``structuredContent``; a byte limit is
never looser than the same number of characters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class ClientProfile:
    name: str
    client_names: tuple[str, ...]
    """``clientInfo.name`` values (lower case; a ``/suffix`` is ignored) that identify the client."""
    result_bytes: int


PROFILES: dict[str, ClientProfile] = {
    # UA and clientInfo "openai-mcp/1.0.0" (field-problems §F); ~100k characters (GPT Actions' documented limit).
    "chatgpt": ClientProfile("chatgpt", ("openai-mcp", "chatgpt"), 100_000),
    # claude.ai's initialize names itself Anthropic, Anthropic/ClaudeAI or claude-ai; ~150,000 characters.
    "claude": ClientProfile("claude", ("anthropic", "claude-ai", "claudeai"), 150_000),
    # 25,000 tokens; JSON runs at roughly 3-4 characters a token, so 80,000 bytes stays under it.
    "claude-code": ClientProfile("claude-code", ("claude-code",), 80_000),
}
DEFAULT_RESULT_BYTES = 1_048_576
# Room kept for the note that says what was cut.
NOTE_ROOM = 600
# A text block is cut rather than dropped when at least this much of it fits.
MIN_CUT = 64
_KNOWN_NAMES = {n: p.name for p in PROFILES.values() for n in p.client_names}


def profile_of(client_info: Any) -> str | None:
    """The profile a client belongs to, from its self-declared ``clientInfo`` (a hint, never for access)."""
    name = client_info.get("name") if isinstance(client_info, dict) else None
    if not isinstance(name, str):
        return None
    name = name.strip().lower()
    return _KNOWN_NAMES.get(name) or _KNOWN_NAMES.get(name.split("/", 1)[0])


def limits_by_profile(overrides: Mapping[str, int]) -> dict[str, int]:
    return {name: overrides.get(name, profile.result_bytes) for name, profile in PROFILES.items()}


def size_of(value: Any) -> int:
    # As lenient as the measure of result_bytes: a connector's integer keys or dates are sized as text.
    return len(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))


def cap_result(wire: dict[str, Any], limit: int, strict_structure: bool) -> dict[str, Any]:
    """``wire`` (a tools/call result) cut to ``limit`` bytes, or ``wire`` itself when it fits.

    Content blocks are kept in order while they fit; the first text block that does not is cut at a character
    boundary, and every block after it is left out. ``structuredContent`` is kept whole when it fits in the limit
    alone, else left out whole (half an object would not match the tool's output schema); when the tool declares
    an output schema (``strict_structure``) a result without it is marked ``isError``, as MCP requires a result
    that is not an error to carry it. A last text block says what was cut.
    """
    content = wire.get("content")
    blocks: list[Any] = content if isinstance(content, list) else []
    has_structured = "structuredContent" in wire
    structured_size = size_of(wire["structuredContent"]) if has_structured else 0
    total = size_of(blocks) + structured_size
    if total <= limit:
        return wire
    out = dict(wire)
    budget = max(limit - NOTE_ROOM, 0)
    notes: list[str] = []
    if has_structured:
        if structured_size <= budget:
            budget -= structured_size
        else:
            del out["structuredContent"]
            notes.append(f"the structured result ({structured_size:,} bytes) was left out")
            if strict_structure:
                out["isError"] = True
    kept, cut_notes = _fit_blocks(blocks, budget)
    notes = cut_notes + notes
    note = (
        f"[Patchbay cut this result to fit this client's limit of {limit:,} bytes ({total:,} bytes in full): "
        f"{'; '.join(notes)}. Ask for less, e.g. a narrower query or the next page.]"
    )
    out["content"] = [*kept, {"type": "text", "text": note}]
    meta = out.get("_meta")
    truncated = {"limitBytes": limit, "fullBytes": total}
    out["_meta"] = {**(meta if isinstance(meta, dict) else {}), "patchbay/truncated": truncated}
    return out


def _fit_blocks(blocks: list[Any], budget: int) -> tuple[list[Any], list[str]]:
    """The longest prefix of ``blocks`` that fits ``budget`` bytes (its last text block cut to fit), and notes."""
    kept: list[Any] = []
    notes: list[str] = []
    used = 2  # the list's brackets
    for index, block in enumerate(blocks):
        cost = size_of(block) + 1
        if used + cost <= budget:
            kept.append(block)
            used += cost
            continue
        shortened = _cut_text(block, budget - used - 1)
        if shortened is not None:
            kept.append(shortened)
            full, now = len(block["text"]), len(shortened["text"])
            notes.append(f"content block {index + 1} (text) was cut from {full:,} to {now:,} characters")
        rest = blocks[index + (shortened is not None) :]
        if rest:
            kinds: dict[str, int] = {}
            for item in rest:
                kind = str(item.get("type", "unknown")) if isinstance(item, dict) else "unknown"
                kinds[kind] = kinds.get(kind, 0) + 1
            listed = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
            notes.append(f"{len(rest)} content block{'s' if len(rest) != 1 else ''} ({listed}) left out")
        break
    return kept, notes


def _cut_text(block: Any, room: int) -> dict[str, Any] | None:
    """The text block with its text shortened so the whole block is at most ``room`` bytes of JSON; None when
    ``block`` is not text or less than MIN_CUT bytes of its text would fit."""
    if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
        return None
    available = room - size_of({**block, "text": ""})
    if available < MIN_CUT:
        return None
    text: str = block["text"]
    prefix = text.encode()[:available].decode("utf-8", "ignore")
    # JSON escapes (quotes, control characters) can make the prefix longer than its UTF-8 bytes: shrink it in
    # proportion until the encoded text fits; every round removes at least one character, so this ends.
    while (encoded := size_of(prefix) - 2) > available:
        prefix = prefix[: min(len(prefix) - 1, len(prefix) * available // encoded)]
    return {**block, "text": prefix}
