"""Text out of Markdown, plain text, HTML, PDF and DOCX: a title and sections, each under its heading path.

Every extractor takes the file's bytes and returns :class:`Extracted`; a file it cannot read raises
:class:`ExtractError` with a reason a person can act on (the indexer logs it, counts it and goes on).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser

KINDS = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}


class ExtractError(Exception):
    """The file cannot be turned into text; ``str()`` is the reason."""


@dataclass(slots=True)
class Section:
    headings: list[str]
    """The heading path, outermost first (e.g. ["Leave", "Parental leave"]); empty before the first heading."""
    text: str


@dataclass(slots=True)
class Extracted:
    title: str
    sections: list[Section] = field(default_factory=list)


def kind_of(suffix: str) -> str | None:
    return KINDS.get(suffix.lower())


def extract(kind: str, data: bytes, fallback_title: str) -> Extracted:
    """Raises ExtractError when the bytes are not a readable document of ``kind``."""
    extractor = _EXTRACTORS[kind]
    try:
        extracted = extractor(data)
    except ExtractError:
        raise
    except Exception as exc:  # the PDF and DOCX parsers raise many types on corrupt input
        raise ExtractError(f"not a readable {kind} file ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    if not extracted.title:
        extracted.title = fallback_title
    extracted.sections = [s for s in extracted.sections if s.text or s.headings]
    return extracted


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), else UTF-16 with a BOM, else Latin-1, which never fails; NULs mean binary."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\x00" in data[:8192]:
        raise ExtractError("looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# -- Markdown and plain text -----------------------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|`)")
_FRONT_TITLE = re.compile(r"^title:\s*['\"]?(.*?)['\"]?\s*$", re.MULTILINE)


def inline_text(line: str) -> str:
    """Markdown inline markup to plain words: links keep their text, images their alt text."""
    return _EMPHASIS.sub("", _LINK.sub(r"\1", _IMAGE.sub(r"\1", line)))


def markdown(data: bytes) -> Extracted:
    text = decode_text(data).replace("\r\n", "\n")
    title = ""
    if text.startswith("---\n"):  # YAML front matter: only its title is used
        end = text.find("\n---", 4)
        if end != -1:
            found = _FRONT_TITLE.search(text[4:end])
            title = found.group(1).strip() if found else ""
            text = text[end + 4 :].lstrip("\n")
    doc = _Builder(inline=inline_text)
    fenced = False
    lines = text.split("\n")
    for index, line in enumerate(lines):
        head = line.lstrip(" ")[:1]
        if head in ("`", "~") and _FENCE.match(line):
            fenced = not fenced
            doc.add_line(line)
            continue
        if fenced:
            doc.add_line(line)
            continue
        heading = _ATX.match(line) if head == "#" else None
        if heading:
            doc.heading(len(heading.group(1)), inline_text(heading.group(2)))
            continue
        following = lines[index + 1].lstrip(" ")[:1] if index + 1 < len(lines) else ""
        if following in ("=", "-") and line.strip() and _SETEXT.match(lines[index + 1]) and not _SETEXT.match(line):
            doc.heading(1 if following == "=" else 2, inline_text(line.strip()))
            continue
        if head in ("=", "-") and doc.just_headed and _SETEXT.match(line):
            continue
        doc.add_line(line)
    return Extracted(title or doc.first_h1, doc.finish())


def plain_text(data: bytes) -> Extracted:
    text = decode_text(data).replace("\r\n", "\n").strip()
    first = text.split("\n", 1)[0].strip()
    title = first if 0 < len(first) <= 120 else ""
    return Extracted(title, [Section([], text)] if text else [])


class _Builder:
    """Collects lines into sections, tracking the heading path."""

    def __init__(self, inline: Callable[[str], str] | None = None) -> None:
        self.inline = inline
        self.path: list[tuple[int, str]] = []
        self.sections: list[Section] = []
        self.lines: list[str] = []
        self.first_h1 = ""
        self.just_headed = False

    def heading(self, level: int, text: str) -> None:
        self._flush()
        text = " ".join(text.split())
        if not text:
            return
        if level == 1 and not self.first_h1:
            self.first_h1 = text
        self.path = [(lv, t) for lv, t in self.path if lv < level] + [(level, text)]
        self.sections.append(Section([t for _, t in self.path], ""))
        self.just_headed = True

    def add_line(self, line: str) -> None:
        self.lines.append(line)
        self.just_headed = False

    def _flush(self) -> None:
        body = _tidy("\n".join(self.lines))
        self.lines = []
        if self.inline is not None and any(mark in body for mark in "[*_`"):
            body = self.inline(body)  # once per section, not per line: most lines carry no markup
        if not body:
            return
        headings = [t for _, t in self.path]
        if self.sections and self.sections[-1].headings == headings and not self.sections[-1].text:
            self.sections[-1].text = body
        else:
            self.sections.append(Section(headings, body))

    def finish(self) -> list[Section]:
        self._flush()
        return self.sections


def _tidy(text: str) -> str:
    """Trim lines and collapse runs of blank lines to one (paragraph boundaries are kept for chunking)."""
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in text.strip().split("\n")))


# -- HTML ------------------------------------------------------------------------------------------------------

_SKIP = {"script", "style", "noscript", "template", "svg", "head", "nav", "footer"}
_BLOCK = {
    "p", "div", "section", "article", "main", "header", "li", "ul", "ol", "table", "tr", "br", "hr",
    "blockquote", "pre", "dd", "dt", "dl", "figure", "figcaption", "aside", "form",
}  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.doc = _Builder()
        self.title = ""
        self.skipping: list[str] = []
        self.in_title = False
        self.heading: tuple[int, list[str]] | None = None
        self.line: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        elif tag in _SKIP:
            self.skipping.append(tag)
        elif tag in _HEADINGS and not self.skipping:
            self._end_line()
            self.heading = (_HEADINGS[tag], [])
        elif tag in _BLOCK:
            self._end_line(paragraph=tag in {"p", "div", "section", "article", "table", "pre", "blockquote"})

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:
            self._end_line()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif self.skipping and tag == self.skipping[-1]:
            self.skipping.pop()
        elif tag in _HEADINGS and self.heading is not None:
            level, words = self.heading
            self.heading = None
            self.doc.heading(level, " ".join("".join(words).split()))
        elif tag in _BLOCK or tag in {"td", "th"}:
            self._end_line(paragraph=tag in {"p", "table", "pre", "blockquote"})

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
        elif self.skipping:
            return
        elif self.heading is not None:
            self.heading[1].append(data)
        else:
            self.line.append(data)

    def _end_line(self, paragraph: bool = False) -> None:
        text = " ".join("".join(self.line).split())
        self.line = []
        if text:
            self.doc.add_line(text)
        if paragraph:
            self.doc.add_line("")


def html(data: bytes) -> Extracted:
    parser = _HTMLText()
    parser.feed(decode_text(data))
    parser.close()
    parser._end_line()
    sections = parser.doc.finish()
    title = " ".join(parser.title.split()) or parser.doc.first_h1
    return Extracted(title, sections)


# -- PDF and DOCX ----------------------------------------------------------------------------------------------


def pdf(data: bytes) -> Extracted:
    from pypdf import PdfReader  # imported on first use: most collections hold few PDFs

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        try:
            reader.decrypt("")  # many "protected" PDFs only restrict printing, with an empty user password
        except Exception:  # any failure means the same to the operator: it needs a password
            raise ExtractError("encrypted PDF (a password is needed to read it)") from None
    title = ""
    if reader.metadata is not None and reader.metadata.title:
        title = str(reader.metadata.title).strip()
    sections = []
    for number, page in enumerate(reader.pages, 1):
        text = _tidy(page.extract_text() or "")
        if text:
            # Page headings keep passages apart and tell the reader where a quote is (PDFs have no outline here).
            sections.append(Section([f"Page {number}"], text))
    if not sections:
        raise ExtractError("the PDF has no extractable text (scanned images need OCR first)")
    if not title:
        title = sections[0].text.split("\n", 1)[0].strip()[:120]
    return Extracted(title, sections)


def docx(data: bytes) -> Extracted:
    import docx as python_docx  # python-docx; imported on first use
    from docx.table import Table

    document = python_docx.Document(io.BytesIO(data))
    doc = _Builder()
    title = (document.core_properties.title or "").strip()
    for block in document.iter_inner_content():  # paragraphs and tables in reading order
        if isinstance(block, Table):
            for row in block.rows:
                doc.add_line(" | ".join(cell.text.strip() for cell in row.cells))
            doc.add_line("")
            continue
        style = (block.style.name if block.style is not None else "") or ""
        text = block.text.strip()
        level = _docx_heading_level(style)
        if style == "Title" and text:
            title = title or text
        elif level and text:
            doc.heading(level, text)
        else:
            doc.add_line(text)
    return Extracted(title or doc.first_h1, doc.finish())


def _docx_heading_level(style: str) -> int:
    found = re.match(r"Heading (\d)$", style)
    return int(found.group(1)) if found else 0


_EXTRACTORS: dict[str, Callable[[bytes], Extracted]] = {
    "markdown": markdown,
    "text": plain_text,
    "html": html,
    "pdf": pdf,
    "docx": docx,
}
