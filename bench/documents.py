"""Documents connector benchmark: index 100,000 generated documents, then search them.

Reports indexing throughput (documents/s, through the real folder path) and the index size on disk, then
`search` latency (p50/p95) at the index and through the full `/mcp` path of a real `patchbay serve`. Run as part
of `python -m bench` (item "documents") or alone: `python -m bench.documents [--docs N] [--queries N]`.

`--hybrid` measures `ranking = "hybrid"` instead (needs the documents-embeddings extra): indexing with embeddings
on a smaller corpus (default 2,000 documents: embedding runs at tens of passages/s on 2 CPUs), search p50/p95
at the index (query embedding included) and through `/mcp`, and the brute-force vector scan alone at 100,000
passages.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import harness, wire

DEFAULT_DOCS = 100_000
DEFAULT_QUERIES = 1_000
DEFAULT_HYBRID_DOCS = 2_000
SCAN_PASSAGES = 100_000
CACHE = Path(tempfile.gettempdir()) / "patchbay-bench-documents"
TARGETS = {"docs_per_s": 1000.0, "index_p95_ms": 20.0, "mcp_p95_ms": 30.0}


@dataclass
class DocumentsResult:
    docs: int
    index_seconds: float
    index_bytes: int
    index_p50_ms: float
    index_p95_ms: float
    mcp_p50_ms: float | None
    mcp_p95_ms: float | None
    queries: int

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.index_seconds

    def as_dict(self) -> dict[str, Any]:
        return {**vars(self), "docs_per_s": self.docs_per_s}


def vocabulary(rng: random.Random, size: int = 6000) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ra", "to", "su", "vi", "de", "po", "an", "el", "or", "ul", "is", "ber"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def generate(folder: Path, count: int) -> None:
    """Deterministic Markdown documents (seeded), ~150 words each under two or three headings; cached."""
    stamp = folder / f".complete-{count}"
    if stamp.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    rng = random.Random(20250101)
    words = vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(words))]  # Zipf-like: a few common words, many rare ones
    for number in range(count):
        sub = folder / f"{number // 1000:03d}"
        if number % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        picked = rng.choices(words, weights, k=160)
        title = " ".join(picked[:4]).capitalize()
        body = [f"# {title}", ""]
        for section in range(rng.randint(2, 3)):
            start = 4 + section * 50
            body += [
                f"## {' '.join(picked[start : start + 3]).capitalize()}",
                "",
                " ".join(picked[start + 3 : start + 50]) + ".",
                "",
            ]
        (sub / f"doc-{number:06d}.md").write_text("\n".join(body))
    stamp.touch()


def queries(count: int) -> list[str]:
    rng = random.Random(7)
    words = vocabulary(random.Random(20250101))
    # Two or three words from the middle of the frequency range: what people look for is rarely the commonest
    # word, and never only unknown words.
    pool = words[50:3000]
    return [" ".join(rng.sample(pool, rng.randint(2, 3))) for _ in range(count)]


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def config_text(folder: Path, store: Path, ranking: str = "bm25") -> str:
    return (
        f'[server]\nname = "bench-documents"\n\n[store]\nurl = "sqlite:///{store}"\n\n'
        '[[connectors]]\nname = "docs"\ntype = "documents"\nprefix = ""\n'
        f'ranking = "{ranking}"\nurl_template = "https://intranet.example.com/{{path_noext}}"\n\n'
        f'[[connectors.sources]]\nname = "docs"\nfolder = "{folder}"\n'
    )


def index_folder(folder: Path, store: Path, ranking: str = "bm25") -> tuple[float, int, Any]:
    from patchbay.connectors.base import ConnectorEnv
    from patchbay.connectors.documents import DocumentsConnector, DocumentsOptions

    options = DocumentsOptions.model_validate(
        {
            "url_template": "https://intranet.example.com/{path_noext}",
            "sources": [{"name": "docs", "folder": str(folder)}],
            "ranking": ranking,
        }
    )
    connector = DocumentsConnector("docs", options, ConnectorEnv(base_dir=store.parent, store_url=f"sqlite:///{store}"))
    for stale in store.parent.glob(f"{store.stem}.documents-docs.sqlite*"):
        stale.unlink()
    connector.open_index()  # with hybrid ranking this loads the model: not part of the indexing time
    started = time.perf_counter()
    report = connector.reindex()
    seconds = time.perf_counter() - started
    assert connector._index is not None
    size = connector._index.size_bytes()
    return seconds, size, (connector, report)


def search_at_index(connector: Any, qs: list[str]) -> list[float]:
    from patchbay.connectors.documents.index import query_terms

    index = connector._index
    for q in qs[:50]:  # warm the page cache
        index.search(query_terms(q), None, 10, 0)
    samples = []
    for q in qs:
        started = time.perf_counter()
        index.search(query_terms(q), None, 10, 0)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def hybrid_search_at_index(connector: Any, qs: list[str]) -> list[float]:
    """Like search_at_index, through the hybrid ranking; every query is new (its embedding is computed)."""
    from patchbay.connectors.documents.index import query_terms

    hybrid = connector._hybrid
    for q in qs[:50]:
        hybrid.search(q, query_terms(q), None, 10, 0)
    samples = []
    for number, q in enumerate(qs):
        q = f"{q} {number}"  # never in the query-vector cache
        started = time.perf_counter()
        hybrid.search(q, query_terms(q), None, 10, 0)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def vector_scan(passages: int, repeats: int = 200) -> list[float]:
    """The brute-force part of a hybrid search alone (matrix-vector product and top-k), over random unit vectors."""
    import numpy as np

    rng = np.random.default_rng(1)
    matrix = rng.standard_normal((passages, 384), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    samples = []
    for _ in range(repeats):
        query = matrix[rng.integers(passages)]
        started = time.perf_counter()
        scores = matrix @ query
        top = np.argpartition(-scores, 400)[:400]
        top[np.argsort(-scores[top])]
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def search_through_mcp(config: Path, qs: list[str], logdir: Path, warmup: list[str] | None = None) -> list[float]:
    port = harness.free_port()
    argv = [
        sys.executable,
        "-m",
        "patchbay",
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log = logdir / "documents-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            harness.pinned(argv, harness.SERVER_CPU), stdout=out, stderr=subprocess.STDOUT, cwd=logdir
        )
    try:
        _wait_ready(port, proc, timeout=600)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"content-type": "application/json", "accept": wire.ACCEPT_BOTH, **wire.modern_headers("search")}
        meta = {
            "io.modelcontextprotocol/protocolVersion": wire.MODERN_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        }
        samples = []
        warm = qs[:50] if warmup is None else warmup
        for number, q in enumerate(warm + qs):
            body = json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": number,
                    "method": "tools/call",
                    "params": {"name": "search", "arguments": {"query": q}, "_meta": meta},
                }
            )
            started = time.perf_counter()
            conn.request("POST", "/mcp", body, headers)
            response = conn.getresponse()
            payload = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200 or b'"isError":false' not in payload:
                raise RuntimeError(f"search through /mcp failed: {response.status} {payload[:300]!r}")
            if number >= len(warm):
                samples.append(elapsed)
        conn.close()
        return samples
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"patchbay exited with {proc.returncode} before it was ready")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"patchbay not ready within {timeout:.0f} s")


def run(docs: int, n_queries: int, logdir: Path, *, through_mcp: bool = True) -> DocumentsResult:
    folder = CACHE / f"corpus-{docs}"
    print(f"[documents] generating {docs:,} documents into {folder} (cached) ...", flush=True)
    generate(folder, docs)
    work = Path(tempfile.mkdtemp(prefix="documents-", dir=logdir))
    store = work / "patchbay.db"
    print("[documents] indexing through the folder path ...", flush=True)
    seconds, size, (connector, report) = index_folder(folder, store)
    if report.indexed != docs:
        raise RuntimeError(f"indexed {report.indexed} of {docs} documents: {report.summary()}")
    qs = queries(n_queries)
    at_index = search_at_index(connector, qs)
    connector.close_index()
    at_mcp: list[float] = []
    if through_mcp:
        config = work / "patchbay.toml"
        config.write_text(config_text(folder, store))
        print("[documents] search through /mcp (real server) ...", flush=True)
        at_mcp = search_through_mcp(config, qs, work)
    return DocumentsResult(
        docs=docs,
        index_seconds=seconds,
        index_bytes=size,
        index_p50_ms=statistics.median(at_index),
        index_p95_ms=percentile(at_index, 95),
        mcp_p50_ms=statistics.median(at_mcp) if at_mcp else None,
        mcp_p95_ms=percentile(at_mcp, 95) if at_mcp else None,
        queries=n_queries,
    )


@dataclass
class HybridResult:
    docs: int
    passages: int
    load_seconds: float
    index_seconds: float
    index_bytes: int
    index_p50_ms: float
    index_p95_ms: float
    mcp_p50_ms: float | None
    mcp_p95_ms: float | None
    scan_p50_ms: float
    scan_p95_ms: float
    queries: int

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.index_seconds

    def as_dict(self) -> dict[str, Any]:
        return {**vars(self), "docs_per_s": self.docs_per_s}


def run_hybrid(docs: int, n_queries: int, logdir: Path, *, through_mcp: bool = True) -> HybridResult:
    from patchbay.connectors.documents import embeddings

    folder = CACHE / f"corpus-{docs}"
    print(f"[documents] generating {docs:,} documents into {folder} (cached) ...", flush=True)
    generate(folder, docs)
    work = Path(tempfile.mkdtemp(prefix="documents-hybrid-", dir=logdir))
    store = work / "patchbay.db"
    started = time.perf_counter()
    embeddings.load()
    load_seconds = time.perf_counter() - started
    print("[documents] indexing with embeddings (hybrid ranking) ...", flush=True)
    seconds, size, (connector, report) = index_folder(folder, store, "hybrid")
    if report.indexed != docs:
        raise RuntimeError(f"indexed {report.indexed} of {docs} documents: {report.summary()}")
    qs = queries(n_queries)
    at_index = hybrid_search_at_index(connector, qs)
    connector.close_index()
    at_mcp: list[float] = []
    if through_mcp:
        config = work / "patchbay.toml"
        config.write_text(config_text(folder, store, "hybrid"))
        print("[documents] hybrid search through /mcp (real server) ...", flush=True)
        fresh = [f"{q} {number}" for number, q in enumerate(qs)]  # none in the server's query-vector cache
        at_mcp = search_through_mcp(config, fresh, work, warmup=qs[:50])
    print(f"[documents] vector scan over {SCAN_PASSAGES:,} random passages ...", flush=True)
    scan = vector_scan(SCAN_PASSAGES)
    return HybridResult(
        docs=docs,
        passages=report.embedded,
        load_seconds=load_seconds,
        index_seconds=seconds,
        index_bytes=size,
        index_p50_ms=statistics.median(at_index),
        index_p95_ms=percentile(at_index, 95),
        mcp_p50_ms=statistics.median(at_mcp) if at_mcp else None,
        mcp_p95_ms=percentile(at_mcp, 95) if at_mcp else None,
        scan_p50_ms=statistics.median(scan),
        scan_p95_ms=percentile(scan, 95),
        queries=n_queries,
    )


def markdown_hybrid(result: HybridResult) -> str:
    rows = [
        '| measure (`ranking = "hybrid"`) | value |',
        "|---|---|",
        f"| loading the model (once per process) | {result.load_seconds:.1f} s |",
        f"| indexing with embeddings (folder path, {result.docs:,} Markdown files, {result.passages:,} passages) "
        f"| {result.docs_per_s:,.1f} documents/s ({result.index_seconds:.1f} s) |",
        f"| index size on disk | {result.index_bytes / 1e6:,.1f} MB |",
        f"| `search` at the index, p50 / p95 (query embedding included) | {result.index_p50_ms:.2f} / "
        f"{result.index_p95_ms:.2f} ms |",
    ]
    if result.mcp_p50_ms is not None and result.mcp_p95_ms is not None:
        rows.append(f"| `search` through `/mcp`, p50 / p95 | {result.mcp_p50_ms:.2f} / {result.mcp_p95_ms:.2f} ms |")
    rows.append(
        f"| vector scan alone over {SCAN_PASSAGES:,} passages, p50 / p95 | {result.scan_p50_ms:.2f} / "
        f"{result.scan_p95_ms:.2f} ms |"
    )
    return "\n".join(rows) + f"\n\n{result.queries:,} queries of 2-3 words, one at a time, top 10 results.\n"


def markdown(result: DocumentsResult) -> str:
    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    mcp_p95 = result.mcp_p95_ms
    rows = [
        "| measure | value | target |",
        "|---|---|---|",
        f"| indexing (folder path, {result.docs:,} Markdown files) | {result.docs_per_s:,.0f} documents/s "
        f"({result.index_seconds:.1f} s) | ≥ 1,000/s: {mark(result.docs_per_s >= TARGETS['docs_per_s'])} |",
        f"| index size on disk | {result.index_bytes / 1e6:,.1f} MB | |",
        f"| `search` at the index, p50 / p95 | {result.index_p50_ms:.2f} / {result.index_p95_ms:.2f} ms "
        f"| p95 ≤ 20 ms: {mark(result.index_p95_ms <= TARGETS['index_p95_ms'])} |",
    ]
    if mcp_p95 is not None and result.mcp_p50_ms is not None:
        rows.append(
            f"| `search` through `/mcp`, p50 / p95 | {result.mcp_p50_ms:.2f} / {mcp_p95:.2f} ms "
            f"| p95 ≤ 30 ms: {mark(mcp_p95 <= TARGETS['mcp_p95_ms'])} |"
        )
    return "\n".join(rows) + f"\n\n{result.queries:,} queries of 2-3 words, one at a time, top 10 results.\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.documents", description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, help=f"default {DEFAULT_DOCS:,}, with --hybrid {DEFAULT_HYBRID_DOCS:,}")
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERIES)
    parser.add_argument("--no-mcp", action="store_true", help="skip the /mcp measurement")
    parser.add_argument("--hybrid", action="store_true", help='measure ranking = "hybrid" (embeddings)')
    args = parser.parse_args(argv)
    logdir = Path(tempfile.mkdtemp(prefix="patchbay-bench-"))
    if args.hybrid:
        hybrid = run_hybrid(args.docs or DEFAULT_HYBRID_DOCS, args.queries, logdir, through_mcp=not args.no_mcp)
        print(markdown_hybrid(hybrid))
        print(json.dumps(hybrid.as_dict()))
        return 0
    result = run(args.docs or DEFAULT_DOCS, args.queries, logdir, through_mcp=not args.no_mcp)
    print(markdown(result))
    print(json.dumps(result.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
