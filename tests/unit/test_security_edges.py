"""HostGuard at its edges: ports, IPv6 brackets, probe hosts, what a refusal says and logs (found by `make mutate`)."""

from __future__ import annotations

import logging

import pytest

from patchbay.transport.security import HostGuard, ProbeHosts, Warnings, shown_value


def test_a_host_matches_a_port_specific_entry_only_at_that_numeric_port() -> None:
    guard = HostGuard("http://127.0.0.1:8000", ["[fd00::1]:8443", "[fd00::2]:8"])
    assert guard.host_ok(b"[fd00::1]:8443") and guard.host_ok(b"[fd00::2]:8")
    assert guard.host_ok(b"[::1]:8") and guard.host_ok(b"[::1]:65535")  # loopback on any port, one digit or five
    for refused in (b"[fd00::1]:9443", b"[fd00::1]", b"[fd00::2]:80", b"[::1]x80", b"[::1]:x", b"[::1]:"):
        assert not guard.host_ok(refused), refused


def test_an_allowed_host_stays_allowed_when_asked_again() -> None:
    guard = HostGuard("https://mcp.example.com")
    assert [guard.host_ok(b"mcp.example.com:443") for _ in range(3)] == [True, True, True]
    assert [guard.host_ok(b"evil.example") for _ in range(3)] == [False, False, False]


def test_strangers_beyond_256_distinct_hosts_are_not_remembered() -> None:
    guard = HostGuard("https://mcp.example.com")
    for n in range(300):
        assert not guard.host_ok(f"stranger-{n}.example".encode())
    assert len(guard._seen) == 256


def test_an_origin_matches_a_port_specific_host_entry_only_at_that_port() -> None:
    guard = HostGuard("http://127.0.0.1:8000", ["proxy.example:8443"])
    assert guard.origin_ok(b"https://proxy.example:8443")
    assert not guard.origin_ok(b"https://proxy.example:9443")
    assert not guard.origin_ok(b"https://proxy.example")


def test_extra_origins_are_compared_without_case_or_trailing_slash() -> None:
    guard = HostGuard("http://127.0.0.1:8000", (), ["https://Sandbox.Example.BOX/"])
    assert guard.origin_ok(b"https://sandbox.example.box")


def test_a_server_on_localhost_does_not_accept_hosted_origins() -> None:
    guard = HostGuard("http://localhost:8000")
    assert not guard.origin_ok(b"https://chatgpt.com")


def test_probe_hosts_match_names_networks_and_bracketed_addresses() -> None:
    probes = ProbeHosts(["lb.internal", "10.1.2.3/8", "[fd00::1]"])
    assert probes.match(b"lb.internal:8080") and probes.match(b"10.200.0.1:80") and probes.match(b"[fd00::1]:80")
    for refused in (None, b"", b"other.internal", b"11.0.0.1", b"[fd00::2]"):
        assert not probes.match(refused), refused
    assert ProbeHosts(["lb.internal"]).match(b"LB.internal") and not ProbeHosts([]).match(b"lb.internal")


def test_a_missing_host_is_not_a_probe_host() -> None:
    guard = HostGuard("https://mcp.example.com", probe_hosts=["10.0.0.0/8"])
    assert not guard.probe_ok(None) and guard.probe_ok(b"10.0.0.7")


def test_refusals_say_which_setting_allows_the_value_and_log_it(caplog: pytest.LogCaptureFixture) -> None:
    guard = HostGuard("https://mcp.example.com")
    with caplog.at_level(logging.WARNING, "patchbay.transport.security"):
        host = guard.host_refused(b"evil.example")
        probe = guard.host_refused(b"10.0.0.7", probe=True)
        origin = guard.origin_refused(b"https://evil.example")
    assert host == (
        "Misdirected request: Host 'evil.example' is not served here. If clients reach this server by that name, "
        "add it to server.allowed_hosts or set server.public_url to the URL they use."
    )
    assert probe == (
        "Misdirected request: Host '10.0.0.7' is not served here. A health probe's own address or network goes in "
        "server.probe_hosts. If clients reach this server by that name, add it to server.allowed_hosts or set "
        "server.public_url to the URL they use."
    )
    assert origin == (
        "Forbidden: Origin 'https://evil.example' may not call this server. To let a browser client on that origin "
        "connect, add it to server.allowed_origins."
    )
    assert [r.getMessage() for r in caplog.records] == [
        "refused Host 'evil.example' (not in server.allowed_hosts or server.public_url)",
        "refused Host '10.0.0.7' (not in server.allowed_hosts or server.public_url)",
        "refused Origin 'https://evil.example' (not in server.allowed_origins)",
    ]


def test_shown_values_keep_printable_ascii_and_escape_the_rest() -> None:
    assert shown_value(b" az~") == "' az~'"
    assert shown_value(b"X'\\\x7f\x1f\xe9") == "'X\\x27\\x5c\\x7f\\x1f\\xe9'"
    assert shown_value(b"x" * 80) == f"'{'x' * 80}'"
    assert shown_value(b"x" * 81) == f"'{'x' * 80}'…"


def test_ten_refusals_a_minute_are_logged_by_default(caplog: pytest.LogCaptureFixture) -> None:
    warnings = Warnings(logging.getLogger("patchbay.test.security"), clock=lambda: 0.0)
    with caplog.at_level(logging.WARNING, "patchbay.test.security"):
        for n in range(25):
            warnings.warn("refused %s", n)
    assert [r.getMessage() for r in caplog.records] == [f"refused {n}" for n in range(10)]
