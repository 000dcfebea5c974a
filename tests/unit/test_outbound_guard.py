"""The outbound address policy over every special-purpose range, host spellings that hide an address, and the
rule that only patchbay.outbound creates outbound HTTP clients in server code."""

from __future__ import annotations

import ast
import ipaddress
from pathlib import Path

import httpx
import pytest

from patchbay.errors import ConfigError
from patchbay.outbound import PUBLIC_ONLY, AddressPolicy, Fetcher, FetchError, Refused, fetcher_for
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio
SRC = Path(__file__).resolve().parents[2] / "src" / "patchbay"


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("10.1.2.3", "private"),
        ("100.64.0.1", "shared address space"),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("169.254.169.254", "link-local"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.0.0.8", "IETF protocol assignment"),
        ("192.0.2.10", "documentation"),
        ("192.88.99.1", "6to4 relay"),
        ("192.168.1.1", "private"),
        ("198.18.0.1", "benchmarking"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "IPv4-mapped"),
        ("::ffff:8.8.8.8", "IPv4-mapped"),  # refused even when the IPv4 inside is public: never unwrapped
        ("::127.0.0.1", "IPv4-compatible"),
        ("::10.0.0.1", "IPv4-compatible"),
        ("::ffff:0:127.0.0.1", "IPv4-translated"),
        ("64:ff9b::7f00:1", "NAT64"),
        ("64:ff9b::a9fe:a9fe", "NAT64"),
        ("64:ff9b::808:808", "NAT64"),
        ("64:ff9b:1::a00:1", "local-use NAT64"),
        ("100::1", "discard-only"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("2001:2::1", "IETF protocol assignment"),
        ("2001:10::1", "IETF protocol assignment"),
        ("2001:db8::1", "documentation"),
        ("2002:7f00:1::1", "6to4"),
        ("2002:a00:1::1", "6to4"),
        ("3fff::1", "documentation"),
        ("fc00::1", "unique local"),
        ("fd12:3456:789a::1", "unique local"),
        ("fe80::1", "link-local"),
        ("fe80::1%2", "link-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("4000::1", "outside 2000::/3"),
        ("1::1", "outside 2000::/3"),
    ],
)
def test_special_purpose_addresses_are_refused_with_their_kind(address: str, kind: str) -> None:
    refusal = PUBLIC_ONLY.refusal(ipaddress.ip_address(address))
    assert refusal is not None and kind in refusal


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "100.63.255.255", "172.32.0.1", "2606:4700:4700::1111"]
)
def test_public_unicast_addresses_are_allowed(address: str) -> None:
    assert PUBLIC_ONLY.refusal(ipaddress.ip_address(address)) is None


def test_operators_widen_the_policy_by_network_only() -> None:
    policy = AddressPolicy((ipaddress.ip_network("10.20.0.0/16"),))
    assert policy.refusal(ipaddress.ip_address("10.20.3.4")) is None
    assert policy.refusal(ipaddress.ip_address("10.21.0.1")) is not None
    assert policy.refusal(ipaddress.ip_address("::ffff:10.20.3.4")) is not None  # a v4 network admits no v6 form


def _never_resolves() -> Fetcher:
    async def resolve(host: str, port: int) -> list[str]:
        raise AssertionError(f"{host} must be refused before any lookup")

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"{request.url} must be refused before any connection")

    return Fetcher(resolve=resolve, transport=httpx.MockTransport(unreachable))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://2130706433/x", "non-standard form"),
        ("https://0x7f.1/x", "non-standard form"),
        ("https://017700000001/x", "non-standard form"),
        ("https://127.1/x", "non-standard form"),
        ("https://0x7f000001/x", "non-standard form"),
        ("https://example.0x7f/x", "non-standard form"),
        ("https://127.0.0.1/x", "loopback"),
        ("https://0.0.0.0/x", "unspecified"),
        ("https://[::]/x", "unspecified"),
        ("https://[::ffff:7f00:1]/x", "IPv4-mapped"),
        ("https://[64:ff9b::a9fe:a9fe]/x", "NAT64"),
        ("https://[::127.0.0.1]/x", "IPv4-compatible"),
        ("http://93.184.215.14/x", "only https"),
        ("file:///etc/passwd", "only https"),
        ("https://user:pw@example.com/x", "credentials"),
        ("https://bad_label-.example/x", "not a valid host name"),
        ("https://example.com:0/x", "port"),
    ],
)
async def test_urls_hiding_or_naming_internal_addresses_are_refused_before_any_lookup(url: str, message: str) -> None:
    with pytest.raises(Refused, match=message):
        await _never_resolves().request("GET", url)


@pytest.mark.parametrize("answers", [["10.0.0.5"], ["93.184.215.14", "127.0.0.1"], ["::ffff:169.254.169.254"]])
async def test_a_name_is_refused_when_any_of_its_addresses_is_not_public(answers: list[str]) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return answers

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise AssertionError("refused names are never connected to")

    guarded = Fetcher(resolve=resolve, transport=httpx.MockTransport(unreachable))
    with pytest.raises(Refused, match="resolves to a"):
        await guarded.request("GET", "https://rebind.example/x")


async def test_trailing_dot_and_idna_names_are_pinned_with_the_name_in_host_and_sni() -> None:
    asked: list[str] = []
    sent: list[httpx.Request] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["93.184.215.14"]

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    guarded = Fetcher(resolve=resolve, transport=httpx.MockTransport(answer))
    await guarded.get_json("https://bücher.example./doc")
    assert asked == ["xn--bcher-kva.example"]
    (request,) = sent
    assert request.url.host == "93.184.215.14"
    assert request.headers["host"] == "xn--bcher-kva.example."
    assert request.extensions["sni_hostname"] == "xn--bcher-kva.example"


async def test_unresolvable_names_are_a_fetch_error_not_a_crash() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(FetchError, match=r"cannot resolve nowhere\.example"):
        await Fetcher(resolve=resolve).request("GET", "https://nowhere.example/x")


def test_outbound_settings_build_the_policy_and_name_bad_networks() -> None:
    settings = from_dict({"outbound": {"allowed_networks": ["10.20.0.0/16"]}}, source="patchbay.toml")
    fetcher = fetcher_for(settings.outbound)
    assert fetcher.policy.refusal(ipaddress.ip_address("10.20.0.9")) is None and not fetcher.allow_http
    legacy = fetcher_for(settings.outbound, allow_private_network=True)
    assert legacy.policy.refusal(ipaddress.ip_address("127.0.0.1")) is None and legacy.allow_http
    with pytest.raises(ConfigError) as caught:
        from_dict({"outbound": {"allowed_networks": ["10.0.0.1/8"]}}, source="patchbay.toml")
    message = str(caught.value)
    assert "patchbay.toml" in message and "outbound.allowed_networks" in message and "'10.0.0.1/8'" in message


# -- every outbound client is made in patchbay.outbound ---------------------------------------------------------

# The doctor is a command-line client: it checks a URL the person running it typed, with their own network
# access, so it may reach their loopback or intranet server; no server code path runs it.
ALLOWED = ("outbound/", "doctor/", "cli/doctor.py")
CLIENT_FACTORIES = {"AsyncClient", "Client", "AsyncHTTPTransport", "HTTPTransport", "get", "post", "request", "stream"}
RAW_NETWORK = {("anyio", "connect_tcp"), ("socket", "create_connection"), ("asyncio", "open_connection")}
CLIENT_MODULES = {"urllib.request", "http.client", "aiohttp", "requests", "urllib3", "httpcore"}


def outbound_clients(source: str) -> list[str]:
    """Lines of ``source`` that make an outbound HTTP client or connection or import a client library."""
    found: list[str] = []
    httpx_names = {"httpx"}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name in CLIENT_MODULES]
            httpx_names |= {a.asname for a in node.names if a.name == "httpx" and a.asname}
        elif isinstance(node, ast.ImportFrom) and node.module in CLIENT_MODULES:
            found.append(f"{node.lineno}: from {node.module} import")
        elif isinstance(node, ast.ImportFrom) and node.module == "httpx":
            found += [f"{node.lineno}: from httpx import {a.name}" for a in node.names if a.name in CLIENT_FACTORIES]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name) and (
                (owner.id in httpx_names and node.func.attr in CLIENT_FACTORIES)
                or (owner.id, node.func.attr) in RAW_NETWORK
            ):
                found.append(f"{node.lineno}: {owner.id}.{node.func.attr}(...)")
    return found


def test_the_scan_finds_every_way_to_open_a_client() -> None:
    source = (
        "import httpx\nimport httpx as h\nimport urllib.request\nfrom httpx import AsyncClient\n"
        "httpx.AsyncClient()\nh.Client()\nhttpx.get('u')\nanyio.connect_tcp('h', 1)\nhttpx.Headers()\n"
    )
    flagged = sorted(int(line.partition(":")[0]) for line in outbound_clients(source))
    assert flagged == [3, 4, 5, 6, 7, 8]  # not the plain httpx imports (types), not httpx.Headers


def test_only_the_outbound_package_creates_outbound_clients_in_server_code() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith(ALLOWED):
            continue
        offenders += [f"{relative}:{line}" for line in outbound_clients(path.read_text(encoding="utf-8"))]
    assert offenders == [], "outbound requests must go through patchbay.outbound.Fetcher: " + ", ".join(offenders)
