"""An operation's tool input schema (flat arguments) and output schema, from the version-independent model.

Arguments are flat: every path, query, header and cookie parameter and every property of an object body is one
argument, named as the API names it where that is a safe JSON property name (``filter[status]`` becomes
``filter_status``; the real name stays in the :class:`ArgTarget`). Only a real collision qualifies a name: when two
arguments would share one, the one in the most specific place keeps it (path, then query, header, cookie, body) and
the others get their location as a prefix (``id`` and ``body_id``, or ``id`` and ``query_id``). A body that is not
an object with properties (an array, a scalar, a ``oneOf``) is one argument, ``body``; so is an object body whose
schema has rules about the object as a whole (``minProperties``, ``dependentRequired``, ``if``/``then``, a map's
``additionalProperties`` …), which flat arguments would lose. Each argument admits only what its place in the
request can carry (:mod:`.sendable`).

Schemas are copied compactly (vendor ``x-`` keys, ``xml``, ``externalDocs`` and all but the first example dropped)
with only the ``$defs`` they reach. Output schemas are loosened so that a real response never fails them: a real
API omits fields, adds some and grows its enums (``required``, ``additionalProperties: false``, value constraints
and descriptions dropped; ``oneOf`` read as ``anyOf``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from patchbay.connectors.openapi.bodies import schema_shape, undefined_style, unsendable_properties
from patchbay.connectors.openapi.models import ArgTarget, Body, Operation, Parameter, Success
from patchbay.connectors.openapi.schemas import SUBSCHEMA, SUBSCHEMA_LIST, SUBSCHEMA_MAP
from patchbay.connectors.openapi.sendable import narrow_value, parameter_schema

JsonSchema = dict[str, Any]
DEFS = "#/$defs/"
# OpenAPI 3.1 §4.8.12.1: header parameters named Accept, Content-Type or Authorization SHALL be ignored (the media
# types and the security scheme set them).
IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})
PRIORITY = ("path", "query", "header", "cookie", "body_property", "body")
MAX_DESCRIPTION = 600  # characters of a nested schema's description kept; the tool description says the rest

_DROPPED = frozenset({"xml", "externalDocs", "example", "discriminator", "$schema", "$id", "$comment"})
# What an output schema keeps: the shape, not the promises a real response may break.
_OUTPUT_KEEPS = frozenset({"type", "properties", "items", "prefixItems", "$ref", "anyOf", "allOf", "format"})
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_]+")
_UNION = ("oneOf", "anyOf", "patternProperties", "not", "if")
# Keywords about an object as a whole (its size, which members go together, unions, conditions): flat arguments
# would lose them, so a body using one stays one ``body`` argument carrying its whole schema.
_WHOLE_OBJECT = frozenset(
    {
        "oneOf",
        "anyOf",
        "not",
        "if",
        "then",
        "else",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "enum",
        "const",
    }
)


def ref_key(ref: str) -> str | None:
    """``"#/$defs/Ticket"`` → ``"Ticket"`` (RFC 6901 and percent escapes undone); None for any other reference."""
    if not ref.startswith(DEFS):
        return None
    first = ref[len(DEFS) :].split("/", 1)[0]
    return unquote(first).replace("~1", "/").replace("~0", "~")


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1].rstrip() + "…"


def _compact_input(key: str, value: Any) -> tuple[bool, Any]:
    """Whether an input schema keeps ``key``, and its (shortened) value."""
    if key in _DROPPED or key.startswith("x-"):
        return False, None
    if key == "examples" and isinstance(value, list):
        return bool(value), value[:1]
    if key == "description" and isinstance(value, str):
        return bool(value), _shorten(value)
    return True, value


def _compact_output(key: str, value: Any) -> tuple[bool, Any]:
    if key == "additionalProperties":
        return isinstance(value, dict), value
    return key in _OUTPUT_KEEPS, value


class Schemas:
    """The spec's ``$defs``, compacted once per definition for inputs and loosened once for outputs.

    One instance is shared by every operation of a build, so a definition used by a hundred operations is
    copied once; each tool's schema references the shared copies (nobody mutates them).
    """

    def __init__(self, defs: dict[str, JsonSchema]) -> None:
        self.defs = defs
        self._input: dict[str, tuple[JsonSchema, set[str]]] = {}
        self._output: dict[str, tuple[JsonSchema, set[str]]] = {}

    def input(self, schema: Any, refs: set[str]) -> Any:
        """A compact copy of an input schema; the ``$defs`` keys it references are added to ``refs``."""
        return _walk(schema, False, refs)

    def output(self, schema: Any, refs: set[str]) -> Any:
        """A loosened copy of an output schema; the ``$defs`` keys it references are added to ``refs``."""
        return _walk(schema, True, refs)

    def closure(self, refs: set[str], output: bool = False) -> dict[str, JsonSchema]:
        """The ``$defs`` that ``refs`` reach, transitively, each copied (compacted or loosened) once per build."""
        cache = self._output if output else self._input
        found: dict[str, JsonSchema] = {}
        pending = sorted(refs)
        while pending:
            key = pending.pop()
            if key in found or key not in self.defs:
                continue
            if key not in cache:
                direct: set[str] = set()
                copy = self.output(self.defs[key], direct) if output else self.input(self.defs[key], direct)
                cache[key] = (copy, direct)
            found[key], direct = cache[key]
            pending.extend(direct - found.keys())
        return dict(sorted(found.items()))

    def resolve(self, schema: JsonSchema) -> JsonSchema:
        """Follow a bare ``$ref`` chain to the schema it names (cycles and dangling references end the chain)."""
        seen: set[str] = set()
        while set(schema) == {"$ref"} or (len(schema) <= 2 and "$ref" in schema and "description" in schema):
            key = ref_key(str(schema["$ref"]))
            if key is None or key in seen or key not in self.defs:
                break
            seen.add(key)
            schema = self.defs[key]
        return schema


def _walk(schema: Any, output: bool, refs: set[str]) -> Any:
    if isinstance(schema, bool) or not isinstance(schema, dict):
        return schema
    keep = _compact_output if output else _compact_input
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "oneOf" and output:
            key = "anyOf"  # loosened branches may match more than one: oneOf would then fail
        keeps, value = keep(key, value)
        if not keeps:
            continue
        if key in SUBSCHEMA_MAP and isinstance(value, dict):
            out[key] = {name: _walk(sub, output, refs) for name, sub in value.items()}
        elif key in SUBSCHEMA:
            out[key] = _walk(value, output, refs)
        elif key in SUBSCHEMA_LIST and isinstance(value, list):
            out[key] = [_walk(sub, output, refs) for sub in value]
        else:
            if key == "$ref" and isinstance(value, str):
                target = ref_key(value)
                if target is not None:
                    refs.add(target)
            out[key] = value
    return out if output else narrow_value(out)


def _safe(name: str) -> str:
    return _SAFE_NAME.sub("_", name).strip("_")[:64] or "value"


def _described(schema: Any, description: str, deprecated: bool = False) -> Any:
    if not isinstance(schema, dict):
        return schema
    extra: dict[str, Any] = {}
    if description and "description" not in schema:
        extra["description"] = _shorten(description.strip())
    if deprecated:
        extra["deprecated"] = True
    return {**schema, **extra} if extra else schema


class _Candidate:
    __slots__ = ("location", "member", "name", "required", "safe", "schema")

    def __init__(self, location: str, name: str, schema: Any, required: bool, member: bool = False) -> None:
        self.location = location
        self.name = name
        self.schema = schema
        self.required = required
        self.member = member  # a property the body object requires (whether or not the body itself is required)
        self.safe = _safe(name) if location != "body" else "body"


def _object_shape(
    schema: JsonSchema, schemas: Schemas, depth: int = 0, *, flat: bool = False
) -> tuple[dict[str, Any], set[str]] | None:
    """An object's properties and required names (``allOf`` members merged); None when it is not one, or, with
    ``flat``, when its schema says more about the whole object than flat arguments can (:data:`_WHOLE_OBJECT`)."""
    schema = schemas.resolve(schema)
    if depth > 8 or any(key in schema for key in (_WHOLE_OBJECT if flat else _UNION)):
        return None
    if isinstance(schema.get("additionalProperties"), dict) or isinstance(schema.get("unevaluatedProperties"), dict):
        return None  # a map: its keys are data, not arguments
    kind = schema.get("type")
    if kind not in (None, "object") or (kind is None and "properties" not in schema and "allOf" not in schema):
        return None
    properties: dict[str, Any] = {}
    required: set[str] = set()
    for member in schema.get("allOf", ()):
        shape = _object_shape(member, schemas, depth + 1, flat=flat) if isinstance(member, dict) else None
        if shape is None:
            return None
        properties.update(shape[0])
        required |= shape[1]
    properties.update(schema.get("properties") or {})
    required |= {name for name in schema.get("required", ()) if isinstance(name, str)}
    if flat and depth == 0 and required - properties.keys():
        return None  # a required member without a schema could never be given as an argument
    return properties, required


def _body_candidates(body: Body, schemas: Schemas) -> list[_Candidate]:
    shape = _object_shape(body.schema, schemas, flat=True)
    if shape is None or not shape[0]:
        return [_Candidate("body", "", _described(body.schema, body.description), body.required)]
    properties, required = shape
    # A property whose Encoding style is undefined for its type could never be sent (bodies.undefined_style).
    unsendable = unsendable_properties(body, schemas.defs) if body.encoding else {}
    candidates = []
    for name, schema in properties.items():
        # OpenAPI 3.1 §4.8.24.1 (readOnly): a read-only property is sent only in responses.
        if name in unsendable or (isinstance(schema, dict) and schemas.resolve(schema).get("readOnly") is True):
            continue
        member = name in required
        candidates.append(_Candidate("body_property", name, schema, body.required and member, member))
    return candidates


def _param_candidate(parameter: Parameter, schemas: Schemas) -> _Candidate | None:
    if parameter.location == "header" and parameter.name.lower() in IGNORED_HEADERS:
        return None
    if parameter.location == "query" and parameter.content_type is None:
        # A query style undefined for the parameter's type (deepObject on a string ...) has no serialisation a
        # server could read: the optional parameter is no argument (intake skips an operation requiring one).
        shape = schema_shape(parameter.schema, schemas.defs)
        if shape is not None and undefined_style(parameter.style, parameter.explode, shape) is not None:
            return None
    schema = parameter_schema(parameter, parameter.schema, schemas.resolve)
    schema = _described(schema, parameter.description, parameter.deprecated)
    return _Candidate(parameter.location, parameter.name, schema, parameter.required or parameter.location == "path")


def _arg_names(candidates: list[_Candidate]) -> list[str]:
    """One unique argument name per candidate: bare where unambiguous, location-qualified on a collision."""
    rank = {location: index for index, location in enumerate(PRIORITY)}
    groups: dict[str, list[int]] = {}
    for index, candidate in enumerate(candidates):
        groups.setdefault(candidate.safe, []).append(index)
    names: list[str | None] = [None] * len(candidates)
    taken: set[str] = set()
    for safe, indexes in groups.items():
        winner = min(indexes, key=lambda i: (rank[candidates[i].location], i))
        names[winner] = safe
        taken.add(safe)
    for index, candidate in enumerate(candidates):
        if names[index] is not None:
            continue
        location = "body" if candidate.location.startswith("body") else candidate.location
        name = f"{location}_{candidate.safe}"[:64]
        count = 2
        while name in taken:
            name = f"{location}_{candidate.safe}"[:60] + f"_{count}"
            count += 1
        names[index] = name
        taken.add(name)
    return [name or "" for name in names]


def _optional_body_members(candidates: list[_Candidate], names: list[str]) -> dict[str, list[str]]:
    """An optional body is sent once any of its properties is given, and then needs the ones it requires: each
    body argument depends on those (JSON Schema 2020-12 §6.5.4 dependentRequired)."""
    body = [(c, n) for c, n in zip(candidates, names, strict=True) if c.location == "body_property"]
    members = [name for candidate, name in body if candidate.member and not candidate.required]
    if not members:
        return {}
    return {name: [m for m in members if m != name] for _, name in body if [m for m in members if m != name]}


def build_inputs(
    operation: Operation, defs: dict[str, JsonSchema], *, schemas: Schemas | None = None
) -> tuple[dict[str, ArgTarget], JsonSchema]:
    """The flat argument map and the tool's input JSON Schema (an object; the ``$defs`` it reaches copied in).

    ``schemas`` shares compacted definitions between the operations of one build; without it they are copied
    for this operation alone.
    """
    schemas = schemas or Schemas(defs)
    candidates = [c for p in operation.parameters if (c := _param_candidate(p, schemas)) is not None]
    if operation.body is not None:
        candidates.extend(_body_candidates(operation.body, schemas))
    refs: set[str] = set()
    args: dict[str, ArgTarget] = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    names = _arg_names(candidates)
    for candidate, name in zip(candidates, names, strict=True):
        args[name] = ArgTarget(candidate.location, candidate.name)  # type: ignore[arg-type]
        properties[name] = schemas.input(candidate.schema, refs)
        if candidate.required:
            required.append(name)
    schema: JsonSchema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    together = _optional_body_members(candidates, names)
    if together:
        schema["dependentRequired"] = together
    # An argument the operation does not take is a mistake worth naming, not a value to drop silently.
    schema["additionalProperties"] = False
    reached = schemas.closure(refs)
    if reached:
        schema["$defs"] = reached
    return args, schema


def output_schema(success: Success | None, schemas: Schemas) -> JsonSchema | None:
    """An ``outputSchema`` for a JSON object response, loosened; None for anything else (MCP: it must be an object).

    Arrays and scalars get none: the call's result is then text only, never ``structuredContent``.
    """
    if success is None or success.schema is None or not _is_json(success.media_type):
        return None
    root = schemas.resolve(success.schema)
    kind = root.get("type")
    if kind != "object" and not (kind is None and ("properties" in root or "allOf" in root)):
        return None
    if kind is None and "allOf" in root and _object_shape(root, schemas) is None:
        return None
    refs: set[str] = set()
    schema: JsonSchema = {"type": "object", **schemas.output(root, refs)}
    schema["type"] = "object"
    reached = schemas.closure(refs, output=True)
    if reached:
        schema["$defs"] = reached
    return schema


def _is_json(media_type: str | None) -> bool:
    if not media_type:
        return False
    essence = media_type.split(";", 1)[0].strip().lower()
    return essence == "application/json" or essence.endswith("+json")
