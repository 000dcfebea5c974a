"""OpenAPI 3.x content: the request body and the success response an operation sends and reads.

The media type is chosen once here (JSON first, then form, multipart, text, binary), and so is the success
response (200, 201 ... 2XX, any other 2xx, then ``default``). ``readOnly`` properties leave the request body and
``writeOnly`` ones the response (OpenAPI 3.1 §4.8.24.1).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

from patchbay.connectors.openapi.bodies import required_properties, unsendable_properties
from patchbay.connectors.openapi.context import Context, OperationError, is_ref, text
from patchbay.connectors.openapi.models import Body, Encoding, Operation, Success

SUCCESS_ORDER = ("200", "201", "202", "203", "204", "2XX", "2xx")
_BODY_ORDER = ("application/x-www-form-urlencoded", "multipart/form-data")


def choose_media(content: dict[str, Any]) -> str:
    """The media type Patchbay sends or reads: JSON (or any +json) first, then form, multipart, text, binary,
    else the first listed."""
    types = [str(media) for media in content]
    lowered = [media.split(";", 1)[0].strip().lower() for media in types]
    for rank in range(5):
        for original, media in zip(types, lowered, strict=True):
            if _media_rank(media) == rank:
                return original
    return types[0]


def _media_rank(media: str) -> int:
    if media == "application/json" or media.endswith("+json"):
        return 0
    if media in _BODY_ORDER:
        return 1 + _BODY_ORDER.index(media)
    if media.startswith("text/"):
        return 3
    return 4 if media == "application/octet-stream" else 5


def request_body(ctx: Context, node: Any, base: str) -> Body | None:
    located = ctx.documents.follow(node, base)
    body, base = located.node, located.base
    if not isinstance(body, dict):
        raise OperationError("the request body is not an object")
    content = body.get("content")
    if not isinstance(content, dict) or not content:
        return None
    media = choose_media(content)
    entry = content[media] if isinstance(content[media], dict) else {}
    raw = entry.get("schema")
    schema = default_schema(media) if raw is None else ctx.schemas.convert(raw, base, "the request body")
    converted = Body(
        media_type=media,
        schema=schema,
        required=body.get("required") is True,
        description=text(body.get("description")),
        encoding=encodings(entry.get("encoding"), media, openapi30=ctx.schemas.openapi30),
    )
    # An optional property the style cannot carry is left out of the tool's arguments (inputs.py); a required one
    # makes the operation uncallable.
    unsendable = unsendable_properties(converted, ctx.schemas.defs)
    for name in sorted(unsendable.keys() & required_properties(schema, ctx.schemas.defs)):
        raise OperationError(f"the request body's required property {name!r} cannot be sent: {unsendable[name]}")
    return converted


def default_schema(media: str) -> dict[str, Any]:
    lowered = media.lower()
    if lowered.startswith("text/"):
        return {"type": "string"}
    if "json" in lowered or lowered in _BODY_ORDER:
        return {}
    return {"type": "string", "contentMediaType": media}


def encodings(value: Any, media: str, *, openapi30: bool) -> dict[str, Encoding]:
    """The body's Encoding Objects by property. ``styled`` says whether ``style``/``explode`` apply: always for a
    form-urlencoded body (with query defaults); for multipart/form-data only in 3.1 and later, when one of
    ``style``, ``explode``, ``allowReserved`` is written (3.1.1 §4.8.15.1; the 3.0.3 Encoding Object: "SHALL be
    ignored if the request body media type is not application/x-www-form-urlencoded")."""
    if not isinstance(value, dict):
        return {}
    essence = media.split(";", 1)[0].strip().lower()
    multipart = essence.startswith("multipart/")
    out: dict[str, Encoding] = {}
    for prop, node in value.items():
        if not isinstance(node, dict):
            continue
        style = text(node.get("style")) or "form"
        explode = node.get("explode")
        written = any(key in node for key in ("style", "explode", "allowReserved"))
        out[str(prop)] = Encoding(
            content_type=text(node.get("contentType")) or None,
            style=style,
            explode=explode if isinstance(explode, bool) else style == "form",
            allow_reserved=node.get("allowReserved") is True,
            styled=not multipart or (written and not openapi30 and essence == "multipart/form-data"),
        )
    return out


def success_status(responses: dict[str, Any]) -> list[str]:
    """The statuses to try in order: 200, 201, 202, 203, 204, 2XX, any other 2xx, then default."""
    keys = [str(key) for key in responses]
    others = sorted(k for k in keys if len(k) == 3 and k.startswith("2") and k not in SUCCESS_ORDER)
    return [k for k in SUCCESS_ORDER if k in responses] + others + (["default"] if "default" in responses else [])


def success(ctx: Context, responses: Any, base: str) -> Success | None:
    if not isinstance(responses, dict):
        return None
    for status in success_status(responses):
        node = responses[status]
        if is_ref(node):
            shared = ctx.converted_once(ctx.successes, node, base, partial(response, ctx, status))
            found = replace(shared, status=status) if shared is not None else None
        else:
            found = response(ctx, status, node, base)
        if found is not None and (status != "default" or found.media_type is not None):
            return found
    return None


def response(ctx: Context, status: str, node: Any, base: str) -> Success | None:
    if not isinstance(node, dict):
        return None
    content = node.get("content")
    if not isinstance(content, dict) or not content:
        return Success(status, None, None)
    media = choose_media(content)
    entry = content[media]
    raw = entry.get("schema") if isinstance(entry, dict) else None
    schema = ctx.schemas.convert(raw, base, f"the {status} response") if raw is not None else None
    return Success(status, media, schema)


def finish(ctx: Context, operation: Operation) -> Operation:
    """Drop ``readOnly`` properties from the request body and ``writeOnly`` ones from the response, where the
    schema is an object (or a reference to one) that lists them directly: the cheap, common case."""
    body, done = operation.body, operation.success
    if body is not None:
        trimmed = without_flagged(ctx, body.schema, "readOnly")
        if trimmed is not body.schema:
            body = replace(body, schema=trimmed)
    if done is not None and done.schema is not None:
        trimmed = without_flagged(ctx, done.schema, "writeOnly")
        if trimmed is not done.schema:
            done = replace(done, schema=trimmed)
    if body is operation.body and done is operation.success:
        return operation
    return replace(operation, body=body, success=done)


def without_flagged(ctx: Context, schema: dict[str, Any], flag: str) -> dict[str, Any]:
    target = schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and len(schema) == 1 and ref.startswith("#/$defs/"):
        target = ctx.schemas.defs.get(ref[len("#/$defs/") :], schema)
    props = target.get("properties")
    if not isinstance(props, dict):
        return schema
    flagged = {name for name, sub in props.items() if isinstance(sub, dict) and sub.get(flag) is True}
    if not flagged:
        return schema
    out = {**target, "properties": {k: v for k, v in props.items() if k not in flagged}}
    if isinstance(target.get("required"), list):
        out["required"] = [name for name in target["required"] if name not in flagged]
    return out
