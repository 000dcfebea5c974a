"""The redirect-URI rules and the CSP source built from a URI, called directly (no app): each refusal's reason and
each boundary, so that a rule loosened or tightened by one step fails here in milliseconds."""

from __future__ import annotations

import pytest

from patchbay.auth.clients import Client
from patchbay.auth.errors import OAuthError
from patchbay.auth.redirects import FORBIDDEN_SCHEMES, MAX_LENGTH, check_redirect_uri, csp_source


def refusal(uri: object, code: str = "invalid_redirect_uri") -> str:
    with pytest.raises(OAuthError) as refused:
        check_redirect_uri(uri, code)  # type: ignore[arg-type]
    assert refused.value.error == code
    return refused.value.description


@pytest.mark.parametrize(
    "uri",
    [
        "https://Claude.AI/api/mcp/auth_callback",
        "https://a.example:1/cb",
        "https://a.example:65535/cb",
        "https://a.example/%2Fcb",
        "http://LOCALHOST:8080/cb",
        "http://[::1]/cb",
        "com.example.app:/oauth2redirect",
        "https://a.example",
    ],
)
def test_these_redirect_uris_are_accepted_unchanged(uri: str) -> None:
    assert check_redirect_uri(uri) == uri


def test_a_uri_of_the_longest_allowed_length_is_accepted_and_one_more_character_is_not() -> None:
    base = "https://a.example/"
    longest = base + "a" * (MAX_LENGTH - len(base))
    assert check_redirect_uri(longest) == longest
    assert refusal(longest + "a") == "each redirect URI must be a non-empty string of at most 2000 characters"


@pytest.mark.parametrize("uri", [None, 7, ["https://a.example/cb"], ""])
def test_a_redirect_uri_that_is_not_a_non_empty_string_is_refused(uri: object) -> None:
    assert refusal(uri) == "each redirect URI must be a non-empty string of at most 2000 characters"


def test_the_error_code_is_the_callers() -> None:
    refusal("javascript:alert(1)", "invalid_client")
    refusal("", "invalid_request")


def test_a_refused_uri_is_quoted_whole_up_to_100_characters_and_cut_after() -> None:
    hundred = "https://a.example/" + "b" * 82
    assert len(hundred) == 100
    assert refusal(hundred + " ") == (
        f"redirect URI {hundred + '…'!r}: only RFC 3986 URI characters are allowed (no spaces, quotes, '#' or '\\')"
    )
    exact = "https://a.example/" + "b" * 81 + " "
    assert len(exact) == 100
    assert refusal(exact) == (
        f"redirect URI {exact!r}: only RFC 3986 URI characters are allowed (no spaces, quotes, '#' or '\\')"
    )


@pytest.mark.parametrize("uri", ["https://a.example/%zz", "https://a.example/%4", "https://a.example/%"])
def test_a_percent_sign_not_followed_by_two_hex_digits_is_refused(uri: str) -> None:
    assert "only RFC 3986 URI characters" in refusal(uri)


@pytest.mark.parametrize("uri", ["/callback", "callback", "//a.example/cb"])
def test_a_relative_uri_is_refused(uri: str) -> None:
    assert refusal(uri) == f"redirect URI {uri!r}: must be an absolute URI"


@pytest.mark.parametrize("scheme", sorted(FORBIDDEN_SCHEMES))
def test_every_forbidden_scheme_is_refused_by_name(scheme: str) -> None:
    uri = f"{scheme}://a.example/x"
    assert refusal(uri) == f"redirect URI {uri!r}: the {scheme}: scheme is not allowed for redirects"
    assert refusal(f"{scheme.upper()}:x").endswith(f"the {scheme}: scheme is not allowed for redirects")


def test_the_forbidden_schemes_are_these() -> None:
    expected = {"javascript", "data", "file", "vbscript", "about", "blob", "ftp", "ws", "wss"}
    assert expected == FORBIDDEN_SCHEMES


@pytest.mark.parametrize("uri", ["https:/cb", "http:/cb", "https:cb", "cursor:///cb", "HTTPS:/cb"])
def test_a_web_or_authority_uri_without_a_host_is_refused(uri: str) -> None:
    assert refusal(uri) == f"redirect URI {uri!r}: has no host"


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("https://user@a.example/cb", "must not contain user information (user@host)"),
        ("myapp://user@a.example/cb", "must not contain user information (user@host)"),
        ("https://a.example:0/cb", "has an invalid port"),
        ("https://a.example:65536/cb", "has an invalid port"),
        ("https://a.example:000080/cb", "has an invalid port"),
        ("https://a.example:8o/cb", "has an invalid port"),
        ("https://[::1]:/cb", "has an invalid port"),
        ("https://[::1]:80]/cb", "has an invalid port"),
        ("https://a.example:/cb", "has no valid host name or IP address"),
        ("https://-a.example/cb", "has no valid host name or IP address"),
        ("https://[::1/cb", "has no valid host name or IP address"),
        ("https://[::1]x/cb", "has no valid host name or IP address"),
        ("https://[::1]8080/cb", "has no valid host name or IP address"),
        ("https://[zz]/cb", "has no valid host name or IP address"),
        ("HTTP://evil.example/cb", "http is only allowed to a loopback host (127.0.0.1, [::1], localhost)"),
        ("http://10.0.0.1/cb", "http is only allowed to a loopback host (127.0.0.1, [::1], localhost)"),
    ],
)
def test_what_is_wrong_with_the_authority_is_said(uri: str, why: str) -> None:
    assert refusal(uri) == f"redirect URI {uri!r}: {why}"


@pytest.mark.parametrize(
    ("uri", "source"),
    [
        ("https://Claude.AI/api/cb", "https://claude.ai"),
        ("HTTP://127.0.0.1:9999/cb", "http://127.0.0.1:9999"),
        ("https://a.example:0080/cb", "https://a.example:80"),
        ("https://a.example:65535", "https://a.example:65535"),
        ("http://[::1]:8080/cb", "http://[::1]:8080"),
        ("https://[2001:DB8::1]/cb", "https://[2001:db8::1]"),
        ("com.example.app:/oauth2redirect", "com.example.app:"),
        ("cursor:/cb", "cursor:"),
    ],
)
def test_the_csp_source_is_rebuilt_from_the_parsed_origin(uri: str, source: str) -> None:
    assert csp_source(uri) == source


@pytest.mark.parametrize(
    "uri",
    [
        "/relative/cb",
        "http://[::1/cb",
        "https://u@a.example/cb",
        "https://a_b.example/cb",
        "https://a.example:/cb",
        "https://a.example:8o/cb",
        "https://a.example:123456/cb",
        "https://a.example:\u0661\u0662/cb",
        "1https://a.example/cb",
    ],
)
def test_a_uri_without_a_clean_origin_has_no_csp_source(uri: str) -> None:
    assert csp_source(uri) is None


@pytest.mark.parametrize("uri", ["https://[zz]/cb", "https://[::1/cb", "http://[zz]:80/cb"])
def test_a_malformed_bracketed_host_is_refused_not_raised(uri: str) -> None:
    assert refusal(uri) == f"redirect URI {uri!r}: has no valid host name or IP address"
    loopback = Client("c", "dcr", "C", ("http://127.0.0.1:9999/cb",))
    assert not loopback.redirect_allowed(uri)


def test_only_an_http_loopback_redirect_matches_on_any_port_and_only_on_its_own_host() -> None:
    native = Client("c", "dcr", "C", ("http://127.0.0.1:9999/cb?x=1", "https://127.0.0.1:4000/cb"))
    assert native.redirect_allowed("http://127.0.0.1:5555/cb?x=1")
    assert not native.redirect_allowed("http://localhost:5555/cb?x=1")
    assert not native.redirect_allowed("http://[::1]:5555/cb?x=1")
    assert not native.redirect_allowed("http://127.0.0.1:5555/cb?x=2")
    assert native.redirect_allowed("https://127.0.0.1:4000/cb")
    assert not native.redirect_allowed("https://127.0.0.1:5000/cb")  # https: the exact URI only
