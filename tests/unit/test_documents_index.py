"""The documents search index on its own: its file layout, rebuilding an older one, passages and snippets."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from patchbay.connectors.documents.chunking import Chunk
from patchbay.connectors.documents.index import SCHEMA_VERSION, DocumentRecord, Index, query_terms


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


def test_an_opening_of_exactly_a_snippet_s_length_is_not_marked_as_cut(tmp_path: Path) -> None:
    index = Index(tmp_path / "docs.sqlite")
    try:
        exact = " ".join(["X", "marks", "the", "spot:"] + [f"step{n}" for n in range(20)])
        put(index, (record("a", "Map"), [Chunk("Map", exact)]))
        conn = index._reader()
        [hit] = index.hits(conn, index.readable_docs(conn, [1], None), "")
        assert hit.snippet == exact
    finally:
        index.close()


def test_a_snippet_shows_the_words_around_the_match_not_the_opening(tmp_path: Path) -> None:
    index = Index(tmp_path / "docs.sqlite")
    try:
        words = [f"word{n}" for n in range(60)]
        words[40] = "zeppelin"
        put(index, (record("a", "Alpha"), [Chunk("Alpha", " ".join(words))]))
        hits, more = index.search(["zeppelin"], None, 10, 0)
        [hit] = hits
        assert not more
        around = " ".join(words[29:53])
        assert hit.snippet == f"…{around}…", "24 words around the match, marked as cut at both ends"
    finally:
        index.close()


def test_a_passage_removed_between_ranking_and_snippets_gets_an_empty_snippet(tmp_path: Path) -> None:
    index = Index(tmp_path / "docs.sqlite")
    try:
        put(
            index,
            (record("a", "Alpha"), [Chunk("Alpha", "Kept passage.")]),
            (record("b", "Beta"), [Chunk("Beta", "Removed passage.")]),
        )
        conn = index._reader()
        page = index.readable_docs(conn, [1, 2], None)
        with index.writer() as writer, writer.batch():
            writer.remove([2])
        assert [(hit.title, hit.snippet) for hit in index.hits(conn, page, "")] == [
            ("Alpha", "Kept passage."),
            ("Beta", ""),
        ]
    finally:
        index.close()


def test_a_document_s_title_is_indexed_with_its_first_passage_only(tmp_path: Path) -> None:
    """The title column weighs most in BM25 (title, then headings, then text): it counts once per document."""
    path = tmp_path / "docs.sqlite"
    index = Index(path)
    try:
        chunks = [Chunk("Zeppelin handbook", "Envelope."), Chunk("Gas cells", "Cells."), Chunk("Crew", "Six.")]
        put(index, (record("a", "Zeppelin handbook"), chunks))
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT seq, title FROM chunks ORDER BY seq").fetchall()
        assert rows == [(0, "Zeppelin handbook"), (1, ""), (2, "")]
    finally:
        index.close()


def test_fetching_joins_the_passages_in_order_and_keeps_access_fields(tmp_path: Path) -> None:
    index = Index(tmp_path / "docs.sqlite")
    try:
        chunks = [Chunk("Leave", "# Leave\n\nFirst."), Chunk("Leave", ""), Chunk("Leave > Sick", "## Sick\n\nThird.")]
        put(
            index,
            (record("a", "Leave", acl=("role:hr", "user:alice"), public=True), chunks),
            (record("b", "Open"), [Chunk("Open", "Anyone.")]),
        )
        document = index.get("kb:a")
        assert document is not None
        assert document.text == "# Leave\n\nFirst.\n\n## Sick\n\nThird."
        assert (document.acl, document.public) == (("role:hr", "user:alice"), True)
        assert (document.doc_id, document.source, document.kind, document.title) == ("kb:a", "kb", "markdown", "Leave")
        other = index.get("kb:b")
        assert other is not None and (other.acl, other.public, other.text) == ((), False, "Anyone.")
        assert index.get("kb:missing") is None
    finally:
        index.close()


def test_query_terms_drop_stopwords_unless_nothing_else_is_left() -> None:
    assert query_terms("What is the Zeppelin's range? The zeppelin!") == ["zeppelin", "s", "range"]
    assert query_terms("What is it") == ["what", "is", "it"]
    assert query_terms("?!") == []


def test_when_every_word_is_common_passages_holding_all_of_them_come_first(tmp_path: Path) -> None:
    """Past 1,000 passages a word in more than 1,000 of them is common. With a rarer word, the common one is left
    out of the ranking; when all are common, passages holding all of them come first, then those holding any."""
    index = Index(tmp_path / "docs.sqlite")
    try:
        put(
            index,
            (record("filler", "Filler"), [Chunk("", f"paperwork {n}") for n in range(3000)]),
            (record("series-a", "Series A"), [Chunk("", f"alpha {n}") for n in range(1001)]),
            (record("report", "Alpha report"), [Chunk("", "alpha notes")]),
            *((record(f"both{n}", f"Both {n}"), [Chunk("", "alpha beta")]) for n in range(3)),
            *((record(f"beta{n}", f"Beta {n}"), [Chunk("", f"beta {n}")]) for n in range(2)),
        )
        rare_beta = titles(index, "alpha beta")
        assert sorted(rare_beta) == ["Beta 0", "Beta 1", "Both 0", "Both 1", "Both 2"], "ranked by beta alone"
        put(index, (record("series-b", "Series B"), [Chunk("", f"beta {n}") for n in range(1001)]))
        both_common = titles(index, "alpha beta")
        assert sorted(both_common[:3]) == ["Both 0", "Both 1", "Both 2"]
        assert both_common[3] == "Alpha report", "then by any of the words: the title match ranks first"
        assert sorted(both_common[4:]) == ["Beta 0", "Beta 1", "Series A", "Series B"]
    finally:
        index.close()


def open_files(path: Path) -> int:
    """How many of this process's file descriptors are open on ``path`` (Linux: /proc/self/fd)."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if fd.exists() and fd.resolve() == path.resolve())


def test_searches_on_one_thread_share_one_read_connection(tmp_path: Path) -> None:
    path = tmp_path / "docs.sqlite"
    index = Index(path)
    try:
        put(index, (record("a", "Alpha"), [Chunk("Alpha", "Shared words.")]))
        assert titles(index, "shared") == ["Alpha"]
        opened = open_files(path)
        for _ in range(5):
            assert titles(index, "shared") == ["Alpha"]
        assert open_files(path) <= opened, "no new connection, so no new file descriptor, per search"
    finally:
        index.close()


def test_a_closed_index_opens_a_new_read_connection_when_searched_again(tmp_path: Path) -> None:
    index = Index(tmp_path / "docs.sqlite")
    put(index, (record("a", "Alpha"), [Chunk("Alpha", "Reopened words.")]))
    assert titles(index, "reopened") == ["Alpha"]
    index.close()
    try:
        assert titles(index, "reopened") == ["Alpha"]
    finally:
        index.close()


def test_an_index_opens_while_an_indexing_run_holds_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "docs.sqlite"
    index = Index(path)
    try:
        with index.writer() as writer, writer.batch():
            writer.put(record("a", "Alpha"), [Chunk("Alpha", "Pending words.")])
            second = Index(path)  # a server starting while `patchbay index` runs: no write, so no wait
            try:
                assert titles(second, "pending") == [], "the run's writes are not committed yet"
            finally:
                second.close()
        assert titles(index, "pending") == ["Alpha"]
    finally:
        index.close()


def test_the_index_folder_is_made_when_missing(tmp_path: Path) -> None:
    index = Index(tmp_path / "state" / "indexes" / "docs.sqlite")
    try:
        assert index.count() == 0
    finally:
        index.close()


def test_a_page_says_more_follow_only_when_they_do(tmp_path: Path) -> None:
    index = Index(tmp_path / "docs.sqlite")
    try:
        put(index, *((record(f"d{n}", f"Doc {n}"), [Chunk("", f"ledger {n}")]) for n in range(10)))
        hits, more = index.search(["ledger"], None, 10, 0)
        assert (len(hits), more) == (10, False)
        put(index, (record("d10", "Doc 10"), [Chunk("", "ledger 10")]))
        hits, more = index.search(["ledger"], None, 10, 0)
        assert (len(hits), more) == (10, True)
        hits, more = index.search(["ledger"], None, 10, 10)
        assert (len(hits), more) == (1, False)
    finally:
        index.close()


def test_a_page_trimmed_by_access_still_says_more_follow(tmp_path: Path) -> None:
    """The best 50 passages hold 40 hidden documents and 10 readable ones: a full page, but more readable ones
    follow further down, so the next batch of passages is read before answering."""
    index = Index(tmp_path / "docs.sqlite")
    try:
        hidden = (
            (record(f"board{n}", f"Minutes {n}", acl=("role:board",)), [Chunk("", "budget budget budget")])
            for n in range(40)
        )
        readable = (
            (record(f"open{n}", f"Canteen {n}"), [Chunk("", f"The canteen menu {n} mentions the budget once.")])
            for n in range(15)
        )
        put(index, *hidden, *readable)
        first, more = index.search(["budget"], None, 10, 0)
        assert [hit.title.split()[0] for hit in first] == ["Canteen"] * 10
        assert more
        rest, more = index.search(["budget"], None, 10, 10)
        assert [hit.title.split()[0] for hit in rest] == ["Canteen"] * 5
        assert not more
    finally:
        index.close()


def test_a_word_in_exactly_a_thousand_passages_still_ranks(tmp_path: Path) -> None:
    """Common means in more than 1,000 passages (once the index holds more than 1,000)."""
    index = Index(tmp_path / "docs.sqlite")
    try:
        put(
            index,
            (record("filler", "Filler"), [Chunk("", f"paperwork {n}") for n in range(3000)]),
            (record("series-a", "Series A"), [Chunk("", f"alpha {n}") for n in range(1000)]),
            (record("beta", "Beta"), [Chunk("", "beta")]),
        )
        assert sorted(titles(index, "alpha beta")) == ["Beta", "Series A"]
    finally:
        index.close()


def test_putting_a_document_again_replaces_it(tmp_path: Path) -> None:
    index = Index(tmp_path / "docs.sqlite")
    try:
        put(index, (record("a", "Alpha"), [Chunk("Alpha", "First draft."), Chunk("Alpha", "Appendix.")]))
        put(index, (record("a", "Alpha"), [Chunk("Alpha", "Final text.")]))
        assert (index.count(), titles(index, "draft"), titles(index, "final")) == (1, [], ["Alpha"])
        document = index.get("kb:a")
        assert document is not None and document.text == "Final text."
    finally:
        index.close()


def test_readable_documents_ranked_below_thousands_of_hidden_ones_are_found(tmp_path: Path) -> None:
    """Passage ids go to SQLite in batches (it limits bound parameters): every batch is read."""
    index = Index(tmp_path / "docs.sqlite")
    try:
        hidden = (
            (record(f"board{n}", f"Minutes {n}", acl=("role:board",)), [Chunk("", "budget budget budget")])
            for n in range(2000)
        )
        readable = (
            (record(f"open{n}", f"Canteen {n}"), [Chunk("", "The canteen mentions the budget.")]) for n in range(3)
        )
        put(index, *hidden, *readable)
        assert sorted(titles(index, "budget")) == ["Canteen 0", "Canteen 1", "Canteen 2"]
        assert len(titles(index, "budget", frozenset({"role:board"}))) == 10
    finally:
        index.close()


def test_a_page_far_down_the_results_is_served(tmp_path: Path) -> None:
    index = Index(tmp_path / "docs.sqlite")
    try:
        put(index, *((record(f"d{n}", f"Doc {n}"), [Chunk("", f"ledger {n}")]) for n in range(215)))
        seen: list[str] = []
        for offset in range(0, 220, 10):
            hits, more = index.search(["ledger"], None, 10, offset)
            seen += [hit.doc_id for hit in hits]
            assert more == (offset + 10 < 215)
        assert sorted(seen) == sorted(f"kb:d{n}" for n in range(215))
    finally:
        index.close()


def _open_handles(path: Path) -> int:
    """How many of this process's file descriptors point at ``path`` (Linux's /proc)."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path.resolve()))


def test_opening_an_index_keeps_no_connection_until_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "docs.sqlite"
    index = Index(path)  # creates the file and its tables
    again = Index(path)  # finds them ready
    assert _open_handles(path) == 0
    index.search(["anything"], None, 5, 0)
    assert _open_handles(path) == 1  # the reader's own, kept for the next search, until close
    index.close()
    again.close()
    assert _open_handles(path) == 0
