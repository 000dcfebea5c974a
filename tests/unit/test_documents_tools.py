"""The documents connector through the real dispatcher: the §5.3 search/fetch contract, ranking, paging,
access trimming, and errors."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
from tests.support.chatgpt_contract import FETCH_OUTPUT, SEARCH_OUTPUT

from fixtures.documents import build
from patchbay.app import Runtime
from patchbay.cli.common import DEMO_HANDBOOK
from patchbay.protocol.scope import CallScope
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio
URL = "https://intranet.example.com/{source}/{path_noext}"


def runtime_for(tmp_path: Path, sources: list[dict[str, Any]], **options: Any) -> Runtime:
    connector = {"name": "docs", "type": "documents", "prefix": "", "url_template": URL, "sources": sources}
    data = {"store": {"url": f"sqlite:///{tmp_path / 'patchbay.db'}"}, "connectors": [{**connector, **options}]}
    return Runtime(from_dict(data, source="<test>", base_dir=tmp_path))


@pytest.fixture
async def corpus_runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    folder = build(tmp_path / "corpus")
    rt = runtime_for(
        tmp_path,
        [{"name": "kb", "folder": str(folder), "access": [{"path": "hr/**", "allow": ["role:hr", "user:alice"]}]}],
    )
    await rt.start()
    yield rt
    await rt.stop()


@pytest.fixture
async def handbook(tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = runtime_for(tmp_path, [{"name": "handbook", "folder": str(DEMO_HANDBOOK)}], max_results=3)
    await rt.start()
    yield rt
    await rt.stop()


def scope(principal: Any = None, method: str = "tools/call") -> CallScope:
    return CallScope(
        era="legacy", version="2025-11-25", request_id=1, method=method, client_caps={}, principal=principal
    )


@functools.cache
def validator(schema: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(schema))


async def call(rt: Runtime, name: str, principal: Any = None, **arguments: Any) -> dict[str, Any]:
    result: dict[str, Any] = await rt.dispatcher.dispatch(
        "tools/call", {"name": name, "arguments": arguments}, scope(principal)
    )
    if not result["isError"]:
        documented = SEARCH_OUTPUT if name == "search" else FETCH_OUTPUT
        published = next(t for t in rt.catalog.tools_wire if t["name"] == name)["outputSchema"]
        for schema in (documented, published):
            validator(json.dumps(schema)).validate(result["structuredContent"])
        [text] = result["content"]
        assert json.loads(text["text"]) == result["structuredContent"], "§5.3: the same object as JSON text"
    return result


async def search(rt: Runtime, query: str, principal: Any = None) -> dict[str, Any]:
    result = await call(rt, "search", principal, query=query)
    assert result["isError"] is False, result
    return result["structuredContent"]


async def titles(rt: Runtime, query: str, principal: Any = None) -> list[str]:
    return [r["title"] for r in (await search(rt, query, principal))["results"]]


async def test_tools_are_exactly_the_documented_search_and_fetch(handbook: Runtime) -> None:
    wire = {t["name"]: t for t in handbook.catalog.tools_wire}
    assert set(wire) >= {"search", "fetch"}
    assert wire["search"]["inputSchema"] == {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    }
    assert wire["fetch"]["inputSchema"] == {
        "type": "object",
        "properties": {"id": {"type": "string"}},
        "required": ["id"],
    }
    hints = {"readOnlyHint": True, "destructiveHint": False, "openWorldHint": False, "idempotentHint": True}
    for name in ("search", "fetch"):
        assert {k: wire[name]["annotations"][k] for k in hints} == hints
    assert wire["fetch"]["outputSchema"] == FETCH_OUTPUT
    item = wire["search"]["outputSchema"]["properties"]["results"]["items"]
    assert item["required"] == ["id", "title", "url"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("parental leave", "Leave and holidays"),
        ("hotel nightly limit", "Expenses"),
        ("two-factor authentication hardware key", "Information security"),
        ("GWO certificate offshore site", "Business travel"),
        ("pension matching", "Benefits"),
        ("probation buddy first week", "Onboarding"),
        ("salary bands promotion", "Performance and growth"),
        ("bike storage parking", "Offices and workshops"),
        ("harassment speak-up line", "Code of conduct"),
        ("replace broken laptop", "IT support"),
        ("core hours focus friday", "Working hours and remote work"),
    ],
)
async def test_ranking_puts_the_labelled_page_first(handbook: Runtime, query: str, expected: str) -> None:
    assert (await titles(handbook, query))[0] == expected


async def test_results_link_to_the_intranet_never_a_local_path(handbook: Runtime) -> None:
    found = await search(handbook, "leave")
    for result in found["results"]:
        assert result["url"].startswith("https://intranet.example.com/handbook/")
        assert str(DEMO_HANDBOOK) not in json.dumps(result)
        assert result["snippet"]


async def test_search_pages_through_next_cursor(handbook: Runtime) -> None:
    seen: list[str] = []
    query = "days"
    for _ in range(10):
        page = await search(handbook, query)
        assert len(page["results"]) <= 3
        seen += [r["id"] for r in page["results"]]
        if "next_cursor" not in page:
            break
        query = page["next_cursor"]
    assert len(seen) == len(set(seen)) > 3, "pages do not repeat documents and reach past the first"


async def test_fetch_round_trips_an_id_from_search(handbook: Runtime) -> None:
    [first, *_] = (await search(handbook, "parental leave"))["results"]
    fetched = (await call(handbook, "fetch", id=first["id"]))["structuredContent"]
    assert fetched["id"] == first["id"]
    assert fetched["url"] == first["url"] and fetched["title"] == first["title"]
    assert "26 weeks of parental leave" in fetched["text"]
    assert "## Parental leave" in fetched["text"], "headings are kept in the text"
    assert fetched["metadata"]["source"] == "handbook" and fetched["metadata"]["type"] == "markdown"


async def test_long_documents_come_in_parts(tmp_path: Path) -> None:
    folder = tmp_path / "long"
    folder.mkdir()
    paragraphs = [f"Paragraph {i}: " + "policy words " * 40 for i in range(100)]
    (folder / "long.md").write_text("# Long policy\n\n" + "\n\n".join(paragraphs))
    rt = runtime_for(tmp_path, [{"name": "long", "folder": str(folder)}], max_fetch_chars=5000)
    await rt.start()
    try:
        [hit] = (await search(rt, "policy"))["results"]
        texts, doc_id = [], hit["id"]
        while doc_id:
            fetched = (await call(rt, "fetch", id=doc_id))["structuredContent"]
            assert len(fetched["text"]) <= 5000 + 200
            texts.append(fetched["text"].split("\n\n[Truncated:")[0])
            doc_id = fetched["metadata"].get("next_id")
        assert len(texts) > 5
        joined = "".join(texts)
        assert all(p.strip() in joined for p in paragraphs)
    finally:
        await rt.stop()


@pytest.mark.parametrize("query", ["", "   "])
async def test_empty_query_is_a_clear_tool_error(handbook: Runtime, query: str) -> None:
    result = await call(handbook, "search", query=query)
    assert result["isError"] is True
    assert "'query' must be a non-empty string" in result["content"][0]["text"]


async def test_query_without_words_and_bad_cursor_are_tool_errors(handbook: Runtime) -> None:
    punctuation = await call(handbook, "search", query="?!")
    assert punctuation["isError"] and "no words" in punctuation["content"][0]["text"]
    cursor = await call(handbook, "search", query="cursor:not-base64!!")
    assert cursor["isError"] and "cursor" in cursor["content"][0]["text"]


async def test_unknown_id_is_a_clear_tool_error(handbook: Runtime) -> None:
    result = await call(handbook, "fetch", id="handbook:does-not-exist")
    assert result["isError"] is True
    assert result["content"][0]["text"] == (
        "No document with id 'handbook:does-not-exist'. Use an id returned by search."
    )


async def test_every_file_type_is_searchable(corpus_runtime: Runtime) -> None:
    assert await titles(corpus_runtime, "hotel london") == ["Expense policy"]
    assert await titles(corpus_runtime, "headset monitor") == ["Remote work guide"]
    assert await titles(corpus_runtime, "Global Wind Organisation") == ["Glossary of terms"]
    assert await titles(corpus_runtime, "bridge contracts Portugal") == ["Quarterly report Q3"]
    assert await titles(corpus_runtime, "fire warden") == ["Warehouse safety procedures"]


async def test_corrupt_files_are_skipped_and_counted(corpus_runtime: Runtime) -> None:
    [connector] = corpus_runtime.connectors
    health = await connector.health()
    assert health.ok and health.detail == "7 documents, 2 files skipped"


ALICE = SimpleNamespace(subject="alice", roles=[])
HR = {"subject": "bob", "roles": ["hr"]}
SALES = SimpleNamespace(subject="carol", roles=["sales"])


async def test_protected_folder_is_trimmed_by_principal(corpus_runtime: Runtime) -> None:
    assert await titles(corpus_runtime, "salary bands") == [], "nobody signed in: protected documents hidden"
    assert await titles(corpus_runtime, "salary bands", SALES) == []
    assert await titles(corpus_runtime, "salary bands", HR) == ["Salary bands"]
    assert await titles(corpus_runtime, "salary bands", ALICE) == ["Salary bands"]
    assert await titles(corpus_runtime, "hotel london", SALES) == ["Expense policy"], "open documents stay open"


async def test_fetch_rechecks_access_and_hides_existence(corpus_runtime: Runtime) -> None:
    [hit] = (await search(corpus_runtime, "grievance", HR))["results"]
    allowed = await call(corpus_runtime, "fetch", HR, id=hit["id"])
    assert allowed["isError"] is False
    for principal in (None, SALES):
        denied = await call(corpus_runtime, "fetch", principal, id=hit["id"])
        assert denied["isError"] is True
        assert denied["content"][0]["text"] == f"No document with id '{hit['id']}'. Use an id returned by search."


async def test_resource_template_reads_documents_with_the_same_access_rules(corpus_runtime: Runtime) -> None:
    [template] = corpus_runtime.catalog.templates_wire
    assert template["uriTemplate"] == "documents://docs/{id}"
    [open_hit] = (await search(corpus_runtime, "hotel london"))["results"]
    read = await corpus_runtime.dispatcher.dispatch(
        "resources/read", {"uri": f"documents://docs/{open_hit['id']}"}, scope(method="resources/read")
    )
    assert "160 pounds" in read["contents"][0]["text"]
    [hidden] = (await search(corpus_runtime, "salary", HR))["results"]
    with pytest.raises(Exception, match="No document with id"):
        await corpus_runtime.dispatcher.dispatch(
            "resources/read", {"uri": f"documents://docs/{hidden['id']}"}, scope(method="resources/read")
        )


async def test_public_source_serves_protected_documents_before_sign_in(tmp_path: Path) -> None:
    folder = build(tmp_path / "corpus")
    rt = runtime_for(tmp_path, [{"name": "kb", "folder": str(folder), "allow": ["role:staff"], "public": True}])
    await rt.start()
    try:
        assert await titles(rt, "salary bands") == ["Salary bands"]
        assert await titles(rt, "salary bands", SALES) == [], "once signed in, the access list applies"
    finally:
        await rt.stop()


async def test_trimming_reaches_readable_documents_ranked_below_many_hidden_ones(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    (folder / "board").mkdir(parents=True)
    for number in range(120):
        (folder / "board" / f"minutes-{number}.md").write_text(f"# Budget {number}\n\nBudget budget budget review.")
    (folder / "open.md").write_text("# Canteen\n\nThe canteen menu mentions the budget once.")
    rt = runtime_for(
        tmp_path, [{"name": "kb", "folder": str(folder), "access": [{"path": "board/**", "allow": ["role:board"]}]}]
    )
    await rt.start()
    try:
        assert await titles(rt, "budget") == ["Canteen"]
        board = {"subject": "dana", "roles": ["board"]}
        page = await search(rt, "budget", board)
        assert len(page["results"]) == 10 and "next_cursor" in page
    finally:
        await rt.stop()


async def test_signed_in_principals_from_patchbay_auth_are_trimmed(corpus_runtime: Runtime) -> None:
    from patchbay.auth.principal import Principal

    alice = Principal(subject="user:alice", kind="user")
    hr_key = Principal(subject="key:payroll", kind="api_key", roles=frozenset({"hr"}))
    external = Principal(subject="alice", kind="external")
    stranger = Principal(subject="user:mallory", kind="user", roles=frozenset({"sales"}))
    for principal in (alice, hr_key, external):
        assert await titles(corpus_runtime, "salary bands", principal) == ["Salary bands"], principal
    assert await titles(corpus_runtime, "salary bands", stranger) == []
