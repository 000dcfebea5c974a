"""Tool input schemas admit only what the operation can be sent: non-empty path segments, query and header values,
integer widths, base64 for bytes, and object bodies kept whole when flat arguments would lose their rules."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest

from patchbay.connectors.openapi.inputs import Schemas, build_inputs, output_schema
from patchbay.connectors.openapi.models import ArgTarget, Body, Operation, Parameter, Success
from patchbay.connectors.openapi.sendable import HEADER_PATTERN, is_text_media_type
from patchbay.connectors.openapi.spec import parse_document


def inputs(*parameters: Parameter, body: Body | None = None, defs: dict[str, Any] | None = None) -> dict[str, Any]:
    _, schema = build_inputs(Operation("POST", "/things/{id}", "op", parameters=parameters, body=body), defs or {})
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def accepts(schema: dict[str, Any], arguments: dict[str, Any]) -> bool:
    return bool(jsonschema.Draft202012Validator(schema).is_valid(arguments))


def test_a_path_string_must_not_be_empty_and_other_path_types_are_left_alone() -> None:
    schema = inputs(Parameter("id", "path", {"type": "string"}, True), Parameter("n", "path", {"type": "integer"}))
    assert schema["properties"]["id"] == {"type": "string", "minLength": 1}
    assert schema["properties"]["n"] == {"type": "integer"}
    assert not accepts(schema, {"id": "", "n": 1}) and accepts(schema, {"id": "a", "n": 1})


def test_a_path_reference_is_narrowed_beside_the_reference_never_in_the_shared_definition() -> None:
    defs = {"Slug": {"type": "string", "maxLength": 10}}
    schema = inputs(Parameter("id", "path", {"$ref": "#/$defs/Slug"}, True), defs=defs)
    assert schema["properties"]["id"] == {"$ref": "#/$defs/Slug", "minLength": 1}
    assert schema["$defs"]["Slug"] == {"type": "string", "maxLength": 10}
    assert defs["Slug"] == {"type": "string", "maxLength": 10}


def test_a_stricter_minimum_length_is_kept_and_a_schema_admitting_only_empty_is_not_made_impossible() -> None:
    schema = inputs(
        Parameter("id", "path", {"type": "string", "minLength": 3}, True),
        Parameter("blank", "query", {"type": "string", "enum": [""]}),
    )
    assert schema["properties"]["id"]["minLength"] == 3
    assert schema["properties"]["blank"] == {"type": "string", "enum": [""]}


def test_a_query_string_is_non_empty_unless_the_parameter_allows_empty_values() -> None:
    schema = inputs(
        Parameter("q", "query", {"type": "string"}),
        Parameter("flag", "query", {"type": "string"}, allow_empty=True),
        Parameter("c", "cookie", {"type": "string"}),
    )
    assert schema["properties"]["q"] == {"type": "string", "minLength": 1}
    assert schema["properties"]["flag"] == {"type": "string"}
    assert schema["properties"]["c"] == {"type": "string"}


def test_references_inside_every_subschema_keyword_reach_the_tool_schemas_definitions() -> None:
    inner = {"type": "object", "properties": {"n": {"type": "integer"}}}
    payload = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"$ref": "#/components/schemas/Inner"},
    }
    tail = {"type": "array", "items": {"type": "string"}, "additionalItems": {"$ref": "#/components/schemas/Tail"}}
    body = {"type": "object", "properties": {"payload": payload, "tail": tail}}
    document = {
        "openapi": "3.1.0",
        "info": {"title": "T", "version": "1"},
        "paths": {"/x": {"post": {"requestBody": {"content": {"application/json": {"schema": body}}}}}},
        "components": {"schemas": {"Inner": inner, "Tail": {"type": "integer"}}},
    }
    spec = parse_document(document)
    _, schema = build_inputs(spec.operations[0], spec.defs)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["payload"]["contentSchema"] == {"$ref": "#/$defs/Inner"}
    assert schema["properties"]["tail"]["additionalItems"] == {"$ref": "#/$defs/Tail"}
    assert schema["$defs"] == {"Inner": inner, "Tail": {"type": "integer"}}


def test_allow_empty_value_is_read_from_openapi_3_and_swagger_2_query_parameters() -> None:
    def query(document: dict[str, Any]) -> list[Parameter]:
        [operation] = parse_document(document).operations
        return list(operation.parameters)

    three = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/s": {
                "get": {
                    "parameters": [
                        {"name": "a", "in": "query", "schema": {"type": "string"}, "allowEmptyValue": True},
                        {"name": "b", "in": "query", "schema": {"type": "string"}},
                        {"name": "h", "in": "header", "schema": {"type": "string"}, "allowEmptyValue": True},
                    ],
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
    }
    two = {
        "swagger": "2.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/s": {
                "get": {
                    "parameters": [
                        {"name": "a", "in": "query", "type": "string", "allowEmptyValue": True},
                        {"name": "b", "in": "query", "type": "string"},
                    ],
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
    }
    assert [(p.name, p.allow_empty) for p in query(three)] == [("a", True), ("b", False), ("h", False)]
    assert [(p.name, p.allow_empty) for p in query(two)] == [("a", True), ("b", False)]


def test_a_required_array_or_object_in_the_query_needs_one_member_and_an_optional_one_does_not() -> None:
    array = {"type": "array", "items": {"type": "integer"}}
    obj = {"type": "object", "properties": {"a": {"type": "integer"}}}
    schema = inputs(
        Parameter("ids", "query", array, required=True),
        Parameter("tags", "query", array),
        Parameter("filter", "query", obj, required=True, style="deepObject", explode=True),
    )
    assert schema["properties"]["ids"]["minItems"] == 1
    assert "minItems" not in schema["properties"]["tags"]
    assert schema["properties"]["filter"]["minProperties"] == 1
    assert not accepts(schema, {"ids": [], "filter": {"a": 1}})
    assert accepts(schema, {"ids": [1], "tags": [], "filter": {"a": 1}})


def test_a_header_value_is_visible_latin_1_text_with_spaces_only_inside() -> None:
    schema = inputs(Parameter("X-Trace", "header", {"type": "string"}))
    assert schema["properties"]["X_Trace"] == {"type": "string", "minLength": 1, "pattern": HEADER_PATTERN}
    for good in ("abc", "a b\tc", "café", "ÿ", "!~"):
        assert accepts(schema, {"X_Trace": good}), good
    for bad in ("", " a", "a ", "a\nb", "a\rb", "\x7f", "\x85", "\xa0", "ā", "☃", "a\x00"):
        assert not accepts(schema, {"X_Trace": bad}), repr(bad)
    assert re.search(HEADER_PATTERN, "é") and not re.search(HEADER_PATTERN, "\t")


def test_array_items_are_narrowed_like_values_of_their_own_place() -> None:
    strings = {"type": "array", "items": {"type": "string"}}
    schema = inputs(
        Parameter("tags", "query", strings),
        Parameter("marks", "query", strings, allow_empty=True),
        Parameter("ids", "path", {"type": "array"}, required=True),
        Parameter("X-Tags", "header", strings),
        Parameter("X-Counts", "header", {"type": "array", "items": {"type": "integer"}}),
        Parameter("c", "cookie", strings),
    )
    props = schema["properties"]
    assert props["tags"]["items"] == {"type": "string", "minLength": 1}
    assert props["marks"]["items"] == {"type": "string"}
    assert props["ids"]["items"] == {"minLength": 1}
    assert props["X_Tags"]["items"] == {"type": "string", "minLength": 1, "pattern": HEADER_PATTERN}
    assert props["X_Counts"]["items"] == {"type": "integer"}
    assert props["c"]["items"] == {"type": "string"}
    assert not accepts(schema, {"ids": ["a"], "tags": [""]}) and accepts(schema, {"ids": ["a"], "marks": [""]})
    assert not accepts(schema, {"ids": [""]}) and accepts(schema, {"ids": [1, "a"]})
    assert not accepts(schema, {"ids": ["a"], "X_Tags": ["ok", "☃"]}) and accepts(
        schema, {"ids": ["a"], "X_Tags": ["ok"]}
    )


def test_a_header_object_member_is_header_text_declared_or_not() -> None:
    shape = {"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"}}}
    schema = inputs(Parameter("id", "path", {"type": "string"}, True), Parameter("X-Who", "header", shape))
    header = schema["properties"]["X_Who"]
    assert header["properties"]["name"] == {"type": "string", "minLength": 1, "pattern": HEADER_PATTERN}
    assert header["properties"]["n"] == {"type": "integer"}
    base = {"id": "a"}
    assert accepts(schema, {**base, "X_Who": {"name": "Zoë", "n": 3, "extra": "x", "flag": True}})
    for bad in ({"name": "☃"}, {"name": ""}, {"extra": "a\nb"}, {"☃": 1}, {"": 1}, {"deep": {"a": 1}}):
        assert not accepts(schema, {**base, "X_Who": bad}), bad
    closed = {**shape, "additionalProperties": False}
    kept = inputs(Parameter("id", "path", {"type": "string"}, True), Parameter("X-Who", "header", closed))
    assert kept["properties"]["X_Who"]["additionalProperties"] is False


def test_items_of_a_referenced_array_are_narrowed_beside_the_reference() -> None:
    defs = {"Tags": {"type": "array", "items": {"type": "string"}}}
    schema = inputs(
        Parameter("id", "path", {"type": "string"}, True), Parameter("t", "query", {"$ref": "#/$defs/Tags"}), defs=defs
    )
    assert schema["properties"]["t"] == {"$ref": "#/$defs/Tags", "items": {"type": "string", "minLength": 1}}
    assert defs["Tags"] == {"type": "array", "items": {"type": "string"}}
    assert not accepts(schema, {"id": "a", "t": [""]}) and accepts(schema, {"id": "a", "t": ["x"]})


def test_a_header_schema_with_its_own_pattern_keeps_it_and_an_integer_header_gets_no_string_rules() -> None:
    schema = inputs(
        Parameter("X-Id", "header", {"type": "string", "pattern": "^[0-9a-f]+$"}),
        Parameter("X-Count", "header", {"type": "integer"}),
    )
    assert schema["properties"]["X_Id"] == {"type": "string", "pattern": "^[0-9a-f]+$", "minLength": 1}
    assert schema["properties"]["X_Count"] == {"type": "integer"}


def test_int32_and_int64_formats_bound_input_integers_everywhere_but_never_outputs() -> None:
    defs = {
        "Page": {
            "type": "object",
            "properties": {
                "size": {"type": "integer", "format": "int32", "minimum": 1},
                "offset": {"type": "integer", "format": "int64"},
                "ratio": {"type": "number", "format": "float"},
            },
        }
    }
    schema = inputs(
        Parameter("n", "query", {"type": "integer", "format": "int32", "maximum": 50}),
        body=Body("application/json", {"$ref": "#/$defs/Page"}),
        defs=defs,
    )
    assert schema["properties"]["n"] == {"type": "integer", "format": "int32", "maximum": 50, "minimum": -(2**31)}
    page = schema["properties"]  # the body's properties, flattened
    assert (page["size"]["minimum"], page["size"]["maximum"]) == (1, 2**31 - 1)
    assert (page["offset"]["minimum"], page["offset"]["maximum"]) == (-(2**63), 2**63 - 1)
    assert page["ratio"] == {"type": "number", "format": "float"}
    assert accepts(schema, {"n": -(2**31), "size": 2**31 - 1})
    assert not accepts(schema, {"n": -(2**31) - 1}) and not accepts(schema, {"offset": 2**63})
    nested = inputs(body=Body("application/json", {"type": "array", "items": {"$ref": "#/$defs/Page"}}), defs=defs)
    assert nested["$defs"]["Page"]["properties"]["offset"]["maximum"] == 2**63 - 1
    out = output_schema(Success("200", "application/json", {"$ref": "#/$defs/Page"}), Schemas(defs))
    assert out is not None and "maximum" not in str(out) and "minimum" not in str(out)


def test_binary_file_properties_are_taken_base64_and_text_ones_as_plain_strings() -> None:
    form = {
        "type": "object",
        "properties": {
            "photo": {"type": "string", "contentMediaType": "image/png"},
            "raw": {"type": "string", "contentMediaType": "application/octet-stream", "description": "Bytes"},
            "notes": {"type": "string", "contentMediaType": "text/markdown"},
            "meta": {"type": "string", "contentMediaType": "application/vnd.api+json"},
            "b64": {"type": "string", "contentMediaType": "image/png", "contentEncoding": "base64"},
        },
    }
    properties = inputs(body=Body("multipart/form-data", form))["properties"]
    assert properties["photo"] == {
        "type": "string",
        "contentMediaType": "image/png",
        "contentEncoding": "base64",
        "description": "The file's bytes, base64-encoded.",
    }
    assert properties["raw"]["contentEncoding"] == "base64" and properties["raw"]["description"] == "Bytes"
    assert "contentEncoding" not in properties["notes"] and "contentEncoding" not in properties["meta"]
    assert properties["b64"] == form["properties"]["b64"]


def test_a_swagger_file_parameter_becomes_a_base64_argument() -> None:
    document = {
        "swagger": "2.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/up": {
                "post": {
                    "consumes": ["multipart/form-data"],
                    "parameters": [{"name": "file", "in": "formData", "type": "file", "required": True}],
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
    }
    spec = parse_document(document)
    _, schema = build_inputs(spec.operations[0], spec.defs)
    assert schema["properties"]["file"]["contentEncoding"] == "base64"


@pytest.mark.parametrize("text", ["text/plain", "text/csv; charset=utf-8", "application/json", "application/x-yaml"])
def test_text_media_types_are_text(text: str) -> None:
    assert is_text_media_type(text)


@pytest.mark.parametrize("binary", ["image/png", "application/pdf", "application/octet-stream", "audio/mpeg"])
def test_other_media_types_are_bytes(binary: str) -> None:
    assert not is_text_media_type(binary)


WHOLE = [
    {"minProperties": 1},
    {"maxProperties": 1},
    {"dependentRequired": {"a": ["b"]}},
    {"patternProperties": {"^x-": {"type": "string"}}},
    {"additionalProperties": {"type": "string"}},
    {"if": {"required": ["a"]}, "then": {"required": ["b"]}},
    {"not": {"required": ["a", "b"]}},
    {"propertyNames": {"pattern": "^[a-z]+$"}},
    {"required": ["c"]},  # a required member with no schema of its own
]


@pytest.mark.parametrize("rule", WHOLE, ids=[next(iter(rule)) for rule in WHOLE])
def test_an_object_body_with_rules_about_the_whole_object_stays_one_body_argument(rule: dict[str, Any]) -> None:
    body = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, **rule}
    args, schema = build_inputs(Operation("POST", "/t", "op", body=Body("application/json", body, required=True)), {})
    assert args == {"body": ArgTarget("body", "")}
    assert schema["properties"]["body"] == body and schema["required"] == ["body"]


def test_a_rule_about_the_whole_object_inside_an_all_of_member_also_keeps_the_body_whole() -> None:
    defs = {"Base": {"type": "object", "properties": {"a": {"type": "string"}}, "minProperties": 1}}
    body = {"allOf": [{"$ref": "#/$defs/Base"}, {"properties": {"b": {"type": "string"}}}]}
    args, _ = build_inputs(Operation("POST", "/t", "op", body=Body("application/json", body)), defs)
    assert list(args) == ["body"]


def test_an_object_body_without_such_rules_is_still_flattened() -> None:
    body = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}
    args, _ = build_inputs(Operation("POST", "/t", "op", body=Body("application/json", body, True)), {})
    assert args == {"a": ArgTarget("body_property", "a")}


def test_an_optional_flat_body_given_at_all_needs_the_properties_it_requires() -> None:
    body = {
        "type": "object",
        "properties": {"client_id": {"type": "string"}, "secret": {"type": "string"}, "scope": {"type": "string"}},
        "required": ["client_id", "secret"],
    }
    schema = inputs(Parameter("q", "query", {"type": "integer"}), body=Body("application/json", body))
    assert schema["dependentRequired"] == {
        "client_id": ["secret"],
        "secret": ["client_id"],
        "scope": ["client_id", "secret"],
    }
    assert accepts(schema, {}) and accepts(schema, {"q": 1}) and accepts(schema, {"client_id": "a", "secret": "b"})
    assert not accepts(schema, {"scope": "x"}) and not accepts(schema, {"client_id": "a"})
    required = inputs(body=Body("application/json", body, required=True))
    assert "dependentRequired" not in required and required["required"] == ["client_id", "secret"]


def styled_form_spec(version: str, required: list[str]) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {"tag": {"type": "string"}, "ids": {"type": "array", "items": {"type": "string"}}},
        "required": required,
    }
    encoding = {"tag": {"style": "deepObject", "explode": True}, "ids": {"style": "pipeDelimited"}}
    return {
        "openapi": version,
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/f": {
                "post": {
                    "operationId": "f",
                    "requestBody": {"content": {"multipart/form-data": {"schema": schema, "encoding": encoding}}},
                    "responses": {"200": {"description": "OK"}},
                }
            }
        },
    }


def test_a_3_1_multipart_property_whose_written_style_cannot_carry_its_type_is_not_an_argument() -> None:
    spec = parse_document(styled_form_spec("3.1.0", []))
    (operation,) = spec.operations
    assert operation.body is not None and operation.body.encoding["ids"].styled
    args, _ = build_inputs(operation, spec.defs)
    assert set(args) == {"ids"}  # deepObject is undefined for a string: "tag" could never be sent


def test_a_3_0_multipart_body_ignores_encoding_styles_so_every_property_stays() -> None:
    spec = parse_document(styled_form_spec("3.0.3", ["tag"]))
    (operation,) = spec.operations
    assert operation.body is not None and not operation.body.encoding["tag"].styled
    args, _ = build_inputs(operation, spec.defs)
    assert set(args) == {"tag", "ids"}


def test_a_3_1_multipart_style_applies_only_when_written() -> None:
    document = styled_form_spec("3.1.0", [])
    media = document["paths"]["/f"]["post"]["requestBody"]["content"]["multipart/form-data"]
    media["encoding"] = {"tag": {"contentType": "text/plain"}, "ids": {"explode": False}}
    (operation,) = parse_document(document).operations
    assert operation.body is not None
    assert not operation.body.encoding["tag"].styled
    assert operation.body.encoding["ids"].styled and operation.body.encoding["ids"].style == "form"


def test_an_operation_whose_required_form_property_its_style_cannot_carry_is_skipped_with_the_reason() -> None:
    spec = parse_document(styled_form_spec("3.1.0", ["tag"]))
    assert not spec.operations
    (skipped,) = spec.skipped
    assert "'tag' cannot be sent: style deepObject is defined only for objects" in skipped.reason


def query_style_spec(required: bool) -> dict[str, Any]:
    params = [
        {"name": "q", "in": "query", "style": "deepObject", "explode": True, "schema": {"type": "string"}},
        {"name": "ids", "in": "query", "style": "pipeDelimited", "explode": True, "schema": {"type": "array"}},
        {"name": "sort", "in": "query", "style": "pipeDelimited", "required": required, "schema": {"type": "array"}},
        {"name": "f", "in": "query", "style": "deepObject", "explode": True, "schema": {"type": "object"}},
    ]
    operation = {"parameters": params, "responses": {"200": {"description": "ok"}}}
    return {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {"/s": {"get": operation}}}


def test_an_optional_query_parameter_whose_style_cannot_carry_its_type_is_not_an_argument() -> None:
    [operation] = parse_document(query_style_spec(required=False)).operations
    _, schema = build_inputs(operation, {})
    assert sorted(schema["properties"]) == ["f", "sort"]


def test_an_operation_requiring_a_query_parameter_its_style_cannot_carry_is_skipped_with_the_reason() -> None:
    assert parse_document(query_style_spec(required=True)).operations  # pipeDelimited carries an array
    doc = query_style_spec(required=True)
    doc["paths"]["/s"]["get"]["parameters"][2]["schema"] = {"type": "string"}
    spec = parse_document(doc)
    assert not spec.operations
    (skipped,) = spec.skipped
    assert skipped.reason == (
        "the required query parameter 'sort' cannot be sent: style pipeDelimited is defined only for arrays and "
        "objects, not for single values"
    )
