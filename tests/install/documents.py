"""A small document folder in the formats the documents connector reads, written the way users' files are: a
Markdown page, an HTML page, a Word file (python-docx) and a PDF (a hand-written one-page PDF with a text layer).
Each format goes through a different runtime dependency of the clean install (pypdf, python-docx/lxml)."""

from __future__ import annotations

from pathlib import Path

import docx

# One distinctive word per file, so a search proves that file was read.
WORDS = {"leave.md": "sabbatical", "travel.html": "per-diem", "security.docx": "passkeys", "expenses.pdf": "receipts"}


def _pdf(text: str) -> bytes:
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def write_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "leave.md").write_text(
        "# Leave\n\nEveryone may take a sabbatical of three months after five years.\n", encoding="utf-8"
    )
    (folder / "travel.html").write_text(
        "<html><head><title>Travel</title></head><body><h1>Travel</h1>"
        "<p>The per-diem for meals abroad is 60 euros.</p></body></html>",
        encoding="utf-8",
    )
    document = docx.Document()
    document.add_heading("Security", level=1)
    document.add_paragraph("Sign in with passkeys on every company laptop.")
    document.save(str(folder / "security.docx"))
    (folder / "expenses.pdf").write_bytes(_pdf("Expenses: keep all receipts for ten years."))
    return folder
