"""Ranking of the documents connector's search: where in a document a word stands matters, not only how often."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from patchbay.connectors.base import ConnectorEnv
from patchbay.connectors.documents import DocumentsConnector, DocumentsOptions
from patchbay.context import Context
from patchbay.protocol.scope import CallScope

pytestmark = pytest.mark.anyio


def connector(tmp_path: Path, folder: Path) -> DocumentsConnector:
    options: dict[str, Any] = {"url_template": "https://wiki.example.com/{path_noext}"}
    opts = DocumentsOptions.model_validate({**options, "sources": [{"name": "kb", "folder": str(folder)}]})
    return DocumentsConnector(
        "docs", opts, ConnectorEnv(base_dir=tmp_path, store_url=f"sqlite:///{tmp_path / 'pb.db'}")
    )


async def search(docs: DocumentsConnector, query: str) -> list[dict[str, Any]]:
    tool = next(t for t in docs.tools() if t.name == "search")
    scope = CallScope(era="legacy", version="2025-11-25", request_id=1, method="tools/call", client_caps={})
    results: list[dict[str, Any]] = (await tool.handler({"query": query}, Context(scope))).structured["results"]
    return results


async def test_a_title_or_heading_match_ranks_above_a_body_with_more_occurrences(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    body = "The zeppelin left at dawn. A zeppelin crew of six; the zeppelin landed at noon, the zeppelin refuelled."
    (folder / "log.md").write_text(f"# Flight log\n\n{body}")
    # The word only in the title (HTML <title>; the page's own heading says something else).
    (folder / "hangar.html").write_text(
        "<html><head><title>Zeppelin</title></head><body><h1>Hangar</h1>"
        "<p>The hangar schedule for the season, with crews and slots.</p></body></html>"
    )
    # The word only in a section heading, not in the document's title or text.
    (folder / "fleet.md").write_text(
        "# Fleet handbook\n\n## Zeppelin checks\n\nInspect the envelope and gas cells monthly."
    )
    for number in range(8):  # documents without the word, so that it is rare enough to rank by
        (folder / f"filler-{number}.md").write_text(f"# Filler {number}\n\nPaperwork number {number}, nothing else.")
    docs = connector(tmp_path, folder)
    await docs.open()
    try:
        results = await search(docs, "zeppelin")
        assert [r["title"] for r in results] == ["Zeppelin", "Fleet handbook", "Flight log"]
    finally:
        await docs.close()
