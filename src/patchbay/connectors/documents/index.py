"""The search index: one SQLite file per documents connector, FTS5 with BM25 ranking.

The index is derived data (it can always be rebuilt from the sources), so it keeps its own schema instead of
Alembic migrations: ``PRAGMA user_version`` names the layout, and a file with another layout is rebuilt.
WAL mode lets searches run while an indexing run writes.

Tables: ``documents`` (one row per document: public id, source, change-detection fields, title, url, access
list), ``chunks`` (passages under their heading path) with the external-content FTS5 table ``chunks_fts`` kept
in step by triggers, and ``skipped`` (files that could not be read, so they are not retried until they change).

With hybrid ranking, ``vectors`` holds one embedding per passage (float32, unit length), deleted with its passage
(foreign key cascade), and ``meta`` counts changes to it (``vectors_generation``, kept by triggers) so searches
know when to reload their in-memory copy. Both are added to any index when missing (no rebuild), so an index
built without embeddings is reused: the next run embeds the passages that have no vector.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from patchbay.connectors.documents.access import may_read
from patchbay.connectors.documents.chunking import Chunk

SCHEMA_VERSION = 2
# Column weights for bm25(): a word in the title counts most, then the heading path, then the passage.
BM25_WEIGHTS = (6.0, 3.0, 1.0)
SNIPPET_TOKENS = 24
MAX_QUERY_TERMS = 32

_SCHEMA = """
CREATE TABLE documents (
    id INTEGER PRIMARY KEY,
    doc_id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    path TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    url TEXT NOT NULL,
    updated_at TEXT,
    mtime_ns INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    sha TEXT NOT NULL,
    acl TEXT NOT NULL DEFAULT '',
    public INTEGER NOT NULL DEFAULT 0,
    chars INTEGER NOT NULL DEFAULT 0,
    UNIQUE (source, key)
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    doc INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    title TEXT NOT NULL,
    heading TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX chunks_doc ON chunks(doc, seq);
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    title, heading, body,
    content='chunks', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, title, heading, body) VALUES (new.id, new.title, new.heading, new.body);
END;
CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, title, heading, body)
    VALUES ('delete', old.id, old.title, old.heading, old.body);
END;
CREATE TABLE skipped (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    path TEXT NOT NULL,
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (source, key)
);
"""

# Added with IF NOT EXISTS to indexes of this layout, whatever built them (see the module docstring).
_VECTOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    chunk INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
    vec BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('vectors_generation', '0');
CREATE TRIGGER IF NOT EXISTS vectors_ai AFTER INSERT ON vectors BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'vectors_generation';
END;
CREATE TRIGGER IF NOT EXISTS vectors_ad AFTER DELETE ON vectors BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'vectors_generation';
END;
"""

# Words that match most documents: dropped from a query that has other words (faster, and bm25 gives them
# almost no weight anyway).
STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "how", "i", "in", "is", "it",
    "of", "on", "or", "that", "the", "this", "to", "was", "what", "when", "where", "which", "who", "why", "will",
    "with", "do", "does", "can", "our", "we", "you", "your",
})  # fmt: skip
_WORD = re.compile(r"\w+", re.UNICODE)
_TOP_CHUNKS = "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?"
_COUNT = "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?"
# A word in more passages than this is "common" for query planning (see Index._plan).
COMMON_SHARE = 0.02
COMMON_MIN_ROWS = 1000


Ranked = tuple[int, str, str, str]
"""A ranked document: (its best passage's id, doc_id, title, url)."""


@dataclass(frozen=True, slots=True)
class Known:
    """What the index holds about one document, for change detection."""

    id: int
    mtime_ns: int
    size: int
    sha: str
    acl: str
    public: bool
    url: str
    title: str


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    doc_id: str
    source: str
    key: str
    path: str
    kind: str
    title: str
    url: str
    updated_at: str | None
    mtime_ns: int
    size: int
    sha: str
    acl: tuple[str, ...]
    public: bool
    chars: int


@dataclass(frozen=True, slots=True)
class Hit:
    doc_id: str
    title: str
    url: str
    snippet: str


@dataclass(frozen=True, slots=True)
class StoredDocument:
    doc_id: str
    source: str
    kind: str
    title: str
    url: str
    updated_at: str | None
    acl: tuple[str, ...]
    public: bool
    text: str


def query_terms(query: str) -> list[str]:
    """The words of a free-text query, lowercased, stopwords dropped (unless nothing else is left), at most
    MAX_QUERY_TERMS. Each becomes a quoted FTS5 string, so no query text is ever read as FTS5 syntax."""
    words = [w.lower() for w in _WORD.findall(query)]
    kept = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(kept))[:MAX_QUERY_TERMS]


def _any(terms: list[str]) -> str:
    return " OR ".join(f'"{t}"' for t in terms)


def _all(terms: list[str]) -> str:
    return " AND ".join(f'"{t}"' for t in terms)


class Index:
    """The index file. Readers get one connection per thread; writes go through :meth:`writer` (one at a time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._frequency: dict[str, int] = {}
        self._frequency_total = -1
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn:  # sqlite3's own context manager would leave it open
            self._prepare(conn)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            self._rebuild(conn)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"vectors", "meta"} <= tables:  # checked first: a no-op write would wait for a running indexer
            conn.execute("BEGIN")
            for statement in _statements(_VECTOR_SCHEMA):
                conn.execute(statement)
            conn.execute("COMMIT")

    def _rebuild(self, conn: sqlite3.Connection) -> None:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        conn.execute("BEGIN")
        # Another layout (an older Patchbay): start over; the next indexing run fills it again.
        if "chunks_fts" in names:
            conn.execute("DROP TABLE chunks_fts")  # also drops its shadow tables
        for name in sorted(n for n in names if not n.startswith(("chunks_fts", "sqlite_"))):
            conn.execute(f'DROP TABLE IF EXISTS "{name}"')
        for statement in _statements(_SCHEMA):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute(
            "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('rank', ?)",
            (f"bm25({', '.join(str(w) for w in BM25_WEIGHTS)})",),
        )
        conn.execute("COMMIT")

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._guard:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        with self._guard:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- writing ---------------------------------------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator[Writer]:
        conn = self._connect()
        try:
            yield Writer(conn)
        finally:
            conn.close()

    # -- reading ---------------------------------------------------------------------------------------------

    def search(
        self, terms: list[str], tokens: frozenset[str] | None, limit: int, offset: int
    ) -> tuple[list[Hit], bool]:
        """One page of documents for an FTS5 ``match``, best first, trimmed to what ``tokens`` may read.

        Returns the hits and whether more follow. The best passages are taken from FTS5 alone (its ``ORDER BY
        rank LIMIT`` path is several times faster than ranking a join), then grouped by document and filtered by
        access; when too few documents remain, a larger batch of passages is taken.
        """
        conn = self._reader()
        found, match = self.lexical(conn, terms, tokens, offset + limit + 1)
        page = found[offset : offset + limit]
        return self.hits(conn, page, match), len(found) > offset + limit

    def lexical(
        self, conn: sqlite3.Connection, terms: list[str], tokens: frozenset[str] | None, want: int
    ) -> tuple[list[Ranked], str]:
        """At least ``want`` readable documents (when that many match) in BM25 order, and the FTS5 query that
        ranked them (for snippets)."""
        found: list[Ranked] = []
        match = ""
        for match in self._plan(conn, terms):
            batch = max(want * 4, 50)
            while True:
                chunks = [r[0] for r in conn.execute(_TOP_CHUNKS, (match, batch))]
                more = self.readable_docs(conn, chunks, tokens)
                if len(more) >= want or len(chunks) < batch:
                    break
                batch *= 4
            known = {doc_id for _, doc_id, _, _ in found}
            found += [hit for hit in more if hit[1] not in known]
            if len(found) >= want:
                break
        return found, match

    def hits(self, conn: sqlite3.Connection, page: list[Ranked], match: str) -> list[Hit]:
        """Search results for (best passage, document) pairs: the snippet shows the query's words in the passage,
        or, for a passage found by meaning alone (no word matches), its first words."""
        best = [chunk for chunk, *_ in page]
        snippets: dict[int, str] = {}
        for part in _batches(best) if match else ():
            marks = ",".join("?" * len(part))
            snippets.update(
                conn.execute(
                    f"SELECT rowid, snippet(chunks_fts, -1, '', '', '…', {SNIPPET_TOKENS}) FROM chunks_fts "  # noqa: S608
                    f"WHERE chunks_fts MATCH ? AND rowid IN ({marks})",
                    (match, *part),
                ).fetchall()
            )
        for part in _batches([chunk for chunk in best if chunk not in snippets]):
            marks = ",".join("?" * len(part))
            rows = conn.execute(f"SELECT id, body FROM chunks WHERE id IN ({marks})", part)  # noqa: S608
            snippets.update((chunk, _opening(body)) for chunk, body in rows)
        return [
            Hit(doc_id, title, url, " ".join(snippets.get(chunk, "").split())) for chunk, doc_id, title, url in page
        ]

    @staticmethod
    def readable_docs(conn: sqlite3.Connection, chunks: list[int], tokens: frozenset[str] | None) -> list[Ranked]:
        """(best chunk, doc_id, title, url) per readable document, in the order of ``chunks`` (best first)."""
        rows: dict[int, tuple[int, str, str, str, str, int]] = {}
        for part in _batches(chunks):
            marks = ",".join("?" * len(part))
            for row in conn.execute(
                "SELECT c.id, d.id, d.doc_id, d.title, d.url, d.acl, d.public "  # noqa: S608
                f"FROM chunks c JOIN documents d ON d.id = c.doc WHERE c.id IN ({marks})",
                part,
            ):
                rows[row[0]] = row[1:]
        seen: set[int] = set()
        found = []
        for chunk in chunks:
            row = rows.get(chunk)
            if row is None or row[0] in seen:
                continue
            seen.add(row[0])
            if may_read(row[4].split(), bool(row[5]), tokens):
                found.append((chunk, row[1], row[2], row[3]))
        return found

    def _plan(self, conn: sqlite3.Connection, terms: list[str]) -> list[str]:
        """The FTS5 queries to run, in order, for ``terms``.

        Ranking costs time per matching passage, and a word found in a large share of a big index (one no
        stopword list knows) would make a search rank most of it while adding almost nothing to the order (its
        BM25 weight is near zero). So: when some words are common and others are not, rank by the others; when
        all are common, first the passages holding all of them, then any of them.
        """
        if len(terms) < 2:
            return [_any(terms)]
        total, frequency = self._frequencies(conn, terms)
        ceiling = max(COMMON_MIN_ROWS, total * COMMON_SHARE)
        rare = [t for t in terms if frequency[t] <= ceiling]
        if len(rare) == len(terms):
            return [_any(terms)]
        if rare:
            return [_any(rare)]
        return [_all(terms), _any(terms)]

    def _frequencies(self, conn: sqlite3.Connection, terms: list[str]) -> tuple[int, dict[str, int]]:
        """Passages in the index and per term (cached until the index changes; counting is cheap next to
        ranking: no scores are computed)."""
        total = int(conn.execute("SELECT coalesce(max(id), 0) FROM chunks").fetchone()[0])
        with self._guard:
            if self._frequency_total != total:
                self._frequency = {}
                self._frequency_total = total
            cached = dict(self._frequency)
        if total <= COMMON_MIN_ROWS:
            return total, dict.fromkeys(terms, 0)
        for term in terms:
            if term not in cached:
                cached[term] = int(conn.execute(_COUNT, (f'"{term}"',)).fetchone()[0])
        with self._guard:
            if len(self._frequency) < 10_000:
                self._frequency.update(cached)
        return total, cached

    def get(self, doc_id: str) -> StoredDocument | None:
        conn = self._reader()
        row = conn.execute(
            "SELECT id, doc_id, source, kind, title, url, updated_at, acl, public FROM documents WHERE doc_id = ?",
            (doc_id,),
        ).fetchone()
        if row is None:
            return None
        bodies = conn.execute("SELECT body FROM chunks WHERE doc = ? ORDER BY seq", (row[0],))
        text = "\n\n".join(body for (body,) in bodies if body)
        acl = tuple(row[7].split()) if row[7] else ()
        return StoredDocument(row[1], row[2], row[3], row[4], row[5], row[6], acl, bool(row[8]), text)

    def count(self) -> int:
        return int(self._reader().execute("SELECT count(*) FROM documents").fetchone()[0])

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())


class Writer:
    """One write connection; the caller groups work into transactions with :meth:`batch`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @contextmanager
    def batch(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def known(self, source: str) -> dict[str, Known]:
        rows = self.conn.execute(
            "SELECT key, id, mtime_ns, size, sha, acl, public, url, title FROM documents WHERE source = ?", (source,)
        )
        return {r[0]: Known(r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8]) for r in rows}

    def known_skipped(self, source: str) -> dict[str, tuple[int, int, str]]:
        rows = self.conn.execute("SELECT key, mtime_ns, size, reason FROM skipped WHERE source = ?", (source,))
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def sources(self) -> set[str]:
        rows = self.conn.execute("SELECT DISTINCT source FROM documents UNION SELECT DISTINCT source FROM skipped")
        return {r[0] for r in rows}

    def put(self, record: DocumentRecord, chunks: Sequence[Chunk], *, new: bool = False) -> None:
        """Insert or replace a document and its passages (``new``: the caller knows there is nothing to replace)."""
        if not new:
            self.conn.execute("DELETE FROM documents WHERE source = ? AND key = ?", (record.source, record.key))
            self.conn.execute("DELETE FROM skipped WHERE source = ? AND key = ?", (record.source, record.key))
        cursor = self.conn.execute(
            "INSERT INTO documents (doc_id, source, key, path, kind, title, url, updated_at, mtime_ns, size, sha, "
            "acl, public, chars) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.doc_id, record.source, record.key, record.path, record.kind, record.title, record.url,
                record.updated_at, record.mtime_ns, record.size, record.sha, " ".join(record.acl),
                int(record.public), record.chars,
            ),
        )  # fmt: skip
        doc = cursor.lastrowid
        self.conn.executemany(
            "INSERT INTO chunks (doc, seq, title, heading, body) VALUES (?, ?, ?, ?, ?)",
            [(doc, seq, record.title if seq == 0 else "", c.heading, c.body) for seq, c in enumerate(chunks)],
        )

    def touch(self, doc: int, mtime_ns: int, size: int) -> None:
        self.conn.execute("UPDATE documents SET mtime_ns = ?, size = ? WHERE id = ?", (mtime_ns, size, doc))

    def restamp(self, doc: int, url: str, acl: tuple[str, ...], public: bool) -> None:
        """A link or access change from the config: no need to re-read the file."""
        self.conn.execute(
            "UPDATE documents SET url = ?, acl = ?, public = ? WHERE id = ?", (url, " ".join(acl), int(public), doc)
        )

    def remove(self, docs: Iterable[int]) -> None:
        self.conn.executemany("DELETE FROM documents WHERE id = ?", [(d,) for d in docs])

    def remove_source(self, source: str) -> None:
        self.conn.execute("DELETE FROM documents WHERE source = ?", (source,))
        self.conn.execute("DELETE FROM skipped WHERE source = ?", (source,))

    def skip(self, source: str, key: str, path: str, mtime_ns: int, size: int, reason: str) -> None:
        self.conn.execute("DELETE FROM documents WHERE source = ? AND key = ?", (source, key))
        self.conn.execute(
            "INSERT OR REPLACE INTO skipped (source, key, path, mtime_ns, size, reason) VALUES (?, ?, ?, ?, ?, ?)",
            (source, key, path, mtime_ns, size, reason),
        )

    def forget_skipped(self, source: str, keys: Iterable[str]) -> None:
        self.conn.executemany("DELETE FROM skipped WHERE source = ? AND key = ?", [(source, k) for k in keys])

    def optimize(self) -> None:
        self.conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")


def _opening(body: str) -> str:
    """The first words of a passage, heading marks dropped, as long as an FTS5 snippet."""
    words = [w for w in body.split() if w.strip("#")]
    return " ".join(words[:SNIPPET_TOKENS]) + (" …" if len(words) > SNIPPET_TOKENS else "")


def _batches(ids: list[int], size: int = 900) -> Iterator[list[int]]:
    """SQLite limits the number of bound parameters: IN lists go in batches."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _statements(script: str) -> list[str]:
    """Split the schema into statements (triggers hold inner semicolons, ended by END;)."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.strip().splitlines():
        current.append(line)
        text = "\n".join(current).strip()
        in_trigger = text.upper().startswith("CREATE TRIGGER")
        if (in_trigger and text.upper().endswith("END;")) or (not in_trigger and text.endswith(";")):
            statements.append(text)
            current = []
    return statements
