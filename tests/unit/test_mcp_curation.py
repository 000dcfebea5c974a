"""The mcp connector's curation (names, globs, overrides, URI prefix) and its table of parked upstream calls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from patchbay.connectors.mcp.bridge import Bridge
from patchbay.connectors.mcp.curation import NameProblem, UriMap, annotations_of, name_items, template_pattern
from patchbay.connectors.mcp.options import McpOptions
from patchbay.errors import ToolError


def options(**keys: Any) -> McpOptions:
    return McpOptions.model_validate({"command": ["server"], **keys})


def test_include_exclude_and_rename_pick_the_published_names() -> None:
    chosen = options(include=["get-*", "echo"], exclude=["get-secret"], rename={"get-sum": "add"})
    items = [{"name": n} for n in ("echo", "get-sum", "get-secret", "other")]
    assert [(n.upstream, n.local) for n in name_items("tool", items, chosen, "files_")] == [
        ("echo", "echo"),
        ("get-sum", "add"),
    ]


def test_a_final_name_over_64_characters_is_refused_with_the_rename_hint() -> None:
    with pytest.raises(NameProblem, match=r"over 64.*rename = \{ " + "x" * 60):
        name_items("tool", [{"name": "x" * 60}], options(), "files_")


def test_a_name_with_a_dot_is_refused_because_clients_refuse_it() -> None:
    with pytest.raises(NameProblem, match="has characters"):
        name_items("tool", [{"name": "a.b"}], options(), "files_")


def test_two_upstream_names_renamed_to_one_collide() -> None:
    with pytest.raises(NameProblem, match="would both be published as 'files_same'"):
        name_items("tool", [{"name": "a"}, {"name": "b"}], options(rename={"a": "same", "b": "same"}), "files_")


def test_config_annotations_win_over_the_upstream_and_missing_hints_are_the_safe_defaults() -> None:
    hints = annotations_of({"annotations": {"readOnlyHint": True, "openWorldHint": False}}, {"openWorldHint": True})
    assert (hints.read_only, hints.open_world) == (True, True)
    silent = annotations_of({}, None)
    assert (silent.read_only, silent.destructive, silent.open_world) == (False, True, True)


def test_unknown_annotation_in_a_tool_override_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="unknown annotations"):
        options(tools={"echo": {"annotations": {"readOnly": True}}})


def test_command_and_url_are_exclusive() -> None:
    with pytest.raises(ValueError, match="exactly one of 'command'"):
        McpOptions.model_validate({"command": ["a"], "url": "http://127.0.0.1/mcp"})


def test_resource_uris_map_out_and_back() -> None:
    uris = UriMap("files+")
    assert uris.outward("file:///srv/a") == "files+file:///srv/a"
    assert uris.inward("files+file:///srv/a") == "file:///srv/a"
    assert uris.inward("other+file:///srv/a") is None


def test_templates_with_rfc6570_operators_match_their_uris() -> None:
    assert template_pattern("files+file://{+path}").match("files+file:///srv/a/b.txt")
    simple = template_pattern("demo://r/{id}")
    assert simple.match("demo://r/7") and not simple.match("demo://r/7/8")


def test_a_parked_call_resumes_only_for_its_principal_and_its_key() -> None:
    async def scenario() -> None:
        bridge = Bridge()

        async def run(on_request: Any) -> dict[str, Any]:
            answer = await on_request("sampling/createMessage", {"messages": []})
            return {"content": [{"type": "text", "text": answer["text"]}]}

        entry = bridge.start("alice", run)
        step = await bridge.next_step(entry)
        assert isinstance(step, tuple)
        key, request = step
        assert request["method"] == "sampling/createMessage"
        with pytest.raises(ToolError, match="no longer waiting"):
            bridge.resume({key: {"text": "x"}}, "mallory")
        resumed = bridge.resume({key: {"text": "Paris"}}, "alice")
        assert resumed is entry
        assert await bridge.next_step(entry) == {"content": [{"type": "text", "text": "Paris"}]}
        assert len(bridge) == 0

    asyncio.run(scenario())


def test_an_expired_parked_call_is_cancelled() -> None:
    now = [0.0]

    async def scenario() -> None:
        bridge = Bridge(ttl=10, clock=lambda: now[0])

        async def run(on_request: Any) -> dict[str, Any]:
            return await on_request("elicitation/create", {})

        entry = bridge.start("alice", run)
        key, _ = await bridge.next_step(entry)  # type: ignore[misc]
        now[0] = 11
        with pytest.raises(ToolError, match="no longer waiting"):
            bridge.resume({key: {}}, "alice")
        with pytest.raises(asyncio.CancelledError):
            await entry.task

    asyncio.run(scenario())
