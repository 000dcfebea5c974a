"""Input schemas that admit only what the operation can be sent: the rules a spec leaves implicit, made explicit.

A spec's schema says what a value may be, not what its place in the request allows. A path segment cannot be
empty, a query parameter may be empty only when the spec says ``allowEmptyValue``, a header value is visible
Latin-1 text, and an ``int32`` is 32 bits. Without these rules a model (or a property-based test) sends values the
API must refuse. Each rule only ever narrows a schema, and never to nothing: a schema that admits no non-empty
value (``const: ""``) is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from patchbay.connectors.openapi.models import Parameter

JsonSchema = dict[str, Any]
Resolve = Callable[[JsonSchema], JsonSchema]
_SCALARS = ["string", "number", "boolean"]
# RFC 9110 §5.5 field-value: visible characters with spaces or tabs only inside. Of obs-text (%x80-FF) only the
# visible Latin-1 range is admitted (%xA1-FF): C1 controls and NBSP are nothing a person means in a header.
HEADER_PATTERN = r"^[!-~\u00a1-\u00ff](?:[\t !-~\u00a1-\u00ff]*[!-~\u00a1-\u00ff])?$"
# format → the range of an integer of that width (OpenAPI Format Registry: int32, int64 are signed).
INTEGER_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/yaml",
        "application/x-yaml",
        "application/javascript",
        "application/ecmascript",
        "application/x-www-form-urlencoded",
        "application/graphql",
        "application/sql",
    }
)
BASE64_NOTE = "The file's bytes, base64-encoded."


def is_text_media_type(media_type: str) -> bool:
    """Whether content of ``media_type`` is text (sent as the string given) rather than bytes (given as base64)."""
    essence = media_type.split(";", 1)[0].strip().lower()
    return essence.startswith("text/") or essence in _TEXT_TYPES or essence.endswith(("+json", "+xml", "+yaml"))


def _kinds(schema: JsonSchema) -> set[str] | None:
    """The JSON types a schema names, or None when it names none (any type)."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    return None


def _may_be(schema: JsonSchema, kind: str) -> bool:
    kinds = _kinds(schema)
    return kinds is None or kind in kinds or (kind == "number" and "integer" in kinds)


def _admits_nonempty_string(schema: JsonSchema) -> bool:
    if schema.get("maxLength") == 0 or schema.get("const") == "":
        return False
    enum = schema.get("enum")
    return not (isinstance(enum, list) and enum and all(value == "" for value in enum))


def _at_least(schema: JsonSchema, key: str, bound: int) -> JsonSchema:
    current = schema.get(key)
    if isinstance(current, int) and not isinstance(current, bool) and current >= bound:
        return schema
    return {**schema, key: bound}


def parameter_schema(parameter: Parameter, schema: Any, resolve: Resolve) -> Any:
    """``schema`` (a parameter's, references unresolved) narrowed to the values its place can carry.

    ``resolve`` follows a bare ``$ref`` to the schema it names, to learn the types; the narrowing keywords go beside
    the reference (JSON Schema 2020-12 §8.2.3.1 applies siblings of ``$ref`` too), never into the shared ``$defs``.
    """
    if not isinstance(schema, dict) or parameter.content_type is not None:
        return schema  # content parameters are sent as JSON text: never empty
    shape = resolve(schema)
    place = parameter.location
    # OpenAPI 3.1 §4.8.12.2: path parameters are required and a path segment cannot be empty; a query parameter
    # may be sent empty only with allowEmptyValue; RFC 9110 §5.5: a header line carries a non-empty value.
    nonempty = place in ("path", "header") or (place == "query" and not parameter.allow_empty)
    if nonempty and _may_be(shape, "string") and _admits_nonempty_string(shape):
        schema = _at_least(schema, "minLength", 1)
        if place == "header" and "pattern" not in shape:
            schema = {**schema, "pattern": HEADER_PATTERN}
    # An empty array or object expands to nothing (RFC 6570 §3.2.1): a required parameter would be missing.
    if parameter.required and place in ("path", "query", "header"):
        if _kinds(shape) == {"array"} and "minItems" not in shape:
            schema = _at_least(schema, "minItems", 1)
        if _kinds(shape) == {"object"} and "minProperties" not in shape:
            schema = _at_least(schema, "minProperties", 1)
    if nonempty:
        schema = _members_narrowed(schema, shape, place, resolve)
    return schema


def _members_narrowed(schema: JsonSchema, shape: JsonSchema, place: str, resolve: Resolve) -> JsonSchema:
    """An array's items (and a header object's member values) narrowed like values of their own: each exploded
    item is one value of the parameter (an empty one is an empty value, and ``[""]`` an empty path segment), and
    every item or member lands in the header line, so it must be header text too (RFC 9110 §5.5)."""
    kinds = _kinds(shape)
    if kinds == {"array"} and "prefixItems" not in shape:
        items = shape.get("items", {})
        narrowed = _member(items, place, resolve)
        if narrowed is not items:
            schema = {**schema, "items": narrowed}
    elif kinds == {"object"} and place == "header" and "patternProperties" not in shape:
        properties = shape.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        schema = {**schema, "properties": {name: _member(sub, place, resolve) for name, sub in properties.items()}}
        # A member's name goes into the line too; the style tables write one level of scalars (numbers and
        # booleans print as ASCII), so an undeclared member is a scalar in header text.
        schema["propertyNames"] = {"minLength": 1, "pattern": HEADER_PATTERN}
        if shape.get("additionalProperties", True) is True:
            schema["additionalProperties"] = {"type": _SCALARS, "minLength": 1, "pattern": HEADER_PATTERN}
    return schema


def _member(schema: Any, place: str, resolve: Resolve) -> Any:
    if not isinstance(schema, dict):
        return schema
    shape = resolve(schema)
    if not (_may_be(shape, "string") and _admits_nonempty_string(shape)):
        return schema
    schema = _at_least(schema, "minLength", 1)
    if place == "header" and "pattern" not in shape:
        schema = {**schema, "pattern": HEADER_PATTERN}
    return schema


def narrow_value(out: JsonSchema) -> JsonSchema:
    """An input schema node with its format's integer range and its file's base64 encoding made explicit.

    Called on every node of an input schema as it is copied (never on output schemas: a response is not ours to
    refuse).
    """
    fmt = out.get("format")
    bounds = INTEGER_BOUNDS.get(fmt) if isinstance(fmt, str) else None
    if bounds is not None and (_may_be(out, "integer") or _may_be(out, "number")):
        low, high = bounds
        if not isinstance(out.get("minimum"), int | float) or out["minimum"] < low:
            out["minimum"] = low
        if not isinstance(out.get("maximum"), int | float) or out["maximum"] > high:
            out["maximum"] = high
    media = out.get("contentMediaType")
    # OpenAPI 3.1 §4.8.14.3: contentMediaType without contentEncoding is raw bytes; JSON carries text only, so a
    # tool takes them base64-encoded (the request decodes them). Text media types stay plain strings.
    if isinstance(media, str) and "contentEncoding" not in out and not is_text_media_type(media):
        out["contentEncoding"] = "base64"
        if "description" not in out:
            out["description"] = BASE64_NOTE
    return out
