"""Argument checks: the compiled fast path accepts exactly what jsonschema accepts, and errors name the argument."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchbay.connectors.openapi.checks import ArgumentCheck, Unsupported, compile_check

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
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 200)
    | st.floats(-5, 200, allow_nan=False)
    | st.text(alphabet="abcXY1 ", max_size=6)
    | st.sampled_from(["open", "closed", "a", "b"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(["a", "b", "c"]), children),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(range(len(SCHEMAS))), json_values)
def test_a_compiled_check_agrees_with_jsonschema(which: int, value: Any) -> None:
    schema = SCHEMAS[which]
    assert compile_check(schema)(value) == jsonschema.Draft202012Validator(schema).is_valid(value)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "tags", "ref", "extra"]), json_values))
def test_an_argument_check_accepts_exactly_what_jsonschema_accepts(arguments: dict[str, Any]) -> None:
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},  # not compiled
            "ref": {"$ref": "#/$defs/Name"},  # not compiled
        },
        "required": ["id"],
        "additionalProperties": False,
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
