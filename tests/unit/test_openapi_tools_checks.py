"""Schema checks: jsonschema-rs accepts exactly what jsonschema accepts, on hand-made edge cases and on the tools of
real specs; when it refuses, jsonschema's errors name the argument."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.openapi_args import bounded, examples

from patchbay.connectors.openapi.checks import ArgumentCheck, compile_accept
from patchbay.connectors.openapi.options import OpenApiOptions
from patchbay.connectors.openapi.sendable import HEADER_PATTERN
from patchbay.connectors.openapi.spec import load_path
from patchbay.connectors.openapi.tools import build_tools

NODE = Path(__file__).resolve().parents[1] / "e2e" / "node" / "node_modules"
OAS = NODE / "@readme" / "oas-examples"
GITHUB = NODE / "@octokit" / "openapi" / "generated" / "api.github.com.json"
REST_API = Path(__file__).resolve().parents[1] / "fixtures" / "openapi" / "rest_api.yaml"

SCHEMAS: list[dict[str, Any]] = [
    {"type": "integer", "minimum": 1, "maximum": 100},
    {"type": "number", "exclusiveMinimum": 0},
    {"type": ["string", "null"], "minLength": 2, "maxLength": 4},
    {"type": "string", "enum": ["open", "closed"]},
    {"type": "string", "pattern": "^[a-z]+$"},
    {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3, "uniqueItems": True},
    {"oneOf": [{"type": "number"}, {"type": "integer"}]},  # 3 matches both: oneOf fails
    {"anyOf": [{"type": "boolean"}, {"type": "array"}], "not": {"const": []}},
    {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "boolean"}},
        "required": ["a"],
        "additionalProperties": False,
        "dependentRequired": {"b": ["c"]},
    },
    {"type": "object", "additionalProperties": {"type": "integer"}},
    {"description": "anything", "examples": [1]},
    # What the input schemas add (sendable.py): non-empty header text, integer widths, base64 file contents.
    {"type": "string", "minLength": 1, "pattern": HEADER_PATTERN},
    {"type": "integer", "format": "int64", "minimum": -(2**63), "maximum": 2**63 - 1},
    {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1},
    {"type": "string", "contentMediaType": "image/png", "contentEncoding": "base64"},
    # format is an annotation for both (jsonschema asserts none by default).
    {"type": "string", "format": "email"},
    {"format": "date-time"},
    {"format": "uuid"},
    # Where ECMA-262 regexes and Python's differ, and float multipleOf: jsonschema's reading wins.
    {"pattern": r"^\s*$"},
    {"pattern": r"^\D+$"},
    {"pattern": r"^\w+$"},
    {"pattern": r"^a$"},
    {"multipleOf": 0.01},
    {"multipleOf": 3},
    # Local and recursive references, as the connector writes them.
    {"$ref": "#/$defs/Node", "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}}},
    {"properties": {"a": {"$ref": "#/$defs/A", "minLength": 1}}, "$defs": {"A": {"type": "string"}}},
    {"allOf": [{"type": "object"}, {"required": ["a"]}], "unevaluatedProperties": {"type": "integer"}},
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 200)
    | st.sampled_from([2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64])
    | st.floats(-5, 200, allow_nan=False)
    | st.sampled_from([0.07, 0.3, 1e300, -0.0, 3.0])
    | st.text(alphabet="abcXY1 ", max_size=6)
    | st.text(alphabet=" \t\n\x7f\x85\xa0\xa1éÿā☃a\ufeff\u0661\u2028", max_size=4)
    | st.sampled_from(["open", "closed", "a", "b", "a\n", "\ufeff", "\u0661\u0662", "x@example.com", "not a date"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(["a", "b", "c", "next"]), children)
    ),
    max_leaves=8,
)


def agrees(schema: Any, value: Any) -> bool:
    accept = compile_accept(schema)
    assert accept is not None, f"not compiled: {schema}"
    return accept(value) == (not list(jsonschema.Draft202012Validator(schema).iter_errors(value)))


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
@settings(max_examples=60, deadline=None)
@given(value=json_values)
def test_the_compiled_check_accepts_exactly_what_jsonschema_accepts(schema: dict[str, Any], value: Any) -> None:
    assert agrees(schema, value)


EDGE_VALUES: list[Any] = [
    *("", "a", "a\n", "\ufeff", " \t", "\u0661", "é", "\u2028", "x@example.com", "aGk=", "open"),
    *(0, 3, 1.0, 3.0, 0.07, 0.3, -0.0, 1e300, 2**31, 2**63, -(2**63) - 1, 2**64, True, False, None),
    *([], [1, 1.0], [True, 1], ["a", "a"], {}, {"a": "x"}, {"a": 1, "b": True}, {"a": "x", "b": False, "c": 1}),
    {"next": {"next": {"next": 1}}},
]


def test_the_compiled_check_agrees_on_every_edge_value() -> None:
    disagree = [(s, v) for s in SCHEMAS for v in EDGE_VALUES if not agrees(s, v)]
    assert disagree == []


def test_regex_and_multiple_of_follow_jsonschema_where_ecma_262_would_accept_more() -> None:
    # Each of these is accepted by jsonschema-rs's own ECMA-262 pattern and exact multipleOf, refused by jsonschema.
    for schema, value in (
        ({"pattern": r"^\s*$"}, "\ufeff"),
        ({"pattern": r"^\D+$"}, "\u0661"),
        ({"multipleOf": 0.01}, 0.07),
    ):
        accept = compile_accept(schema)
        assert accept is not None and not accept(value)
        assert ArgumentCheck({"properties": {"a": schema}}).problem({"a": value}) is not None


def test_a_value_jsonschema_takes_but_rust_refuses_is_accepted() -> None:
    # Python's "$" matches before a final newline and "\d" takes every Unicode digit: jsonschema decides.
    check = ArgumentCheck({"type": "object", "properties": {"a": {"pattern": r"^\d$"}, "b": {"pattern": "^b$"}}})
    assert check.problem({"a": "\u0661", "b": "b\n"}) is None
    assert check.problem({"a": "x"}) == "argument 'a': 'x' does not match '^\\\\d$'"


def test_a_pattern_only_python_reads_is_matched_as_python_reads_it() -> None:
    accept = compile_accept({"pattern": r"^a\Z"})  # \Z is not ECMA-262
    assert accept is not None and accept("a") and not accept("a\n")


def test_schemas_jsonschema_rs_cannot_take_are_left_to_jsonschema() -> None:
    assert compile_accept({"patternProperties": {"^x": {"type": "integer"}}}) is None
    assert compile_accept({"type": "nothing"}) is None  # not a JSON Schema: jsonschema-rs refuses to compile it
    check = ArgumentCheck({"type": "object", "patternProperties": {"^x": {"type": "integer"}}})
    assert check.problem({"xa": 1}) is None
    assert check.problem({"xa": "1"}) == "argument 'xa': '1' is not of type 'integer'"


def test_no_reference_is_fetched() -> None:
    assert compile_accept({"$ref": "http://127.0.0.1:9/schema.json"}) is None


def test_a_string_rust_cannot_take_goes_to_jsonschema() -> None:
    accept = compile_accept({"type": "string"})
    assert accept is not None and not accept("\ud800")  # a lone surrogate: no UTF-8 for it
    assert ArgumentCheck({"properties": {"a": {"type": "string"}}}).problem({"a": "\ud800"}) is None


def test_problems_name_the_arguments_and_their_place() -> None:
    schema = {
        "type": "object",
        "properties": {"labels": {"type": "array", "items": {"type": "string"}}, "n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    check = ArgumentCheck(schema)
    assert check.problem({"labels": ["a", 3]}) == (
        "missing required argument 'n'; this tool takes: labels, n; argument 'labels[1]': 3 is not of type 'string'"
    )
    assert check.problem([1]) == "the arguments must be an object: [1] is not of type 'object'"
    assert check.problem({"n": 1, "x": 2}) == "unknown argument 'x'; this tool takes: labels, n"
    assert check.problem({"n": 1}) is None


# -- the schemas of real specs' tools -------------------------------------------------------------------------------


async def _never(*args: Any) -> Any:
    raise AssertionError("no calls")


@functools.cache
def corpus_schemas(source: Path, every: int = 1) -> list[dict[str, Any]]:
    """Every ``every``-th tool's input schema and outputSchema, for ``source``'s spec."""
    spec = load_path(source)
    built = build_tools(spec, OpenApiOptions.model_validate({"spec": str(source)}), _never)
    found: list[dict[str, Any]] = []
    for tool in (built.operation_tools or built.tools)[::every]:
        found.append(tool.input_schema)
        if tool.output_schema is not None:
            found.append(tool.output_schema)
    return found


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        found += [p for key, item in value.items() for p in _nodes(item, (*path, key))]
    elif isinstance(value, list):
        found += [p for index, item in enumerate(value) for p in _nodes(item, (*path, index))]
    return found


@st.composite
def near(draw: st.DrawFn, valid: list[Any]) -> Any:
    """A valid instance, or one with a node replaced, dropped or a key added: values at the schema's edges."""
    value = copy.deepcopy(draw(st.sampled_from(valid)))
    path = draw(st.sampled_from(_nodes(value)))
    action = draw(st.sampled_from(["keep", "replace", "drop", "add"]))
    if action == "keep":
        return value
    if not path:
        return draw(json_values) if action == "replace" else value
    parent = value
    for step in path[:-1]:
        parent = parent[step]
    if action == "replace":
        parent[path[-1]] = draw(json_values)
    elif action == "drop":
        del parent[path[-1]]
    elif isinstance(parent[path[-1]], dict):
        parent[path[-1]][draw(st.sampled_from(["a", "extra", "id"]))] = draw(json_values)
    return value


def assert_agreement(schemas: list[dict[str, Any]], per_schema: int = 15) -> None:
    for schema in schemas:
        valid = examples(schema, 2) or [{}]

        @bounded(per_schema)
        @given(st.just(schema), near(valid))
        def check(schema: dict[str, Any], value: Any) -> None:
            assert agrees(schema, value), value

        check()


def test_the_rest_api_fixtures_tools_are_checked_alike() -> None:
    assert_agreement(corpus_schemas(REST_API))


@pytest.mark.skipif(not OAS.is_dir(), reason="@readme/oas-examples is not installed (make test installs it)")
@pytest.mark.parametrize(
    "name",
    [
        "3.0/json/petstore.json",
        "3.0/json/schema-validation.json",
        "3.0/json/schema-circular.json",
        "3.1/json/train-travel.json",
    ],
)
def test_oas_examples_tools_are_checked_alike(name: str) -> None:
    assert_agreement(corpus_schemas(OAS / name))


@pytest.mark.skipif(not GITHUB.is_file(), reason="@octokit/openapi is not installed (make test installs it)")
def test_a_sample_of_githubs_tools_is_checked_alike() -> None:
    assert_agreement(corpus_schemas(GITHUB, every=97), per_schema=10)
