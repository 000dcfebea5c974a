"""Hybrid ranking of the documents connector (ranking = "hybrid"): finding by meaning with the real local model,
incremental embedding, reuse of an index built without embeddings, the missing-extra error, and offline loading."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from patchbay.app import Runtime
from patchbay.connectors.documents import DocumentsConnector, embeddings
from patchbay.connectors.documents.ingest import Report
from patchbay.errors import ConfigError, ConnectorError
from patchbay.extras import install_command
from patchbay.protocol.scope import CallScope
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio
URL = "https://intranet.example.com/{path_noext}"

PAGES = {
    "annual-leave.md": "# Annual leave\n\nEveryone gets 28 days of holiday a year on top of public holidays. "
    "Book holidays in the HR portal two weeks ahead; unused days carry over until March.",
    "office-hours.md": "# Office hours\n\nThe building opens at 8 and closes at 19. Core time is 10 to 16, "
    "when meetings may be booked.",
    "laptops.md": "# Laptop security\n\nLaptops use full-disk encryption and lock after five minutes. "
    "Report a lost laptop to IT within the hour.",
    "parking.md": "# Parking\n\nThe car park has 40 spaces and 12 chargers for electric cars; bicycles go in "
    "the shed behind reception.",
}


def write(folder: Path, pages: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in pages.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def runtime_for(tmp_path: Path, folder: Path, **options: Any) -> Runtime:
    connector = {"name": "docs", "type": "documents", "prefix": "", "url_template": URL, **options}
    connector["sources"] = [{"name": "kb", "folder": str(folder), **connector.pop("source", {})}]
    data = {"store": {"url": f"sqlite:///{tmp_path / 'patchbay.db'}"}, "connectors": [connector]}
    return Runtime(from_dict(data, source="patchbay.toml", base_dir=tmp_path))


async def search(rt: Runtime, query: str, principal: Any = None) -> dict[str, Any]:
    scope = CallScope(
        era="legacy", version="2025-11-25", request_id=1, method="tools/call", client_caps={}, principal=principal
    )
    result = await rt.dispatcher.dispatch("tools/call", {"name": "search", "arguments": {"query": query}}, scope)
    assert result["isError"] is False, result
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
    structured: dict[str, Any] = result["structuredContent"]
    return structured


async def titles(rt: Runtime, query: str, principal: Any = None) -> list[str]:
    return [r["title"] for r in (await search(rt, query, principal))["results"]]


def documents(rt: Runtime) -> DocumentsConnector:
    [connector] = rt.connectors
    assert isinstance(connector, DocumentsConnector)
    return connector


def vector_count(connector: DocumentsConnector) -> int:
    with sqlite3.connect(connector.index_file) as conn:
        return int(conn.execute("SELECT count(*) FROM vectors").fetchone()[0])


def counts(report: Report | None) -> tuple[int, int, int, int, int]:
    assert report is not None
    return report.added, report.updated, report.unchanged, report.removed, report.embedded


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """The same folder served twice: ranked by BM25 alone and hybrid."""
    folder = write(tmp_path / "kb", PAGES)
    (tmp_path / "bm25").mkdir()
    (tmp_path / "hybrid").mkdir()
    bm25 = runtime_for(tmp_path / "bm25", folder)
    hybrid = runtime_for(tmp_path / "hybrid", folder, ranking="hybrid")
    await bm25.start()
    await hybrid.start()
    yield bm25, hybrid
    await hybrid.stop()
    await bm25.stop()


async def test_hybrid_finds_a_page_by_meaning_that_shares_no_word_with_the_query(
    started: tuple[Runtime, Runtime],
) -> None:
    bm25, hybrid = started
    assert "Annual leave" not in await titles(bm25, "paid time off"), "no word in common: BM25 cannot find it"
    found = await search(hybrid, "paid time off")
    by_title = {r["title"]: r for r in found["results"]}
    assert "Annual leave" in by_title
    assert by_title["Annual leave"]["snippet"].startswith("Annual leave Everyone gets 28 days"), (
        "a page found by meaning alone shows its first words"
    )
    assert "Laptop security" not in by_title, "unrelated pages are not listed just because every page has a vector"
    assert (await titles(hybrid, "where do I put my bike"))[0] == "Parking"
    # Words still count: an exact keyword ranks its page first, with the words highlighted from FTS5.
    [first, *_] = (await search(hybrid, "encryption"))["results"]
    assert first["title"] == "Laptop security" and "encryption" in first["snippet"]


async def test_hybrid_pages_through_one_fused_order(tmp_path: Path) -> None:
    folder = write(tmp_path / "kb", PAGES)
    rt = runtime_for(tmp_path, folder, ranking="hybrid", max_results=1)
    await rt.start()
    try:
        seen: list[str] = []
        query = "holiday days and working hours"
        while True:
            page = await search(rt, query)
            seen += [r["id"] for r in page["results"]]
            if "next_cursor" not in page:
                break
            query = page["next_cursor"]
        assert len(seen) >= 2 and len(seen) == len(set(seen)), seen
    finally:
        await rt.stop()


async def test_hybrid_keeps_access_lists(tmp_path: Path) -> None:
    pages = {**PAGES, "hr/salaries.md": "# Salary bands\n\nEngineers earn between 60,000 and 95,000 a year."}
    folder = write(tmp_path / "kb", pages)
    rt = runtime_for(tmp_path, folder, ranking="hybrid", source={"access": [{"path": "hr/**", "allow": ["role:hr"]}]})
    await rt.start()
    try:
        assert "Salary bands" not in await titles(rt, "how much money do engineers make")
        hr = {"subject": "user:hana", "roles": ["hr"]}
        assert "Salary bands" in await titles(rt, "how much money do engineers make", hr)
    finally:
        await rt.stop()


async def test_only_changed_documents_are_embedded_again(tmp_path: Path) -> None:
    folder = write(tmp_path / "kb", PAGES)
    rt = runtime_for(tmp_path, folder, ranking="hybrid")
    await rt.start()
    try:
        docs = documents(rt)
        assert counts(docs.last_report) == (4, 0, 0, 0, 4)
        assert counts(await anyio.to_thread.run_sync(docs.reindex)) == (0, 0, 4, 0, 0), "nothing changed"
        (folder / "parking.md").write_text("# Parking\n\nThere is no car park; take the train, the station is close.")
        stat = (folder / "parking.md").stat()
        os.utime(folder / "parking.md", ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        (folder / "laptops.md").unlink()
        assert counts(await anyio.to_thread.run_sync(docs.reindex)) == (0, 1, 2, 1, 1)
        assert vector_count(docs) == 3, "the deleted page's and the old parking text's vectors are gone"
        assert (await titles(rt, "commuting by rail"))[0] == "Parking", "the new text's vector is searched"
    finally:
        await rt.stop()


async def test_an_index_built_without_embeddings_is_reused(tmp_path: Path) -> None:
    folder = write(tmp_path / "kb", PAGES)
    plain = runtime_for(tmp_path, folder)
    await plain.start()
    assert vector_count(documents(plain)) == 0
    await plain.stop()
    hybrid = runtime_for(tmp_path, folder, ranking="hybrid")
    await hybrid.start()
    try:
        docs = documents(hybrid)
        assert counts(docs.last_report) == (0, 0, 4, 0, 4), "not re-read, only embedded"
        assert "Annual leave" in await titles(hybrid, "paid time off")
    finally:
        await hybrid.stop()


def test_hybrid_without_the_extra_is_a_config_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write(tmp_path / "kb", PAGES)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # `import sentence_transformers` now fails
    with pytest.raises(ConfigError) as caught:
        runtime_for(tmp_path, folder, ranking="hybrid")
    message = str(caught.value)
    assert "patchbay.toml: connectors[docs]" in message and "ranking" in message, message
    assert install_command("documents-embeddings") in message and "sentence_transformers" in message
    with pytest.raises(ConnectorError, match=r"documents-embeddings"):
        embeddings.load.__wrapped__()  # the loader itself, past its per-process cache
    runtime_for(tmp_path, folder)  # BM25 needs nothing more


def test_a_model_file_that_differs_from_the_pinned_one_is_refused(tmp_path: Path) -> None:
    for name in embeddings.MODEL_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"not the model")
    with pytest.raises(ConnectorError, match=r"model.safetensors is not the all-MiniLM-L6-v2 file"):
        embeddings.verify(tmp_path)
    embeddings.verify(embeddings.model_dir())  # the installed package passes


GUARDED_LOAD = textwrap.dedent(
    """
    import ipaddress, json, socket

    attempts = []

    def allowed(address):
        if not isinstance(address, tuple):
            return True  # AF_UNIX
        try:
            return ipaddress.ip_address(address[0]).is_loopback
        except ValueError:
            return address[0] == "localhost"

    def guard(original):
        def connect(self, address):
            if not allowed(address):
                attempts.append(repr(address))
                raise OSError("network blocked by the test")
            return original(self, address)
        return connect

    socket.socket.connect = guard(socket.socket.connect)
    socket.socket.connect_ex = guard(socket.socket.connect_ex)
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if not allowed((host,)):
            attempts.append(repr(host))
            raise OSError("name lookup blocked by the test")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    # The guard works: it stops a connection (TEST-NET-1, never sent) and a name lookup before they happen.
    probe = socket.socket()
    for attempt in (lambda: probe.connect(("192.0.2.1", 443)), lambda: socket.getaddrinfo("example.com", 443)):
        try:
            attempt()
        except OSError as exc:
            assert "blocked by the test" in str(exc), exc
    probe.close()
    assert attempts == ["('192.0.2.1', 443)", "'example.com'"], attempts
    attempts.clear()

    from patchbay.connectors.documents import embeddings

    embedder = embeddings.load()
    vector = embedder.query("paid time off")
    passages = embedder.passages(["Annual leave: 28 days of holiday a year.", "Laptops use disk encryption."])
    print(json.dumps({"attempts": attempts, "dims": len(vector), "norm": float((vector ** 2).sum()),
                      "leave": float(passages[0] @ vector), "laptops": float(passages[1] @ vector)}))
    """
)


def test_the_model_loads_offline_and_opens_no_connection(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run(
        [sys.executable, "-c", GUARDED_LOAD], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["attempts"] == [], "no connection and no name lookup beyond loopback"
    assert result["dims"] == 384 and abs(result["norm"] - 1) < 1e-4, "unit-length vectors"
    assert result["leave"] > result["laptops"] + 0.1, "the model ranks by meaning"
    assert not (tmp_path / "hf").exists(), "nothing was cached from a hub"
