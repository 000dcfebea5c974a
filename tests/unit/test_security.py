"""HostGuard: the Host and Origin values /mcp accepts (DNS-rebinding protection).

reference/mcp-requirements.md §3.6, R-016; conformance-scenarios §3.1, §9.
"""

from __future__ import annotations

import pytest

from patchbay.transport.security import HostGuard


def guard(public_url: str = "http://127.0.0.1:8000", hosts: tuple[str, ...] = (), origins: tuple[str, ...] = ()):
    return HostGuard(public_url, hosts, origins)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.0.0.1:8000",
        "127.0.0.1:3001",
        "localhost",
        "localhost:65535",
        "LOCALHOST:80",
        "[::1]",
        "[::1]:8000",
    ],
)
def test_loopback_hosts_on_any_port_are_allowed(host: str) -> None:
    assert guard().host_ok(host.encode())


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8000",
        "127.0.0.1.evil.example",
        "localhost.evil.example:8000",
        "[::2]:8000",
        "[::1]evil.example",
        "127.0.0.1:8000@evil.example",
        "0.0.0.0:8000",
    ],
)
def test_other_hosts_are_refused(host: str) -> None:
    assert not guard().host_ok(host.encode())


@pytest.mark.parametrize("value", [None, b""])
def test_a_missing_host_is_refused(value: bytes | None) -> None:
    assert not guard().host_ok(value)


def test_the_public_url_host_is_allowed_and_others_are_not() -> None:
    g = guard("https://mcp.example.com")
    assert g.host_ok(b"mcp.example.com")
    assert g.host_ok(b"MCP.Example.com:443")
    assert not g.host_ok(b"example.com")
    assert not g.host_ok(b"mcp.example.com.evil.example")


def test_an_ipv6_public_url_is_allowed_with_brackets() -> None:
    g = guard("http://[2001:db8::1]:8000")
    assert g.host_ok(b"[2001:db8::1]:8000")
    assert g.origin_ok(b"http://[2001:db8::1]:8000")


def test_extra_hosts_with_and_without_a_port() -> None:
    g = guard(hosts=("proxy.internal", "gw.example:8443"))
    assert g.host_ok(b"proxy.internal:1234")
    assert g.host_ok(b"gw.example:8443")
    assert not g.host_ok(b"gw.example:9000")


def test_a_star_turns_the_host_check_off_but_not_the_origin_check() -> None:
    g = guard(hosts=("*",))
    assert g.host_ok(b"anything.example:1")
    assert g.host_ok(None)
    assert not g.origin_ok(b"https://evil.example")
    assert g.origin_ok(b"http://localhost:5173")


def test_no_origin_is_allowed() -> None:
    """§3.6: server-to-server callers (ChatGPT, Claude) send no Origin."""
    assert guard().origin_ok(None)


@pytest.mark.parametrize(
    "origin",
    ["http://127.0.0.1:8000", "http://localhost:6274", "https://localhost", "http://[::1]:8000", "HTTP://LOCALHOST:1"],
)
def test_loopback_origins_are_allowed(origin: str) -> None:
    assert guard().origin_ok(origin.encode())


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "null",
        "file://",
        "chrome-extension://abcdef",
        "http://127.0.0.1.evil.example",
        "ws://localhost:8000",
        "",
    ],
)
def test_foreign_origins_are_refused(origin: str) -> None:
    assert not guard().origin_ok(origin.encode())


def test_the_public_url_origin_is_allowed() -> None:
    g = guard("https://mcp.example.com")
    assert g.origin_ok(b"https://mcp.example.com")
    assert not g.origin_ok(b"https://evil.example.com")


def test_extra_origins_match_exactly_ignoring_case_and_trailing_slash() -> None:
    g = guard(origins=("https://chatgpt.com/", "https://Inspector.Example:6274"))
    assert g.origin_ok(b"https://chatgpt.com")
    assert g.origin_ok(b"https://inspector.example:6274")
    assert not g.origin_ok(b"https://inspector.example:6275")
    assert not g.origin_ok(b"https://evil.chatgpt.com")


def test_remembered_answers_stay_right_for_many_distinct_hosts() -> None:
    """host_ok caches answers; the cache must never turn a refusal into an acceptance or grow without bound."""
    g = guard()
    for i in range(1000):
        assert not g.host_ok(f"evil{i}.example".encode())
        assert g.host_ok(f"localhost:{i}".encode())
    assert not g.host_ok(b"evil0.example")
    assert g.host_ok(b"localhost:0")


@pytest.mark.parametrize("origin", ["https://chatgpt.com", "https://claude.ai", "https://claude.com"])
def test_a_public_server_accepts_the_hosted_clients_origins(origin: str) -> None:
    """field-problems A4: an allowlist without ChatGPT's and Claude's web origins turns their calls into 403s."""
    guard = HostGuard("https://mcp.example.com")
    assert guard.origin_ok(origin.encode())
    assert not guard.origin_ok(b"https://chatgpt.com.evil.example")


def test_a_loopback_server_does_not_accept_hosted_origins_by_default() -> None:
    """A local server is not reachable by hosted clients; a web page on their origin gets no way in."""
    guard = HostGuard("http://127.0.0.1:8000")
    assert not guard.origin_ok(b"https://chatgpt.com")
    assert guard.origin_ok(b"http://localhost:6274")
