"""An upstream MCP server behind an internal CA: reached over HTTPS with ``ca_file``, refused without it.

The upstream is the official SDK's server over HTTPS on loopback, its certificate for ``localhost`` signed by a
throwaway CA made here; Patchbay is run as a user would (``patchbay tools`` / ``patchbay call``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.conftest import patchbay_cli
from tests.integration.test_upstream_http_mcp import UPSTREAM, accepting
from tests.integration.test_upstream_mcp import wait_for
from tests.support.servers import free_port
from tests.unit.test_outbound_fetch import _certificate

pytestmark = pytest.mark.e2e

CONFIG = """
[store]
url = "sqlite:///__DB__"

[[connectors]]
name = "inside"
type = "mcp"
url = "https://localhost:__PORT__/inside/mcp"
ca_file = "__CA__"
"""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    folder = tmp_path_factory.mktemp("private-ca")
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Internal Test CA", ca_key, None, ca_key)
    leaf = _certificate("localhost", leaf_key, ca, ca_key)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    port = free_port()
    log = (folder / "upstream.log").open("wb")
    argv = [sys.executable, str(UPSTREAM), str(port), str(folder / "requests.jsonl")]
    process = subprocess.Popen(
        [*argv, str(folder / "leaf.pem"), str(folder / "leaf.key")], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: accepting(port) or process.poll() is not None, "the HTTPS upstream to listen")
        assert process.poll() is None, (folder / "upstream.log").read_text()
        yield folder, port
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def config(folder: Path, port: int, ca: str | None, name: str) -> Path:
    text = CONFIG.replace("__DB__", str(folder / f"{name}.db")).replace("__PORT__", str(port))
    text = text.replace("__CA__", ca) if ca is not None else text.replace('ca_file = "__CA__"\n', "")
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def test_ca_file_makes_an_upstream_signed_by_an_internal_ca_reachable(upstream: tuple[Path, int]) -> None:
    folder, port = upstream
    path = config(folder, port, "ca.pem", "trusted")
    listed = patchbay_cli("tools", "--json", "-c", str(path))
    assert listed.returncode == 0, listed.describe()
    assert "inside_add" in [tool["name"] for tool in json.loads(listed.stdout)["tools"]]
    called = patchbay_cli("call", "inside_add", "--args", '{"a": 2, "b": 5}', "-c", str(path))
    assert called.returncode == 0, called.describe()
    assert "7" in called.stdout
    seen = [json.loads(line) for line in (folder / "requests.jsonl").read_text().splitlines()]
    assert any(record["method"] == "tools/call" for record in seen)  # it went over HTTPS to this very server


def test_without_ca_file_the_certificate_is_refused_and_the_connector_is_down(upstream: tuple[Path, int]) -> None:
    folder, port = upstream
    listed = patchbay_cli("tools", "--json", "-c", str(config(folder, port, None, "untrusted")))
    assert listed.returncode == 1, listed.describe()  # the connector is down: its tools are missing
    assert "inside_add" not in listed.stdout
    assert "connector 'inside' is down" in listed.stderr
    assert "certificate" in listed.stderr.lower() or "tls" in listed.stderr.lower()


def test_a_ca_file_that_is_not_a_certificate_is_a_config_error_naming_the_key(upstream: tuple[Path, int]) -> None:
    folder, port = upstream
    (folder / "notes.txt").write_text("not a certificate\n")
    listed = patchbay_cli("tools", "-c", str(config(folder, port, "notes.txt", "wrong")))
    assert listed.returncode == 2, listed.describe()
    assert "connectors[inside].ca_file" in listed.stderr or "connectors[inside]: ca_file" in listed.stderr
    assert "holds no PEM certificate" in listed.stderr
    missing = patchbay_cli("tools", "-c", str(config(folder, port, "absent.pem", "missing")))
    assert missing.returncode == 2 and "cannot read" in missing.stderr, missing.describe()


def test_ca_file_is_refused_for_a_plain_http_url(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path}/p.db"\n\n[[connectors]]\nname = "x"\ntype = "mcp"\n'
        'url = "http://127.0.0.1:9/mcp"\nca_file = "ca.pem"\n'
    )
    listed = patchbay_cli("tools", "-c", str(path))
    assert listed.returncode == 2, listed.describe()
    assert "'ca_file' applies to an https:// 'url' only" in listed.stderr
