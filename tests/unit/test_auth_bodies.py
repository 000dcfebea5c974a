"""Every sign-in endpoint reads at most its limit, only the media type it needs, and parses forms strictly."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fixtures.authflow import MCP, PASSWORD, Flow, add_user, client_for, running, settings
from fixtures.wire import live_server
from starlette.requests import Request

from patchbay.auth.body import Form, parse_form
from patchbay.auth.errors import OAuthError

pytestmark = pytest.mark.anyio

LIMIT = 4096
CHUNK = 1024
FORM_ENDPOINTS = ["/token", "/revoke", "/introspect", "/authorize/login", "/authorize/consent"]
ALL_ENDPOINTS = [*FORM_ENDPOINTS, "/register"]
FORM = {"content-type": "application/x-www-form-urlencoded"}


def _type_for(path: str) -> str:
    return "application/json" if path == "/register" else FORM["content-type"]


class Counted:
    """A request body of ``total`` bytes sent in chunks, counting how many chunks the server pulled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.total // CHUNK):
            self.pulled += 1
            yield b"a" * CHUNK


def _limits() -> dict[str, Any]:
    return {"max_form_bytes": LIMIT, "max_registration_bytes": LIMIT}


@pytest.mark.parametrize("path", ALL_ENDPOINTS)
async def test_declared_body_over_the_limit_is_413_before_any_of_it_is_read(tmp_path: Path, path: str) -> None:
    body = Counted(1024 * 1024)
    async with running(tmp_path, auth=_limits()) as app, client_for(app) as http:
        headers = {"content-type": _type_for(path), "content-length": str(body.total)}
        response = await http.post(path, content=body, headers=headers)
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"
    assert f"({LIMIT} bytes)" in response.json()["error_description"]
    assert body.pulled == 0


@pytest.mark.parametrize("path", ALL_ENDPOINTS)
async def test_chunked_body_over_the_limit_stops_being_read_at_the_limit(tmp_path: Path, path: str) -> None:
    body = Counted(16 * 1024 * 1024)
    async with running(tmp_path, auth=_limits()) as app, client_for(app) as http:
        response = await http.post(path, content=body, headers={"content-type": _type_for(path)})
    assert response.status_code == 413
    assert f"({LIMIT} bytes)" in response.json()["error_description"]
    assert body.pulled <= LIMIT // CHUNK + 1


def test_chunked_body_over_the_limit_is_413_from_a_real_server(tmp_path: Path) -> None:
    config = settings(tmp_path, auth=_limits())
    with live_server(config) as server, socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        host = urlsplit(config.public_url).netloc
        head = f"POST /token HTTP/1.1\r\nHost: {host}\r\nContent-Type: {FORM['content-type']}\r\n"
        sock.sendall(head.encode() + b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (CHUNK, b"a" * CHUNK)
        answer = b""
        for _ in range(4096):  # at most 4 MiB: the server must answer long before
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.0)
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            except ConnectionResetError:
                break
            finally:
                sock.settimeout(10)
            if b"\r\n\r\n" in answer:
                break
        while b"}" not in answer:
            try:
                more = sock.recv(65536)
            except ConnectionResetError:
                break
            if not more:
                break
            answer += more
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert f"({LIMIT} bytes)".encode() in answer


@pytest.mark.parametrize("path", ALL_ENDPOINTS)
async def test_a_body_of_another_media_type_is_415(tmp_path: Path, path: str) -> None:
    wrong = "application/json" if path != "/register" else FORM["content-type"]
    async with running(tmp_path) as app, client_for(app) as http:
        response = await http.post(path, content=b"{}", headers={"content-type": wrong})
        missing = await http.post(path, content=b"{}", headers={"content-type": ""})
    assert response.status_code == 415 and response.json()["error"] == "invalid_request"
    assert missing.status_code == 415


@pytest.mark.parametrize("path", FORM_ENDPOINTS)
async def test_multipart_forms_are_refused(tmp_path: Path, path: str) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        response = await http.post(
            path, data={"grant_type": "authorization_code"}, files={"upload": ("big.bin", b"x" * 2048)}
        )
    assert response.status_code == 415
    assert "application/x-www-form-urlencoded" in response.json()["error_description"]


@pytest.mark.parametrize("path", FORM_ENDPOINTS)
async def test_a_form_with_too_many_fields_is_refused(tmp_path: Path, path: str) -> None:
    body = "&".join(f"f{i}=x" for i in range(60)).encode()
    async with running(tmp_path) as app, client_for(app) as http:
        response = await http.post(path, content=body, headers=FORM)
    assert response.status_code == 400
    assert "more than" in response.json()["error_description"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"grant_type=refresh_token&grant_type=authorization_code", "'grant_type' is sent more than once"),
        (b"grant_type", "form field 1 is not name=value"),
        (b"grant_type=refresh_token&=x", "form field 2 is not name=value"),
        (b"client_id=%ff", "form field 1 is not UTF-8"),
        ("client_id=é".encode(), "must be ASCII"),
    ],
)
async def test_malformed_token_forms_say_what_is_wrong(tmp_path: Path, body: bytes, says: str) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        response = await http.post("/token", content=body, headers=FORM)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request" and says in response.json()["error_description"]


async def test_resource_may_repeat_on_the_token_request(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        code = await flow.code()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": flow.verifier,
            "client_id": flow.client_id,
            "redirect_uri": flow.redirect_uri,
        }
        body = "&".join(f"{k}={v}" for k, v in form.items()) + f"&resource={MCP}&resource={MCP}/"
        response = await http.post("/token", content=body.encode(), headers=FORM)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
        (b'{"redirect_uris": ["https://a.example/cb"], "client_name": "a", "client_name": "b"}', "more than once"),
        (b'{"redirect_uris": ["https://a.example/cb"], "x": NaN}', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
async def test_registration_bodies_that_are_not_plain_json_are_refused(tmp_path: Path, body: bytes, says: str) -> None:
    limits = {"max_registration_bytes": 200_000}
    async with running(tmp_path, auth=limits) as app, client_for(app) as http:
        response = await http.post("/register", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_client_metadata" and says in response.json()["error_description"]
        assert app.runtime.auth.core.clients.list() == []


async def test_sign_in_works_without_starlettes_form_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Request.form() needs python-multipart, which a plain `pip install patchbay` does not bring.
    def no_form(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an auth endpoint used Request.form()")

    monkeypatch.setattr(Request, "form", no_form)
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register("client_secret_post")
        tokens = await flow.tokens()
        refreshed = await flow.refresh(tokens["refresh_token"])
        assert refreshed.status_code == 200, refreshed.text
        access = refreshed.json()["access_token"]
        secret = {"client_id": flow.client_id, "client_secret": flow.client_secret or ""}
        active = await http.post("/introspect", data={"token": access, **secret})
        assert active.json()["active"] is True
        assert (await http.post("/revoke", data={"token": access, **secret})).status_code == 200
        assert (await http.post("/introspect", data={"token": access, **secret})).json() == {"active": False}


async def test_sign_in_form_posted_twice_in_one_field_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        form = await flow.login_form()
        fields = form.filled("alice", PASSWORD, "allow")
        body = "&".join(f"{k}={v}" for k, v in fields.items()) + "&password=other"
        response = await http.post("/authorize/login", content=body.encode(), headers=FORM)
    assert response.status_code == 400 and "'password' is sent more than once" in response.text


def test_a_repeated_field_is_named_by_its_first_40_characters_only() -> None:
    name = "n" * 39 + "x" + "y" * 20
    with pytest.raises(OAuthError) as refused:
        parse_form(f"{name}=1&{name}=2".encode())
    assert refused.value.description == "'" + "n" * 39 + "x' is sent more than once (RFC 6749 §3.1)"


UNSUPPORTED = {"error": "unsupported_grant_type", "error_description": "use authorization_code or refresh_token"}
WRONG_TYPE = "send the body as application/x-www-form-urlencoded (UTF-8)"


async def _unsupported_grant(http: Any) -> bytes:
    """A token request every server reads to the end: a real client asking for a grant it does not support."""
    flow = Flow(http)
    await flow.register()
    return f"grant_type=password&client_id={flow.client_id}".encode()


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded; charset=utf-8",
        "application/x-www-form-urlencoded; charset=us-ascii",
        'Application/X-WWW-Form-URLencoded ;Charset="UTF-8"',
        "application/x-www-form-urlencoded; format=flowed ;  charset = utf-8 ",
    ],
)
async def test_a_form_in_utf8_or_ascii_is_read_however_its_type_is_spelled(tmp_path: Path, content_type: str) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        body = await _unsupported_grant(http)
        response = await http.post("/token", content=body, headers={"content-type": content_type})
    assert response.status_code == 400 and response.json() == UNSUPPORTED


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/x-www-form-urlencoded; charset=iso-8859-1",
        "application/x-www-form-urlencoded; format=flowed; charset=latin1",
        "application/x-www-form-urlencoded; charset=utf-8=x",
        "application/x-www-form-urlencoded; charset=Xutf-8X",
        "text/plain; x=application/x-www-form-urlencoded",
    ],
)
async def test_a_form_in_another_charset_or_without_a_type_is_415(tmp_path: Path, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    async with running(tmp_path) as app, client_for(app) as http:
        body = await _unsupported_grant(http)
        response = await http.post("/token", content=body, headers=headers)
    assert response.status_code == 415
    assert response.json() == {"error": "invalid_request", "error_description": WRONG_TYPE}


async def test_a_body_of_exactly_the_limit_is_read_declared_or_chunked(tmp_path: Path) -> None:
    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]

    async with running(tmp_path, auth=_limits()) as app, client_for(app) as http:
        head = await _unsupported_grant(http) + b"&pad="
        exact = head + b"a" * (LIMIT - len(head))
        declared = await http.post("/token", content=exact, headers=FORM)
        chunked = await http.post("/token", content=chunks(exact), headers=FORM)
        over = await http.post("/token", content=exact + b"a", headers=FORM)
        chunked_over = await http.post("/token", content=chunks(exact + b"a"), headers=FORM)
    assert len(exact) == LIMIT and "content-length" not in chunked.request.headers
    assert declared.status_code == 400 and declared.json() == UNSUPPORTED
    assert chunked.status_code == 400 and chunked.json() == UNSUPPORTED  # chunks joined as they came
    assert over.status_code == 413 and chunked_over.status_code == 413


@pytest.mark.parametrize("length", ["abc", "-1", "0x10"])
async def test_a_content_length_that_is_not_a_number_is_400(tmp_path: Path, length: str) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        response = await http.post("/token", content=b"", headers={**FORM, "content-length": length})
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request", "error_description": "Content-Length is not a number"}


def test_a_form_of_exactly_the_most_fields_is_parsed_and_one_more_is_refused() -> None:
    fields = [f"f{i}=x" for i in range(50)]
    assert len(parse_form("&".join(fields).encode()).fields) == 50
    assert len(parse_form("&".join(fields[:3]).encode(), max_fields=3).fields) == 3
    with pytest.raises(OAuthError) as refused:
        parse_form("&".join([*fields, "f50=x"]).encode())
    assert refused.value.body() == {"error": "invalid_request", "error_description": "the form has more than 50 fields"}
    assert refused.value.status == 400
    with pytest.raises(OAuthError) as fewer:
        parse_form("&".join(fields[:4]).encode(), max_fields=3)
    assert fewer.value.description == "the form has more than 3 fields"


def test_an_empty_form_has_no_fields() -> None:
    assert parse_form(b"") == Form()
    assert parse_form(b"").get("grant_type") is None and parse_form(b"").getlist("resource") == []


def test_a_form_is_decoded_field_by_field_and_read_by_name() -> None:
    form = parse_form(
        b"resource=https%3A%2F%2Fa.example%2Fmcp&redirect_uri=http://127.0.0.1/cb?a=b&state=x+y&resource=r2&empty=",
        repeatable=frozenset({"resource"}),
    )
    assert form.get("resource") == "https://a.example/mcp"
    assert form.getlist("resource") == ["https://a.example/mcp", "r2"]
    assert form.get("redirect_uri") == "http://127.0.0.1/cb?a=b"
    assert form.get("state") == "x y" and form.get("empty") == "" and form.get("missing") is None
    assert form.getlist("state") == ["x y"] and form.getlist("missing") == []


def test_a_field_name_that_is_not_utf8_is_refused_by_its_number() -> None:
    with pytest.raises(OAuthError) as refused:
        parse_form(b"grant_type=x&%ff=1")
    assert refused.value.description == "form field 2 is not UTF-8"


def test_a_form_that_is_not_ascii_is_refused_saying_so() -> None:
    with pytest.raises(OAuthError) as refused:
        parse_form("client_id=é".encode())
    assert refused.value.body() == {
        "error": "invalid_request",
        "error_description": "the form must be ASCII, with other characters percent-encoded",
    }


@pytest.mark.parametrize(
    ("path", "most"),
    [("/token", 50), ("/revoke", 20), ("/introspect", 20), ("/authorize/login", 10), ("/authorize/consent", 10)],
)
async def test_each_form_endpoint_takes_at_most_its_own_number_of_fields(tmp_path: Path, path: str, most: int) -> None:
    body = "&".join(f"f{i}=x" for i in range(most + 1)).encode()
    async with running(tmp_path) as app, client_for(app) as http:
        response = await http.post(path, content=body, headers=FORM)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request", "error_description": f"the form has more than {most} fields"}
