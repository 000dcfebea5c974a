"""Who a client is, checked directly (no app): client authentication at the token endpoints, the registration
metadata and its JSON, and client ID metadata documents (parsing, fetch failures, caching)."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
from starlette.requests import Request

from patchbay.auth import cimd
from patchbay.auth.body import Form
from patchbay.auth.cimd import MetadataDocuments, is_metadata_url, parse_document
from patchbay.auth.client_auth import authenticate_client
from patchbay.auth.clients import Client
from patchbay.auth.crypto import digest
from patchbay.auth.errors import OAuthError
from patchbay.auth.register import MAX_REDIRECTS, parse_json, parse_registration
from patchbay.outbound import Fetched, FetchError

pytestmark = pytest.mark.anyio

SECRET = "pb_cs_the secret:+%"
PUBLIC = Client("app:public", "dcr", "Public", ("https://a.example/cb",))
CONFIDENTIAL = Client("app:conf", "dcr", "Conf", ("https://a.example/cb",), "client_secret_basic", digest(SECRET))
GONE = Client("app:gone", "dcr", "Gone", ("https://a.example/cb",), revoked=True)
COLONS = Client("plain", "config", "Plain", ("https://a.example/cb",), "client_secret_basic", digest("s3:cr:et"))
KNOWN = {c.client_id: c for c in (PUBLIC, CONFIDENTIAL, GONE, COLONS)}
URL = "https://client.example/oauth/client.json"
BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="patchbay"'}


async def find(client_id: str) -> Client | None:
    if client_id == "app:broken-document":
        raise OAuthError("invalid_client", "the client metadata document URL answered 500")
    return KNOWN.get(client_id)


def request(authorization: str | None = None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode("latin-1"))]
    return Request({"type": "http", "method": "POST", "path": "/token", "headers": headers})


def basic(client_id: str, secret: str) -> str:
    # RFC 6749 §2.3.1: both form-encoded before the Basic encoding (the id and secret here hold ":", "+", "%").
    credentials = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    return "Basic " + base64.b64encode(credentials.encode()).decode()


async def authenticated(authorization: str | None = None, **form: str) -> Client:
    return await authenticate_client(request(authorization), Form(tuple(form.items())), find)


async def refused(authorization: str | None = None, **form: str) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        await authenticated(authorization, **form)
    return caught.value


async def test_a_confidential_client_may_send_its_secret_either_way() -> None:
    assert await authenticated(basic("app:conf", SECRET)) is CONFIDENTIAL
    assert await authenticated("basic  " + basic("app:conf", SECRET).split()[1]) is CONFIDENTIAL
    assert await authenticated(basic("app:conf", SECRET), client_id="app:conf") is CONFIDENTIAL
    assert await authenticated(client_id="app:conf", client_secret=SECRET) is CONFIDENTIAL


async def test_a_secret_with_colons_sent_without_form_encoding_is_split_at_the_first_colon() -> None:
    # Many clients skip RFC 6749 §2.3.1's form-encoding; a client_id has no ":", a secret may.
    assert await authenticated("Basic " + base64.b64encode(b"plain:s3:cr:et").decode()) is COLONS


async def test_a_public_client_sends_only_its_id() -> None:
    assert await authenticated(client_id="app:public") is PUBLIC
    assert await authenticated(basic("app:public", "")) is PUBLIC


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!",
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
        "Basic " + base64.b64encode(b"x").decode(),
        # Valid credentials behind a character outside the base64 alphabet: refused, not skipped over.
        "Basic !" + base64.b64encode(b"app%3Apublic:").decode(),
    ],
)
async def test_malformed_basic_credentials_are_invalid_client_with_a_basic_challenge(header: str) -> None:
    assert await refused(header) == OAuthError(
        "invalid_client", "malformed HTTP Basic credentials", 401, BASIC_CHALLENGE
    )


async def test_two_methods_at_once_or_two_ids_are_invalid_requests() -> None:
    assert await refused(basic("app:conf", SECRET), client_secret=SECRET) == OAuthError(
        "invalid_request", "use one client authentication method, not two"
    )
    assert await refused(basic("app:conf", SECRET), client_id="app:public") == OAuthError(
        "invalid_request", "client_id in the body differs from the Basic credentials"
    )


async def test_another_scheme_counts_as_no_header() -> None:
    assert await refused("Bearer pb_at_x") == OAuthError(
        "invalid_client", "send client_id (and client_secret for a confidential client)", 401
    )
    assert await authenticated("Bearer pb_at_x", client_id="app:public") is PUBLIC
    assert await refused(client_id="") == OAuthError(
        "invalid_client", "send client_id (and client_secret for a confidential client)", 401
    )


@pytest.mark.parametrize(
    ("header", "form", "description"),
    [
        (None, {"client_id": "nobody"}, "unknown client: register again"),
        (None, {"client_id": "app:gone"}, "unknown client: register again"),
        (None, {"client_id": "app:broken-document"}, "the client metadata document URL answered 500"),
        (None, {"client_id": "app:conf"}, "client authentication failed"),
        (None, {"client_id": "app:conf", "client_secret": "pb_cs_wrong"}, "client authentication failed"),
        (None, {"client_id": "app:public", "client_secret": "anything"}, "this client is public and has no secret"),
    ],
)
async def test_each_failed_client_authentication_is_invalid_client(
    header: str | None, form: dict[str, str], description: str
) -> None:
    assert await refused(header, **form) == OAuthError("invalid_client", description, 401)
    secret = form.get("client_secret", "")
    assert await refused(basic(form["client_id"], secret)) == OAuthError(
        "invalid_client", description, 401, BASIC_CHALLENGE
    )


# -- registration metadata -------------------------------------------------------------------------------------


def registration_refusal(metadata: Any) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        parse_registration(metadata, ("mcp",))
    return caught.value


def test_registration_defaults_follow_rfc_7591() -> None:
    client, echo = parse_registration({"redirect_uris": ["https://a.example/cb"]}, ("mcp",))
    assert echo == {
        "redirect_uris": ["https://a.example/cb"],
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code"],
        "client_name": "Unnamed client",
        "response_types": ["code"],
    }
    assert client == Client(
        client_id="",
        kind="dcr",
        name="Unnamed client",
        redirect_uris=("https://a.example/cb",),
        auth_method="client_secret_basic",
        grant_types=("authorization_code",),
    )
    assert client.metadata == {}


def test_registration_echoes_what_was_sent_except_credentials_and_huge_values() -> None:
    metadata = {
        "redirect_uris": ["https://a.example/cb"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": "N" * 300,
        "scope": "mcp",
        "client_uri": "https://a.example",
        "logo_uri": "https://a.example/logo.png",
        "software_id": "sw",
        "software_version": "1.0",
        "contacts": ["ops@a.example"],
        "client_id": "chosen-by-client",
        "client_secret": "chosen-by-client",
        "huge": "x" * 4100,
        "almost": "x" * 4000,
    }
    client, echo = parse_registration(metadata, ("mcp",))
    assert set(echo) == set(metadata) - {"client_id", "client_secret", "huge"}
    assert client.name == "N" * 200 and echo["client_name"] == "N" * 300
    assert client.auth_method == "none" and client.grant_types == ("authorization_code", "refresh_token")
    assert client.metadata == {
        "client_uri": "https://a.example",
        "logo_uri": "https://a.example/logo.png",
        "software_id": "sw",
        "software_version": "1.0",
    }


def test_a_metadata_value_is_echoed_only_while_its_json_is_shorter_than_4096_characters() -> None:
    longest, too_long = "x" * 4093, "x" * 4094  # 4095 and 4096 characters with their quotes
    metadata = {"redirect_uris": ["https://a.example/cb"], "longest": longest, "too_long": too_long}
    _, echo = parse_registration(metadata, ("mcp",))
    assert echo["longest"] == longest
    assert "too_long" not in echo


def test_the_redirect_uris_are_echoed_however_long_their_list() -> None:
    uris = [f"https://a.example/{i}/{'p' * 1900}" for i in range(3)]  # over 4096 characters of JSON together
    _, echo = parse_registration({"redirect_uris": uris}, ("mcp",))
    assert echo["redirect_uris"] == uris


def test_up_to_twenty_redirect_uris_are_registered() -> None:
    uris = [f"https://a.example/cb{i}" for i in range(MAX_REDIRECTS)]
    client, _ = parse_registration({"redirect_uris": uris}, ("mcp",))
    assert client.redirect_uris == tuple(uris)
    refusal = registration_refusal({"redirect_uris": [*uris, "https://a.example/one-more"]})
    assert refusal == OAuthError("invalid_redirect_uri", "redirect_uris must list 1 to 20 URIs")
    assert registration_refusal({}) == refusal


@pytest.mark.parametrize(
    ("metadata", "description"),
    [
        ([], "the body must be a JSON object of client metadata"),
        ({"redirect_uris": "https://a.example/cb"}, "redirect_uris must be an array of strings"),
        ({"redirect_uris": ["https://a.example/cb", 7]}, "redirect_uris must be an array of strings"),
        ({"token_endpoint_auth_method": "tls_client_auth"}, None),
        ({"grant_types": ["authorization_code", "password"]}, None),
        ({"grant_types": ["refresh_token"]}, None),
        ({"grant_types": "authorization_code"}, "grant_types must be an array of strings"),
        ({"response_types": ["code", "token"]}, "response_types may only contain code"),
        ({"response_types": [1]}, "response_types must be an array of strings"),
        ({"client_name": 7}, "client_name must be a string"),
        ({"scope": ["mcp"]}, "scope must be a space-separated string"),
    ],
)
def test_bad_registration_metadata_is_invalid_client_metadata(metadata: Any, description: str | None) -> None:
    if isinstance(metadata, dict):
        metadata = {"redirect_uris": ["https://a.example/cb"], **metadata}
    refusal = registration_refusal(metadata)
    assert refusal.error == "invalid_client_metadata"
    if description is not None:
        assert refusal.description == description
    elif "token_endpoint_auth_method" in metadata:
        assert refusal.description == (
            "token_endpoint_auth_method 'tls_client_auth' is not supported; "
            "use one of none, client_secret_basic, client_secret_post"
        )
    else:
        assert refusal.description == "grant_types must include authorization_code, plus refresh_token"


def test_a_registration_with_an_empty_name_or_response_types_gets_the_defaults() -> None:
    client, echo = parse_registration({"redirect_uris": ["https://a.example/cb"], "client_name": ""}, ("mcp",))
    assert client.name == "Unnamed client" and echo["client_name"] == "Unnamed client"
    _, echo = parse_registration({"redirect_uris": ["https://a.example/cb"], "response_types": []}, ("mcp",))
    assert echo["response_types"] == []


@pytest.mark.parametrize(
    ("body", "description"),
    [
        (b'{"a": 1, "a": 2}', "the body is not valid JSON: the member 'a' appears more than once"),
        (b'{"a": 1, "b": 2, "b": 3}', "the body is not valid JSON: the member 'b' appears more than once"),
        (
            b'{"' + b"b" * 60 + b'": 1, "' + b"b" * 60 + b'": 2}',
            "the body is not valid JSON: the member '" + "b" * 40 + "' appears more than once",
        ),
        (b'{"a": NaN}', "the body is not valid JSON: NaN is not JSON"),
        (b'{"a": Infinity}', "the body is not valid JSON: Infinity is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "the JSON body is nested too deeply"),
    ],
)
def test_a_registration_body_must_be_plain_json(body: bytes, description: str) -> None:
    with pytest.raises(OAuthError) as caught:
        parse_json(body)
    assert caught.value == OAuthError("invalid_client_metadata", description)


def test_a_registration_body_that_is_not_json_says_where_the_parser_stopped() -> None:
    with pytest.raises(json.JSONDecodeError) as parser:
        json.loads(b"{")
    with pytest.raises(OAuthError) as caught:
        parse_json(b"{")
    assert caught.value == OAuthError("invalid_client_metadata", f"the body is not valid JSON: {parser.value}")


def test_plain_json_is_parsed() -> None:
    assert parse_json(b'{"a": [1, 2.5, null, true], "b": {"c": "d"}}') == {"a": [1, 2.5, None, True], "b": {"c": "d"}}


# -- client ID metadata documents -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_id", "expected"),
    [
        (URL, True),
        ("https://client.example/x", True),
        ("http://client.example/x", False),
        ("HTTPS://client.example/x", True),
        ("https://client.example", False),
        ("https://client.example/", False),
        ("https:///x", False),
        ("https://[zz]/x", False),
        ("https://[::1/x", False),
        ("app:public", False),
    ],
)
def test_which_client_ids_name_a_metadata_document(client_id: str, expected: bool) -> None:
    assert is_metadata_url(client_id) is expected


def document_refusal(document: object) -> str:
    with pytest.raises(OAuthError) as caught:
        parse_document(URL, document)
    assert caught.value.error == "invalid_client" and caught.value.status == 400
    return caught.value.description


def test_a_metadata_document_describes_a_public_client() -> None:
    document = {
        "client_id": URL,
        "client_name": "  Example  ",
        "redirect_uris": ["https://client.example/cb"],
        "grant_types": ["authorization_code", "client_credentials"],
        "client_uri": "https://client.example",
        "logo_uri": 7,
        "token_endpoint_auth_method": "client_secret_basic",
    }
    client = parse_document(URL, document)
    assert client == Client(
        client_id=URL,
        kind="cimd",
        name="  Example  ",
        redirect_uris=("https://client.example/cb",),
        auth_method="none",
        grant_types=("authorization_code",),
    )
    assert client.metadata == {"client_uri": "https://client.example"}
    logo = parse_document(URL, {**document, "logo_uri": "https://client.example/logo.png"})
    assert logo.metadata == {"client_uri": "https://client.example", "logo_uri": "https://client.example/logo.png"}


def test_a_metadata_document_without_a_name_or_grants_gets_the_host_and_both_grants() -> None:
    for name in (None, "   ", 7):
        client = parse_document(URL, {"client_id": URL, "redirect_uris": ["https://c.example/cb"], "client_name": name})
        assert client.name == "client.example"
        assert client.grant_types == ("authorization_code", "refresh_token")
    named = parse_document(URL, {"client_id": URL, "redirect_uris": ["https://c.example/cb"], "client_name": "x" * 300})
    assert named.name == "x" * 200


def test_only_the_first_twenty_redirect_uris_of_a_document_are_kept() -> None:
    uris = [f"https://c.example/cb{i}" for i in range(20)]
    client = parse_document(URL, {"client_id": URL, "redirect_uris": [*uris, "javascript:alert(1)"]})
    assert client.redirect_uris == tuple(uris)


@pytest.mark.parametrize(
    ("document", "description"),
    [
        ([], "the client metadata document is not a JSON object"),
        (
            {"client_id": URL + "/", "redirect_uris": ["https://c.example/cb"]},
            "the client metadata document's client_id is not its own URL",
        ),
        ({"redirect_uris": ["https://c.example/cb"]}, "the client metadata document's client_id is not its own URL"),
        ({"client_id": URL}, "the client metadata document lists no redirect_uris"),
        ({"client_id": URL, "redirect_uris": []}, "the client metadata document lists no redirect_uris"),
        (
            {"client_id": URL, "redirect_uris": "https://c.example/cb"},
            "the client metadata document lists no redirect_uris",
        ),
        (
            {"client_id": URL, "redirect_uris": ["http://c.example/cb"]},
            "client metadata document: redirect URI 'http://c.example/cb': "
            "http is only allowed to a loopback host (127.0.0.1, [::1], localhost)",
        ),
    ],
)
def test_an_invalid_metadata_document_is_invalid_client(document: object, description: str) -> None:
    assert document_refusal(document) == description


class Documents:
    """A fetcher answering from a table, counting its requests."""

    def __init__(self, answers: dict[str, Fetched | Exception]) -> None:
        self.answers = answers
        self.requests: list[tuple[str, str]] = []

    async def request(self, method: str, url: str) -> Fetched:
        self.requests.append((method, url))
        answer = self.answers[url]
        if isinstance(answer, Exception):
            raise answer
        return answer


def fetched(body: object, status: int = 200, cache_control: str | None = None) -> Fetched:
    headers = httpx.Headers({} if cache_control is None else {"Cache-Control": cache_control})
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Fetched(status, headers, raw)


DOCUMENT = {"client_id": URL, "redirect_uris": ["https://client.example/cb"], "client_name": "Example"}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    moved = SimpleNamespace(now=5000.0)
    monkeypatch.setattr(cimd, "time", SimpleNamespace(monotonic=lambda: moved.now))
    return moved


@pytest.mark.parametrize(
    ("answer", "description"),
    [
        (
            FetchError("client.example resolves to a private address"),
            "cannot fetch the client metadata document: client.example resolves to a private address",
        ),
        (fetched(DOCUMENT, status=404), "the client metadata document URL answered 404"),
        (fetched(DOCUMENT, status=201), "the client metadata document URL answered 201"),
        (fetched(b"<html>"), "the client metadata document is not JSON"),
        (fetched({"client_id": URL}), "the client metadata document lists no redirect_uris"),
    ],
)
async def test_a_document_that_cannot_be_had_is_invalid_client_and_not_cached(
    clock: SimpleNamespace, answer: Fetched | Exception, description: str
) -> None:
    documents = MetadataDocuments(Documents({URL: answer}))
    with pytest.raises(OAuthError) as caught:
        await documents.resolve(URL)
    assert caught.value == OAuthError("invalid_client", description)
    assert documents.cache == {}


@pytest.mark.parametrize(
    ("cache_control", "seconds"),
    [
        (None, 300.0),
        ("public", 300.0),
        ("max-age=600", 600.0),
        ("public, max-age=120, must-revalidate", 120.0),
        ("max-age=5", 60.0),
        ("max-age=60", 60.0),
        ("max-age=86400", 86_400.0),
        ("max-age=999999", 86_400.0),
    ],
)
async def test_a_document_is_cached_for_its_max_age_within_bounds(
    clock: SimpleNamespace, cache_control: str | None, seconds: float
) -> None:
    fetcher = Documents({URL: fetched(DOCUMENT, cache_control=cache_control)})
    documents = MetadataDocuments(fetcher)
    client = await documents.resolve(URL)
    assert client.name == "Example" and client.kind == "cimd"
    assert documents.cache == {URL: (client, 5000.0 + seconds)}
    clock.now += seconds - 0.001
    assert await documents.resolve(URL) is client
    assert fetcher.requests == [("GET", URL)]
    clock.now += 0.001  # expired at exactly its deadline: fetched again
    assert await documents.resolve(URL) == client
    assert fetcher.requests == [("GET", URL), ("GET", URL)]


async def test_the_document_cache_is_emptied_past_a_thousand_entries(clock: SimpleNamespace) -> None:
    urls = [f"https://c{i}.example/client.json" for i in range(1002)]
    answers: dict[str, Fetched | Exception] = {
        u: fetched({"client_id": u, "redirect_uris": ["https://c.example/cb"]}) for u in urls
    }
    documents = MetadataDocuments(Documents(answers))
    for url in urls[:1001]:
        await documents.resolve(url)
    assert len(documents.cache) == 1001
    await documents.resolve(urls[1001])
    assert list(documents.cache) == [urls[1001]]


def test_registration_echoes_only_the_scopes_the_client_can_be_granted() -> None:
    def echoed(scope: str) -> str | None:
        _, echo = parse_registration({"redirect_uris": ["https://a.example/cb"], "scope": scope}, ("mcp", "crm"))
        return echo.get("scope")

    assert echoed("crm openid mcp crm offline_access admin") == "crm mcp offline_access"
    assert echoed("openid profile") is None
    assert echoed("") is None
