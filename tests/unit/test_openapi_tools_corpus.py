"""Every tool built from the spec corpora (``@readme/oas-examples``, GitHub's ``@octokit/openapi``) is one clients
accept: a valid name within 64 with the prefix, all four hints and a title, valid JSON Schemas whose references
all resolve; names are unique and do not depend on the order of the operations.

The corpora are npm packages the Makefile installs (tests/e2e/node); without them these tests are skipped.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from patchbay.catalog.catalog import tool_wire
from patchbay.connectors.openapi.models import ApiSpec, Plan
from patchbay.connectors.openapi.options import OpenApiOptions
from patchbay.connectors.openapi.spec import load_path
from patchbay.connectors.openapi.tokens import estimate_tokens
from patchbay.connectors.openapi.tools import Built, build_tools
from patchbay.definitions import ToolResult

NODE = Path(__file__).resolve().parents[1] / "e2e" / "node" / "node_modules"
EXAMPLES = NODE / "@readme" / "oas-examples"
GITHUB = NODE / "@octokit" / "openapi" / "generated" / "api.github.com.json"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "openapi"
PREFIX = "corpus_"
CLIENT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")

needs_examples = pytest.mark.skipif(
    not EXAMPLES.is_dir(), reason="@readme/oas-examples is not installed (make test installs tests/e2e/node)"
)
needs_github = pytest.mark.skipif(
    not GITHUB.is_file(), reason="@octokit/openapi is not installed (make test installs tests/e2e/node)"
)


def example_files() -> list[Path]:
    found = sorted(EXAMPLES.glob("*/json/*.json")) if EXAMPLES.is_dir() else []
    found += sorted(FIXTURES.glob("*.yaml")) + sorted(FIXTURES.glob("*.json")) if FIXTURES.is_dir() else []
    return found


async def never_called(plan: Plan, arguments: dict[str, Any], ctx: Any) -> ToolResult:
    raise AssertionError("building tools calls nothing")


def build(spec: ApiSpec, mode: str = "tools") -> Built:
    options = OpenApiOptions.model_validate({"spec": spec.source or "spec", "mode": mode})
    return build_tools(spec, options, never_called, prefix=PREFIX)


def refs_in(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        return [v for k, v in schema.items() if k == "$ref"] + [r for v in schema.values() for r in refs_in(v)]
    if isinstance(schema, list):
        return [r for item in schema for r in refs_in(item)]
    return []


def check_schema(schema: dict[str, Any], where: str, checked: dict[int, list[str]], meta: bool = True) -> None:
    """Draft202012Validator.check_schema(schema) (unless not ``meta``) and every reference resolves; each shared
    definition (GitHub's are large, and shared by many tools) is checked once."""
    assert schema.get("type") == "object", where
    defs = schema.get("$defs", {})
    top = {k: v for k, v in schema.items() if k != "$defs"}
    if meta:
        jsonschema.Draft202012Validator.check_schema(top)
    refs = refs_in(top)
    for definition in defs.values():
        if id(definition) not in checked:
            jsonschema.Draft202012Validator.check_schema(definition)
            checked[id(definition)] = refs_in(definition)
        refs += checked[id(definition)]
    for ref in set(refs):
        assert isinstance(ref, str) and ref.startswith("#/$defs/"), f"{where}: {ref!r}"
        assert ref[len("#/$defs/") :].split("/")[0] in defs, f"{where}: {ref} does not resolve"


def check_tools(built: Built, where: str, every: int = 1) -> None:
    """Each tool's name, hints and references; the meta-schema check of every ``every``-th tool's own schemas."""
    names = [tool.name for tool in built.tools]
    assert len(names) == len(set(names)), f"{where}: duplicate names"
    checked: dict[int, list[str]] = {}
    for index, tool in enumerate(built.tools):
        meta = index % every == 0
        wire = tool_wire(PREFIX + tool.name, tool)
        assert CLIENT_NAME.match(wire["name"]), f"{where}: {wire['name']!r}"
        assert all(isinstance(wire["annotations"][hint], bool) for hint in HINTS), f"{where}: {tool.name}"
        assert wire["annotations"]["title"] and wire["description"], f"{where}: {tool.name}"
        check_schema(tool.input_schema, f"{where}: {tool.name} input", checked, meta)
        if tool.output_schema is not None:
            check_schema(tool.output_schema, f"{where}: {tool.name} output", checked, meta)
        assert not any("x-mcp-header" in str(key) for key in tool.input_schema.get("properties", {}).values())


@needs_examples
@pytest.mark.parametrize("path", example_files(), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_tool_of_every_example_spec_is_one_clients_accept(path: Path) -> None:
    spec = load_path(path)
    built = build(spec)
    assert built.selected == len(spec.operations)
    check_tools(built, path.name)
    reordered = dataclasses.replace(spec, operations=tuple(reversed(spec.operations)))
    assert {p.operation.key: n for n, p in build(reordered).plans.items()} == {
        p.operation.key: n for n, p in built.plans.items()
    }


@needs_github
def test_githubs_spec_yields_valid_tools_and_a_small_search_mode_list() -> None:
    spec = load_path(GITHUB)
    built = build(spec)
    assert built.selected == len(spec.operations) > 900
    # The meta-schema check costs ~5 ms a schema: every shared definition is checked, and one tool in ten's own
    # schemas (the example corpus checks every tool's); names, hints and references are checked for all 1,200.
    check_tools(built, "api.github.com", every=10)
    search = build(spec, mode="search")
    assert [tool.name for tool in search.tools] == ["search_operations", "describe_operation", "call_operation"]
    assert estimate_tokens([tool_wire(PREFIX + tool.name, tool) for tool in search.tools]) <= 1500
    auto = build(spec, mode="auto")
    assert auto.mode == "search" and auto.estimated_tokens > 20_000
    shuffled = dataclasses.replace(spec, operations=spec.operations[1::2] + spec.operations[::2])
    assert {p.operation.key: n for n, p in build(shuffled).plans.items()} == {
        p.operation.key: n for n, p in built.plans.items()
    }
