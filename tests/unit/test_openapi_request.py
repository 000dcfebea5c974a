"""Requests built from a plan and the arguments, checked against OpenAPI 3.1.1 §4.8.12.4.1's own style examples
table (color = "blue" / ["blue", "black", "brown"] / {"R": 100, "G": 200, "B": 150}) and against the bodies each
media type asks for."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchbay.connectors.openapi.inputs import build_inputs
from patchbay.connectors.openapi.models import ArgTarget, Body, Encoding, Operation, Parameter, Plan, Success
from patchbay.connectors.openapi.request import (
    ArgumentError,
    HttpRequest,
    RequestBuilder,
    build_request,
    compile_request,
)
from patchbay.connectors.openapi.spec import load_path

REST_API = Path(__file__).parents[1] / "fixtures" / "openapi" / "rest_api.yaml"

STRING = "blue"
ARRAY = ["blue", "black", "brown"]
OBJECT = {"R": 100, "G": 200, "B": 150}


def plan_for(
    path: str = "/items",
    parameters: tuple[Parameter, ...] = (),
    body: Body | None = None,
    method: str = "GET",
    body_args: dict[str, ArgTarget] | None = None,
) -> Plan:
    operation = Operation(method, path, "op", parameters=parameters, body=body, success=Success("200", None, None))
    args = {p.name: ArgTarget(p.location, p.name) for p in parameters}
    args.update(body_args or {})
    return Plan(operation, args, "op")


def serialised(location: str, style: str, explode: bool, value: Any) -> str:
    """What one parameter ``color`` becomes: the path segment, the query, or the header value."""
    param = Parameter("color", location, {}, required=location == "path", style=style, explode=explode)  # type: ignore[arg-type]
    path = "/c/{color}" if location == "path" else "/c"
    request = build_request(plan_for(path, (param,)), {"color": value})
    if location == "path":
        return request.target.removeprefix("/c/")
    if location == "query":
        return request.target.partition("?")[2]
    if location == "cookie":
        return request.headers.get("Cookie", "")
    return request.headers["color"]


# OpenAPI 3.1.1 §4.8.12.4.1 "Style Examples", one row per style and explode; the query rows as the table writes
# them (its "%7C", "%20", "%5B" / "%5D").
TABLE = [
    ("path", "matrix", False, ";color=blue", ";color=blue,black,brown", ";color=R,100,G,200,B,150"),
    ("path", "matrix", True, ";color=blue", ";color=blue;color=black;color=brown", ";R=100;G=200;B=150"),
    ("path", "label", False, ".blue", ".blue,black,brown", ".R,100,G,200,B,150"),
    ("path", "label", True, ".blue", ".blue.black.brown", ".R=100.G=200.B=150"),
    ("path", "simple", False, "blue", "blue,black,brown", "R,100,G,200,B,150"),
    ("path", "simple", True, "blue", "blue,black,brown", "R=100,G=200,B=150"),
    ("header", "simple", False, "blue", "blue,black,brown", "R,100,G,200,B,150"),
    ("header", "simple", True, "blue", "blue,black,brown", "R=100,G=200,B=150"),
    ("query", "form", False, "color=blue", "color=blue,black,brown", "color=R,100,G,200,B,150"),
    ("query", "form", True, "color=blue", "color=blue&color=black&color=brown", "R=100&G=200&B=150"),
    ("cookie", "form", False, "color=blue", "color=blue,black,brown", "color=R,100,G,200,B,150"),
]


@pytest.mark.parametrize(("location", "style", "explode", "string", "array", "obj"), TABLE)
def test_each_style_serialises_as_the_openapi_examples_table_says(
    location: str, style: str, explode: bool, string: str, array: str, obj: str
) -> None:
    assert serialised(location, style, explode, STRING) == string
    assert serialised(location, style, explode, ARRAY) == array
    assert serialised(location, style, explode, OBJECT) == obj


def test_delimited_and_deep_object_query_styles_serialise_as_the_table_says() -> None:
    assert serialised("query", "spaceDelimited", False, ARRAY) == "color=blue%20black%20brown"
    assert serialised("query", "spaceDelimited", False, OBJECT) == "color=R%20100%20G%20200%20B%20150"
    assert serialised("query", "pipeDelimited", False, ARRAY) == "color=blue%7Cblack%7Cbrown"
    assert serialised("query", "pipeDelimited", False, OBJECT) == "color=R%7C100%7CG%7C200%7CB%7C150"
    assert serialised("query", "deepObject", True, OBJECT) == "color%5BR%5D=100&color%5BG%5D=200&color%5BB%5D=150"


def test_empty_string_in_matrix_style_is_the_bare_name() -> None:
    assert serialised("path", "matrix", False, "") == ";color"


def test_booleans_and_numbers_are_written_as_json_writes_them() -> None:
    assert serialised("query", "form", True, True) == "color=true"
    assert serialised("query", "form", True, [False, 1, 2.5]) == "color=false&color=1&color=2.5"


def test_values_are_percent_encoded_and_their_delimiters_kept_apart() -> None:
    assert serialised("query", "form", False, ["a,b", "c&d=e", "é ü"]) == "color=a%2Cb,c%26d%3De,%C3%A9%20%C3%BC"


def test_a_path_value_can_neither_add_a_segment_nor_climb_out() -> None:
    assert serialised("path", "simple", False, "../admin") == "..%2Fadmin"
    assert serialised("path", "simple", False, "..") == "%2E%2E"
    assert serialised("path", "simple", False, ".") == "%2E"
    assert serialised("path", "simple", False, "a/b?c#d") == "a%2Fb%3Fc%23d"


def test_a_label_value_that_would_be_a_dot_segment_is_refused() -> None:
    cases = [(False, ""), (False, [""]), (True, ""), (True, [""]), (True, ["", ""]), (True, ["", "", ""])]
    for explode, value in cases:
        with pytest.raises(ArgumentError, match=r"^argument 'color' would put '\.+' in the path, a dot segment"):
            serialised("path", "label", explode, value)
    assert serialised("path", "label", False, ["", ""]) == ".,"
    assert serialised("path", "label", True, ["", "a"]) == "..a"
    assert serialised("path", "matrix", False, "") == ";color"


def test_allow_reserved_keeps_reserved_characters_but_not_those_that_break_the_query() -> None:
    param = Parameter("q", "query", {}, style="form", explode=True, allow_reserved=True)
    request = build_request(plan_for("/s", (param,)), {"q": "a/b:c?d@e,f&g=h#i[j] 100% %41"})
    assert request.target == "/s?q=a/b:c?d@e,f%26g%3Dh%23i%5Bj%5D%20100%25%20%41"


def test_a_parameter_described_by_content_is_sent_as_json_text() -> None:
    param = Parameter("filter", "query", {}, content_type="application/json")
    request = build_request(plan_for("/s", (param,)), {"filter": {"a": [1, 2]}})
    assert dict(parse_qsl(request.target.partition("?")[2])) == {"filter": '{"a":[1,2]}'}


def test_missing_required_argument_is_refused_naming_it() -> None:
    param = Parameter("id", "path", {}, required=True)
    with pytest.raises(ArgumentError, match=r"missing required argument 'id' \(path parameter id\)"):
        build_request(plan_for("/t/{id}", (param,)), {})


def test_unknown_argument_is_refused_naming_it_and_what_the_operation_takes() -> None:
    param = Parameter("q", "query", {})
    with pytest.raises(ArgumentError, match=r"unknown argument 'qq'; this operation takes q"):
        build_request(plan_for("/s", (param,)), {"qq": 1})


def test_null_optional_arguments_are_left_out() -> None:
    params = (Parameter("q", "query", {}), Parameter("X-Trace", "header", {}))
    request = build_request(plan_for("/s", params), {"q": None, "X-Trace": None})
    assert request.target == "/s"
    assert "X-Trace" not in request.headers


def test_header_value_with_a_line_break_is_refused_naming_the_argument() -> None:
    param = Parameter("X-Note", "header", {})
    with pytest.raises(ArgumentError, match="argument 'X-Note'"):
        build_request(plan_for("/s", (param,)), {"X-Note": "a\r\nInjected: yes"})


def test_arguments_can_never_set_authorization_host_or_content_length() -> None:
    params = tuple(Parameter(name, "header", {}) for name in ("Authorization", "Host", "Content-Length"))
    request = build_request(
        plan_for("/s", params), {"Authorization": "Bearer x", "Host": "evil", "Content-Length": "9"}
    )
    assert {name.lower() for name in request.headers} == {"accept"}


def test_base_path_prefixes_the_target() -> None:
    param = Parameter("id", "path", {}, required=True)
    request = build_request(plan_for("/t/{id}", (param,)), {"id": 7}, base_path="/api/v2/")
    assert request.target == "/api/v2/t/7"


def test_json_body_from_properties_and_whole() -> None:
    body = Body("application/json", {"type": "object"}, required=True)
    plan = plan_for("/t", body=body, method="POST", body_args={"title": ArgTarget("body_property", "title")})
    request = build_request(plan, {"title": "Hi"})
    assert orjson.loads(request.body) == {"title": "Hi"}
    assert request.headers["Content-Type"] == "application/json"
    array = Body("application/json", {"type": "array"}, required=True)
    plan = plan_for("/t", body=array, method="POST", body_args={"body": ArgTarget("body", "")})
    assert orjson.loads(build_request(plan, {"body": [1, {"a": None}]}).body) == [1, {"a": None}]
    with pytest.raises(ArgumentError, match="missing required argument 'body'"):
        build_request(plan, {})


def test_optional_body_not_given_sends_no_body_and_no_content_type() -> None:
    body = Body("application/json", {"type": "object"}, required=False)
    plan = plan_for("/t", body=body, method="POST", body_args={"title": ArgTarget("body_property", "title")})
    request = build_request(plan, {})
    assert request.body == b"" and "Content-Type" not in request.headers


def test_form_body_follows_each_property_encoding() -> None:
    encoding = {"tags": Encoding(style="form", explode=False), "meta": Encoding(content_type="application/json")}
    body = Body("application/x-www-form-urlencoded", {"type": "object"}, required=True, encoding=encoding)
    names = ("name", "tags", "ids", "meta", "filter")
    plan = plan_for("/f", body=body, method="POST", body_args={n: ArgTarget("body_property", n) for n in names})
    request = build_request(
        plan, {"name": "a b&c", "tags": ["x", "y"], "ids": [1, 2], "meta": {"k": 1}, "filter": {"R": 1}}
    )
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.body == b"name=a%20b%26c&tags=x,y&ids=1&ids=2&meta=%7B%22k%22%3A1%7D&R=1"


def parts_of(request_body: bytes, content_type: str) -> dict[str, tuple[str | None, str, bytes]]:
    """name -> (filename, content type, content) of each part, read back by the standard library's MIME parser."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + request_body
    )
    return {
        part.get_param("name", header="content-disposition"): (
            part.get_filename(),
            part.get_content_type(),
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    }


def test_multipart_body_sends_files_from_base64_and_fields_as_text_or_json() -> None:
    schema = {
        "type": "object",
        "properties": {"file": {"$ref": "#/$defs/Upload"}, "note": {"type": "string"}, "meta": {"type": "object"}},
    }
    defs = {"Upload": {"type": "string", "format": "binary"}}
    body = Body("multipart/form-data", schema, required=True)
    plan = plan_for(
        "/up", body=body, method="POST", body_args={n: ArgTarget("body_property", n) for n in ("file", "note", "meta")}
    )
    payload = bytes(range(256))
    arguments = {
        "file": {"content": base64.b64encode(payload).decode(), "filename": "a.bin", "contentType": "image/png"},
        "note": "héllo",
        "meta": {"k": [1]},
    }
    request = compile_request(plan, defs=defs).build(arguments)
    parts = parts_of(request.body, request.headers["Content-Type"])
    assert parts["file"] == ("a.bin", "image/png", payload)
    assert parts["note"] == (None, "text/plain", "héllo".encode())
    assert parts["meta"] == (None, "application/json", b'{"k":[1]}')
    plain = compile_request(plan, defs=defs).build({"file": base64.b64encode(b"xyz").decode()})
    assert parts_of(plain.body, plain.headers["Content-Type"])["file"] == ("file", "application/octet-stream", b"xyz")


def test_a_file_that_is_not_base64_is_refused_naming_it() -> None:
    body = Body("multipart/form-data", {"properties": {"file": {"format": "binary"}}}, required=True)
    plan = plan_for("/up", body=body, method="POST", body_args={"file": ArgTarget("body_property", "file")})
    with pytest.raises(ArgumentError, match="argument 'file': a file's content is not valid base64"):
        build_request(plan, {"file": "not base64 !!"})


def test_binary_and_text_bodies() -> None:
    binary = Body("application/octet-stream", {}, required=True)
    plan = plan_for("/b", body=binary, method="PUT", body_args={"body": ArgTarget("body", "")})
    assert build_request(plan, {"body": base64.b64encode(b"\x00\x01").decode()}).body == b"\x00\x01"
    text = Body("text/plain", {"type": "string"}, required=True)
    plan = plan_for("/b", body=text, method="PUT", body_args={"body": ArgTarget("body", "")})
    request = build_request(plan, {"body": "line\nü"})
    assert request.body == "line\nü".encode() and request.headers["Content-Type"] == "text/plain"


def multipart_plan(properties: dict[str, Any], args: dict[str, str], required: tuple[str, ...] = ()) -> Plan:
    """A multipart operation whose tool arguments (``args``: argument -> property) differ from the API's names."""
    schema = {"type": "object", "properties": properties, "required": list(required)}
    body = Body("multipart/form-data", schema, required=True)
    return plan_for(
        "/up", body=body, method="POST", body_args={a: ArgTarget("body_property", p) for a, p in args.items()}
    )


def test_a_text_file_part_is_sent_as_the_text_given_and_a_binary_one_decoded_from_base64() -> None:
    properties = {
        "notes": {"type": "string", "contentMediaType": "text/plain"},
        "data": {"type": "string", "contentMediaType": "application/vnd.api+json"},
        "photo": {"type": "string", "contentMediaType": "image/png"},
    }
    plan = multipart_plan(properties, {"notes": "notes", "data": "data", "photo": "photo"})
    text = "hello world\n"  # valid base64 would be decoded by mistake; this is not, and must arrive as it is
    request = build_request(
        plan, {"notes": text, "data": '{"a": 1}', "photo": base64.b64encode(b"\x89PNG\x00").decode()}
    )
    parts = parts_of(request.body, request.headers["Content-Type"])
    assert parts["notes"] == ("notes", "text/plain", text.encode())
    assert parts["data"] == ("data", "application/vnd.api+json", b'{"a": 1}')
    assert parts["photo"] == ("photo", "image/png", b"\x89PNG\x00")


def test_a_text_that_looks_like_base64_is_still_sent_as_text() -> None:
    plan = multipart_plan({"notes": {"type": "string", "contentMediaType": "text/csv"}}, {"notes": "notes"})
    request = build_request(plan, {"notes": "abcd"})
    assert parts_of(request.body, request.headers["Content-Type"])["notes"] == ("notes", "text/csv", b"abcd")


def test_a_file_part_takes_content_filename_and_content_type_from_an_object() -> None:
    properties = {
        "notes": {"type": "string", "contentMediaType": "text/plain"},
        "photo": {"type": "string", "contentMediaType": "image/*"},
    }
    plan = multipart_plan(properties, {"notes": "notes", "photo": "photo"})
    arguments = {
        "notes": {"content": "ü line", "filename": "n.md", "contentType": "text/markdown"},
        "photo": {"content": base64.b64encode(b"GIF89a").decode(), "filename": "p.gif"},
    }
    request = build_request(plan, arguments)
    parts = parts_of(request.body, request.headers["Content-Type"])
    assert parts["notes"] == ("n.md", "text/markdown", "ü line".encode())
    # image/* names no one type: the part says what bytes are, generically
    assert parts["photo"] == ("p.gif", "application/octet-stream", b"GIF89a")


def test_a_bad_file_is_refused_naming_the_argument_not_the_apis_field() -> None:
    properties = {
        "file-data": {"type": "string", "contentMediaType": "application/pdf"},
        "text-data": {"type": "string", "contentMediaType": "text/plain"},
    }
    plan = multipart_plan(properties, {"file_data": "file-data", "text_data": "text-data"})
    with pytest.raises(ArgumentError, match=r"^argument 'file_data': a file's content is not valid base64$"):
        build_request(plan, {"file_data": "%%% not base64"})
    with pytest.raises(ArgumentError, match=r"^argument 'text_data': a file must be text, or \{"):
        build_request(plan, {"text_data": 42})
    with pytest.raises(ArgumentError, match=r"^argument 'file_data': a content type must be one line$"):
        build_request(plan, {"file_data": {"content": "", "contentType": "a/b\r\nX-Evil: 1"}})


def test_a_multipart_array_is_one_part_per_item_objects_as_json() -> None:
    properties = {
        "tags": {"type": "array", "items": {"type": "string"}},
        "ids": {"type": "array", "items": {"type": "integer"}},
        "people": {"type": "array", "items": {"type": "object"}},
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
    }
    plan = multipart_plan(properties, {name: name for name in properties})
    arguments = {
        "tags": ["a", "b"],
        "ids": [1, 2],
        "people": [{"n": 1}, {"n": [2]}],
        "files": [base64.b64encode(b"one").decode(), base64.b64encode(b"two").decode()],
    }
    request = build_request(plan, arguments)
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode() + request.body
    )
    seen = [
        (part.get_param("name", header="content-disposition"), part.get_content_type(), part.get_payload(decode=True))
        for part in message.iter_parts()
    ]
    assert seen == [
        ("tags", "text/plain", b"a"),
        ("tags", "text/plain", b"b"),
        ("ids", "text/plain", b"1"),
        ("ids", "text/plain", b"2"),
        ("people", "application/json", b'{"n":1}'),
        ("people", "application/json", b'{"n":[2]}'),
        ("files", "application/octet-stream", b"one"),
        ("files", "application/octet-stream", b"two"),
    ]


def test_a_path_fragment_is_never_sent_and_the_operation_key_keeps_it() -> None:
    param = Parameter("id", "path", {}, required=True)
    plan = plan_for("/cookies/{id}#formNonExploded", (Parameter("q", "query", {}), param))
    request = build_request(plan, {"id": 3, "q": "x"})
    assert request.target == "/cookies/3?q=x"
    assert plan.operation.key == "GET /cookies/{id}#formNonExploded"
    assert build_request(plan_for("/cookies#form"), {}).target == "/cookies"


def optional_body_plan(required: bool) -> Plan:
    schema = {"allOf": [{"$ref": "#/$defs/Named"}, {"properties": {"note": {"type": "string"}}}]}
    body = Body("application/json", schema, required=required)
    args = {"name": "name", "body_id": "id", "note": "note"}
    return plan_for(
        "/t", body=body, method="POST", body_args={a: ArgTarget("body_property", p) for a, p in args.items()}
    )


DEFS = {"Named": {"type": "object", "required": ["name", "id"], "properties": {"name": {}, "id": {}}}}


def test_an_optional_body_given_in_part_needs_its_required_properties_named() -> None:
    builder = compile_request(optional_body_plan(required=False), defs=DEFS)
    with pytest.raises(ArgumentError, match=r"^missing argument 'name', 'body_id': the request body is optional, bu"):
        builder.build({"note": "hi"})
    with pytest.raises(ArgumentError, match=r"^missing argument 'body_id'"):
        builder.build({"note": "hi", "name": "n"})
    sent = builder.build({"name": "n", "body_id": 1})
    assert orjson.loads(sent.body) == {"name": "n", "id": 1}
    nothing = builder.build({})
    assert nothing.body == b"" and "Content-Type" not in nothing.headers


def test_a_required_body_needs_its_required_properties_and_is_sent_empty_when_it_has_none() -> None:
    builder = compile_request(optional_body_plan(required=True), defs=DEFS)
    with pytest.raises(ArgumentError, match=r"^missing required argument 'name', 'body_id' \(a required property"):
        builder.build({})
    body = Body("application/json", {"type": "object", "properties": {"a": {}}}, required=True)
    plan = plan_for("/t", body=body, method="POST", body_args={"a": ArgTarget("body_property", "a")})
    empty = build_request(plan, {})
    assert empty.body == b"{}" and empty.headers["Content-Type"] == "application/json"


def test_an_integer_beyond_64_bits_is_written_exactly_wherever_json_carries_it() -> None:
    huge = 2**64
    body = Body("application/json", {"type": "object"}, required=True)
    args = {"count": ArgTarget("body_property", "count"), "name": ArgTarget("body_property", "name")}
    plan = plan_for("/t", body=body, method="POST", body_args=args)
    assert (
        build_request(plan, {"count": huge, "name": "é"}).body == '{"count":18446744073709551616,"name":"é"}'.encode()
    )
    whole = Body("application/json", {"type": "array"}, required=True)
    plan = plan_for("/t", body=whole, method="POST", body_args={"items": ArgTarget("body", "")})
    assert build_request(plan, {"items": [1, huge]}).body == b"[1,18446744073709551616]"
    content = Parameter("filter", "query", {}, content_type="application/json")
    request = build_request(plan_for("/s", (content,)), {"filter": {"n": -huge}})
    assert request.target == "/s?filter=%7B%22n%22%3A-18446744073709551616%7D"
    nested = Parameter("pairs", "query", {})
    assert build_request(plan_for("/s", (nested,)), {"pairs": [[huge]]}).target == "/s?pairs=%5B18446744073709551616%5D"
    form = Body("application/x-www-form-urlencoded", {"type": "object"}, required=True)
    plan = plan_for("/f", body=form, method="POST", body_args={"meta_data": ArgTarget("body_property", "meta")})
    # form, exploded (the default): the object's members are the fields; a nested array goes as JSON text
    assert build_request(plan, {"meta_data": {"n": [huge]}}).body == b"n=%5B18446744073709551616%5D"


def test_a_value_json_cannot_carry_is_refused_naming_its_argument() -> None:
    # RFC 8259 §8.2: a lone surrogate is no Unicode text; a big integer beside it must not hide the refusal.
    body = Body("application/json", {"type": "object"}, required=True)
    plan = plan_for("/t", body=body, method="POST", body_args={"note": ArgTarget("body_property", "note")})
    for value in ("\ud800", ["\ud800", 2**64]):
        with pytest.raises(ArgumentError, match=r"^argument 'note': cannot be written as JSON"):
            build_request(plan, {"note": value})
    content = Parameter("filter", "query", {}, content_type="application/json")
    with pytest.raises(ArgumentError, match=r"^argument 'filter': "):
        build_request(plan_for("/s", (content,)), {"filter": {"n": [2**64, "\udfff"]}})


def test_an_empty_path_value_is_refused_as_it_would_change_the_path() -> None:
    param = Parameter("id", "path", {}, required=True)
    plan = plan_for("/t/{id}/comments", (param,))
    for empty in ("", [], {}):
        with pytest.raises(ArgumentError, match=r"^argument 'id' must not be empty$"):
            build_request(plan, {"id": empty})


def test_an_empty_array_leaves_an_optional_query_parameter_out_and_is_refused_for_a_required_one() -> None:
    optional = Parameter("tags", "query", {}, style="form", explode=False)
    required = Parameter("ids", "query", {}, required=True, style="form", explode=True)
    plan = plan_for("/s", (optional, required))
    assert build_request(plan, {"tags": [], "ids": [1]}).target == "/s?ids=1"
    assert build_request(plan, {"tags": [], "ids": [""]}).target == "/s?ids="  # an empty string is a value
    with pytest.raises(ArgumentError, match=r"^argument 'ids' must not be empty$"):
        build_request(plan, {"ids": []})


def test_an_empty_header_value_is_not_sent() -> None:
    plan = plan_for("/s", (Parameter("X-Trace", "header", {}), Parameter("X-Tags", "header", {})))
    request = build_request(plan, {"X-Trace": "", "X-Tags": []})
    assert set(request.headers) == {"Accept"}


def every_style_plan() -> Plan:
    """One operation with a parameter in every location and style, and a form body with every encoding."""
    params = [Parameter("p_simple", "path", {}, required=True)]
    params += [Parameter(f"p_{style}", "path", {}, required=True, style=style) for style in ("label", "matrix")]
    for style in ("form", "spaceDelimited", "pipeDelimited", "deepObject"):
        params += [Parameter(f"q_{style}_{explode}", "query", {}, style=style, explode=explode) for explode in (0, 1)]
    params += [
        Parameter("q_reserved", "query", {}, allow_reserved=True),
        Parameter("q_json", "query", {}, content_type="application/json"),
        Parameter("q_text", "query", {}, content_type="text/plain"),
        Parameter("X-Simple", "header", {}, required=True),
        Parameter("X-Exploded", "header", {}, explode=True),
        Parameter("c_form", "cookie", {}, style="form", explode=False),
    ]
    path = "/r/{p_simple}/{p_label}/{p_matrix}#fragment"
    encoding = {"deep": Encoding(style="deepObject"), "meta": Encoding(content_type="application/json")}
    body = Body("application/x-www-form-urlencoded", {"required": ["name"]}, required=False, encoding=encoding)
    properties = {n: ArgTarget("body_property", n) for n in ("name", "deep", "meta", "piped")}
    return plan_for(path, tuple(params), body=body, method="POST", body_args=properties)


def builders() -> list[tuple[RequestBuilder, list[str]]]:
    spec = load_path(REST_API)
    made = [(compile_request(every_style_plan()), list(every_style_plan().args))]
    for operation in spec.operations:
        args, _ = build_inputs(operation, spec.defs)
        plan = Plan(operation, args, operation.operation_id or "op")
        made.append((compile_request(plan, base_path="/api", defs=spec.defs), list(args)))
    return made


BUILDERS = builders()
# Any JSON a client may send, and more: integers of any size, text with lone surrogates and control characters.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(st.characters(exclude_categories=())),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.data())
def test_any_argument_value_builds_a_request_or_is_refused_with_an_argument_error(data: st.DataObject) -> None:
    builder, names = data.draw(st.sampled_from(BUILDERS))
    chosen = data.draw(st.lists(st.sampled_from(names), unique=True)) if names else []
    arguments = {name: data.draw(JSON_VALUES) for name in chosen}
    try:
        request = builder.build(arguments)
    except ArgumentError as exc:
        assert str(exc).startswith(("argument '", "missing ", "unknown argument")), exc
        return
    assert isinstance(request, HttpRequest)
    assert request.target.startswith("/") and "#" not in request.target
    assert not {".", ".."} & set(request.target.partition("?")[0].split("/"))  # no dot segment moves the request
    request.target.encode("ascii")  # what goes on the request line
    for name, value in request.headers.items():
        (name + value).encode("latin-1")
        assert value and "\r" not in value and "\n" not in value


def test_a_dot_inside_a_label_item_is_percent_encoded_so_items_stay_apart() -> None:
    assert serialised("path", "label", True, ["1.5", "b"]) == ".1%2E5.b"
    assert serialised("path", "label", False, {"v": "a.b"}) == ".v,a%2Eb"
    assert serialised("path", "simple", False, ["1.5"]) == "1.5"  # no other style uses "." as a separator


def styled_multipart(encoding: Encoding, value: Any) -> list[tuple[str, bytes]]:
    body = Body("multipart/form-data", {"type": "object"}, required=True, encoding={"p": encoding})
    plan = plan_for("/m", body=body, method="POST", body_args={"p": ArgTarget("body_property", "p")})
    request = build_request(plan, {"p": value})
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode() + request.body
    )
    return [
        (part.get_param("name", header="content-disposition"), part.get_payload(decode=True))
        for part in message.iter_parts()
    ]


def test_a_styled_multipart_property_is_one_part_per_query_name_and_value_without_percent_encoding() -> None:
    form = Encoding(style="form", explode=False, styled=True)
    assert styled_multipart(form, ["a b", "c"]) == [("p", b"a b,c")]
    assert styled_multipart(form, {"R": 100, "G": "x/y"}) == [("p", b"R,100,G,x/y")]
    exploded = Encoding(style="form", explode=True, styled=True)
    assert styled_multipart(exploded, ["a", "b"]) == [("p", b"a"), ("p", b"b")]
    assert styled_multipart(exploded, {"R": 1, "G": 2}) == [("R", b"1"), ("G", b"2")]
    assert styled_multipart(Encoding(style="pipeDelimited", explode=False, styled=True), ["a", "b"]) == [("p", b"a|b")]
    assert styled_multipart(Encoding(style="spaceDelimited", explode=False, styled=True), ["a", "b"]) == [("p", b"a b")]
    assert styled_multipart(Encoding(style="deepObject", explode=True, styled=True), {"R": 1}) == [("p[R]", b"1")]
    assert styled_multipart(form, "plain") == [("p", b"plain")]


def test_an_unstyled_multipart_property_is_sent_in_its_content_type() -> None:
    unstyled = Encoding(style="form", explode=False, styled=False)  # 3.0, or 3.1 without style fields
    assert styled_multipart(unstyled, {"R": 1}) == [("p", b'{"R":1}')]
    assert styled_multipart(unstyled, ["a", "b"]) == [("p", b"a"), ("p", b"b")]


@pytest.mark.parametrize(
    ("encoding", "value", "problem"),
    [
        (Encoding(style="deepObject", explode=True), "x", "deepObject is defined only for objects"),
        (Encoding(style="deepObject", explode=True), ["x"], "deepObject is defined only for objects"),
        (Encoding(style="spaceDelimited", explode=False), "x", "defined only for arrays and objects"),
        (Encoding(style="pipeDelimited", explode=True), ["x"], "explode: true is undefined"),
        (Encoding(style="form", explode=False), ["a,b", "c"], "an item holds ','"),
        (Encoding(style="pipeDelimited", explode=False), {"k": "a|b"}, "an item holds '|'"),
    ],
)
def test_a_multipart_value_its_style_cannot_carry_is_refused_naming_the_argument(
    encoding: Encoding, value: Any, problem: str
) -> None:
    with pytest.raises(ArgumentError, match=rf"argument 'p': .*{re.escape(problem)}"):
        styled_multipart(encoding, value)


def test_a_form_urlencoded_value_its_style_cannot_carry_is_refused() -> None:
    body = Body("application/x-www-form-urlencoded", {"type": "object"}, encoding={"p": Encoding(style="deepObject")})
    plan = plan_for("/f", body=body, method="POST", body_args={"p": ArgTarget("body_property", "p")})
    with pytest.raises(ArgumentError, match="argument 'p': style deepObject is defined only for objects"):
        build_request(plan, {"p": "x"})
    assert build_request(plan, {"p": {"a": "1"}}).body == b"p%5Ba%5D=1"


def test_a_query_value_its_style_cannot_carry_is_refused_naming_the_argument_and_the_rule() -> None:
    deep = Parameter("filter", "query", {}, style="deepObject", explode=True)
    piped = Parameter("ids", "query", {}, style="pipeDelimited", explode=False)
    plan = plan_for("/s", (deep, piped))
    with pytest.raises(ArgumentError, match=r"^argument 'filter': style deepObject is defined only for objects, not"):
        build_request(plan, {"filter": "x"})
    with pytest.raises(ArgumentError, match=r"^argument 'ids': style pipeDelimited is defined only for arrays and"):
        build_request(plan, {"ids": 3})
    sent = build_request(plan, {"filter": {"a": "1"}, "ids": ["x", "y"]})
    assert sent.target == "/s?filter%5Ba%5D=1&ids=x%7Cy"
