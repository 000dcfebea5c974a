"""What of a call's arguments goes into the audit trail: secrets replaced by ``"[redacted]"``, the rest capped.

A value is a secret when the tool's input schema says so for its property (``format: password`` or
``writeOnly: true``, JSON Schema 2020-12 §9.4 / OpenAPI) or when its name is in ``[audit] redact_fields``
(compared case-insensitively, ignoring ``-`` and ``_``, at any depth). The redacted arguments are then cut to
``[audit] max_argument_bytes`` of JSON text, so a large upload cannot bloat the trail. Runs on the audit writer's
thread, never on the event loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeGuard

import orjson

__all__ = ["REDACTED", "TRUNCATED_KEY", "Redactor"]

REDACTED = "[redacted]"
# The marker object that stands for arguments over the cap: {"[truncated]": <prefix of the JSON text>, "bytes": n}.
TRUNCATED_KEY = "[truncated]"
# Argument names whose verdict a Redactor remembers at most.
_KNOWN_NAMES = 4096
_CONTAINERS = (dict, list)


def _norm(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


class Redactor:
    def __init__(self, fields: Iterable[str], max_bytes: int) -> None:
        self.fields = frozenset(_norm(f) for f in fields)
        self.max_bytes = max_bytes
        self._known: dict[str, bool] = {}

    def __call__(self, arguments: Mapping[str, Any], schema: Mapping[str, Any] | None) -> Any:
        """The arguments as the audit trail keeps them."""
        redacted = self._object(dict(arguments), schema)
        try:
            text = orjson.dumps(redacted, default=str, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # what orjson cannot write (an integer beyond 64 bits): the standard library can
            text = json.dumps(redacted, default=str, ensure_ascii=False).encode()
        if len(text) <= self.max_bytes:
            return redacted
        # Cut on a character boundary: the prefix stays valid UTF-8 text.
        prefix = text[: self.max_bytes].decode("utf-8", errors="ignore")
        return {TRUNCATED_KEY: prefix, "bytes": len(text)}

    def _value(self, value: Any, schema: Mapping[str, Any] | None) -> Any:
        if isinstance(value, dict):
            return self._object(value, schema)
        if isinstance(value, list):
            items = schema.get("items") if isinstance(schema, Mapping) else None
            return [self._value(v, items if isinstance(items, Mapping) else None) for v in value]
        return value

    def _object(self, value: dict[Any, Any], schema: Mapping[str, Any] | None) -> dict[Any, Any]:
        if _is_mapping(schema):
            properties, extra = schema.get("properties"), schema.get("additionalProperties")
            if not _is_mapping(properties):
                properties = {}
        else:
            properties, extra = {}, None
        known, fields = self._known, self.fields
        out: dict[Any, Any] = {}
        # Once per argument of every recorded call, on the writer's thread: the secret checks (schema, then
        # name) are inline.
        for key, item in value.items():
            sub = properties.get(key, extra)
            if type(sub) is not dict and not isinstance(sub, Mapping):  # _is_mapping, inline
                sub = None
            elif sub.get("format") == "password" or sub.get("writeOnly") is True:
                out[key] = REDACTED
                continue
            if isinstance(key, str):
                # Argument names repeat call after call: their verdict is remembered, up to a bound (clients
                # choose the names).
                named = known.get(key)
                if named is None:
                    named = _norm(key) in fields
                    if len(known) < _KNOWN_NAMES:
                        known[key] = named
                if named:
                    out[key] = REDACTED
                    continue
            out[key] = self._value(item, sub) if isinstance(item, _CONTAINERS) else item
        return out


def _is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
    # type() first: schemas are dicts, and the ABC check costs more than the rest of a redaction.
    return type(value) is dict or isinstance(value, Mapping)
