"""Incremental indexing, SQL sources, watching, and config errors of the documents connector."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from tests.support.waiting import until

from patchbay.app import Runtime
from patchbay.connectors.base import ConnectorEnv
from patchbay.connectors.documents import DocumentsConnector, DocumentsOptions
from patchbay.connectors.documents.ingest import Report
from patchbay.context import Context
from patchbay.errors import ConfigError, ConnectorError, ToolError
from patchbay.protocol.scope import CallScope
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio
URL = "https://wiki.example.com/{path_noext}"


def connector(tmp_path: Path, sources: list[dict[str, Any]], **options: Any) -> DocumentsConnector:
    opts = DocumentsOptions.model_validate({"url_template": URL, "sources": sources, **options})
    env = ConnectorEnv(base_dir=tmp_path, store_url=f"sqlite:///{tmp_path / 'patchbay.db'}")
    return DocumentsConnector("docs", opts, env)


def ctx() -> Context:
    return Context(CallScope(era="legacy", version="2025-11-25", request_id=1, method="tools/call", client_caps={}))


async def ids_for(docs: DocumentsConnector, query: str) -> list[str]:
    search = next(t for t in docs.tools() if t.name == "search")
    result = await search.handler({"query": query}, ctx())
    return [r["id"] for r in result.structured["results"]]


async def fetch_text(docs: DocumentsConnector, doc_id: str) -> str:
    fetch = next(t for t in docs.tools() if t.name == "fetch")
    text: str = (await fetch.handler({"id": doc_id}, ctx())).structured["text"]
    return text


def counts(report: Report) -> tuple[int, int, int, int, int]:
    return report.added, report.updated, report.unchanged, report.removed, report.skipped


def bump(path: Path, text: str) -> None:
    """Rewrite a file and move its mtime forward (coarse file-system clocks could otherwise hide the change)."""
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


async def test_reindex_reads_only_changed_files_and_removes_deleted_ones(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.md").write_text(f"# Page {name}\n\nAbout keyword{name}.")
    docs = connector(tmp_path, [{"name": "kb", "folder": str(folder)}])
    await docs.open()
    try:
        assert counts(docs.last_report) == (3, 0, 0, 0, 0)  # type: ignore[arg-type]
        bump(folder / "a.md", "# Page a\n\nNow about zebras.")
        (folder / "b.md").unlink()
        (folder / "d.md").write_text("# Page d\n\nNew.")
        touched = folder / "c.md"
        os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 5_000_000_000))
        report = await anyio.to_thread.run_sync(docs.reindex)
        assert counts(report) == (1, 1, 1, 1, 0), "c.md only touched: read again, hash unchanged, not re-indexed"
        [zebra] = await ids_for(docs, "zebras")
        assert "zebras" in await fetch_text(docs, zebra)
        assert await ids_for(docs, "keywordb") == []
        assert counts(await anyio.to_thread.run_sync(docs.reindex)) == (0, 0, 3, 0, 0)
    finally:
        await docs.close()


async def test_index_survives_a_restart_and_is_not_rebuilt(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "a.md").write_text("# Alpha\n\nPersistent words.")
    first = connector(tmp_path, [{"name": "kb", "folder": str(folder)}])
    await first.open()
    [doc_id] = await ids_for(first, "persistent")
    await first.close()
    second = connector(tmp_path, [{"name": "kb", "folder": str(folder)}])
    await second.open()
    try:
        assert counts(second.last_report) == (0, 0, 1, 0, 0)  # type: ignore[arg-type]
        assert await ids_for(second, "persistent") == [doc_id], "ids are stable across restarts"
    finally:
        await second.close()


async def test_unreadable_file_is_skipped_once_and_retried_when_it_changes(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "ok.md").write_text("# Fine\n\nReadable.")
    (folder / "bad.pdf").write_bytes(b"%PDF-1.4 nonsense")
    docs = connector(tmp_path, [{"name": "kb", "folder": str(folder)}])
    await docs.open()
    try:
        report = docs.last_report
        assert report is not None and counts(report) == (1, 0, 0, 0, 1)
        [(source, path, reason)] = report.skipped_files
        assert (source, path) == ("kb", "bad.pdf") and "not a readable pdf" in reason
        again = await anyio.to_thread.run_sync(docs.reindex)
        assert counts(again) == (0, 0, 1, 0, 1)
        assert again.skipped_files == report.skipped_files, "not retried, same reason reported"
        (folder / "bad.pdf").unlink()
        (folder / "bad.txt").write_bytes(b"\x00\x01 binary")
        third = await anyio.to_thread.run_sync(docs.reindex)
        assert [p for _, p, _ in third.skipped_files] == ["bad.txt"]
    finally:
        await docs.close()


async def test_config_changes_to_links_and_access_apply_without_rereading(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "a.md").write_text("# Alpha\n\nSecret plans.")
    docs = connector(tmp_path, [{"name": "kb", "folder": str(folder)}])
    await docs.open()
    await docs.close()
    changed = connector(
        tmp_path,
        [{"name": "kb", "folder": str(folder), "allow": ["role:exec"]}],
        url_template="https://new.example/{stem}",
    )
    await changed.open()
    try:
        assert counts(changed.last_report) == (0, 0, 1, 0, 0)  # type: ignore[arg-type]
        assert await ids_for(changed, "secret") == [], "the new access list hides it from anonymous callers"
    finally:
        await changed.close()


async def test_sql_source_indexes_rows_and_follows_updates(tmp_path: Path) -> None:
    db = tmp_path / "wiki.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE pages (id TEXT, title TEXT, body TEXT, url TEXT, updated_at TEXT)")
        conn.executemany(
            "INSERT INTO pages VALUES (?, ?, ?, ?, ?)",
            [
                ("p/1", "Deploy guide", "# Deploy\n\nRun the pipeline.", "https://wiki.example.com/p1", "2025-01-02"),
                ("p2", "On-call", "Pager rotation rules.", None, None),
            ],
        )
    source = {
        "name": "wiki",
        "database": f"sqlite:///{db}",
        "query": "SELECT id, title, body, url, updated_at FROM pages",
        "url_template": "https://wiki.example.com/page/{key}",
    }
    docs = connector(tmp_path, [source])
    await docs.open()
    try:
        [deploy] = await ids_for(docs, "pipeline")
        assert deploy == "wiki:p%2F1", "row ids are percent-encoded so ids stay one URI segment"
        fetch = next(t for t in docs.tools() if t.name == "fetch")
        result = (await fetch.handler({"id": deploy}, ctx())).structured
        assert result["url"] == "https://wiki.example.com/p1"
        assert result["metadata"]["updated_at"] == "2025-01-02"
        [oncall] = await ids_for(docs, "pager rotation")
        assert (await fetch.handler({"id": oncall}, ctx())).structured["url"] == "https://wiki.example.com/page/p2"
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE pages SET body = 'Escalation matrix.' WHERE id = 'p2'")
            conn.execute("DELETE FROM pages WHERE id = 'p/1'")
        report = await anyio.to_thread.run_sync(docs.reindex)
        assert counts(report) == (0, 1, 0, 1, 0)
        assert await ids_for(docs, "escalation") == [oncall]
        assert await ids_for(docs, "pipeline") == []
    finally:
        await docs.close()


async def test_failing_query_stops_start_with_a_precise_error(tmp_path: Path) -> None:
    source = {"name": "wiki", "database": f"sqlite:///{tmp_path / 'empty.db'}", "query": "SELECT * FROM nowhere"}
    docs = connector(tmp_path, [source])
    with pytest.raises(ConnectorError, match=r"source 'wiki': the query failed: no such table: nowhere"):
        await docs.open()


async def test_missing_folder_stops_start_with_a_precise_error(tmp_path: Path) -> None:
    docs = connector(tmp_path, [{"name": "kb", "folder": "missing"}])
    with pytest.raises(ConnectorError, match=r"source 'kb': folder .*missing does not exist"):
        await docs.open()


async def test_watch_interval_picks_up_new_files_while_serving(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "a.md").write_text("# Alpha\n\nFirst.")
    docs = connector(tmp_path, [{"name": "kb", "folder": str(folder)}], watch_seconds=0.1)
    await docs.open()
    try:
        (folder / "b.md").write_text("# Beta\n\nWatched arrival.")

        async def arrived() -> bool:
            return bool(await ids_for(docs, "arrival"))

        await until(arrived, "the watched file to be indexed")
    finally:
        await docs.close()


def test_options_errors_name_the_problem(tmp_path: Path) -> None:
    def build(connector: dict[str, Any]) -> None:
        data = {"connectors": [{"name": "docs", "type": "documents", **connector}]}
        Runtime(from_dict(data, source="patchbay.toml", base_dir=tmp_path))

    with pytest.raises(ConfigError, match="set 'url_template'"):
        build({"sources": [{"name": "kb", "folder": "kb"}]})
    with pytest.raises(ConfigError, match="exactly one of 'folder'"):
        build({"url_template": URL, "sources": [{"name": "kb", "folder": "kb", "query": "SELECT 1"}]})
    with pytest.raises(ConfigError, match="unknown placeholder"):
        build({"url_template": "https://x.example/{file}", "sources": [{"name": "kb", "folder": "kb"}]})
    with pytest.raises(ConfigError, match="access entries must be"):
        build({"url_template": URL, "sources": [{"name": "kb", "folder": "kb", "allow": ["hr"]}]})


async def test_tool_errors_are_tool_errors(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    docs = connector(tmp_path, [{"name": "kb", "folder": str(folder)}])
    await docs.open()
    try:
        fetch = next(t for t in docs.tools() if t.name == "fetch")
        with pytest.raises(ToolError, match="'id' must be a non-empty string"):
            await fetch.handler({"id": ""}, ctx())
    finally:
        await docs.close()


async def test_links_out_of_the_folder_are_not_indexed(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("Root password hunter2")
    (folder / "inside.md").write_text("# Inside\n\nVisible text.")
    (folder / "link.txt").symlink_to(secret)
    (folder / "alias.md").symlink_to(folder / "inside.md")
    docs = connector(tmp_path, [{"name": "kb", "folder": str(folder)}])
    await docs.open()
    try:
        assert await ids_for(docs, "hunter2") == []
        assert len(await ids_for(docs, "visible")) == 2, "a link inside the folder is an ordinary file"
    finally:
        await docs.close()


async def test_queries_mixing_common_and_rare_words_rank_by_the_rare_ones(tmp_path: Path) -> None:
    """Past 1,000 passages, words in over 2% of them are left out of the ranking when rarer words are present;
    when all words are common, passages holding all of them come first."""
    folder = tmp_path / "kb"
    folder.mkdir()
    for number in range(1500):
        extra = " teamwork" if number % 3 == 0 else ""
        (folder / f"note-{number}.md").write_text(f"# Note {number}\n\nProject update{extra}.")
    (folder / "special.md").write_text("# Special\n\nProject update about the zeppelin hangar.")
    docs = connector(tmp_path, [{"name": "kb", "folder": str(folder)}])
    await docs.open()
    try:
        search = next(t for t in docs.tools() if t.name == "search")
        rare = (await search.handler({"query": "project zeppelin"}, ctx())).structured["results"]
        assert [r["title"] for r in rare] == ["Special"]
        both = (await search.handler({"query": "update teamwork"}, ctx())).structured["results"]
        assert len(both) == 10 and all(int(r["title"].split()[1]) % 3 == 0 for r in both)
    finally:
        await docs.close()


async def test_a_source_removed_from_the_config_leaves_the_index(tmp_path: Path) -> None:
    kept, old = tmp_path / "kb", tmp_path / "old"
    for folder in (kept, old):
        folder.mkdir()
    (kept / "a.md").write_text("# Alpha\n\nKept words.")
    (old / "b.md").write_text("# Beta\n\nRetired words.")
    (old / "c.md").write_text("# Gamma\n\nRetired too.")
    (old / "bad.pdf").write_bytes(b"%PDF-1.4 nonsense")
    first = connector(tmp_path, [{"name": "kb", "folder": str(kept)}, {"name": "old", "folder": str(old)}])
    await first.open()
    assert counts(first.last_report) == (3, 0, 0, 0, 1)  # type: ignore[arg-type]
    await first.close()
    docs = connector(tmp_path, [{"name": "kb", "folder": str(kept)}])
    await docs.open()
    try:
        assert counts(docs.last_report) == (0, 0, 1, 2, 0)  # type: ignore[arg-type]
        assert await ids_for(docs, "retired") == []
        assert len(await ids_for(docs, "kept")) == 1
        with sqlite3.connect(docs.index_file) as conn:
            left = conn.execute("SELECT source FROM documents UNION ALL SELECT source FROM skipped").fetchall()
        assert left == [("kb",)], "the source's documents and its skipped files are gone"
    finally:
        await docs.close()


async def test_a_file_whose_size_and_time_are_unchanged_is_not_read_again(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    page = folder / "a.md"
    page.write_text("# Alpha\n\nOriginal words.")
    before = page.stat()
    docs = connector(tmp_path, [{"name": "kb", "folder": str(folder)}])
    await docs.open()
    try:
        page.write_text("# Alpha\n\nReplaced words.")  # the same length, and the old time put back
        os.utime(page, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert counts(await anyio.to_thread.run_sync(docs.reindex)) == (0, 0, 1, 0, 0)
        assert len(await ids_for(docs, "original")) == 1, "the file was not opened: its stat said unchanged"
        assert await ids_for(docs, "replaced") == []
    finally:
        await docs.close()


async def test_an_access_list_changed_in_the_config_keeps_every_entry(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "a.md").write_text("# Alpha\n\nBudget plans.")
    docs = connector(tmp_path, [{"name": "kb", "folder": str(folder)}])
    await docs.open()
    await docs.close()
    changed = connector(tmp_path, [{"name": "kb", "folder": str(folder), "allow": ["role:finance", "user:erin"]}])
    await changed.open()
    try:
        assert counts(changed.last_report) == (0, 0, 1, 0, 0)  # type: ignore[arg-type]
        search = next(t for t in changed.tools() if t.name == "search")
        for principal in ({"subject": "dave", "roles": ["finance"]}, {"subject": "erin", "roles": []}):
            scope = CallScope(
                era="legacy", version="2025-11-25", request_id=1, method="tools/call", client_caps={},
                principal=principal,
            )  # fmt: skip
            result = await search.handler({"query": "budget"}, Context(scope))
            assert [r["title"] for r in result.structured["results"]] == ["Alpha"], principal
    finally:
        await changed.close()


async def test_a_skipped_file_whose_size_and_time_are_unchanged_is_not_retried(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    page = folder / "notes.txt"
    page.write_bytes(b"\x00\x01 binary texts")
    before = page.stat()
    docs = connector(tmp_path, [{"name": "kb", "folder": str(folder)}])
    await docs.open()
    try:
        assert counts(docs.last_report) == (0, 0, 0, 0, 1)  # type: ignore[arg-type]
        page.write_bytes(b"readable words!")  # the same length (15 bytes), and the old time put back
        os.utime(page, ns=(before.st_atime_ns, before.st_mtime_ns))
        again = await anyio.to_thread.run_sync(docs.reindex)
        assert counts(again) == (0, 0, 0, 0, 1), "not read again: its stat says it has not changed"
        assert await ids_for(docs, "readable") == []
    finally:
        await docs.close()
