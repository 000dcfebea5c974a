"""Hybrid ranking (``ranking = "hybrid"``): BM25 and embedding similarity, fused by reciprocal rank.

Indexing: after the text pass, every passage without a vector is embedded (title, headings and body) and its
unit-length float32 vector stored in the index's ``vectors`` table. Passages of a changed document are new rows
(their vectors went with the old rows), so only changed documents are embedded again, and an index built
without embeddings gets its vectors on the first hybrid run.

Searching: the BM25 ranking (the same as ``ranking = "bm25"``) and a vector ranking (brute-force cosine over all
passage vectors, held in memory and reloaded when the index's vectors change) each give their best readable
documents; reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009: score = Σ 1 / (k + rank), k = 60)
orders their union. A document found by meaning alone, sharing no word with the query, still gets a place.
Brute force is a matrix-vector product: ~1.5 KB of memory and a few microseconds per passage, fine up to about
100,000 passages.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from patchbay.connectors.documents.embeddings import Embedder
from patchbay.connectors.documents.index import Hit, Index, Ranked, Writer

if TYPE_CHECKING:
    from patchbay.connectors.documents.ingest import Progress

RRF_K = 60
DEPTH = 100
"""Documents taken from each ranking before fusion (more when a page reaches deeper): pages within the first
DEPTH results are cut from one fused order, so they neither repeat nor skip documents."""
MIN_SIMILARITY = 0.2
"""Passages less similar than this to the query are not vector candidates (for all-MiniLM-L6-v2 unrelated text
scores about 0-0.15): a search still ends instead of listing the whole index by decreasing irrelevance."""
RELOAD_SHARE = 0.1
EMBED_ROWS = 64  # passages per transaction of the embedding pass: a crash loses little, a stop waits little
MODEL_KEY = "vectors_model"
GENERATION_KEY = "vectors_generation"


class HybridSearch:
    """Searches one :class:`Index` with BM25 and vectors; safe to call from several threads at once."""

    def __init__(self, index: Index, embedder: Embedder) -> None:
        self.index = index
        self.embedder = embedder
        self._lock = threading.Lock()
        self._generation: str | None = None
        self._loaded_at = 0.0
        self._load_seconds = 0.0
        self._ids: NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self._matrix: NDArray[np.float32] = np.empty((0, embedder.dimensions), dtype=np.float32)

    def search(
        self, query: str, terms: list[str], tokens: frozenset[str] | None, limit: int, offset: int
    ) -> tuple[list[Hit], bool]:
        """One page of documents, best first, trimmed to what ``tokens`` may read; and whether more follow."""
        conn = self.index._reader()
        depth = max(DEPTH, offset + limit + 1)
        lexical, match = self.index.lexical(conn, terms, tokens, depth) if terms else ([], "")
        semantic = self.semantic(conn, self.embedder.query(query), tokens, depth)
        fused = fuse([lexical, semantic])
        return self.index.hits(conn, fused[offset : offset + limit], match), len(fused) > offset + limit

    def semantic(
        self, conn: sqlite3.Connection, vector: NDArray[np.float32], tokens: frozenset[str] | None, want: int
    ) -> list[Ranked]:
        """Up to ``want`` readable documents by their best passage's cosine similarity to ``vector``."""
        ids, matrix = self.vectors(conn)
        if not len(ids):
            return []
        scores = matrix @ vector
        close = np.flatnonzero(scores >= MIN_SIMILARITY)
        batch = max(want * 4, 50)
        while True:
            top = close[np.argpartition(-scores[close], batch - 1)[:batch]] if len(close) > batch else close
            ordered = top[np.argsort(-scores[top], kind="stable")]
            found = self.index.readable_docs(conn, ids[ordered].tolist(), tokens)
            if len(found) >= want or len(top) == len(close):
                return found[:want]
            batch *= 4

    def vectors(self, conn: sqlite3.Connection) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The passage ids and vectors, reloaded from the index when they changed.

        While an indexing run embeds, they change every few seconds; a reload of a large index takes a while
        (~1 s per 100,000 passages), so a reload waits until RELOAD_SHARE of the time since the last one would
        have gone to reloading. Until then searches use the previous vectors: a passage's vector may be missing
        or outdated for a moment, never a document's access list (that is read with every search).
        """
        with self._lock:
            conn.execute("BEGIN")  # one snapshot for the generation and the rows
            try:
                meta = dict(
                    conn.execute("SELECT key, value FROM meta WHERE key IN (?, ?)", (MODEL_KEY, GENERATION_KEY))
                )
                generation = f"{meta.get(MODEL_KEY)}/{meta.get(GENERATION_KEY)}"
                started = time.monotonic()
                due = self._generation is None or started - self._loaded_at >= self._load_seconds / RELOAD_SHARE
                if generation != self._generation and due:
                    self._ids, self._matrix = self._load(conn, meta.get(MODEL_KEY))
                    self._generation = generation
                    self._loaded_at = time.monotonic()
                    self._load_seconds = self._loaded_at - started
            finally:
                conn.execute("COMMIT")
            return self._ids, self._matrix

    def _load(self, conn: sqlite3.Connection, model: str | None) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        width = self.embedder.dimensions * 4
        if model != self.embedder.name:  # vectors of another model (a run with the new one will replace them)
            return np.empty(0, dtype=np.int64), np.empty((0, self.embedder.dimensions), dtype=np.float32)
        rows = [(chunk, blob) for chunk, blob in conn.execute("SELECT chunk, vec FROM vectors") if len(blob) == width]
        ids = np.fromiter((chunk for chunk, _ in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(blob for _, blob in rows), dtype=np.float32).reshape(
            -1, self.embedder.dimensions
        )
        return ids, matrix


def fuse(rankings: Iterable[list[Ranked]]) -> list[Ranked]:
    """Reciprocal rank fusion of document rankings. A document keeps the passage of the first ranking that has
    it (BM25 first: its snippet shows the query's words)."""
    scores: dict[str, float] = {}
    first: dict[str, Ranked] = {}
    for ranking in rankings:
        for rank, ranked in enumerate(ranking, start=1):
            doc_id = ranked[1]
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (RRF_K + rank)
            first.setdefault(doc_id, ranked)
    order = sorted(scores, key=lambda doc_id: -scores[doc_id])  # stable: ties keep BM25's order
    return [first[doc_id] for doc_id in order]


class PassageEmbedder:
    """The embedding pass of an indexing run: vectors for every passage that has none."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def fill(self, writer: Writer, progress: Progress, stop: threading.Event) -> int:
        """Embed the passages without a vector; returns how many were embedded. Stops early (keeping what is
        done) when ``stop`` is set; the next run goes on from there."""
        conn = writer.conn
        with writer.batch():
            stored = conn.execute("SELECT value FROM meta WHERE key = ?", (MODEL_KEY,)).fetchone()
            if stored is None or stored[0] != self.embedder.name:
                conn.execute("DELETE FROM vectors")  # another model's vectors cannot be compared with this one's
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (MODEL_KEY, self.embedder.name))
        progress.add_total(self.missing(writer))
        done, last = 0, 0
        while not stop.is_set():
            rows = conn.execute(
                "SELECT c.id, d.title, c.heading, c.body FROM chunks c JOIN documents d ON d.id = c.doc "
                "WHERE c.id > ? AND NOT EXISTS (SELECT 1 FROM vectors v WHERE v.chunk = c.id) ORDER BY c.id LIMIT ?",
                (last, EMBED_ROWS),
            ).fetchall()
            if not rows:
                break
            # Outside a transaction: the model takes its time, the write lock is held only to store the result.
            vectors = self.embedder.passages([passage_text(title, heading, body) for _, title, heading, body in rows])
            with writer.batch():
                conn.executemany(
                    "INSERT OR REPLACE INTO vectors (chunk, vec) VALUES (?, ?)",
                    [(row[0], vector.tobytes()) for row, vector in zip(rows, vectors, strict=True)],
                )
            for _ in rows:
                progress.advance("embedding passages")
            done += len(rows)
            last = rows[-1][0]
        return done

    @staticmethod
    def missing(writer: Writer) -> int:
        """Passages without a vector (for a progress total)."""
        row = writer.conn.execute(
            "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM vectors v WHERE v.chunk = c.id)"
        ).fetchone()
        return int(row[0])


def passage_text(title: str, heading: str, body: str) -> str:
    """What is embedded for a passage: the document's title, then its headings unless the body starts with them,
    then the body (the model reads the first 256 word pieces, roughly 1,000 characters)."""
    parts = [title] if title and not body.lstrip("# ").startswith(title) else []
    if heading and heading.split(" > ")[-1] not in body[:300]:
        parts.append(heading)
    parts.append(body)
    return "\n".join(parts)
