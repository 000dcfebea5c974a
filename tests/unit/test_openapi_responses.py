"""An API's answers shaped into tool results: structured JSON where the output schema holds, text otherwise,
binary as resources, projection, the size cap with its note, and errors that say what to do."""

from __future__ import annotations

import base64
import email.utils
import logging
import time

import orjson
import pytest

from patchbay.connectors.openapi.responses import Shaper, api_message, retry_after

JSON = {"content-type": "application/json"}
SCHEMA = {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}


def shaper(**kw: object) -> Shaper:
    return Shaper("api", "get_thing", int(kw.pop("max_bytes", 100_000)), **kw)  # type: ignore[arg-type]


def test_a_json_object_matching_the_output_schema_is_structured_with_a_text_copy() -> None:
    result = shaper(output_schema=SCHEMA).success(200, JSON, b'{"id": 1, "name": "a"}')
    assert result.structured == {"id": 1, "name": "a"}
    assert result.content == [{"type": "text", "text": '{"id":1,"name":"a"}'}]
    assert not result.is_error


def test_a_mismatch_is_returned_as_text_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    shape = shaper(output_schema=SCHEMA)
    with caplog.at_level(logging.WARNING, "patchbay.connectors.openapi"):
        first = shape.success(200, JSON, b'{"id": "one"}')
        second = shape.success(200, JSON, b'{"id": "two"}')
    assert first.to_wire() == {"content": [{"type": "text", "text": '{"id":"one"}'}], "isError": False}
    assert "structuredContent" not in second.to_wire()
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "get_thing" in caplog.records[0].message and "at id" in caplog.records[0].message


def test_strict_output_makes_a_mismatch_an_error() -> None:
    result = shaper(output_schema=SCHEMA, strict=True).success(200, JSON, b'{"id": "one"}')
    assert result.is_error and "does not match the tool's output schema: at id" in result.content[0]["text"]


def test_the_answer_check_agrees_with_jsonschema_where_the_compiled_check_would_not() -> None:
    # jsonschema reads "pattern" with Python's re: "\\s" refuses U+FEFF (ECMA-262's accepts it), while "$" takes a
    # final newline (ECMA-262's does not). The answer is structured exactly when jsonschema accepts it.
    schema = {"type": "object", "properties": {"blank": {"pattern": "^\\s*$"}, "code": {"pattern": "^[A-Z]+$"}}}
    shape = shaper(output_schema=schema, strict=True)
    refused = shape.success(200, JSON, orjson.dumps({"blank": "\ufeff"}))
    assert refused.is_error and "at blank: '\\ufeff' does not match" in refused.content[0]["text"]
    accepted = shape.success(200, JSON, orjson.dumps({"blank": " ", "code": "AB\n"}))
    assert accepted.structured == {"blank": " ", "code": "AB\n"}


def test_a_schema_the_compiled_check_cannot_take_is_still_checked() -> None:
    schema = {"type": "object", "patternProperties": {"^n_": {"type": "integer"}}}
    shape = shaper(output_schema=schema)
    assert shape.success(200, JSON, b'{"n_a": 1}').structured == {"n_a": 1}
    assert "structuredContent" not in shape.success(200, JSON, b'{"n_a": "1"}').to_wire()


def test_arrays_scalars_and_text_are_text_without_structured_content() -> None:
    for body in (b"[1,2]", b"42", b'"hi"'):
        assert "structuredContent" not in shaper(output_schema=SCHEMA).success(200, JSON, body).to_wire()
    plain = shaper().success(200, {"content-type": "text/csv; charset=utf-8"}, "a,b\nü,2".encode())
    assert plain.content == [{"type": "text", "text": "a,b\nü,2"}]
    empty = shaper().success(204, {}, b"")
    assert empty.content[0]["text"] == "The API answered 204 No Content, with no content."


def test_binary_images_included_is_an_embedded_resource_named_by_the_url_asked_for() -> None:
    png = b"\x89PNG" + bytes(100)
    shape = shaper(origin="https://api.example.com")
    image = shape.success(200, {"content-type": "image/png"}, png, target="/files/7/badge?size=small")
    assert image.content == [
        {
            "type": "resource",
            "resource": {
                "uri": "https://api.example.com/files/7/badge?size=small",
                "mimeType": "image/png",
                "blob": base64.b64encode(png).decode(),
            },
        }
    ]
    pdf = shape.success(200, {"content-type": "application/pdf"}, b"%PDF-1.7", target="/doc")
    resource = pdf.content[0]["resource"]
    assert resource["mimeType"] == "application/pdf" and base64.b64decode(resource["blob"]) == b"%PDF-1.7"
    assert resource["uri"] == "https://api.example.com/doc"


def test_a_binary_answers_uri_never_carries_a_configured_secret() -> None:
    shape = shaper(origin="https://api.example.com", secrets=("s3cr3t-key",))
    result = shape.success(200, {"content-type": "image/gif"}, b"GIF89a", target="/img?sig=s3cr3t-key")
    assert result.content[0]["resource"]["uri"] == "https://api.example.com/img?sig=[redacted]"


def test_binary_over_the_cap_is_a_note_with_its_size_and_media_type_and_no_blob() -> None:
    big = shaper(max_bytes=2048).success(200, {"content-type": "application/zip"}, bytes(10_000))
    assert big.content == [{"type": "text", "text": big.content[0]["text"]}]
    assert "10,000 bytes of application/zip, more than this tool's limit of 2,048 bytes" in big.content[0]["text"]
    # base64 of 1,536 bytes is exactly 2,048 characters: it fits; one more byte does not.
    assert shaper(max_bytes=2048).success(200, {"content-type": "image/png"}, bytes(1536)).content[0]["type"] == (
        "resource"
    )
    assert shaper(max_bytes=2048).success(200, {"content-type": "image/png"}, bytes(1537)).content[0]["type"] == "text"


def test_json_declared_but_not_json_is_returned_as_text_not_as_binary() -> None:
    result = shaper().success(200, JSON, b"{not json")
    assert result.content == [{"type": "text", "text": "{not json"}]
    yaml = shaper().success(200, {"content-type": "application/vnd.api+yaml"}, b"a: 1")
    assert yaml.content == [{"type": "text", "text": "a: 1"}]


def test_fields_project_objects_and_every_item_of_arrays() -> None:
    body = orjson.dumps(
        {"total": 2, "owner": {"login": "ann", "id": 9}, "items": [{"title": "a", "x": 1}, {"title": "b", "x": 2}]}
    )
    result = shaper(fields=("owner.login", "items.title", "total")).success(200, JSON, body)
    assert orjson.loads(result.content[0]["text"]) == {
        "owner": {"login": "ann"},
        "items": [{"title": "a"}, {"title": "b"}],
        "total": 2,
    }
    listed = shaper(fields=("id",)).success(200, JSON, b'[{"id": 1, "a": 2}, {"b": 3}]')
    assert orjson.loads(listed.content[0]["text"]) == [{"id": 1}, {}]


def test_an_object_over_the_cap_is_cut_in_its_main_array_and_stays_structured() -> None:
    value = {"total": 500, "items": [{"id": n, "pad": "y" * 50} for n in range(500)], "small": [1]}
    shape = shaper(max_bytes=4096, output_schema={"type": "object"}, paging=("per_page",))
    result = shape.success(200, JSON, orjson.dumps(value))
    kept = result.structured["items"]
    assert 10 < len(kept) < 500 and kept == value["items"][: len(kept)]
    assert result.structured["total"] == 500 and len(result.content[0]["text"].encode()) <= 4096
    note = result.content[1]["text"]
    assert f"{len(kept)} of 500 items" in note and "'per_page'" in note and "4,096 bytes" in note


def test_text_over_the_cap_is_cut_on_a_character_boundary_with_a_note() -> None:
    body = ("é" * 5000).encode()
    result = shaper(max_bytes=2048).success(200, {"content-type": "text/plain"}, body)
    shown = result.content[0]["text"]
    assert set(shown) == {"é"} and len(shown.encode()) <= 2048
    assert "the API's answer is 10,000 bytes" in result.content[1]["text"]
    assert "`fields`" in result.content[1]["text"]


def test_problem_details_and_common_json_error_shapes_give_the_apis_message() -> None:
    problem = {"title": "Invalid", "detail": "bad input", "errors": [{"pointer": "/name", "detail": "too long"}]}
    assert api_message({"content-type": "application/problem+json"}, orjson.dumps(problem)) == (
        "Invalid; bad input; /name: too long"
    )
    assert api_message(JSON, b'{"error": {"message": "nope"}}') == "nope"
    assert api_message(JSON, b'{"error": "invalid_grant", "error_description": "expired"}') == "expired; invalid_grant"
    assert api_message(JSON, b'{"errors": {"email": ["is taken"]}}') == "email: is taken"
    assert api_message({"content-type": "text/html"}, b"<html><body>Oops</body></html>") == ""
    assert api_message({"content-type": "text/plain"}, b"  rate   limited\n") == "rate limited"


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (401, {}, "401 Unauthorized: boom. The credentials Patchbay sent were refused"),
        (403, {}, "403 Forbidden: boom. The account Patchbay calls with is not allowed to do this"),
        (404, {}, "404 Not Found: boom. Not found: GET /v1/things/7."),
        (429, {"retry-after": "30"}, "429 Too Many Requests: boom. Retry after 30 seconds."),
        (503, {}, "503 Service Unavailable: boom. Retry in a little while."),
        (500, {}, "500 Internal Server Error: boom. The API failed; this is retryable"),
        (422, {}, "422 Unprocessable Entity: boom."),
    ],
)
def test_each_error_status_says_what_to_do(status: int, headers: dict[str, str], expected: str) -> None:
    result = shaper().result(status, {**JSON, **headers}, b'{"message": "boom"}', method="GET", path="/v1/things/7")
    assert result.is_error and result.content[0]["text"].startswith(f"The API answered {expected}")


def test_a_secret_the_api_echoes_is_scrubbed_from_the_error() -> None:
    result = shaper(secrets=("sk-live-123456",)).failure(
        401, JSON, b'{"message": "key sk-live-123456 is revoked"}', method="GET", path="/x"
    )
    assert (
        "sk-live-123456" not in result.content[0]["text"] and "key [redacted] is revoked" in result.content[0]["text"]
    )


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after({"retry-after": "7"}) == 7.0
    now = time.time()
    later = email.utils.formatdate(now + 90, usegmt=True)
    assert 88 <= (retry_after({"retry-after": later}, now) or 0) <= 90
    assert retry_after({"retry-after": "soon"}) is None and retry_after({}) is None
