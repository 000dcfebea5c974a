"""Calls through the openapi connector succeed against a mock server generated from the same spec.

`prism mock` (@stoplight/prism-cli, Node 22 from the npm test packages) serves each spec on a loopback port and
answers 2xx only to requests that match the operation (parameters, body, security); 4xx otherwise. Every
operation's tool is called with arguments generated from its input schema; at least 95 % must succeed.
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


class Prism:
    """``prism mock spec`` on one loopback port, restarted on the same port when it dies."""

    def __init__(self, spec: Path) -> None:
        self.spec = spec
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        """Starts prism and waits until it listens (outside an event loop; inside one, launch() and ready())."""
        self.launch()
        anyio.run(self.ready)

    def launch(self) -> None:
        self.proc = subprocess.Popen(
            [str(npm_bin("prism")), "mock", str(self.spec), "-p", str(self.port), "-h", LOOPBACK],
            env=node_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
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

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


@contextlib.contextmanager
def prism(spec: Path) -> Iterator[Prism]:
    """A started :class:`Prism` until the block ends (also when it fails)."""
    mock = Prism(spec)
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
    the 95 % target applies to 2xx among operations that declare one."""

    calls: list[tuple[str, str | None, bool, str]] = field(default_factory=list)  # tool, status, declares 2xx, detail
    crashes: list[str] = field(default_factory=list)  # requests after which prism was gone, valid per openapi-core
    ours: list[str] = field(default_factory=list)  # requests after which prism was gone, which openapi-core refuses

    def report(self, label: str, declared: dict[str, set[str]]) -> str:
        with_2xx = [c for c in self.calls if c[2]]
        got_2xx = sum(1 for _, status, _, _ in with_2xx if status is not None and status.startswith("2"))
        in_spec = sum(1 for name, status, _, _ in self.calls if status != "422" and _declares(declared[name], status))
        return (
            f"{label}: {got_2xx}/{len(with_2xx)} calls got a 2xx among operations declaring one; "
            f"{in_spec}/{len(self.calls)} got a declared status other than 422; "
            f"{len(self.crashes)} prism crashes on valid requests, {len(self.ours)} on requests openapi-core refuses"
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


def declared_statuses(spec: Path, connector: OpenApiConnector) -> tuple[dict[str, set[str]], dict[str, Plan]]:
    """Each tool's declared response statuses (upper case), read from the document by its operation."""
    document = yaml.safe_load(spec.read_text(encoding="utf-8"))
    # The built plans (tool -> operation) are what the connector calls; reading them keeps this test from
    # re-deriving tool names.
    plans = connector._built.plans if connector._built is not None else {}
    declared: dict[str, set[str]] = {}
    for name, plan in plans.items():
        path = plan.operation.path
        operation = document["paths"][path][plan.operation.method.lower()]
        declared[name] = {str(status).upper() for status in operation.get("responses", {})}
    return declared, plans


def crash_verdict(spec: Path, plan: Plan, arguments: dict[str, Any]) -> list[str]:
    """openapi-core's problems with the request that preceded a prism crash (empty: the request was valid)."""
    api = load_path(spec)
    parts = MultipartReader()
    openapi = validator(yaml.safe_load(spec.read_text(encoding="utf-8")), parts)
    parts.types = part_types(plan.operation, api.defs)
    host, base_path = server_of(api)
    request = build_request(plan, arguments, base_path=base_path, defs=api.defs)
    return problems(openapi, as_received(request, host, plan.operation, base_path))


@pytest.mark.parametrize("label", list(SPECS))
def test_generated_calls_through_the_connector_succeed_against_prism(label: str, tmp_path: Path) -> None:
    spec, credentials = SPECS[label]
    outcomes = Outcomes()
    with prism(spec) as mock:
        options = OpenApiOptions.model_validate(
            {"spec": str(spec), "base_url": mock.base_url, "mode": "tools", **credentials}
        )
        connector = OpenApiConnector(label, options, ConnectorEnv(base_dir=tmp_path, store_url="sqlite://"))

        async def scenario() -> dict[str, set[str]]:
            await connector.open()
            declared, plans = declared_statuses(spec, connector)
            try:
                for tool in connector.tools():
                    declares_2xx = any(status.startswith("2") for status in declared[tool.name])
                    for arguments in examples(tool.input_schema, EXAMPLES_PER_OPERATION):
                        result = await tool.handler(arguments, context())
                        answer = " ".join(str(item.get("text", "")) for item in result.content)[:300]
                        detail = f"{tool.name} {arguments}"[:300] + f" -> {answer}"
                        if mock.crashed():
                            # prism's own bug (deserializers/style/simple.js splitting an undefined value): the
                            # call is not ours to count when openapi-core accepts the request; prism restarts.
                            verdict = crash_verdict(spec, plans[tool.name], arguments)
                            (outcomes.ours if verdict else outcomes.crashes).append(f"{detail} {verdict}")
                            mock.stop()
                            mock.launch()
                            await mock.ready()
                            if not verdict:
                                continue
                        outcomes.calls.append((tool.name, status_of(result), declares_2xx, detail))
            finally:
                await connector.close()
            return declared

        declared = anyio.run(scenario)
    report = outcomes.report(label, declared)
    print(report)
    with_2xx = [c for c in outcomes.calls if c[2]]
    got_2xx = [c for c in with_2xx if c[1] is not None and c[1].startswith("2")]
    failures = "\n".join(f"{status}: {detail}" for _, status, _, detail in with_2xx if (status or "").isdigit())
    assert with_2xx, report
    assert not outcomes.ours, report + "\n" + "\n".join(outcomes.ours)
    assert len(got_2xx) / len(with_2xx) >= SUCCEEDING_AT_LEAST, f"{report}\n{failures[:4000]}"
