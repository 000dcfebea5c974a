"""Canonical digests of what clients see: one per tool, prompt and resource template, and one for the manifest.

A definition is the served wire object (after prefixes and config overrides) minus volatile ``_meta`` keys. Its
digest is the hex SHA-256 of ``b"pb-tooldef-v1:"`` followed by its RFC 8785 (JCS) bytes: the same definition gives
the same digest in any language that implements JCS, whatever its key order, escaping or float formatting. The
prefix names the canon, so a later change of what is digested can be told apart and migrated (as mcpproxy's
``#343`` did when annotations joined its hash).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import orjson
import rfc8785

Kind = Literal["tool", "prompt", "template"]
KINDS: tuple[Kind, ...] = ("tool", "prompt", "template")
PREFIX = b"pb-tooldef-v1:"
MANIFEST_PREFIX = b"pb-manifest-v1:"
# _meta keys that change per request or per deployment rather than with the definition: tracing context, and the
# manifest stamp itself. Everything else in _meta (ui, securitySchemes, openai/*, anthropic/*) is digested.
SAFE_INTEGER = 2**53 - 1
VOLATILE_META = frozenset({"traceparent", "tracestate", "baggage", "patchbay/manifest"})


def visible(wire: Mapping[str, Any]) -> dict[str, Any]:
    """The digested form of a wire definition: every field, ``_meta`` without its volatile keys."""
    definition = dict(wire)
    meta = definition.pop("_meta", None)
    if isinstance(meta, Mapping):
        kept = {k: v for k, v in meta.items() if k not in VOLATILE_META}
        if kept:
            definition["_meta"] = kept
    return definition


def canonical(definition: Mapping[str, Any]) -> bytes:
    """RFC 8785 bytes of ``definition``.

    A value JSON has no form for is digested as the wire carries it (orjson: NaN and infinity as null, a
    datetime as its ISO text), so a definition that can be served can always be digested.
    """
    value = _as_doubles(dict(definition))
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError):
        return rfc8785.dumps(_as_doubles(orjson.loads(orjson.dumps(value))))


def _as_doubles(value: Any) -> Any:
    # RFC 8785 §3.2.2.3: numbers are IEEE 754 doubles. An integer past 2**53 (a schema's int64 "maximum") is
    # canonicalised as the double a JavaScript client parses it into, as JCS implementations in JS do.
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return float(value) if abs(value) > SAFE_INTEGER else value
    if isinstance(value, Mapping):
        return {k: _as_doubles(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_doubles(v) for v in value]
    return value


def definition_digest(definition: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the versioned canonical form of an already ``visible`` definition."""
    return hashlib.sha256(PREFIX + canonical(definition)).hexdigest()


def wire_digest(wire: Mapping[str, Any]) -> str:
    return definition_digest(visible(wire))


def manifest_digest(entries: Iterable[tuple[str, str, str]]) -> str:
    """Digest of a whole manifest: the sorted ``(kind, name, digest)`` triples, canonicalised."""
    ordered = sorted(entries)
    return hashlib.sha256(MANIFEST_PREFIX + rfc8785.dumps([list(e) for e in ordered])).hexdigest()


def key_of(kind: Kind, wire: Mapping[str, Any]) -> str:
    """The name an item is known by in the manifest: a template by its URI template, the rest by name."""
    return str(wire["uriTemplate"] if kind == "template" else wire["name"])
