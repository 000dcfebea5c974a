"""Calls through the openapi connector succeed against a mock server generated from the same spec.

`prism mock` (@stoplight/prism-cli, Node 22 from the npm test packages) serves each spec on a loopback port and
answers 2xx only to requests that match the operation (parameters, body, security); 4xx otherwise. Every
operation's tool is called with arguments generated from its input schema; at least 95 % must succeed.

Some valid requests get a wrong answer from prism itself (a crash, or a 422 the OpenAPI text contradicts). Each such
class is in :data:`PRISM_BUGS`, reproduced on a minimal request by
``test_prism_answers_these_valid_requests_wrongly`` (which fails once prism is fixed), and recognised in a run by
what prism logs for that call, only when openapi-core accepts the same request. Those calls are reported apart and
both ways; the 95 % applies to the rest. Any other crash or refusal counts against the connector.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml

from patchbay.connectors.base import ConnectorEnv
from patchbay.connectors.openapi import OpenApiConnector
from patchbay.connectors.openapi.models import Plan
from patchbay.connectors.openapi.options import OpenApiOptions
from patchbay.connectors.openapi.request import build_request
from patchbay.connectors.openapi.spec import load_path
from patchbay.context import Context
from patchbay.protocol.scope import CallScope
from tests.integration.test_openapi_roundtrip import (
    MultipartReader,
    as_received,
    part_types,
    problems,
    server_of,
    validator,
)
from tests.support.node import NODE_MODULES, node_env, npm_bin
from tests.support.openapi_args import examples
from tests.support.rest_api import SPEC_PATH
from tests.support.servers import LOOPBACK, free_port, stop_process
from tests.support.waiting import until

EXAMPLES = NODE_MODULES / "@readme" / "oas-examples" / "3.0" / "yaml"
# spec -> the credentials its security schemes need (prism checks that they are present, not their values).
SPECS: dict[str, tuple[Path, dict[str, Any]]] = {
    "rest_api": (
        SPEC_PATH,
        {
            "auth": {"type": "bearer", "token": "mock-token"},
            "security": {
                "apiKey": {"type": "api_key", "value": "mock-key"},
                "basic": {"type": "basic", "username": "u", "password": "p"},
            },
        },
    ),
    "parameters-style": (EXAMPLES / "parameters-style.yaml", {}),
    "petstore": (
        EXAMPLES / "petstore.yaml",
        {"security": {"petstore_auth": {"type": "bearer", "token": "t"}, "api_key": {"type": "api_key", "value": "k"}}},
    ),
}
EXAMPLES_PER_OPERATION = 4
SUCCEEDING_AT_LEAST = 0.95
_ANSWERED = re.compile(r"The API answered (\d{3})")
# A validation error prism logs; answering with a declared 4xx it logs each again as "Violation: <where> <error>".
_REFUSAL = re.compile(r"\[VALIDATOR\] ✖  error\s+(?:Violation: \S+ )?(.*)$", re.MULTILINE)
# prism reads JSON and parameters into JavaScript doubles and checks int64 as at most 2^53 - 1 (PRISM_BUGS,
# "int64-precision"): arguments generated for prism stay within that; the tools keep the full int64 range.
JS_SAFE = 2**53 - 1


@dataclass(frozen=True)
class PrismBug:
    """A wrong answer prism 5.16 gives to valid requests: what it prints when it happens, and why it is wrong."""

    key: str
    why: str
    crash: str = ""  # a regular expression found in the stack trace prism prints as it dies
    refusal: re.Pattern[str] | None = None  # every validation error prism logs for the call matches this
    multipart: bool = False  # only for a multipart/form-data body


PRISM_BUGS = (
    PrismBug(
        "absent-optional-header",
        "an optional array or object header that is not sent crashes prism (style/simple.js splits undefined); "
        "OpenAPI 3.0.3 Parameter Object: a parameter is optional unless `required: true`",
        crash=r"Cannot read properties of undefined \(reading 'split'\)",
    ),
    PrismBug(
        "comma-in-path",
        "a path value holding ',' crashes prism (its URI-template match yields an array, which the simple, label "
        "and matrix deserialisers treat as text); the 3.0.3 Style Examples write arrays and objects in a path with "
        "commas (blue,black,brown)",
        crash=r"value\.split is not a function|parameters\[name\]\.startsWith is not a function",
    ),
    PrismBug(
        "delimited-object",
        "spaceDelimited or pipeDelimited on an object parameter or property crashes prism on any request; the 3.0.3 "
        "Style Examples define both for objects (R%20100%20G%20200%20B%20150)",
        crash="delimited style is only applicable to array parameter",
    ),
    PrismBug(
        "multipart-repeated-parts",
        "prism keeps only the last of the multipart parts sharing a name, so an array property reads as one string; "
        "RFC 7578 §4.3 and the 3.0.3 Encoding Object (an array's contentType follows its items) send one part per item",
        refusal=re.compile(r"^Request body property \S+ must be array$"),
        multipart=True,
    ),
    PrismBug(
        "multipart-reserved",
        "prism refuses reserved characters in multipart values; the 3.0.3 Encoding Object says allowReserved "
        "'SHALL be ignored if the request body media type is not application/x-www-form-urlencoded' and a part's "
        "value is never percent-encoded (RFC 7578 §4.5)",
        refusal=re.compile(r"^Reserved characters used in request body$"),
        multipart=True,
    ),
    PrismBug(
        "int64-precision",
        "prism refuses an int64 above 2^53 - 1 (JavaScript numbers); OpenAPI's int64 is a signed 64-bit integer. "
        "Not counted: generation for prism stays within 2^53 - 1 (JS_SAFE)",
        refusal=re.compile(r"^Request \w+ parameter \w+ must be <= 9007199254740991$"),
    ),
)


def prism_bug(said: str, crashed: bool, multipart: bool) -> PrismBug | None:
    """The known prism bug that what prism logged for one call shows, or None."""
    if crashed:
        return next((bug for bug in PRISM_BUGS if bug.crash and re.search(bug.crash, said)), None)
    refusals = _REFUSAL.findall(said)
    for bug in PRISM_BUGS:
        if bug.refusal is None or (bug.multipart and not multipart) or not refusals:
            continue
        if all(bug.refusal.match(line.strip()) for line in refusals):
            return bug
    return None


class Prism:
    """``prism mock spec`` on one loopback port, restarted on the same port when it dies; its output in ``log``."""

    def __init__(self, spec: Path, log: Path) -> None:
        self.spec = spec
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.marks = 0

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        """Starts prism and waits until it listens (outside an event loop; inside one, launch() and ready())."""
        self.launch()
        anyio.run(self.ready)

    def launch(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(npm_bin("prism")), "mock", str(self.spec), "-p", str(self.port), "-h", LOOPBACK],
                env=node_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def ready(self) -> None:
        proc = self.proc
        assert proc is not None

        def listening() -> bool:
            assert proc.poll() is None, f"prism exited with {proc.returncode}"
            return self.answers()

        await until(listening, f"prism listening on {self.port}", within=60)

    def answers(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex((LOOPBACK, self.port)) == 0

    def crashed(self) -> bool:
        return self.proc is not None and (self.proc.poll() is not None or not self.answers())

    def size(self) -> int:
        return self.log.stat().st_size

    def since(self, offset: int) -> str:
        with self.log.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")

    async def said_since(self, offset: int) -> str | None:
        """What prism logged for the calls made since ``offset``: a marker request, then everything before it.
        None when prism is gone (it may still be dying from the last call when :meth:`crashed` looked)."""
        self.marks += 1
        mark = f"/__patchbay_mark_{self.marks}"
        try:
            async with httpx.AsyncClient() as client:
                await client.get(self.base_url + mark)
        except httpx.TransportError:
            return None
        await until(lambda: mark in self.since(offset), f"prism logging {mark}")
        return self.since(offset).partition(mark)[0]

    async def died(self, offset: int) -> str:
        """What prism printed up to its crash (once the process is gone, its stack trace is all written)."""
        proc = self.proc
        assert proc is not None
        await until(lambda: proc.poll() is not None, "prism to exit after a crash")
        return self.since(offset)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


@contextlib.contextmanager
def prism(spec: Path, log: Path) -> Iterator[Prism]:
    """A started :class:`Prism` until the block ends (also when it fails)."""
    mock = Prism(spec, log)
    try:
        mock.start()
        yield mock
    finally:
        mock.stop()


def context() -> Context:
    return Context(CallScope(era="legacy", version="2025-11-25", request_id=1, method="tools/call", client_caps={}))


@dataclass
class Outcomes:
    """Calls as prism answered them. A call *succeeds* when prism answers a status the operation declares and not
    422 (prism's "request does not match the operation"): an operation that declares no 2xx (petstore's
    ``deletePet`` declares only 400) can never get one from a mock of its own spec. Both fractions are reported;
    the 95 % target applies to 2xx among operations that declare one, calls hit by a known prism bug set apart."""

    calls: list[tuple[str, str | None, bool, str]] = field(default_factory=list)  # tool, status, declares 2xx, detail
    bugs: dict[str, list[str]] = field(default_factory=dict)  # PrismBug.key -> the valid calls it hit
    ours: list[str] = field(default_factory=list)  # requests after which prism was gone, which openapi-core refuses

    def report(self, label: str, declared: dict[str, set[str]]) -> str:
        with_2xx = [c for c in self.calls if c[2]]
        got_2xx = sum(1 for _, status, _, _ in with_2xx if status is not None and status.startswith("2"))
        in_spec = sum(1 for name, status, _, _ in self.calls if status != "422" and _declares(declared[name], status))
        hit = sum(len(calls) for calls in self.bugs.values())
        bugs = ", ".join(f"{key} {len(calls)}" for key, calls in sorted(self.bugs.items())) or "none"
        return (
            f"{label}: {got_2xx}/{len(with_2xx)} calls got a 2xx among operations declaring one, valid calls hit by "
            f"a known prism bug set apart ({bugs}; each reproduced in "
            f"test_prism_answers_these_valid_requests_wrongly); counting those as failures: "
            f"{got_2xx}/{len(with_2xx) + hit}; {in_spec}/{len(self.calls)} got a declared status other than 422; "
            f"{len(self.ours)} prism crashes on requests openapi-core refuses"
        )


def _declares(statuses: set[str], status: str | None) -> bool:
    if status is None:
        return False
    if status == "2xx":  # a successful result: the connector took a 2xx the operation declares (or its default)
        return any(s.startswith("2") for s in statuses) or "default" in statuses
    return status in statuses or f"{status[0]}XX" in statuses or "default" in statuses


def status_of(result: Any) -> str | None:
    """The HTTP status a tool result reports: a success is the operation's 2xx; an error says "answered NNN"."""
    text = " ".join(str(item.get("text", "")) for item in result.content)
    if not result.is_error:
        return "2xx"
    found = _ANSWERED.search(text)
    return found.group(1) if found else None


def declared_statuses(spec: Path, plans: dict[str, Plan]) -> dict[str, set[str]]:
    """Each tool's declared response statuses (upper case), read from the document by its operation."""
    document = yaml.safe_load(spec.read_text(encoding="utf-8"))
    declared: dict[str, set[str]] = {}
    for name, plan in plans.items():
        operation = document["paths"][plan.operation.path][plan.operation.method.lower()]
        declared[name] = {str(status).upper() for status in operation.get("responses", {})}
    return declared


def openapi_core_problems(spec: Path, plan: Plan, arguments: dict[str, Any]) -> list[str]:
    """openapi-core's problems with the request the connector builds for ``arguments`` (empty: it is valid)."""
    api = load_path(spec)
    parts = MultipartReader()
    openapi = validator(yaml.safe_load(spec.read_text(encoding="utf-8")), parts)
    parts.types = part_types(plan.operation, api.defs)
    host, base_path = server_of(api)
    request = build_request(plan, arguments, base_path=base_path, defs=api.defs)
    return problems(openapi, as_received(request, host, plan.operation, base_path))


def js_safe(schema: Any) -> Any:
    """``schema`` with every int64 bounded to what prism's JavaScript numbers hold exactly (see JS_SAFE)."""
    if isinstance(schema, list):
        return [js_safe(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: js_safe(value) for key, value in schema.items()}
    if out.get("format") == "int64":
        out["minimum"] = max(out.get("minimum", -JS_SAFE), -JS_SAFE)
        out["maximum"] = min(out.get("maximum", JS_SAFE), JS_SAFE)
    return out


def is_multipart(plan: Plan) -> bool:
    body = plan.operation.body
    return body is not None and body.media_type.lower().startswith("multipart/")


async def call_all(spec: Path, connector: OpenApiConnector, mock: Prism, outcomes: Outcomes) -> None:
    """Every tool, with generated arguments, through the connector to prism; each call's answer classified."""
    plans = connector.plans()
    declared = declared_statuses(spec, plans)
    for tool in connector.tools():
        plan = plans[tool.name]
        declares_2xx = any(status.startswith("2") for status in declared[tool.name])
        for arguments in examples(js_safe(tool.input_schema), EXAMPLES_PER_OPERATION):
            offset = mock.size()
            result = await tool.handler(arguments, context())
            answer = " ".join(str(item.get("text", "")) for item in result.content)[:300]
            detail = f"{tool.name} {arguments}"[:300] + f" -> {answer}"
            status = status_of(result)
            said = None if mock.crashed() else await mock.said_since(offset)
            crashed = said is None
            if said is None:
                said = await mock.died(offset)
            bug = prism_bug(said, crashed, is_multipart(plan)) if crashed or status == "422" else None
            verdict = openapi_core_problems(spec, plan, arguments) if bug is not None or crashed else []
            if crashed:
                mock.launch()
                await mock.ready()
            if verdict and crashed:
                outcomes.ours.append(f"{detail} {verdict}")
            elif bug is not None and not verdict:
                outcomes.bugs.setdefault(bug.key, []).append(detail)
                continue
            outcomes.calls.append((tool.name, "crash" if crashed else status, declares_2xx, detail))


@pytest.mark.parametrize("label", list(SPECS))
def test_generated_calls_through_the_connector_succeed_against_prism(label: str, tmp_path: Path) -> None:
    spec, credentials = SPECS[label]
    outcomes = Outcomes()
    with prism(spec, tmp_path / "prism.log") as mock:
        options = OpenApiOptions.model_validate(
            {"spec": str(spec), "base_url": mock.base_url, "mode": "tools", **credentials}
        )
        connector = OpenApiConnector(label, options, ConnectorEnv(base_dir=tmp_path, store_url="sqlite://"))

        async def scenario() -> dict[str, set[str]]:
            await connector.open()
            try:
                await call_all(spec, connector, mock, outcomes)
            finally:
                await connector.close()
            return declared_statuses(spec, connector.plans())

        declared = anyio.run(scenario)
    report = outcomes.report(label, declared)
    print(report)
    with_2xx = [c for c in outcomes.calls if c[2]]
    got_2xx = [c for c in with_2xx if c[1] is not None and c[1].startswith("2")]
    failures = "\n".join(
        f"{status}: {detail}" for _, status, _, detail in with_2xx if not (status or "").startswith("2")
    )
    assert with_2xx, report
    assert not outcomes.ours, report + "\n" + "\n".join(outcomes.ours)
    assert len(got_2xx) / len(with_2xx) >= SUCCEEDING_AT_LEAST, f"{report}\n{failures[:4000]}"


# -- prism's own bugs, each on a minimal valid request ---------------------------------------------------------

PARAMETERS_STYLE = SPECS["parameters-style"][0]
PETSTORE = SPECS["petstore"][0]
_PATH_VALUES = {"primitive": "p", "array": ["a", "b"], "object": {"name": "n"}}
# case -> (bug key, spec, tool, arguments, extra headers the operation's security needs)
REPRODUCTIONS: dict[str, tuple[str, Path, str, dict[str, Any], dict[str, str]]] = {
    "absent-optional-header": (
        "absent-optional-header",
        PARAMETERS_STYLE,
        "headers_standard",
        {"primitive": "p", "array": ["a"]},
        {},
    ),
    "comma-in-simple-path": ("comma-in-path", PARAMETERS_STYLE, "paths_standard", _PATH_VALUES, {}),
    "comma-in-label-path": ("comma-in-path", PARAMETERS_STYLE, "paths_label_non_exploded", _PATH_VALUES, {}),
    "comma-in-matrix-path": ("comma-in-path", PARAMETERS_STYLE, "paths_matrix_non_exploded", _PATH_VALUES, {}),
    "delimited-object": (
        "delimited-object",
        PARAMETERS_STYLE,
        "query_space_delimited_non_exploded",
        {"array": ["a", "b"]},
        {},
    ),
    "multipart-repeated-parts": (
        "multipart-repeated-parts",
        PARAMETERS_STYLE,
        "form_data_standard",
        {"array": ["a", "b"]},
        {},
    ),
    "multipart-reserved": (
        "multipart-reserved",
        PARAMETERS_STYLE,
        "form_data_form_non_exploded",
        {"primitive": "a&b"},
        {},
    ),
    "int64-precision": ("int64-precision", PETSTORE, "get_pet_by_id", {"petId": 2**63 - 1}, {"api_key": "k"}),
}


@pytest.mark.parametrize("case", list(REPRODUCTIONS))
def test_prism_answers_these_valid_requests_wrongly(case: str, tmp_path: Path) -> None:
    """The request openapi-core accepts, sent as the connector builds it, gets prism's wrong answer; this fails
    (and the bug's calls must count again) once prism is fixed."""
    key, spec, tool, arguments, headers = REPRODUCTIONS[case]
    bug = next(bug for bug in PRISM_BUGS if bug.key == key)
    options = OpenApiOptions.model_validate({"spec": str(spec), "base_url": "http://127.0.0.1:9", "mode": "tools"})
    connector = OpenApiConnector("bug", options, ConnectorEnv(base_dir=tmp_path, store_url="sqlite://"))
    anyio.run(connector.open)
    plan = connector.plans()[tool]
    anyio.run(connector.close)
    assert openapi_core_problems(spec, plan, arguments) == []
    request = build_request(plan, arguments, defs=load_path(spec).defs)
    with prism(spec, tmp_path / "prism.log") as mock:

        async def send() -> tuple[bool, str]:
            offset = mock.size()
            try:
                async with httpx.AsyncClient(base_url=mock.base_url) as client:
                    await client.request(
                        request.method, request.target, headers={**request.headers, **headers}, content=request.body
                    )
            except httpx.TransportError:
                return True, await mock.died(offset)
            said = await mock.said_since(offset)
            return (True, await mock.died(offset)) if said is None else (False, said)

        crashed, said = anyio.run(send)
    assert crashed == bool(bug.crash), said[-2000:]
    assert prism_bug(said, crashed, is_multipart(plan)) == bug, said[-2000:]
