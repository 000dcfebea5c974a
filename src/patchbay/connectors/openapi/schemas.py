"""OpenAPI Schema Objects → JSON Schema 2020-12, every reference into one shared ``$defs``.

OpenAPI 3.1/3.2 schemas are JSON Schema 2020-12 already; 3.0 and Swagger 2.0 ones are a dialect of draft 4/5:
``nullable`` (3.0.3 §4.7.24.1), boolean ``exclusiveMinimum``/``exclusiveMaximum``, ``example``, ``x-nullable`` and
``type: file`` (2.0). These are rewritten wherever they appear (a ``nullable`` in a 3.1 document too: JSON
Schema would ignore it and the author meant it). OpenAPI-only keywords (``discriminator``, ``xml``,
``externalDocs``, ``x-…``) are dropped; a discriminator leaves a one-line hint in the description.

Each referenced schema is converted once, under a readable key (the component's name), and every ``$ref`` to it
becomes ``{"$ref": "#/$defs/<key>"}``, so recursive schemas stay references and are never expanded. A schema
that needs no rewriting is returned as is (shared, never copied): nothing downstream mutates schemas.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from patchbay.connectors.openapi.refs import Documents, RefError

MAX_DEPTH = 96  # inline nesting; references do not count (they are converted on their own)
_CLEAN_KEY = re.compile(r"^[A-Za-z0-9._-]{1,120}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_COMPONENT = re.compile(r"^/(?:components/schemas|definitions)/([^/]+)$")
_DROP = frozenset({"discriminator", "xml", "externalDocs", "nullable", "x-nullable", "example", "$schema", "$id"})
# Keywords whose value is one schema, a list of schemas, or a name -> schema map (JSON Schema 2020-12 §10, §8.2.4,
# §8.5 contentSchema; draft 4's additionalItems and definitions, which OpenAPI 3.0 and Swagger 2.0 schemas use).
# ``items`` is a list in draft 4's tuple form. Every walk over a schema's subschemas reads these.
SUBSCHEMA = frozenset(
    {
        "items",
        "additionalProperties",
        "not",
        "if",
        "then",
        "else",
        "contains",
        "propertyNames",
        "unevaluatedItems",
        "unevaluatedProperties",
        "additionalItems",
        "contentSchema",
    }
)
SUBSCHEMA_LIST = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
SUBSCHEMA_MAP = frozenset({"properties", "patternProperties", "dependentSchemas", "$defs", "definitions"})


class SchemaError(ValueError):
    """A schema that cannot be converted; the message says where and why."""


def _key_base(uri: str, root_base: str) -> tuple[str, bool]:
    """A readable ``$defs`` key for the schema at ``uri``, and whether it is a root component (plain name)."""
    document, _, fragment = uri.partition("#")
    pointer = fragment.replace("%7B", "{").replace("%7D", "}")
    component = _COMPONENT.match(pointer)
    if component:
        name = component.group(1).replace("~1", "/").replace("~0", "~")
        return name, document == root_base and bool(_CLEAN_KEY.match(name))
    tokens = [t for t in pointer.split("/") if t and t not in ("components", "schemas", "properties", "items")]
    if not tokens:
        tokens = [document.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0] or "schema"]
    return ".".join(tokens[-2:]), False


class SchemaConverter:
    """Converts schemas of one API description; ``defs`` fills as references are met."""

    def __init__(self, documents: Documents, *, openapi30: bool) -> None:
        self.documents = documents
        self.openapi30 = openapi30  # 3.0 / 2.0: sibling keywords of $ref are ignored by their spec
        self.defs: dict[str, dict[str, Any]] = {}
        self.failed: dict[str, str] = {}  # def key -> why it could not be converted
        self._keys: dict[str, str] = {}  # schema URI -> def key
        self._edges: dict[str, frozenset[str]] = {}  # def key -> the def keys it references
        self._pending: list[tuple[str, Any, str]] = []  # (key, node, base) still to convert
        self._refs: set[str] = set()  # keys referenced by what is being converted now
        self._memo: dict[int, dict[str, Any]] | None = None

    def share_nodes(self) -> None:
        """The document reuses nodes (YAML aliases): convert each node once, or a shared tree costs its expansion."""
        self._memo = {}

    @contextmanager
    def collect(self) -> Iterator[set[str]]:
        """Gather the def keys referenced by the schemas converted inside the block."""
        outer = self._refs
        inner: set[str] = set()
        self._refs = inner
        try:
            yield inner
        finally:
            outer.update(inner)
            self._refs = outer

    def note(self, keys: frozenset[str]) -> None:
        """Count ``keys`` as referenced by what is being converted now (a memoised object's references)."""
        self._refs.update(keys)

    def convert(self, node: Any, base: str, where: str) -> dict[str, Any]:
        """The JSON Schema 2020-12 form of the schema ``node`` (written in a document with base URI ``base``).

        Raises:
            SchemaError: it is not a schema, is nested too deep, or a reference in it does not resolve.
        """
        if node is True or node is None:
            return {}
        if node is False:
            return {"not": {}}
        if not isinstance(node, dict):
            raise SchemaError(f"{where}: a schema must be an object, not {type(node).__name__}")
        return self._convert(node, base, where, 0)

    def reference(self, ref: str, base: str) -> dict[str, Any]:
        """``{"$ref": "#/$defs/<key>"}`` for the schema ``ref`` names; converting it is queued."""
        try:
            located = self.documents.locate(ref, base)
        except RefError as exc:
            raise SchemaError(str(exc)) from None
        key = self._keys.get(located.uri)
        if key is None:
            key = self._claim(located.uri)
            self._pending.append((key, located.node, located.base))
        self._refs.add(key)
        return {"$ref": f"#/$defs/{key}"}

    def drain(self) -> None:
        """Convert every queued referenced schema (and what they reference), each once. One that fails is
        recorded in ``failed``; :meth:`broken` tells an operation whether it depends on one."""
        while self._pending:
            key, node, base = self._pending.pop()
            with self.collect() as refs:
                try:
                    self.defs[key] = self.convert(node, base, f"schema {key!r}")
                except SchemaError as exc:
                    self.failed[key] = str(exc)
            self._edges[key] = frozenset(refs)

    def broken(self, keys: set[str]) -> str | None:
        """The reason of the first failed schema reachable from ``keys``, or None."""
        if not self.failed:
            return None
        seen: set[str] = set()
        stack = list(keys)
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            if key in self.failed:
                return self.failed[key]
            stack.extend(self._edges.get(key, ()))
        return None

    def _claim(self, uri: str) -> str:
        base, component = _key_base(uri, self.documents.root_base)
        key = base if component else (_UNSAFE.sub("_", base)[:100] or "schema")
        taken = set(self._keys.values())
        if not component and (key in taken or self._is_root_component(key)):
            key = f"{key}_{hashlib.sha256(uri.encode()).hexdigest()[:6]}"
        self._keys[uri] = key
        return key

    def _is_root_component(self, key: str) -> bool:
        root = self.documents.root
        for container in (root.get("components", {}).get("schemas"), root.get("definitions")):
            if isinstance(container, dict) and key in container:
                return True
        return False

    def _convert(self, node: dict[str, Any], base: str, where: str, depth: int) -> dict[str, Any]:
        if depth > MAX_DEPTH:
            raise SchemaError(f"{where}: schemas nested deeper than {MAX_DEPTH} levels")
        memo = self._memo
        if memo is not None and id(node) in memo:
            return memo[id(node)]
        ref = node.get("$ref")
        if isinstance(ref, str):
            out = self._convert_ref(node, ref, base, where, depth)
        else:
            out = self._convert_keywords(node, base, where, depth)
        if memo is not None:
            memo[id(node)] = out
        return out

    def _convert_ref(self, node: dict[str, Any], ref: str, base: str, where: str, depth: int) -> dict[str, Any]:
        target = self.reference(ref, base)
        if len(node) == 1:
            return target
        nullable = node.get("nullable") is True or node.get("x-nullable") is True
        if self.openapi30:
            siblings = {k: node[k] for k in ("description", "title") if isinstance(node.get(k), str)}
        else:
            rest = {k: v for k, v in node.items() if k not in ("$ref", "nullable", "x-nullable")}
            siblings = self._convert_keywords(rest, base, where, depth)
        schema = {**target, **siblings}
        return {"anyOf": [schema, {"type": "null"}]} if nullable else schema

    def _convert_keywords(self, node: dict[str, Any], base: str, where: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] | None = None  # copy on first change
        for key, value in node.items():
            new = self._keyword(key, value, node, base, where, depth)
            if new is not value:
                if out is None:
                    out = dict(node)
                if new is _DROPPED:
                    del out[key]
                else:
                    out[key] = new
        result = node if out is None else out
        return _dialect(result, node)

    def _keyword(self, key: str, value: Any, node: dict[str, Any], base: str, where: str, depth: int) -> Any:
        if key in _DROP or key.startswith("x-"):
            return _DROPPED
        if key == "examples":  # JSON Schema: a list of values; some specs put Example Object references here
            return value if isinstance(value, list) and not any(_is_ref(v) for v in value) else _DROPPED
        if key in SUBSCHEMA_MAP:
            if not isinstance(value, dict):
                raise SchemaError(f"{where}: {key!r} must be an object of schemas")
            return self._map(value, base, f"{where}.{key}", depth)
        if key in SUBSCHEMA_LIST:
            if not isinstance(value, list):
                raise SchemaError(f"{where}: {key!r} must be a list of schemas")
            return self._many(value, base, f"{where}.{key}", depth)
        if key in SUBSCHEMA:
            if isinstance(value, bool):
                return value
            if key == "items" and isinstance(value, list):  # draft 4 tuple form, renamed prefixItems below
                return self._many(value, base, f"{where}.{key}", depth)
            return self._sub(value, base, f"{where}.{key}", depth)
        return value

    def _sub(self, value: Any, base: str, where: str, depth: int) -> Any:
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: a schema must be an object, not {type(value).__name__}")
        return self._convert(value, base, where, depth + 1)

    def _many(self, values: list[Any], base: str, where: str, depth: int) -> list[Any]:
        out = [v if isinstance(v, bool) else self._sub(v, base, f"{where}[{i}]", depth) for i, v in enumerate(values)]
        return values if all(a is b for a, b in zip(out, values, strict=True)) else out

    def _map(self, values: dict[str, Any], base: str, where: str, depth: int) -> dict[str, Any]:
        out = {
            name: v if isinstance(v, bool) else self._sub(v, base, f"{where}.{name}", depth)
            for name, v in values.items()
        }
        return values if all(out[name] is v for name, v in values.items()) else out


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and "$ref" in value


class _Dropped:
    pass


_DROPPED: Any = _Dropped()


def _dialect(schema: dict[str, Any], original: dict[str, Any]) -> dict[str, Any]:
    """The 3.0 / 2.0 keywords whose meaning JSON Schema 2020-12 spells differently, rewritten."""
    if not _needs_dialect(original):
        return schema
    out = dict(schema) if schema is original else schema
    _bounds(out, original)
    _formats(out, original)
    if "example" in original and "examples" not in out and not _is_ref(original["example"]):
        out["examples"] = [original["example"]]
    if isinstance(out.get("items"), list):  # draft 4 tuple validation; 2020-12 §10.3.1.2: items follows prefixItems
        out["prefixItems"] = out.pop("items")
        if "additionalItems" in out:
            out["items"] = out.pop("additionalItems")
    if isinstance(original.get("discriminator"), dict):
        prop = original["discriminator"].get("propertyName")
        if isinstance(prop, str) and prop:
            hint = f"The {prop!r} property says which variant this is."
            text = out.get("description")
            out["description"] = f"{text}\n\n{hint}" if isinstance(text, str) and text else hint
    if original.get("nullable") is True or original.get("x-nullable") is True:
        return _nullable(out)
    return out


def _needs_dialect(node: dict[str, Any]) -> bool:
    return (
        "nullable" in node
        or "x-nullable" in node
        or "example" in node
        or "discriminator" in node
        or isinstance(node.get("exclusiveMinimum"), bool)
        or isinstance(node.get("exclusiveMaximum"), bool)
        or node.get("type") == "file"
        or node.get("format") in ("binary", "byte")
        or isinstance(node.get("items"), list)
    )


def _bounds(out: dict[str, Any], original: dict[str, Any]) -> None:
    # 3.0 / draft 4: exclusiveMinimum: true turns minimum exclusive; 2020-12 gives the bound itself.
    for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = original.get(flag)
        if isinstance(value, bool):
            del out[flag]
            if value and isinstance(original.get(bound), int | float):
                out[flag] = out.pop(bound)


def _formats(out: dict[str, Any], original: dict[str, Any]) -> None:
    # OpenAPI 3.1 §4.8.14.3 ("Working with Binary Data"): raw bytes are contentMediaType without contentEncoding
    # (3.0 format: binary, 2.0 type: file); base64 text on the wire is contentEncoding: base64 (format: byte).
    # The request decodes a tool's base64 argument into the raw bytes (bodies.is_file).
    kind = original.get("format")
    if original.get("type") == "file" or kind == "binary":
        out["type"] = "string"
        out.pop("format", None)
        out.setdefault("contentMediaType", "application/octet-stream")
    elif kind == "byte":
        out.pop("format", None)
        out["contentEncoding"] = "base64"


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    elif isinstance(kind, list):
        if "null" not in kind:
            schema["type"] = [*kind, "null"]
    else:
        return {"anyOf": [schema, {"type": "null"}]}
    if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    return schema
