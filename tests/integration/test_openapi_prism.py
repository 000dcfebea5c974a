"""Calls through the openapi connector succeed against a mock server generated from the same spec.

`prism mock` (@stoplight/prism-cli, Node 22 from the npm test packages) serves each spec on a loopback port and
answers 2xx only to requests that match the operation (parameters, body, security); 4xx otherwise. Every
operation's tool is called with arguments generated from its input schema; at least 95 % must succeed.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from patchbay.connectors.base import ConnectorEnv
from patchbay.connectors.openapi import OpenApiConnector
from patchbay.connectors.openapi.options import OpenApiOptions
from patchbay.context import Context
from patchbay.protocol.scope import CallScope
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


@contextlib.contextmanager
def prism(spec: Path) -> Iterator[str]:
    """``prism mock spec`` on a free loopback port until the block ends (also when it fails)."""
    port = free_port()
    proc = subprocess.Popen(
        [str(npm_bin("prism")), "mock", str(spec), "-p", str(port), "-h", LOOPBACK],
        env=node_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        def listening() -> bool:
            assert proc.poll() is None, f"prism exited with {proc.returncode}"
            with socket.socket() as probe:
                return probe.connect_ex((LOOPBACK, port)) == 0

        anyio.run(lambda: until(listening, f"prism listening on {port}", within=60))
        yield f"http://{LOOPBACK}:{port}"
    finally:
        stop_process(proc)  # type: ignore[arg-type]


def context() -> Context:
    return Context(CallScope(era="legacy", version="2025-11-25", request_id=1, method="tools/call", client_caps={}))


@pytest.mark.parametrize("label", list(SPECS))
def test_generated_calls_through_the_connector_succeed_against_prism(label: str, tmp_path: Path) -> None:
    spec, credentials = SPECS[label]
    with prism(spec) as base_url:
        options = OpenApiOptions.model_validate(
            {"spec": str(spec), "base_url": base_url, "mode": "tools", **credentials}
        )
        connector = OpenApiConnector(label, options, ConnectorEnv(base_dir=tmp_path, store_url="sqlite://"))
        outcomes: list[tuple[str, bool, str]] = []

        async def scenario() -> None:
            await connector.open()
            try:
                for tool in connector.tools():
                    for arguments in examples(tool.input_schema, EXAMPLES_PER_OPERATION):
                        result = await tool.handler(arguments, context())
                        text = " ".join(str(item.get("text", "")) for item in result.content)[:300]
                        outcomes.append((tool.name, not result.is_error, f"{arguments} -> {text}"))
            finally:
                await connector.close()

        anyio.run(scenario)
    succeeded = sum(1 for _, ok, _ in outcomes if ok)
    report = f"{label}: {succeeded}/{len(outcomes)} calls succeeded"
    print(report)
    failures = "\n".join(f"{name}: {detail}" for name, ok, detail in outcomes if not ok)
    assert outcomes, report
    assert succeeded / len(outcomes) >= SUCCEEDING_AT_LEAST, f"{report}\n{failures[:4000]}"
