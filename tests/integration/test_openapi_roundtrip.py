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

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
import yaml
from hypothesis import given
from hypothesis.errors import Unsatisfiable
from hypothesis_jsonschema import from_schema
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.validation.request.exceptions import SecurityValidationError
from werkzeug.datastructures import Headers, ImmutableMultiDict

from patchbay.connectors.openapi.inputs import build_inputs
from patchbay.connectors.openapi.models import ApiSpec, Operation, Plan
from patchbay.connectors.openapi.request import ArgumentError, HttpRequest, build_request
from patchbay.connectors.openapi.spec import load_path
from tests.support.node import NODE_MODULES
from tests.support.openapi_args import bounded, generation_schema
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
            path=path_values(path, routed) or {},
        ),
        content_type=media.lower() + sep + params,
        body=request.body or None,
        path_pattern=template if fragment else None,
    )


def path_values(path: str, template: str) -> dict[str, str] | None:
    """The template's variables as a server routing on the decoded path segments sees them; None when the path
    does not match the template."""
    values: dict[str, str] = {}
    sent, wanted = path.split("/"), template.split("/")
    if len(sent) != len(wanted):
        return None
    for raw, pattern in zip(sent, wanted, strict=True):
        if pattern.startswith("{") and pattern.endswith("}"):
            values[pattern[1:-1]] = unquote(raw)
        elif unquote(raw) != pattern:
            return None
    return values


def server_of(spec: ApiSpec) -> tuple[str, str]:
    """(host URL, base path) of the spec's first server, as openapi-core will match them."""
    first = spec.servers[0] if spec.servers else "/"
    parts = urlsplit(first)
    host = f"{parts.scheme}://{parts.netloc}" if parts.netloc else "http://localhost"
    return host, parts.path.rstrip("/")


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


def check_operation(openapi: OpenAPI, spec: ApiSpec, operation: Operation, tally: Tally) -> None:
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
    openapi = OpenAPI.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))
    tally = Tally()
    for operation in spec.operations:
        check_operation(openapi, spec, operation, tally)
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
    assert sent.parameters.path == {"id": "a/b"}
    assert sent.parameters.query.getlist("x") == ["1", "2"]
    assert sent.parameters.cookie["theme"] == "dark blue"
    assert sent.body is None


def test_the_examples_are_installed() -> None:
    missing = [str(path) for path in SPECS.values() if not Path(path).is_file()]
    assert not missing, f"run `make node`: {missing}"
