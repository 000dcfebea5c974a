"""Text extraction for each supported file type, and passages that keep their headings."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.documents import build
from patchbay.connectors.documents.chunking import chunk_sections
from patchbay.connectors.documents.extract import ExtractError, Section, extract


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("corpus"))


def read(corpus: Path, rel: str, kind: str) -> tuple[str, list[tuple[list[str], str]]]:
    extracted = extract(kind, (corpus / rel).read_bytes(), "fallback")
    return extracted.title, [(s.headings, s.text) for s in extracted.sections]


def test_markdown_takes_front_matter_title_and_heading_paths(corpus: Path) -> None:
    title, sections = read(corpus, "guides/expenses.md", "markdown")
    assert title == "Expense policy"
    assert [h for h, _ in sections] == [["Expenses"], ["Expenses", "Hotels"], ["Expenses", "Meals"]]
    assert "160 pounds" in sections[1][1]
    assert "# not a heading" in sections[2][1], "a '#' line inside a fenced block is code, not a heading"


def test_html_uses_title_tag_and_drops_scripts_styles_and_navigation(corpus: Path) -> None:
    title, sections = read(corpus, "guides/remote-work.html", "html")
    assert title == "Remote work guide"
    assert [h for h, _ in sections] == [["Working remotely"], ["Working remotely", "Equipment"]]
    text = " ".join(t for _, t in sections)
    assert "four days" in text and "Monitor" in text
    assert "never indexed" not in text and "color" not in text and "Home | Guides" not in text


def test_html_without_title_tag_falls_back_to_first_h1() -> None:
    extracted = extract("html", b"<h1>Travel &amp; visas</h1><p>Apply early.</p>", "fallback")
    assert extracted.title == "Travel & visas"


def test_plain_text_title_is_its_first_line(corpus: Path) -> None:
    title, sections = read(corpus, "guides/glossary.txt", "text")
    assert title == "Glossary of terms"
    assert "Global Wind Organisation" in sections[0][1]


def test_pdf_pages_become_sections_and_metadata_gives_the_title(corpus: Path) -> None:
    title, sections = read(corpus, "guides/quarterly-report.pdf", "pdf")
    assert title == "Quarterly report Q3"
    assert [h for h, _ in sections] == [["Page 1"], ["Page 2"]]
    assert "turbine inspections" in sections[0][1]
    assert "bridge inspection contracts" in sections[1][1]


def test_docx_heading_styles_and_tables_are_kept(corpus: Path) -> None:
    title, sections = read(corpus, "guides/warehouse-safety.docx", "docx")
    assert title == "Warehouse safety procedures"
    assert [h for h, _ in sections] == [
        ["Warehouse safety procedures"],
        ["Warehouse safety procedures", "Fire drills"],
    ]
    assert "Forklift operators" in sections[0][1]
    assert "Fire warden" in sections[1][1] and "Priya Natarajan" in sections[1][1]


@pytest.mark.parametrize(
    ("rel", "kind", "reason"),
    [
        ("guides/broken.pdf", "pdf", "not a readable pdf file"),
        ("guides/broken.docx", "docx", "not a readable docx file"),
    ],
)
def test_corrupt_files_raise_a_reason(corpus: Path, rel: str, kind: str, reason: str) -> None:
    with pytest.raises(ExtractError, match=reason):
        extract(kind, (corpus / rel).read_bytes(), "x")


def test_binary_bytes_are_not_taken_for_text() -> None:
    with pytest.raises(ExtractError, match="binary"):
        extract("text", b"\x00\x01\x02binary", "x")


def test_latin1_text_is_decoded_instead_of_failing() -> None:
    extracted = extract("text", "Caf\u00e9 opening hours".encode("latin-1"), "x")
    assert extracted.sections[0].text == "Caf\u00e9 opening hours"


def test_short_sections_share_a_passage_and_keep_their_headings() -> None:
    sections = [
        Section(["Leave"], ""),
        Section(["Leave", "Annual"], "28 days."),
        Section(["Leave", "Sick"], "Tell us."),
    ]
    [chunk] = chunk_sections(sections, 500)
    assert chunk.heading == "Leave; Leave > Annual; Leave > Sick"
    assert chunk.body == "# Leave\n\n## Annual\n\n28 days.\n\n## Sick\n\nTell us."


def test_a_section_larger_than_a_passage_is_split_under_its_heading() -> None:
    long_paragraph = " ".join(f"Sentence number {i} talks about leave." for i in range(200))
    sections = [Section(["Leave"], long_paragraph), Section(["Leave", "Sick leave"], "Tell your manager.")]
    chunks = chunk_sections(sections, 500)
    assert all(len(c.body) <= 500 + len("# Leave\n\n") for c in chunks)
    assert [c.heading for c in chunks].count("Leave") == len(chunks) - 1
    assert chunks[-1] == type(chunks[-1])("Leave > Sick leave", "## Sick leave\n\nTell your manager.")
    rebuilt = " ".join(c.body for c in chunks if c.heading == "Leave")
    assert rebuilt.split()[2:] == long_paragraph.split(), "splitting loses no words (after the '# Leave' line)"
