"""Spec intake from real sources: Swagger 2.0, YAML text, multi-file specs on disk, specs fetched over HTTP from a
server on loopback through the SSRF-guarded fetcher, and random documents that must never crash intake."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patchbay.connectors.openapi.options import OpenApiOptions
from patchbay.connectors.openapi.spec import load_path, load_spec, parse_document, read_document
from patchbay.errors import ConfigError, ConnectorError
from patchbay.outbound import ANY_ADDRESS, Fetcher

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "openapi"


def test_swagger_2_body_and_responses_take_their_media_types_from_consumes_and_produces() -> None:
    document = {
        "swagger": "2.0",
        "info": {"title": "Pets", "version": "1"},
        "host": "pets.example.com",
        "basePath": "/v2/",
        "schemes": ["http", "https"],
        "consumes": ["application/xml", "application/json"],
        "produces": ["application/json"],
        "paths": {
            "/pets": {
                "post": {
                    "parameters": [
                        {"name": "pet", "in": "body", "required": True, "schema": {"$ref": "#/definitions/Pet"}}
                    ],
                    "responses": {"201": {"description": "", "schema": {"$ref": "#/definitions/Pet"}}},
                }
            }
        },
        "definitions": {"Pet": {"type": "object", "properties": {"tag": {"type": "string", "x-nullable": True}}}},
    }
    spec = parse_document(document)
    (op,) = spec.operations
    assert spec.servers == ("https://pets.example.com/v2", "http://pets.example.com/v2")
    assert op.body is not None and (op.body.media_type, op.body.schema, op.body.required) == (
        "application/json",
        {"$ref": "#/$defs/Pet"},
        True,
    )
    assert op.success is not None and (op.success.status, op.success.media_type) == ("201", "application/json")
    assert spec.defs["Pet"] == {"type": "object", "properties": {"tag": {"type": ["string", "null"]}}}


def test_swagger_2_form_data_with_a_file_becomes_a_multipart_body() -> None:
    params = [
        {"name": "id", "in": "path", "required": True, "type": "integer", "format": "int64"},
        {"name": "tags", "in": "query", "type": "array", "items": {"type": "string"}, "collectionFormat": "pipes"},
        {"name": "ids", "in": "query", "type": "array", "items": {"type": "integer"}, "collectionFormat": "multi"},
        {"name": "note", "in": "formData", "type": "string", "description": "a note"},
        {"name": "file", "in": "formData", "type": "file", "required": True},
        {"name": "labels", "in": "formData", "type": "array", "items": {"type": "string"}, "collectionFormat": "csv"},
    ]
    document = {
        "swagger": "2.0",
        "info": {},
        "paths": {"/pets/{id}/photo": {"post": {"parameters": params, "responses": {}}}},
    }
    (op,) = parse_document(document).operations
    assert [(p.name, p.location, p.style, p.explode, p.schema) for p in op.parameters] == [
        ("id", "path", "simple", False, {"type": "integer", "format": "int64"}),
        ("tags", "query", "pipeDelimited", False, {"type": "array", "items": {"type": "string"}}),
        ("ids", "query", "form", True, {"type": "array", "items": {"type": "integer"}}),
    ]
    assert op.body is not None and op.body.media_type == "multipart/form-data"
    assert op.body.schema == {
        "type": "object",
        "properties": {
            "note": {"type": "string", "description": "a note"},
            "file": {"type": "string", "contentMediaType": "application/octet-stream"},
            "labels": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["file"],
    }
    assert (op.body.encoding["labels"].style, op.body.encoding["labels"].explode) == ("form", False)


def test_swagger_2_security_definitions_and_a_relative_base_path() -> None:
    document = {
        "swagger": "2.0",
        "info": {},
        "basePath": "/api",
        "security": [{"key": []}],
        "securityDefinitions": {
            "key": {"type": "apiKey", "in": "query", "name": "api_key"},
            "basic": {"type": "basic"},
            "oauth": {
                "type": "oauth2",
                "flow": "application",
                "tokenUrl": "https://as.example.com/t",
                "scopes": {"a": ""},
            },
        },
        "paths": {"/x": {"get": {"responses": {"200": {"description": "no schema"}}}}},
    }
    spec = parse_document(document)
    assert spec.servers == ("/api",)
    assert spec.operations[0].security == ({"key": ()},)
    assert (spec.schemes["key"].location, spec.schemes["key"].name) == ("query", "api_key")
    assert (spec.schemes["basic"].type, spec.schemes["basic"].scheme) == ("http", "basic")
    assert (spec.schemes["oauth"].token_url, spec.schemes["oauth"].scopes) == ("https://as.example.com/t", ("a",))
    assert spec.operations[0].success is not None and spec.operations[0].success.media_type is None


def test_swagger_2_tsv_arrays_skip_the_operation_with_the_reason() -> None:
    param = {"name": "t", "in": "query", "type": "array", "items": {"type": "string"}, "collectionFormat": "tsv"}
    spec = parse_document(
        {"swagger": "2.0", "info": {}, "paths": {"/x": {"get": {"parameters": [param], "responses": {}}}}}
    )
    assert (
        not spec.operations
        and spec.skipped[0].reason == "parameter 't': collectionFormat tsv has no OpenAPI 3 equivalent"
    )


def test_yaml_status_codes_stay_strings_and_yaml_1_1_booleans_and_dates_stay_text() -> None:
    text = b"""
openapi: 3.0.3
info: {title: t, version: 1.0}
paths:
  /x:
    get:
      responses:
        200:
          description: ok
          content:
            application/json:
              schema:
                type: object
                properties:
                  on: {type: string, enum: [yes, no, on, off, true]}
                  when: {type: string, default: 2024-05-01}
"""
    document, shared = read_document(text, "x.yaml")
    assert not shared
    (op,) = parse_document(document).operations
    assert op.success is not None and op.success.status == "200" and op.success.schema is not None
    assert op.success.schema["properties"] == {
        "on": {"type": "string", "enum": ["yes", "no", "on", "off", True]},
        "when": {"type": "string", "default": "2024-05-01"},
    }


def test_yaml_aliases_are_converted_once_each() -> None:
    lines = ["openapi: 3.0.3", "info: {}", "x-base: &l0 {type: string, nullable: true}"]
    lines += [f"x-l{i}: &l{i} {{allOf: [{', '.join([f'*l{i - 1}'] * 8)}]}}" for i in range(1, 12)]
    lines += ["paths:", "  /x:", "    get:", "      responses:", "        '200':", "          description: ok"]
    lines += ["          content: {application/json: {schema: *l11}}"]
    document, shared = read_document("\n".join(lines).encode(), "bomb.yaml")
    assert shared
    (op,) = parse_document(document, shared=True).operations  # 8**11 paths through the tree; seconds at most
    assert op.success is not None and op.success.schema is not None and "allOf" in op.success.schema


def test_text_that_is_neither_json_nor_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"^api.yaml: not valid JSON or YAML at line 2, column \d+"):
        read_document(b"openapi: 3.0.0\n  bad: [unclosed\n", "api.yaml")
    with pytest.raises(ConfigError, match="HTML"):
        read_document(b"<!doctype html><html></html>", "https://x.example/spec")


def test_the_3_2_fixture_converts_what_maps_and_skips_what_does_not() -> None:
    spec = load_path(FIXTURES / "v32.yaml")
    assert spec.servers == ("https://eu.example.com/v2",)
    assert [op.key for op in spec.operations] == ["QUERY /items", "COPY /items", "GET /lookup"]
    query = spec.operations[0]
    assert query.body is not None and query.body.schema == {"$ref": "#/$defs/Filter"}
    lookup = spec.operations[2]
    assert [(p.name, p.location, p.required, p.style, p.explode) for p in lookup.parameters] == [
        ("term", "query", True, "form", True),
        ("limit", "query", False, "form", True),
    ]
    assert {s.key: s.reason for s in spec.skipped} == {
        "GET /items": "additionalOperations may not redefine GET (OpenAPI 3.2 §4.8.9.1)",
        "GET /export": "a querystring parameter in application/jsonpath content is not supported",
    }


def test_a_multi_file_spec_resolves_each_reference_against_its_own_file() -> None:
    spec = load_path(FIXTURES / "multi" / "api.yaml")
    by_key = {op.key: op for op in spec.operations}
    assert sorted(by_key) == ["GET /pets", "GET /pets/{petId}", "POST /pets"]
    pet_key = by_key["GET /pets/{petId}"].success.schema["$ref"].removeprefix("#/$defs/")  # type: ignore[union-attr,index]
    assert pet_key.startswith("Pet_")  # the root document has its own Pet
    assert spec.defs[pet_key]["properties"]["parent"] == {"$ref": f"#/$defs/{pet_key}"}
    assert spec.defs["Owner"]["properties"]["pets"]["items"] == {"$ref": f"#/$defs/{pet_key}"}
    assert by_key["GET /pets/{petId}"].parameters[0].schema == {"type": "integer", "minimum": 1}
    post = by_key["POST /pets"].body
    assert post is not None and "id" not in post.schema["properties"] and post.schema["required"] == ["name"]


def test_a_reference_outside_the_spec_folder_is_refused_and_only_its_operation_skipped() -> None:
    spec = load_path(FIXTURES / "multi" / "api.yaml")
    (skipped,) = spec.skipped
    assert skipped.key == "GET /secret"
    assert "outside the spec's folder" in skipped.reason


def test_a_broken_operation_is_skipped_and_the_rest_loads() -> None:
    spec = load_path(FIXTURES / "broken.yaml")
    assert [op.key for op in spec.operations] == ["GET /good", "POST /also-good"]
    assert {s.key: s.reason for s in spec.skipped} == {
        "GET /missing-ref": "$ref '#/components/schemas/Nope' does not resolve: no 'Nope' in /components/schemas",
        "GET /nameless": "a parameter (in: query) has no name",
        "GET /bad-schema": "schema 'Bad': 'properties' must be an object of schemas",
    }
    assert spec.defs["Thing"]["properties"]["on"] == {"type": "boolean"}


@pytest.mark.anyio
async def test_a_missing_spec_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"spec file .*nowhere\.yaml: No such file") as raised:
        await load_spec(OpenApiOptions(spec="nowhere.yaml"), base_dir=tmp_path, fetcher=Fetcher())
    assert raised.value.key == "spec"


@pytest.mark.anyio
async def test_a_spec_file_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big.json").write_bytes(b'{"openapi": "3.0.0", "x-pad": "' + b"a" * 4096 + b'"}')
    with pytest.raises(ConfigError, match="larger than max_spec_bytes"):
        await load_spec(OpenApiOptions(spec="big.json", max_spec_bytes=1024), base_dir=tmp_path, fetcher=Fetcher())


# A spec served over HTTP on loopback: the fetcher is the real guarded one, with a policy that admits loopback.


class Site:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.seen: list[tuple[str, str | None]] = []  # (path, Authorization header)
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.seen.append((self.path, self.headers.get("Authorization")))
                body = site.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def sites() -> Iterator[tuple[Site, Site]]:
    other = Site({"/shared/tag.json": orjson.dumps({"Tag": {"type": "string"}})})
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "Remote"},
        "servers": [{"url": "/v1"}],
        "paths": {
            "/pets": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "",
                            "content": {"application/json": {"schema": {"$ref": "schemas/pet.json#/Pet"}}},
                        }
                    }
                }
            },
            "/tags": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "",
                            "content": {"application/json": {"schema": {"$ref": f"{other.url}/shared/tag.json#/Tag"}}},
                        }
                    }
                }
            },
        },
    }
    main = Site(
        {
            "/api/spec.json": orjson.dumps(spec),
            "/api/schemas/pet.json": orjson.dumps(
                {"Pet": {"type": "object", "properties": {"name": {"type": "string"}}}}
            ),
            "/page": b"<html><body>not a spec</body></html>",
        }
    )
    yield main, other
    main.close()
    other.close()


def loopback_fetcher() -> Fetcher:
    return Fetcher(policy=ANY_ADDRESS, allow_http=True)


@pytest.mark.anyio
async def test_a_spec_url_loads_with_its_same_origin_references_and_resolves_relative_servers(
    sites: tuple[Site, Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    main, other = sites
    monkeypatch.setenv("SPEC_TOKEN", "Bearer spec-secret")
    options = OpenApiOptions(spec=f"{main.url}/api/spec.json", spec_headers={"Authorization": {"env": "SPEC_TOKEN"}})
    spec = await load_spec(options, base_dir=Path("."), fetcher=loopback_fetcher())
    assert spec.servers == (f"{main.url}/v1",)
    assert [op.key for op in spec.operations] == ["GET /pets"]
    assert spec.defs["Pet"]["properties"] == {"name": {"type": "string"}}
    (skipped,) = spec.skipped
    assert skipped.key == "GET /tags" and "not on the spec's origin or under an external_refs prefix" in skipped.reason
    assert main.seen == [("/api/spec.json", "Bearer spec-secret"), ("/api/schemas/pet.json", "Bearer spec-secret")]
    assert other.seen == []


@pytest.mark.anyio
async def test_external_refs_prefixes_admit_another_origin_without_the_spec_credential(
    sites: tuple[Site, Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    main, other = sites
    monkeypatch.setenv("SPEC_TOKEN", "Bearer spec-secret")
    options = OpenApiOptions(
        spec=f"{main.url}/api/spec.json",
        spec_headers={"Authorization": {"env": "SPEC_TOKEN"}},
        external_refs=[f"{other.url}/shared/"],
    )
    spec = await load_spec(options, base_dir=Path("."), fetcher=loopback_fetcher())
    assert not spec.skipped and spec.defs["Tag"] == {"type": "string"}
    assert other.seen == [("/shared/tag.json", None)]


@pytest.mark.anyio
async def test_a_spec_url_answering_404_is_a_connector_error(sites: tuple[Site, Site]) -> None:
    main, _ = sites
    with pytest.raises(ConnectorError, match=r"answered 404"):
        await load_spec(OpenApiOptions(spec=f"{main.url}/missing.json"), base_dir=Path("."), fetcher=loopback_fetcher())


@pytest.mark.anyio
async def test_a_spec_url_serving_a_web_page_is_a_config_error(sites: tuple[Site, Site]) -> None:
    main, _ = sites
    with pytest.raises(ConfigError, match="is HTML or XML, not a JSON or YAML API description"):
        await load_spec(OpenApiOptions(spec=f"{main.url}/page"), base_dir=Path("."), fetcher=loopback_fetcher())


@pytest.mark.anyio
async def test_a_spec_url_over_the_size_cap_is_a_connector_error(sites: tuple[Site, Site]) -> None:
    main, _ = sites
    main.files["/big.json"] = b'{"openapi": "3.0.0", "x": "' + b"a" * 5000 + b'"}'
    options = OpenApiOptions(spec=f"{main.url}/big.json", max_spec_bytes=1024)
    with pytest.raises(ConnectorError, match="larger than 1024 bytes"):
        await load_spec(options, base_dir=Path("."), fetcher=loopback_fetcher())


@pytest.mark.anyio
async def test_the_spec_host_the_operator_named_is_read_under_the_default_policy(sites: tuple[Site, Site]) -> None:
    """Naming the spec's URL in the config admits its host (an internal API's own server), as an mcp connector's
    url is; a document on another origin still needs an external_refs prefix."""
    main, other = sites
    default = Fetcher(allow_http=True)  # PUBLIC_ONLY: loopback is refused for any host not named in the config
    spec = await load_spec(OpenApiOptions(spec=f"{main.url}/api/spec.json"), base_dir=Path("."), fetcher=default)
    assert [op.key for op in spec.operations] == ["GET /pets"]
    assert [path for path, _ in main.seen] == ["/api/spec.json", "/api/schemas/pet.json"]
    (skipped,) = spec.skipped  # the document on another origin is not read without an external_refs prefix
    assert skipped.key == "GET /tags" and other.seen == []


# Property: whatever the document, intake gives an ApiSpec or a ConfigError, never another exception.

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
_words = st.sampled_from(
    ["$ref", "#/components/schemas/A", "#/x", "type", "object", "array", "items", "properties", "nullable", "allOf",
     "in", "name", "query", "path", "schema", "content", "application/json", "responses", "200", "default",
     "parameters", "requestBody", "security", "get", "post", "query", "additionalOperations", "other.json#/A",
     "style", "explode", "required", "enum", "exclusiveMinimum", "format", "binary", "discriminator", "A",
     "servers", "url", "variables", "querystring", "body", "formData", "collectionFormat", "file", "/p/{id}"]
)  # fmt: skip
_json = st.recursive(
    _scalars | _words,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_words | st.text(max_size=6), inner, max_size=5),
    max_leaves=25,
)


@st.composite
def documents(draw: st.DrawFn) -> Any:
    version = draw(st.sampled_from(["3.0.3", "3.1.0", "3.2.0", "2.0", "1.0", 3.1]))
    document = {"swagger" if version == "2.0" else "openapi": version}
    document["paths"] = draw(st.dictionaries(st.sampled_from(["/a", "/b/{id}", "x-y", "c"]), _json, max_size=3))
    document["components"] = {"schemas": draw(st.dictionaries(st.sampled_from(["A", "B"]), _json, max_size=2))}
    document["definitions"] = document["components"]["schemas"]
    for key in ("security", "servers", "info", "securityDefinitions", "host"):
        if draw(st.booleans()):
            document[key] = draw(_json)
    return draw(st.sampled_from([document, draw(_json)]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_random_documents_give_a_spec_or_a_config_error_never_a_crash(document: Any) -> None:
    try:
        spec = parse_document(document, resolve=lambda uri: {"A": {"$ref": "#/A"}})
    except ConfigError:
        return
    assert all(op.key not in {s.key for s in spec.skipped} for op in spec.operations)
    orjson.dumps(spec.defs)  # every converted schema is JSON
