"""Characters a person reviewing a description cannot see but a model reads: the tool-poisoning carrier.

Unicode tag characters (U+E0000-U+E007F) mirror ASCII invisibly, so a whole instruction can hide in a tag run;
zero-width characters (U+200B-U+200D, U+2060, U+FEFF) split or hide words; bidirectional controls
(U+202A-U+202E, U+2066-U+2069) reorder what is displayed against what is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TAGS = range(0xE0000, 0xE0080)
ZERO_WIDTH = frozenset({0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF})
BIDI = frozenset({*range(0x202A, 0x202F), *range(0x2066, 0x206A)})


def is_hidden(char: str) -> bool:
    code = ord(char)
    return code in TAGS or code in ZERO_WIDTH or code in BIDI


def escaped(text: str) -> str:
    """``text`` with every hidden character written as a ``\\u``/``\\U`` escape, the rest as is."""
    return "".join(
        (f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}") if is_hidden(c) else c for c in text
    )


def decode_tags(text: str) -> str:
    """The ASCII a run of tag characters spells (U+E0020-U+E007E mirror U+0020-U+007E)."""
    return "".join(chr(ord(c) - 0xE0000) for c in text if 0xE0020 <= ord(c) <= 0xE007E)


def find_hidden(value: Any, where: str = "$") -> list[tuple[str, str, str]]:
    """Every string in ``value`` (keys included) holding hidden characters: (path, escaped text, tag message)."""
    found: list[tuple[str, str, str]] = []
    if isinstance(value, str):
        if any(is_hidden(c) for c in value):
            found.append((where, escaped(value), decode_tags(value)))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            found += find_hidden(str(key), f"{where} (key)") if any(is_hidden(c) for c in str(key)) else []
            found += find_hidden(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found += find_hidden(item, f"{where}[{index}]")
    return found
