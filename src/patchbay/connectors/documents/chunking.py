"""Passages for the index: whole sections packed together, each with the headings it holds.

Consecutive sections are packed into one passage up to the target size, so a short page is one passage (fewer
index rows, faster ranking) and a long one is several. A section is cut only when it alone is larger than a
passage, at paragraph, then sentence, then word boundaries, and every part carries its heading path. Passage
bodies hold the heading lines in Markdown form, so a document's text is its passages joined.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from patchbay.connectors.documents.extract import Section

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True, slots=True)
class Chunk:
    heading: str
    """The heading paths of the sections in the passage ("Leave > Parental leave; Leave > Sick leave"):
    searchable, weighted above body text."""
    body: str


def chunk_sections(sections: list[Section], size: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    headings: list[str] = []
    parts: list[str] = []
    length = 0
    previous: list[str] = []

    def emit() -> None:
        nonlocal headings, parts, length
        if parts:
            chunks.append(Chunk("; ".join(dict.fromkeys(headings)), "\n\n".join(parts)))
        headings, parts, length = [], [], 0

    for section in sections:
        lines = _heading_lines(previous, section.headings)
        previous = section.headings
        path = " > ".join(section.headings)
        rendered = "\n\n".join([*lines, section.text] if section.text else lines)
        if not rendered:
            continue
        if length and length + len(rendered) + 2 > size:
            emit()
        if len(rendered) <= size:
            parts.append(rendered)
            headings.append(path)
            length += len(rendered) + 2
            continue
        emit()  # an oversized section is split on its own, each part under the section's path
        for number, piece in enumerate(_pack(section.text, size)):
            body = "\n\n".join([*lines, piece]) if number == 0 and lines else piece
            chunks.append(Chunk(path, body))
    emit()
    return chunks


def _heading_lines(previous: list[str], path: list[str]) -> list[str]:
    """Markdown heading lines for the levels of ``path`` that differ from ``previous``."""
    same = 0
    while same < min(len(path), len(previous)) and path[same] == previous[same]:
        same += 1
    return ["#" * min(level + 1, 6) + " " + path[level] for level in range(same, len(path))]


def _pack(text: str, size: int) -> Iterator[str]:
    """Greedily packs paragraphs into passages of at most ``size`` characters (longer pieces are split)."""
    current: list[str] = []
    length = 0
    for piece in _pieces(text, size):
        if current and length + len(piece) + 2 > size:
            yield "\n\n".join(current)
            current, length = [], 0
        current.append(piece)
        length += len(piece) + 2
    if current:
        yield "\n\n".join(current)


def _pieces(text: str, size: int) -> Iterator[str]:
    for paragraph in text.split("\n\n"):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= size:
            yield paragraph
            continue
        yield from _split_long(paragraph, size)


def _split_long(paragraph: str, size: int) -> Iterator[str]:
    buffer = ""
    for sentence in _SENTENCE_END.split(paragraph):
        while len(sentence) > size:  # a "sentence" longer than a passage: cut at the last space before size
            cut = sentence.rfind(" ", 0, size)
            cut = cut if cut > size // 2 else size
            if buffer:
                yield buffer
                buffer = ""
            yield sentence[:cut].strip()
            sentence = sentence[cut:].strip()
        if buffer and len(buffer) + len(sentence) + 1 > size:
            yield buffer
            buffer = ""
        buffer = f"{buffer} {sentence}" if buffer else sentence
    if buffer:
        yield buffer
