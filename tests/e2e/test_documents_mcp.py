"""The documents connector behind a real `patchbay serve`, driven by the official Python SDK client, and the
`patchbay index` command. Tool shapes are checked against reference/mcp-requirements.md §5.3 with jsonschema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import mcp_types as types
import pytest
from mcp.client import Client

from tests.e2e.conftest import patchbay_cli, run_scenario
from tests.support.chatgpt_contract import FETCH_INPUT, FETCH_OUTPUT, HINTS, SEARCH_INPUT, SEARCH_OUTPUT
from tests.support.servers import RunningServer, run_patchbay
from tests.unit.fixtures.documents import build

pytestmark = pytest.mark.e2e


CONFIG = """
[server]
name = "documents-e2e"

[[connectors]]
name = "kb"
type = "documents"
prefix = ""
url_template = "https://intranet.example.com/kb/{{path_noext}}"

[[connectors.sources]]
name = "kb"
folder = "{folder}"

[[connectors.sources.access]]
path = "hr/**"
allow = ["role:hr"]
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("documents")
    folder = build(base / "corpus")
    path = base / "patchbay.toml"
    path.write_text(CONFIG.format(folder=folder))
    return path


def assert_both_forms(result: types.CallToolResult, output_schema: dict[str, Any]) -> dict[str, Any]:
    assert result.is_error is False, result
    assert result.structured_content is not None
    jsonschema.Draft202012Validator(output_schema).validate(result.structured_content)
    [text] = result.content
    assert isinstance(text, types.TextContent)
    assert json.loads(text.text) == result.structured_content
    return result.structured_content


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
def test_python_sdk_sees_the_documented_search_and_fetch_and_round_trips_ids(config: Path, era: str) -> None:
    async def scenario(url: str) -> None:
        async with Client(url, mode=era) as client:
            tools = {
                t.name: t.model_dump(mode="json", by_alias=True, exclude_none=True)
                for t in (await client.list_tools()).tools
            }
            assert set(tools) == {"search", "fetch"}
            assert tools["search"]["inputSchema"] == SEARCH_INPUT
            assert tools["fetch"]["inputSchema"] == FETCH_INPUT
            for name in ("search", "fetch"):
                assert {k: tools[name]["annotations"][k] for k in HINTS} == HINTS
                jsonschema.Draft202012Validator.check_schema(tools[name]["outputSchema"])

            found = assert_both_forms(await client.call_tool("search", {"query": "fire warden"}), SEARCH_OUTPUT)
            [hit] = found["results"]
            assert hit["title"] == "Warehouse safety procedures"
            assert hit["url"] == "https://intranet.example.com/kb/guides/warehouse-safety"

            fetched = assert_both_forms(await client.call_tool("fetch", {"id": hit["id"]}), FETCH_OUTPUT)
            assert fetched["id"] == hit["id"] and fetched["url"] == hit["url"]
            assert "Priya Natarajan" in fetched["text"]
            assert fetched["metadata"]["type"] == "docx"

            hidden = await client.call_tool("search", {"query": "salary bands"})
            assert assert_both_forms(hidden, SEARCH_OUTPUT)["results"] == [], "no sign-in: hr/** stays hidden"

            empty = await client.call_tool("search", {"query": ""})
            assert empty.is_error is True
            unknown = await client.call_tool("fetch", {"id": "kb:nope"})
            assert unknown.is_error is True
            assert isinstance(unknown.content[0], types.TextContent)
            assert "No document with id 'kb:nope'" in unknown.content[0].text

            templates = (await client.list_resource_templates()).resource_templates
            assert [t.uri_template for t in templates] == ["documents://kb/{id}"]
            read = await client.read_resource(f"documents://kb/{hit['id']}")
            [contents] = read.contents
            assert isinstance(contents, types.TextResourceContents)
            assert "Fire drills" in contents.text

    with run_patchbay(config) as server:
        run_scenario(lambda: scenario(server.url))


def test_patchbay_index_reports_counts_and_skipped_files(config: Path) -> None:
    first = patchbay_cli("index", "--config", str(config))
    assert first.returncode == 0, first.describe()
    output = first.stdout + first.stderr
    assert "kb:" in output and "2 skipped" in output, first.describe()
    assert "broken.pdf" in output and "not a readable pdf file" in output
    second = patchbay_cli("index", "--config", str(config))
    assert second.returncode == 0, second.describe()
    assert "0 added, 0 updated, 7 unchanged, 0 removed, 2 skipped" in second.stdout + second.stderr


def test_patchbay_index_names_an_unknown_connector(config: Path) -> None:
    result = patchbay_cli("index", "--config", str(config), "--connector", "wiki")
    assert result.returncode == 2
    assert "no documents connector named wiki (have: kb)" in result.stderr


def test_demo_serves_the_handbook_through_search_and_fetch(demo_server: RunningServer) -> None:
    async def scenario() -> dict[str, Any]:
        async with Client(demo_server.url, mode="legacy") as client:
            found = assert_both_forms(await client.call_tool("search", {"query": "parental leave"}), SEARCH_OUTPUT)
            first = found["results"][0]
            assert first["url"] == "https://intranet.example.com/handbook/leave-and-holidays"
            return assert_both_forms(await client.call_tool("fetch", {"id": first["id"]}), FETCH_OUTPUT)

    fetched = run_scenario(scenario)
    assert fetched["title"] == "Leave and holidays"
    assert "26 weeks of parental leave" in fetched["text"]
