"""The documents search index on its own: its file layout, rebuilding an older one, passages and snippets."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from patchbay.connectors.documents.chunking import Chunk
from patchbay.connectors.documents.index import SCHEMA_VERSION, DocumentRecord, Index


def record(key: str, title: str, *, acl: tuple[str, ...] = (), public: bool = False) -> DocumentRecord:
    return DocumentRecord(
        doc_id=f"kb:{key}", source="kb", key=key, path=f"{key}.md", kind="markdown", title=title,
        url=f"https://wiki.example.com/{key}", updated_at=None, mtime_ns=1, size=1, sha=key, acl=acl,
        public=public, chars=1,
    )  # fmt: skip


def put(index: Index, *documents: tuple[DocumentRecord, list[Chunk]]) -> None:
    with index.writer() as writer, writer.batch():
        for doc, chunks in documents:
            writer.put(doc, chunks)


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def titles(index: Index, words: str, tokens: frozenset[str] | None = None) -> list[str]:
    hits, _ = index.search(words.split(), tokens, 10, 0)
    return [hit.title for hit in hits]


def test_an_index_of_an_older_layout_is_rebuilt_and_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "docs.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE documents (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("CREATE VIRTUAL TABLE chunks_fts USING fts5(body)")
        conn.execute("INSERT INTO chunks_fts (body) VALUES ('stale passage')")
        # AUTOINCREMENT makes SQLite add its own sqlite_sequence table, which cannot be dropped.
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, note TEXT)")
        conn.execute("INSERT INTO runs (note) VALUES ('old')")
        conn.execute("PRAGMA user_version=1")
    index = Index(path)
    try:
        found = tables(path)
        assert {"documents", "chunks", "chunks_fts", "skipped", "vectors", "meta"} <= found
        assert "runs" not in found
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert conn.execute("SELECT count(*) FROM chunks_fts").fetchone()[0] == 0
        assert titles(index, "stale") == []
        put(index, (record("a", "Alpha"), [Chunk("Alpha", "Fresh passage.")]))
        assert titles(index, "fresh") == ["Alpha"]
    finally:
        index.close()
    again = Index(path)
    try:
        assert titles(again, "fresh") == ["Alpha"], "an index of this layout is opened as it is"
    finally:
        again.close()


def test_a_passage_found_by_meaning_alone_shows_its_opening_words(tmp_path: Path) -> None:
    index = Index(tmp_path / "docs.sqlite")
    try:
        long_body = "## Rota\n\n" + " ".join(f"word{n}" for n in range(30))
        put(
            index,
            (record("a", "Alpha"), [Chunk("Alpha", "# Alpha\n\nShort   text\nhere.")]),
            (record("b", "Beta"), [Chunk("Beta > Rota", long_body)]),
        )
        conn = index._reader()
        page = index.readable_docs(conn, [2, 1], None)
        assert [(doc_id, title) for _, doc_id, title, _ in page] == [("kb:b", "Beta"), ("kb:a", "Alpha")]
        snippets = [hit.snippet for hit in index.hits(conn, page, "")]
        opening = " ".join(["Rota", *(f"word{n}" for n in range(23))])
        assert snippets == [f"{opening} …", "Alpha Short text here."]
    finally:
        index.close()
