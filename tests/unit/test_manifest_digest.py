"""Digests of tool definitions: RFC 8785 canonical bytes, every client-visible field counted, volatile _meta not."""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from patchbay.catalog.digest import canonical, definition_digest, key_of, manifest_digest, visible, wire_digest

TOOL: dict[str, Any] = {
    "name": "crm_close_ticket",
    "title": "Close ticket",
    "description": "Close a ticket by id.",
    "inputSchema": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1}}, "required": ["id"]},
    "outputSchema": {"type": "object", "properties": {"closed": {"type": "boolean"}}},
    "annotations": {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": True, "openWorldHint": False},
    "icons": [{"src": "https://example.com/i.png", "mimeType": "image/png"}],
    "execution": {"taskSupport": "optional"},
    "securitySchemes": [{"type": "oauth2", "scopes": ["crm"]}],
    "_meta": {"ui": {"resourceUri": "ui://crm/ticket"}, "openai/outputTemplate": "ui://crm/ticket"},
}


def test_the_digest_is_sha256_of_the_versioned_rfc8785_bytes() -> None:
    definition = {"name": "t", "description": "é ✓", "inputSchema": {"b": 1.0, "a": [0.1, 1e21, -0.0]}}
    expected = '{"description":"é ✓","inputSchema":{"a":[0.1,1e+21,0],"b":1},"name":"t"}'.encode()
    assert canonical(definition) == expected
    assert definition_digest(definition) == hashlib.sha256(b"pb-tooldef-v1:" + expected).hexdigest()


def test_key_order_does_not_change_the_digest() -> None:
    reordered = dict(reversed(list(TOOL.items())))
    reordered["inputSchema"] = dict(reversed(list(TOOL["inputSchema"].items())))
    assert wire_digest(reordered) == wire_digest(TOOL)


def test_integral_floats_digest_like_integers_as_in_javascript() -> None:
    as_float = copy.deepcopy(TOOL)
    as_float["inputSchema"]["properties"]["id"]["minimum"] = 1.0
    assert wire_digest(as_float) == wire_digest(TOOL)


def test_an_int64_bound_is_canonicalised_as_the_double_a_javascript_client_reads() -> None:
    schema = {"name": "t", "inputSchema": {"maximum": 2**63 - 1}}
    assert canonical(schema) == b'{"inputSchema":{"maximum":9223372036854776000},"name":"t"}'


def test_non_ascii_text_is_kept_as_utf8_not_escaped() -> None:
    assert canonical({"d": "naïve \u200b"}) == '{"d":"naïve \u200b"}'.encode()


def _set(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(TOOL)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("name",), "crm_close"),
        (("title",), "Close a ticket"),
        (("description",), "Close a ticket by id. Ask first."),
        (("inputSchema", "properties", "id", "minimum"), 0),
        (("outputSchema", "properties", "closed", "type"), "string"),
        (("annotations", "destructiveHint"), True),
        (("icons",), [{"src": "https://example.com/j.png"}]),
        (("execution", "taskSupport"), "required"),
        (("securitySchemes",), [{"type": "noauth"}]),
        (("_meta", "ui", "resourceUri"), "ui://crm/other"),
        (("_meta", "openai/outputTemplate"), "ui://crm/other"),
    ],
)
def test_every_client_visible_field_changes_the_digest(path: tuple[str, ...], value: Any) -> None:
    assert wire_digest(_set(path, value)) != wire_digest(TOOL)


@pytest.mark.parametrize("key", ["traceparent", "tracestate", "baggage", "patchbay/manifest"])
def test_volatile_meta_does_not_change_the_digest(key: str) -> None:
    stamped = _set(("_meta", key), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert wire_digest(stamped) == wire_digest(TOOL)
    assert key not in visible(stamped)["_meta"]


def test_meta_with_only_volatile_keys_digests_like_no_meta() -> None:
    bare = {k: v for k, v in TOOL.items() if k != "_meta"}
    assert wire_digest({**bare, "_meta": {"traceparent": "x"}}) == wire_digest(bare)


def test_the_manifest_digest_ignores_listing_order_but_not_content() -> None:
    entries = [("tool", "a", "1" * 64), ("prompt", "b", "2" * 64), ("template", "c://{x}", "3" * 64)]
    assert manifest_digest(entries) == manifest_digest(list(reversed(entries)))
    assert manifest_digest(entries) != manifest_digest([*entries[:2], ("template", "c://{x}", "4" * 64)])
    assert manifest_digest(entries) != manifest_digest(entries[:2])


def test_values_json_has_no_form_for_are_digested_as_the_wire_carries_them() -> None:
    # orjson sends NaN and infinity as null: a tool serving such a schema must still be digestible.
    assert canonical({"d": float("nan"), "m": float("inf"), "t": (1, 2)}) == b'{"d":null,"m":null,"t":[1,2]}'


def test_the_manifest_digest_is_sha256_of_the_versioned_jcs_of_the_sorted_triples() -> None:
    entries = [("tool", "b", "2" * 64), ("prompt", "z", "1" * 64), ("tool", "a", "3" * 64)]
    body = f'[["prompt","z","{"1" * 64}"],["tool","a","{"3" * 64}"],["tool","b","{"2" * 64}"]]'
    assert manifest_digest(entries) == hashlib.sha256(b"pb-manifest-v1:" + body.encode()).hexdigest()


def test_a_negative_int64_bound_is_canonicalised_as_a_double_too() -> None:
    assert canonical({"minimum": -(2**63)}) == b'{"minimum":-9223372036854776000}'


def test_the_largest_safe_integer_stays_an_integer_and_the_next_one_becomes_a_double() -> None:
    assert (
        canonical({"n": [2**53 - 1, 2**53 + 1, -(2**53 + 1)]})
        == b'{"n":[9007199254740991,9007199254740992,-9007199254740992]}'
    )


def test_a_datetime_is_digested_as_the_iso_text_the_wire_carries() -> None:
    moment = datetime(2026, 12, 7, 6, 30, tzinfo=UTC)
    assert (
        canonical({"default": moment, "n": 2**63}) == b'{"default":"2026-12-07T06:30:00+00:00","n":9223372036854776000}'
    )


def test_a_template_is_known_by_its_uri_template_and_the_rest_by_name() -> None:
    template = {"uriTemplate": "crm://tickets/{id}", "name": "ticket"}
    assert key_of("template", template) == "crm://tickets/{id}"
    assert key_of("tool", TOOL) == "crm_close_ticket"
    assert key_of("prompt", {"name": "summary", "uriTemplate": "x://{y}"}) == "summary"
