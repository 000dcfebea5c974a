"""Spec intake: OpenAPI 3.x documents (inline, small) into the shared model, one behaviour per test."""

from __future__ import annotations

from typing import Any

import pytest

from patchbay.connectors.openapi.models import ApiSpec, Operation
from patchbay.connectors.openapi.spec import parse_document
from patchbay.errors import ConfigError


def api(paths: dict[str, Any], schemas: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"openapi": "3.0.3", "info": {"title": "T", "version": "1"}, "paths": paths}
    if schemas is not None:
        document["components"] = {"schemas": schemas}
    document.update(top)
    return document


def returning(schema: dict[str, Any], status: str = "200") -> dict[str, Any]:
    return {"responses": {status: {"description": "ok", "content": {"application/json": {"schema": schema}}}}}


def only(spec: ApiSpec) -> Operation:
    assert not spec.skipped, spec.skipped
    assert len(spec.operations) == 1
    return spec.operations[0]


def response_schema(document: dict[str, Any]) -> dict[str, Any]:
    success = only(parse_document(document)).success
    assert success is not None and success.schema is not None
    return success.schema


def test_nullable_30_becomes_a_null_type_and_a_null_enum_member() -> None:
    schema = {"type": "string", "nullable": True, "enum": ["a", "b"]}
    assert response_schema(api({"/x": {"get": returning(schema)}})) == {
        "type": ["string", "null"],
        "enum": ["a", "b", None],
    }


def test_nullable_reference_becomes_any_of_the_reference_or_null() -> None:
    schemas = {"Pet": {"type": "object"}}
    wrapped = {"allOf": [{"$ref": "#/components/schemas/Pet"}], "nullable": True}
    assert response_schema(api({"/x": {"get": returning(wrapped)}}, schemas)) == {
        "anyOf": [{"allOf": [{"$ref": "#/$defs/Pet"}]}, {"type": "null"}]
    }
    sibling = {"$ref": "#/components/schemas/Pet", "nullable": True}
    assert response_schema(api({"/x": {"get": returning(sibling)}}, schemas)) == {
        "anyOf": [{"$ref": "#/$defs/Pet"}, {"type": "null"}]
    }


def test_31_type_lists_with_null_are_kept() -> None:
    document = api({"/x": {"get": returning({"type": ["integer", "null"], "exclusiveMinimum": 0})}}, openapi="3.1.0")
    assert response_schema(document) == {"type": ["integer", "null"], "exclusiveMinimum": 0}


def test_boolean_exclusive_bounds_become_numeric_ones() -> None:
    schema = {"type": "number", "minimum": 1, "exclusiveMinimum": True, "maximum": 9, "exclusiveMaximum": False}
    assert response_schema(api({"/x": {"get": returning(schema)}})) == {
        "type": "number",
        "exclusiveMinimum": 1,
        "maximum": 9,
    }


def test_openapi_only_keywords_are_dropped_and_example_becomes_examples() -> None:
    schema = {
        "type": "object",
        "example": {"kind": "cat"},
        "xml": {"name": "pet"},
        "externalDocs": {"url": "https://example.com"},
        "x-internal": True,
        "discriminator": {"propertyName": "kind"},
        "properties": {"kind": {"type": "string", "x-order": 1}},
    }
    assert response_schema(api({"/x": {"get": returning(schema)}})) == {
        "type": "object",
        "examples": [{"kind": "cat"}],
        "description": "The 'kind' property says which variant this is.",
        "properties": {"kind": {"type": "string"}},
    }


def test_binary_becomes_a_content_media_type_and_byte_a_base64_encoding() -> None:
    schema = {
        "type": "object",
        "properties": {"file": {"type": "string", "format": "binary"}, "raw": {"type": "string", "format": "byte"}},
    }
    assert response_schema(api({"/x": {"get": returning(schema)}}))["properties"] == {
        "file": {"type": "string", "contentMediaType": "application/octet-stream"},
        "raw": {"type": "string", "contentEncoding": "base64"},
    }


def test_recursive_schemas_stay_references_into_defs() -> None:
    schemas = {
        "Node": {
            "type": "object",
            "properties": {"children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}},
        }
    }
    spec = parse_document(api({"/tree": {"get": returning({"$ref": "#/components/schemas/Node"})}}, schemas))
    assert only(spec).success is not None and only(spec).success.schema == {"$ref": "#/$defs/Node"}  # type: ignore[union-attr]
    assert spec.defs == {
        "Node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}
    }


def test_a_long_chain_of_references_converts_without_recursion() -> None:
    schemas = {
        f"S{i}": {"type": "object", "properties": {"next": {"$ref": f"#/components/schemas/S{i + 1}"}}}
        for i in range(5000)
    }
    schemas["S5000"] = {"type": "string"}
    spec = parse_document(api({"/x": {"get": returning({"$ref": "#/components/schemas/S0"})}}, schemas))
    only(spec)
    assert len(spec.defs) == 5001
    assert spec.defs["S4999"] == {"type": "object", "properties": {"next": {"$ref": "#/$defs/S5000"}}}


def test_schemas_nested_too_deep_skip_the_operation_only() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(3000):
        deep = {"type": "array", "items": deep}
    spec = parse_document(api({"/deep": {"get": returning(deep)}, "/fine": {"get": returning({"type": "string"})}}))
    assert [op.key for op in spec.operations] == ["GET /fine"]
    assert [s.key for s in spec.skipped] == ["GET /deep"]
    assert "nested deeper than" in spec.skipped[0].reason


def test_json_pointer_escapes_and_percent_encoding_resolve() -> None:
    schemas = {"a/b~c": {"type": "integer"}, "Name With Space": {"type": "boolean"}}
    document = api(
        {
            "/x": {"get": returning({"$ref": "#/components/schemas/a~1b~0c"})},
            "/y": {"get": returning({"$ref": "#/components/schemas/Name%20With%20Space"})},
        },
        schemas,
    )
    spec = parse_document(document)
    assert not spec.skipped
    keys = [op.success.schema["$ref"].removeprefix("#/$defs/") for op in spec.operations]  # type: ignore[union-attr,index]
    assert [spec.defs[key] for key in keys] == [{"type": "integer"}, {"type": "boolean"}]
    assert all(key.replace("_", "").replace(".", "").replace("-", "").isalnum() for key in keys)


def test_a_draft_4_tuple_becomes_prefix_items_and_its_additional_items_the_items_after_them() -> None:
    schemas = {"Extra": {"type": "integer"}}
    pair = {"type": "array", "items": [{"type": "string"}], "additionalItems": {"$ref": "#/components/schemas/Extra"}}
    schema = response_schema(api({"/x": {"get": returning(pair)}}, schemas))
    assert schema == {"type": "array", "prefixItems": [{"type": "string"}], "items": {"$ref": "#/$defs/Extra"}}


def test_a_schema_that_needs_no_rewriting_is_shared_not_copied() -> None:
    plain = {"type": "object", "properties": {"name": {"type": "string"}}}
    spec = parse_document(api({"/x": {"get": returning({"$ref": "#/components/schemas/Plain"})}}, {"Plain": plain}))
    assert spec.defs["Plain"] is plain


def test_each_component_is_converted_once_for_every_operation_using_it() -> None:
    schemas = {"Pet": {"type": "object", "nullable": True}}
    paths = {f"/p{i}": {"get": returning({"$ref": "#/components/schemas/Pet"})} for i in range(3)}
    spec = parse_document(api(paths, schemas))
    assert len(spec.operations) == 3 and list(spec.defs) == ["Pet"]
    assert spec.defs["Pet"] == {"type": ["object", "null"]}


def test_a_broken_component_skips_every_operation_that_reaches_it_and_no_other() -> None:
    schemas = {
        "Bad": {"type": "object", "properties": ["not", "a", "map"]},
        "Holder": {"type": "object", "properties": {"bad": {"$ref": "#/components/schemas/Bad"}}},
        "Good": {"type": "string"},
    }
    shared_param = {"name": "q", "in": "query", "schema": {"$ref": "#/components/schemas/Holder"}}
    document = api(
        {
            "/a": {"get": {"parameters": [{"$ref": "#/components/parameters/Q"}], "responses": {}}},
            "/b": {"get": {"parameters": [{"$ref": "#/components/parameters/Q"}], "responses": {}}},
            "/c": {"get": returning({"$ref": "#/components/schemas/Good"})},
        },
        schemas,
    )
    document["components"]["parameters"] = {"Q": shared_param}
    spec = parse_document(document)
    assert [op.key for op in spec.operations] == ["GET /c"]
    assert {s.key: s.reason for s in spec.skipped} == {
        "GET /a": "schema 'Bad': 'properties' must be an object of schemas",
        "GET /b": "schema 'Bad': 'properties' must be an object of schemas",
    }


def test_path_level_parameters_merge_and_the_operation_wins() -> None:
    item = {
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "verbose", "in": "query", "schema": {"type": "boolean"}, "description": "path level"},
        ],
        "get": {
            "parameters": [{"name": "verbose", "in": "query", "schema": {"type": "integer"}, "description": "own"}],
            "responses": {},
        },
    }
    op = only(parse_document(api({"/things/{id}": item})))
    assert [(p.name, p.location, p.schema, p.description) for p in op.parameters] == [
        ("id", "path", {"type": "string"}, ""),
        ("verbose", "query", {"type": "integer"}, "own"),
    ]


def test_undeclared_path_template_parameters_are_added_as_required_strings() -> None:
    op = only(parse_document(api({"/orgs/{org}/repos": {"get": {"responses": {}}}})))
    assert [(p.name, p.location, p.required, p.schema) for p in op.parameters] == [
        ("org", "path", True, {"type": "string"})
    ]


def test_parameter_style_and_explode_defaults_per_location() -> None:
    params = [
        {"name": "p", "in": "path", "required": True, "schema": {"type": "array"}},
        {"name": "q", "in": "query", "schema": {"type": "array"}},
        {"name": "h", "in": "header", "schema": {"type": "array"}},
        {"name": "c", "in": "cookie", "schema": {"type": "array"}},
        {"name": "d", "in": "query", "style": "deepObject", "schema": {"type": "object"}},
        {"name": "s", "in": "query", "style": "spaceDelimited", "explode": True, "allowReserved": True},
    ]
    op = only(parse_document(api({"/x/{p}": {"get": {"parameters": params, "responses": {}}}})))
    assert [(p.name, p.style, p.explode, p.allow_reserved) for p in op.parameters] == [
        ("p", "simple", False, False),
        ("q", "form", True, False),
        ("h", "simple", False, False),
        ("c", "form", True, False),
        ("d", "deepObject", False, False),
        ("s", "spaceDelimited", True, True),
    ]
    assert op.parameters[5].schema == {}


def test_a_content_parameter_keeps_its_media_type() -> None:
    param = {"name": "filter", "in": "query", "content": {"application/json": {"schema": {"type": "object"}}}}
    op = only(parse_document(api({"/x": {"get": {"parameters": [param], "responses": {}}}})))
    assert (op.parameters[0].content_type, op.parameters[0].schema) == ("application/json", {"type": "object"})


def test_top_level_security_applies_unless_the_operation_says_otherwise() -> None:
    paths = {
        "/inherits": {"get": {"responses": {}}},
        "/own": {"get": {"security": [{"key": []}, {"oauth": ["read", "write"]}], "responses": {}}},
        "/anonymous": {"get": {"security": [], "responses": {}}},
    }
    document = api(paths, security=[{"oauth": ["read"]}])
    document["components"] = {
        "securitySchemes": {
            "key": {"type": "apiKey", "in": "cookie", "name": "sid"},
            "oauth": {
                "type": "oauth2",
                "flows": {
                    "clientCredentials": {
                        "tokenUrl": "https://as.example.com/token",
                        "scopes": {"read": "", "write": ""},
                    }
                },
            },
            "basic": {"type": "http", "scheme": "Basic"},
        }
    }
    spec = parse_document(document)
    assert [op.security for op in spec.operations] == [
        ({"oauth": ("read",)},),
        ({"key": ()}, {"oauth": ("read", "write")}),
        (),
    ]
    assert spec.schemes["key"].location == "cookie" and spec.schemes["key"].name == "sid"
    assert spec.schemes["oauth"].token_url == "https://as.example.com/token"
    assert spec.schemes["oauth"].scopes == ("read", "write")
    assert spec.schemes["basic"].scheme == "basic"


def test_the_body_prefers_json_then_form_then_multipart_then_text() -> None:
    def chosen(*media: str) -> str:
        content = {m: {"schema": {"type": "object"}} for m in media}
        op = only(parse_document(api({"/x": {"post": {"requestBody": {"content": content}, "responses": {}}}})))
        assert op.body is not None
        return op.body.media_type

    assert chosen("application/xml", "application/vnd.api+json") == "application/vnd.api+json"
    assert (
        chosen("text/plain", "multipart/form-data", "application/x-www-form-urlencoded")
        == "application/x-www-form-urlencoded"
    )
    assert chosen("text/plain", "multipart/form-data") == "multipart/form-data"
    assert chosen("application/octet-stream", "text/csv") == "text/csv"
    assert chosen("application/xml", "image/png") == "application/xml"


def test_the_body_keeps_its_encodings_and_loses_read_only_properties() -> None:
    schemas = {
        "Pet": {
            "type": "object",
            "required": ["id", "name"],
            "properties": {
                "id": {"type": "integer", "readOnly": True},
                "name": {"type": "string"},
                "photo": {"type": "string", "format": "binary"},
            },
        }
    }
    body = {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"$ref": "#/components/schemas/Pet"},
                "encoding": {"photo": {"contentType": "image/png"}, "name": {"style": "form", "explode": False}},
            }
        },
    }
    spec = parse_document(api({"/pets": {"post": {"requestBody": body, "responses": {}}}}, schemas))
    op = only(spec)
    assert op.body is not None and op.body.required and op.body.media_type == "multipart/form-data"
    assert op.body.schema["required"] == ["name"] and set(op.body.schema["properties"]) == {"name", "photo"}
    assert op.body.encoding["photo"].content_type == "image/png"
    assert (op.body.encoding["name"].style, op.body.encoding["name"].explode) == ("form", False)
    assert "id" in spec.defs["Pet"]["properties"]  # the shared definition is untouched


def test_the_response_loses_write_only_properties() -> None:
    schema = {
        "type": "object",
        "properties": {"password": {"type": "string", "writeOnly": True}, "name": {"type": "string"}},
    }
    assert response_schema(api({"/x": {"get": returning(schema)}})) == {
        "type": "object",
        "properties": {"name": {"type": "string"}},
    }


def test_success_is_the_first_2xx_then_a_default_with_content() -> None:
    def status(responses: dict[str, Any]) -> str | None:
        success = only(parse_document(api({"/x": {"get": {"responses": responses}}}))).success
        return None if success is None else success.status

    with_body = {"description": "", "content": {"application/json": {"schema": {"type": "object"}}}}
    assert status({"201": with_body, "200": with_body, "400": with_body}) == "200"
    assert status({"204": {"description": ""}, "202": with_body}) == "202"
    assert status({"2XX": with_body, "default": with_body}) == "2XX"
    assert status({"default": with_body, "404": with_body}) == "default"
    assert status({"default": {"description": "no content"}}) is None


def test_success_prefers_json_among_media_types() -> None:
    content = {"application/xml": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "object"}}}
    success = only(
        parse_document(api({"/x": {"get": {"responses": {"200": {"description": "", "content": content}}}}}))
    ).success
    assert success is not None and (success.media_type, success.schema) == ("application/json", {"type": "object"})


def test_an_idempotency_key_header_is_noted() -> None:
    params = [{"name": "idempotency-key", "in": "header", "schema": {"type": "string"}}]
    assert (
        only(parse_document(api({"/x": {"post": {"parameters": params, "responses": {}}}}))).idempotency_header
        == "idempotency-key"
    )


def test_path_item_references_and_server_variables() -> None:
    document = api(
        {"/pets": {"$ref": "#/components/pathItems/Pets"}},
        servers=[
            {
                "url": "https://{env}.example.com:{port}/v1",
                "variables": {"env": {"default": "api"}, "port": {"default": "8443"}},
            }
        ],
    )
    document["components"] = {"pathItems": {"Pets": {"get": {"operationId": "listPets", "responses": {}}}}}
    spec = parse_document(document)
    assert only(spec).operation_id == "listPets"
    assert spec.servers == ("https://api.example.com:8443/v1",)


def test_external_references_are_refused_without_a_resolver() -> None:
    spec = parse_document(
        api({"/x": {"get": returning({"$ref": "other.yaml#/Pet"})}, "/y": {"get": {"responses": {}}}})
    )
    assert [op.key for op in spec.operations] == ["GET /y"]
    assert "refused" in spec.skipped[0].reason and "other.yaml" in spec.skipped[0].reason


def test_external_references_resolve_against_the_document_they_are_written_in() -> None:
    files = {
        "https://specs.example.com/v1/schemas/pet.json": {
            "Pet": {"type": "object", "properties": {"tag": {"$ref": "tag.json"}}}
        },
        "https://specs.example.com/v1/schemas/tag.json": {"type": "string", "nullable": True},
    }
    asked: list[str] = []

    def resolve(uri: str) -> Any:
        asked.append(uri)
        return files[uri]

    document = api({"/x": {"get": returning({"$ref": "schemas/pet.json#/Pet"})}})
    spec = parse_document(document, source="https://specs.example.com/v1/api.json", resolve=resolve)
    only(spec)
    assert asked == list(files)
    assert spec.defs["Pet"] == {"type": "object", "properties": {"tag": {"$ref": "#/$defs/tag"}}}
    assert spec.defs["tag"] == {"type": ["string", "null"]}


def test_an_external_schema_named_like_a_root_component_gets_a_stable_suffix() -> None:
    def resolve(uri: str) -> Any:
        return {"Pet": {"type": "integer"}}

    document = api(
        {
            "/a": {"get": returning({"$ref": "#/components/schemas/Pet"})},
            "/b": {"get": returning({"$ref": "ext.json#/Pet"})},
        },
        {"Pet": {"type": "string"}},
    )
    first = parse_document(document, source="https://h.example/api.json", resolve=resolve)
    again = parse_document(document, source="https://h.example/api.json", resolve=resolve)
    assert first.defs["Pet"] == {"type": "string"}
    external = [key for key in first.defs if key != "Pet"]
    assert len(external) == 1 and external[0].startswith("Pet_") and first.defs[external[0]] == {"type": "integer"}
    assert list(again.defs) == list(first.defs)


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({"asyncapi": "2.6.0", "info": {}}, "AsyncAPI"),
        ({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}, "JSON Schema"),
        ({"info": {"_postman_id": "x"}, "item": []}, "Postman"),
        ({"swaggerVersion": "1.2", "apis": []}, "Swagger 1.x"),
        ({"openapi": "4.0.0", "paths": {}}, "4.0.0"),
        ({"swagger": "1.2"}, "not supported"),
        ([1, 2], "a list"),
        ({"name": "x", "version": 2}, "top-level keys: name, version"),
    ],
)
def test_a_document_that_is_not_openapi_says_what_it_looks_like(document: Any, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_document(document, source="api.json")
    assert says in str(raised.value) and str(raised.value).startswith("api.json: ")
    assert raised.value.key == "spec"


def test_a_malformed_paths_object_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="paths must be an object"):
        parse_document({"openapi": "3.1.0", "info": {}, "paths": ["/x"]})
