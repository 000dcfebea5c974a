"""Requests the openapi connector builds are the requests the spec describes, checked by a third-party validator.

For every operation of several specs (@readme/oas-examples fixtures chosen for their parameter styles, encodings,
forms and uploads, and the test REST service's own spec), hypothesis-jsonschema generates arguments from the tool's
input schema, the connector builds the HTTP request (patchbay.connectors.openapi.request.build_request), and
openapi-core validates that request against the operation: path, query, header and cookie parameters in their
styles, and the body in its media type. At least 99 % must be valid.

Security requirements are not part of this check: credentials are added by the caller from the connector's auth
settings, after build_request (tests/e2e/test_openapi_e2e.py checks them on the wire).
"""

from __future__ import annotations

import base64
import email.parser
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
import yaml
from hypothesis import given
from hypothesis.errors import Unsatisfiable
from hypothesis_jsonschema import from_schema
from openapi_core import Config, OpenAPI
from openapi_core.casting.schemas import (
    oas30_write_schema_casters_factory,
    oas31_schema_casters_factory,
    oas32_schema_casters_factory,
)
from openapi_core.datatypes import RequestParameters
from openapi_core.deserializing.media_types.util import data_form_loads
from openapi_core.deserializing.styles import StyleDeserializersFactory, style_deserializers
from openapi_core.validation.request.exceptions import SecurityValidationError
from werkzeug.datastructures import Headers, ImmutableMultiDict

from patchbay.connectors.openapi.bodies import resolve
from patchbay.connectors.openapi.inputs import build_inputs
from patchbay.connectors.openapi.models import ApiSpec, Operation, Parameter, Plan
from patchbay.connectors.openapi.request import ArgumentError, HttpRequest, build_request
from patchbay.connectors.openapi.spec import load_path
from tests.support.node import NODE_MODULES
from tests.support.openapi_args import bounded, examples, generation_schema
from tests.support.rest_api import SPEC_PATH

EXAMPLES = NODE_MODULES / "@readme" / "oas-examples"
SPECS = {
    "3.0 parameters-style": EXAMPLES / "3.0" / "yaml" / "parameters-style.yaml",
    "3.1 parameters-style": EXAMPLES / "3.1" / "yaml" / "parameters-style.yaml",
    "3.0 schema-encoding-style": EXAMPLES / "3.0" / "yaml" / "schema-encoding-style.yaml",
    "3.1 schema-encoding-style": EXAMPLES / "3.1" / "yaml" / "schema-encoding-style.yaml",
    "3.0 petstore": EXAMPLES / "3.0" / "yaml" / "petstore.yaml",
    "3.0 form-data": EXAMPLES / "3.0" / "yaml" / "form-data.yaml",
    "3.0 file-uploads": EXAMPLES / "3.0" / "yaml" / "file-uploads.yaml",
    "rest_api": SPEC_PATH,
}
EXAMPLES_PER_OPERATION = 25
VALID_AT_LEAST = 0.99


@dataclass
class Tally:
    valid: int = 0
    invalid: int = 0
    refused: int = 0  # build_request refused the value with an ArgumentError (a value that cannot be sent)
    unsatisfiable: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)

    @property
    def fraction(self) -> float:
        checked = self.valid + self.invalid
        return self.valid / checked if checked else 0.0

    def report(self, label: str) -> str:
        return (
            f"{label}: {self.valid}/{self.valid + self.invalid} valid ({self.fraction:.2%}), "
            f"{self.refused} refused by build_request, {len(self.unsatisfiable)} operations without examples "
            f"{self.unsatisfiable}"
        )


# -- requests as openapi-core reads them ----------------------------------------------------------------------


@dataclass
class SentRequest:
    """openapi_core.protocols.Request for one built request, read the way a web framework would read it."""

    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    content_type: str
    body: bytes | None
    # Set only for a path template holding "#": openapi-core then takes the operation from it (below).
    path_pattern: str | None = None


def as_received(request: HttpRequest, host_url: str, operation: Operation, base_path: str) -> SentRequest:
    path, _, query = request.target.partition("?")
    headers = Headers(list(request.headers.items()))
    sent_cookies = request.headers.get("Cookie", "").split(";")
    cookies = [tuple(part.strip().split("=", 1)) for part in sent_cookies if "=" in part]
    content_type = headers.get("Content-Type", "")
    media, sep, params = content_type.partition(";")
    template = base_path + operation.path
    # Some fixtures tell operations on one path apart by a fragment ("/cookies#formNonExploded"): a fragment is
    # never sent (RFC 3986 §3.5), so the request goes to the path before "#", which openapi-core cannot route.
    routed, fragment, _ = template.partition("#")
    return SentRequest(
        host_url=host_url,
        path=path,
        method=request.method.lower(),
        parameters=RequestParameters(
            query=ImmutableMultiDict(parse_qsl(query, keep_blank_values=True)),
            header=headers,
            cookie=ImmutableMultiDict([(name, unquote(value)) for name, value in cookies]),
            path=styled_keys(path_values(path, routed) or RawPath(), operation),
        ),
        content_type=media.lower() + sep + params,
        body=request.body or None,
        path_pattern=template if fragment else None,
    )


class RawPath(dict[str, str]):
    """Path values as sent, still percent-encoded.

    A server splits a segment on its style's delimiters (``,`` ``.`` ``;`` ``=``) first and percent-decodes each
    piece after, so a ``,`` inside an item (sent as ``%2C``) stays inside it. openapi-core's style deserialisers
    split whatever string they are given; given decoded segments they would misread such items. They get the raw
    segment, and :func:`decoding` decodes what they split out.
    """


def path_values(path: str, template: str) -> RawPath | None:
    """The template's variables as sent (see :class:`RawPath`); None when the path does not match the template."""
    values = RawPath()
    sent, wanted = path.split("/"), template.split("/")
    if len(sent) != len(wanted):
        return None
    for raw, pattern in zip(sent, wanted, strict=True):
        if pattern.startswith("{") and pattern.endswith("}"):
            values[pattern[1:-1]] = raw
        elif unquote(raw) != pattern:
            return None
    return values


def percent_decoded(value: Any) -> Any:
    if isinstance(value, str):
        return unquote(value)
    if isinstance(value, list):
        return [percent_decoded(item) for item in value]
    if isinstance(value, dict):
        return {unquote(str(key)): percent_decoded(item) for key, item in value.items()}
    return value


def decoding(loads: Callable[[bool, str, str, Mapping[str, Any]], Any]) -> Callable[..., Any]:
    """openapi-core's style deserialiser ``loads``, percent-decoding what it splits out of a :class:`RawPath`."""

    def loads_then_decode(explode: bool, name: str, schema_type: str, location: Mapping[str, Any]) -> Any:
        try:
            value = loads(explode, name, schema_type, location)
        except ValueError:
            # openapi-core refuses a style undefined for the schema's type (deepObject on a string) before it
            # looks for the value, so a form property the tool never sends fails every request. Nothing sent
            # under the name is "missing" (KeyError), as for any absent optional property.
            if not any(key == name or str(key).startswith(f"{name}[") for key in location):
                raise KeyError(name) from None
            raise
        return percent_decoded(value) if isinstance(location, RawPath) else value

    return loads_then_decode


def styled_keys(values: RawPath, operation: Operation) -> RawPath:
    """The path values, plus each label or matrix one under the key openapi-core reads it from.

    openapi-core 0.23's label and matrix deserialisers look a value up under its RFC 6570 operator form
    (``.name``, ``.name*``, ``;name``, ``;name*``), but its own path finder stores every template variable under the
    bare name, so a label or matrix path parameter is always "missing" to it. The value itself (``.a,b``,
    ``;id=a,b``) is the segment as sent, which is what those deserialisers parse.
    """
    out = RawPath(values)
    for parameter in operation.parameters:
        if parameter.location != "path" or parameter.name not in values:
            continue
        operator = {"label": ".", "matrix": ";"}.get(parameter.style)
        if operator is not None:
            star = "*" if parameter.explode else ""
            out[f"{operator}{parameter.name}{star}"] = values[parameter.name]
    return out


def server_of(spec: ApiSpec) -> tuple[str, str]:
    """(host URL, base path) of the spec's first server, as openapi-core will match them."""
    first = spec.servers[0] if spec.servers else "/"
    parts = urlsplit(first)
    host = f"{parts.scheme}://{parts.netloc}" if parts.netloc else "http://localhost"
    return host, parts.path.rstrip("/")


@dataclass
class MultipartReader:
    """openapi-core's multipart reader, with text parts read as text and typed as the operation's schema says.

    openapi-core 0.23 gives every part's payload as bytes; a part whose encoding has a ``style`` then reaches the
    schema as bytes and fails ``type: string`` whatever was sent. RFC 7578 §4.4: a part without a Content-Type is
    text/plain, so a text part (none, or text/*) is decoded with its charset (UTF-8 by default) as a server does;
    other parts stay bytes.

    openapi-core 0.23 also never converts a text part to the integer, number or boolean its property's schema
    names (it does for query parameters): ``userId=42`` fails ``type: integer``. A server reading the form by its
    schema converts it, so :attr:`types` (set per operation) names those parts, and a part whose whole text is such
    a value is converted; any other text stays text and fails validation as it should.
    """

    types: dict[str, str] = field(default_factory=dict)

    def __call__(self, value: bytes, **parameters: str) -> Mapping[str, Any]:
        parts = email.parser.BytesParser().parsebytes(
            b"Content-Type: multipart/form-data; boundary="
            + parameters.get("boundary", "").encode()
            + b"\r\n\r\n"
            + value
        )
        if not parts.is_multipart():
            return data_form_loads(value, **parameters)  # openapi-core's own error for a malformed body
        fields: list[tuple[str, Any]] = []
        for part in parts.get_payload():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if part.get("Content-Type") is None or part.get_content_maintype() == "text":
                payload = typed(
                    payload.decode(part.get_content_charset() or "utf-8", "surrogateescape"), self.types.get(name)
                )
            fields.append((name, payload))
        return ImmutableMultiDict(fields)


def typed(text: str, kind: str | None) -> Any:
    """``text`` as the JSON value of ``kind`` (integer, number, boolean) it spells exactly, else unchanged."""
    try:
        if kind == "integer" and text.lstrip("-").isdigit():
            return int(text)
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        return text
    if kind == "boolean" and text in ("true", "false"):
        return text == "true"
    return text


def part_types(operation: Operation, defs: dict[str, Any]) -> dict[str, str]:
    """Each multipart property's scalar type (an array's item type), for :class:`MultipartReader`."""
    body = operation.body
    if body is None or not body.media_type.lower().startswith("multipart/"):
        return {}
    properties = resolve(body.schema, defs).get("properties") or {}
    found: dict[str, str] = {}
    for name, schema in properties.items():
        schema = resolve(schema, defs)
        if schema.get("type") == "array":
            schema = resolve(schema.get("items"), defs)
        if schema.get("type") in ("integer", "number", "boolean"):
            found[name] = schema["type"]
    return found


def without_multipart_styles(node: Any, within_multipart: bool = False) -> Any:
    """A 3.0 document without ``style``, ``explode`` and ``allowReserved`` in multipart Encoding Objects.

    OpenAPI 3.0.3 (Encoding Object): style "SHALL be ignored if the request body media type is not
    application/x-www-form-urlencoded", and so explode and allowReserved; 3.1 applies them to multipart/form-data
    too. openapi-core 0.23 applies them whatever the version, so for a 3.0 document it would read the parts in a
    serialisation the document does not ask for. Without the fields it reads them by content type, as 3.0 says.
    """
    if isinstance(node, list):
        return [without_multipart_styles(item) for item in node]
    if not isinstance(node, dict):
        return node
    if within_multipart:
        encoding = {
            name: {k: v for k, v in each.items() if k not in ("style", "explode", "allowReserved")}
            if isinstance(each, dict)
            else each
            for name, each in (node.get("encoding") or {}).items()
        }
        return {**node, "encoding": encoding} if "encoding" in node else node
    return {
        key: without_multipart_styles(value, str(key).lower().startswith("multipart/")) for key, value in node.items()
    }


def without_read_only_defaults(node: Any) -> Any:
    """A copy of the document with the ``default`` of every ``readOnly: true`` schema removed.

    openapi-core 0.23 fills a missing property's ``default`` into the request body it unmarshals and then refuses
    the body because that property is read-only ("Tried to write read-only property with 40", petstore's
    ``Pet.id``): a request that rightly leaves the property out is rejected for a value it never sent. Without the
    default nothing is filled in; a read-only property that *is* sent is still refused.
    """
    if isinstance(node, list):
        return [without_read_only_defaults(item) for item in node]
    if not isinstance(node, dict):
        return node
    read_only = node.get("readOnly") is True
    return {
        key: without_read_only_defaults(value) for key, value in node.items() if not (read_only and key == "default")
    }


def validator(document: dict[str, Any], parts: MultipartReader) -> OpenAPI:
    """openapi-core for ``document``, around its bugs (each function above says which)."""
    version = str(document.get("openapi", ""))
    if version.startswith("3.0"):
        document = without_multipart_styles(document)
    casters = {"3.0": oas30_write_schema_casters_factory, "3.1": oas31_schema_casters_factory}.get(
        version[:3], oas32_schema_casters_factory
    )
    styles = StyleDeserializersFactory(
        casters, style_deserializers={style: decoding(loads) for style, loads in style_deserializers.items()}
    )
    return OpenAPI.from_dict(
        without_read_only_defaults(document),
        config=Config(
            extra_media_type_deserializers={"multipart/form-data": parts}, style_deserializers_factory=styles
        ),
    )


def problems(openapi: OpenAPI, sent: SentRequest) -> list[str]:
    found: list[str] = []
    if sent.path_pattern is not None and path_values(sent.path, sent.path_pattern.partition("#")[0]) is None:
        found.append(f"the path {sent.path} is not {sent.path_pattern} without its fragment")
    result = openapi.unmarshal_request(sent)
    return found + [
        f"{type(error).__name__}: {error} {error.__cause__ or ''}"
        for error in result.errors
        if not isinstance(error, SecurityValidationError)
    ]


# -- the check ------------------------------------------------------------------------------------------------


def check_operation(
    openapi: OpenAPI, spec: ApiSpec, operation: Operation, tally: Tally, parts: MultipartReader
) -> None:
    parts.types = part_types(operation, spec.defs)
    args, input_schema = build_inputs(operation, spec.defs)
    plan = Plan(operation=operation, args=args, tool_name=operation.key)
    host, base_path = server_of(spec)

    @bounded(EXAMPLES_PER_OPERATION)
    @given(from_schema(generation_schema(input_schema)))
    def one(arguments: dict[str, Any]) -> None:
        try:
            request = build_request(plan, arguments, base_path=base_path, defs=spec.defs)
        except ArgumentError as exc:
            if any(f"'{name}'" in str(exc) for name in arguments):
                tally.refused += 1
                tally.refusals[f"{operation.key}: {exc}"[:200]] += 1
            else:  # a value that cannot be sent is fine; a message that does not say which one is not
                tally.invalid += 1
                tally.failures.append(
                    f"{operation.key} {json.dumps(arguments)[:300]}\n  refused naming no argument: {exc}"
                )
            return
        found = problems(openapi, as_received(request, host, operation, base_path))
        if found:
            tally.invalid += 1
            sent = f"{request.method} {request.target} {request.headers} {request.body[:300]!r}"
            tally.failures.append(f"{operation.key} {json.dumps(arguments)[:300]}\n  sent {sent}\n  {found}")
        else:
            tally.valid += 1

    try:
        one()
    except Unsatisfiable:
        tally.unsatisfiable.append(operation.key)


@pytest.mark.parametrize("label", list(SPECS))
def test_generated_arguments_build_requests_the_spec_accepts(label: str) -> None:
    path = SPECS[label]
    spec = load_path(path)
    assert spec.operations, f"{path} gave no operations: {spec.skipped}"
    parts = MultipartReader()
    openapi = validator(yaml.safe_load(path.read_text(encoding="utf-8")), parts)
    tally = Tally()
    for operation in spec.operations:
        check_operation(openapi, spec, operation, tally, parts)
    print(tally.report(label))  # shown with -s: the fraction the issue asks to report
    assert tally.valid + tally.invalid >= len(spec.operations), tally.report(label)
    assert tally.fraction >= VALID_AT_LEAST, tally.report(label) + "\n" + "\n".join(tally.failures[:10])


def test_the_inlining_cuts_recursion_and_keeps_siblings() -> None:
    defs = {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}}
    schema = {"type": "object", "properties": {"root": {"$ref": "#/$defs/Node", "description": "d"}}, "$defs": defs}
    out = generation_schema(schema)
    node = out["properties"]["root"]["allOf"][0]
    assert node["properties"]["next"]["properties"]["next"]["properties"]["next"] is False
    assert out["properties"]["root"]["allOf"][1] == {"description": "d"}
    assert "$defs" not in out


def test_a_request_is_read_back_the_way_a_server_routes_it() -> None:
    operation = Operation(method="GET", path="/pets/{id}", operation_id="getPet")
    sent = as_received(
        HttpRequest("GET", "/v2/pets/a%2Fb?x=1&x=2", {"Cookie": "theme=dark%20blue", "Accept": "*/*"}),
        "http://example.com",
        operation,
        "/v2",
    )
    assert sent.path == "/v2/pets/a%2Fb"
    assert sent.parameters.path == {"id": "a%2Fb"}  # decoded once split (RawPath)
    assert sent.parameters.query.getlist("x") == ["1", "2"]
    assert sent.parameters.cookie["theme"] == "dark blue"
    assert sent.body is None


def test_the_examples_are_installed() -> None:
    missing = [str(path) for path in SPECS.values() if not Path(path).is_file()]
    assert not missing, f"run `make node`: {missing}"


def test_base64_file_arguments_are_generated_as_base64() -> None:
    schema = {
        "type": "object",
        "properties": {"file": {"type": "string", "contentMediaType": "image/png", "contentEncoding": "base64"}},
        "required": ["file"],
    }
    generated = examples(schema, 20)
    assert generated
    for arguments in generated:
        base64.b64decode(arguments["file"], validate=True)


def test_a_read_only_default_is_dropped_for_the_validator_and_nothing_else() -> None:
    document = {"a": {"readOnly": True, "default": 1, "type": "integer"}, "b": {"default": 2}, "c": [{"default": 3}]}
    assert without_read_only_defaults(document) == {
        "a": {"readOnly": True, "type": "integer"},
        "b": {"default": 2},
        "c": [{"default": 3}],
    }


def test_label_and_matrix_path_values_are_also_keyed_as_openapi_core_reads_them() -> None:
    operation = Operation(
        "GET",
        "/p/{a}/{b}/{c}",
        "p",
        parameters=(
            Parameter("a", "path", {}, True, style="label", explode=False),
            Parameter("b", "path", {}, True, style="matrix", explode=True),
            Parameter("c", "path", {}, True),
        ),
    )
    sent = as_received(HttpRequest("GET", "/p/.x,y/;b=1;b=2/z", {}), "http://h", operation, "")
    assert sent.parameters.path == {"a": ".x,y", ".a": ".x,y", "b": ";b=1;b=2", ";b*": ";b=1;b=2", "c": "z"}


SIMPLE_ARRAY_PATH = {
    "openapi": "3.1.0",
    "info": {"title": "t", "version": "1"},
    "paths": {
        "/p/{ids}": {
            "get": {
                "parameters": [
                    {
                        "name": "ids",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "array", "items": {"type": "string", "maxLength": 3}},
                    }
                ],
                "responses": {"200": {"description": "OK"}},
            }
        }
    },
}


def test_a_comma_inside_a_path_item_is_read_as_part_of_that_item() -> None:
    operation = Operation(
        "GET", "/p/{ids}", "p", parameters=(Parameter("ids", "path", {"type": "array"}, True, style="simple"),)
    )
    openapi = validator(SIMPLE_ARRAY_PATH, MultipartReader())
    sent = as_received(HttpRequest("GET", "/p/a%2Cb,c", {}), "http://localhost", operation, "")
    result = openapi.unmarshal_request(sent)
    assert not result.errors
    assert result.parameters.path == {"ids": ["a,b", "c"]}
    too_long = as_received(HttpRequest("GET", "/p/a%2Cbcd,c", {}), "http://localhost", operation, "")
    assert openapi.unmarshal_request(too_long).errors  # "a,bcd" is one item, longer than maxLength


def test_multipart_text_parts_take_the_scalar_type_their_schema_names() -> None:
    assert typed("42", "integer") == 42
    assert typed("-7", "integer") == -7
    assert typed("4.5", "number") == 4.5
    assert typed("true", "boolean") is True
    assert typed("4x", "integer") == "4x"  # not an integer: stays text and fails validation
    assert typed("42", None) == "42"
    body = b'--b\r\nContent-Disposition: form-data; name="userId"\r\n\r\n42\r\n--b--\r\n'
    assert MultipartReader(types={"userId": "integer"})(body, boundary="b")["userId"] == 42
    assert MultipartReader()(body, boundary="b")["userId"] == "42"


def test_a_3_0_document_loses_style_fields_only_in_multipart_encodings() -> None:
    encoding = {"a": {"style": "form", "explode": False, "contentType": "text/plain"}}
    document = {
        "multipart/form-data": {"encoding": encoding},
        "application/x-www-form-urlencoded": {"encoding": encoding},
    }
    out = without_multipart_styles(document)
    assert out["multipart/form-data"]["encoding"] == {"a": {"contentType": "text/plain"}}
    assert out["application/x-www-form-urlencoded"]["encoding"] == encoding
