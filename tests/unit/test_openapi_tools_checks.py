"""Argument checks: the compiled fast path accepts exactly what jsonschema accepts, and errors name the argument."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchbay.connectors.openapi.checks import ArgumentCheck, Unsupported, compile_check
from patchbay.connectors.openapi.sendable import HEADER_PATTERN

SCHEMAS: list[dict[str, Any]] = [
    {"type": "integer", "minimum": 1, "maximum": 100},
    {"type": "number", "exclusiveMinimum": 0},
    {"type": ["string", "null"], "minLength": 2, "maxLength": 4},
    {"type": "string", "enum": ["open", "closed"]},
    {"type": "string", "pattern": "^[a-z]+$"},
    {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3},
    {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    {"oneOf": [{"type": "number"}, {"type": "integer"}]},  # 3 matches both: oneOf fails
    {"anyOf": [{"type": "boolean"}, {"type": "array"}]},
    {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "boolean"}},
        "required": ["a"],
        "additionalProperties": False,
    },
    {"type": "object", "additionalProperties": {"type": "integer"}},
    {"description": "anything", "examples": [1]},
    # What the input schemas add (sendable.py): non-empty header text, integer widths, base64 file contents.
    {"type": "string", "minLength": 1, "pattern": HEADER_PATTERN},
    {"minLength": 1},
    {"type": "integer", "format": "int64", "minimum": -(2**63), "maximum": 2**63 - 1},
    {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1},
    {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    {"type": "string", "contentMediaType": "image/png", "contentEncoding": "base64"},
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 200)
    | st.sampled_from([2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64])
    | st.floats(-5, 200, allow_nan=False)
    | st.text(alphabet="abcXY1 ", max_size=6)
    | st.text(alphabet=" \t\n\x7f\x85\xa0\xa1éÿā☃a", max_size=4)
    | st.sampled_from(["open", "closed", "a", "b"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(["a", "b", "c"]), children),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(range(len(SCHEMAS))), json_values)
def test_a_compiled_check_agrees_with_jsonschema(which: int, value: Any) -> None:
    schema = SCHEMAS[which]
    assert compile_check(schema)(value) == jsonschema.Draft202012Validator(schema).is_valid(value)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "tags", "ref", "trace", "file", "extra"]), json_values))
def test_an_argument_check_accepts_exactly_what_jsonschema_accepts(arguments: dict[str, Any]) -> None:
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},  # not compiled
            "ref": {"$ref": "#/$defs/Name"},  # not compiled
            "trace": {"type": "string", "minLength": 1, "pattern": HEADER_PATTERN},
            "file": {"type": "string", "contentMediaType": "application/pdf", "contentEncoding": "base64"},
        },
        "required": ["id"],
        "additionalProperties": False,
        "dependentRequired": {"trace": ["file"]},  # an optional body's members go together (inputs.py)
        "$defs": {"Name": {"type": "string", "minLength": 1}},
    }
    valid = jsonschema.Draft202012Validator(schema).is_valid(arguments)
    assert (ArgumentCheck(schema).problem(arguments) is None) == valid


def test_keywords_outside_the_subset_are_not_compiled() -> None:
    for schema in ({"$ref": "#/$defs/X"}, {"const": 1}, {"allOf": [{}]}, {"type": "string", "uniqueItems": True}):
        with pytest.raises(Unsupported):
            compile_check(schema)


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
    assert check.problem({"n": 1}) is None
