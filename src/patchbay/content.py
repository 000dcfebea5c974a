"""Content items a tool, resource or prompt can return, as they go on the wire (MCP schema: ContentBlock)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any


def _b64(data: bytes | str) -> str:
    return data if isinstance(data, str) else base64.b64encode(data).decode("ascii")


@dataclass(frozen=True, slots=True)
class Text:
    """A text content item."""

    text: str
    meta: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        return _with_meta({"type": "text", "text": self.text}, self.meta)


@dataclass(frozen=True, slots=True)
class Image:
    """An image; ``data`` is raw bytes or a base64 string."""

    data: bytes | str
    mime_type: str = "image/png"
    meta: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        return _with_meta({"type": "image", "data": _b64(self.data), "mimeType": self.mime_type}, self.meta)


@dataclass(frozen=True, slots=True)
class Audio:
    """Audio; ``data`` is raw bytes or a base64 string."""

    data: bytes | str
    mime_type: str = "audio/wav"
    meta: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        return _with_meta({"type": "audio", "data": _b64(self.data), "mimeType": self.mime_type}, self.meta)


@dataclass(frozen=True, slots=True)
class EmbeddedResource:
    """A resource carried inline: give ``text`` or ``blob`` (bytes or base64)."""

    uri: str
    text: str | None = None
    blob: bytes | str | None = None
    mime_type: str | None = None
    meta: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "resource",
            "resource": resource_contents(self.uri, self.text, self.blob, self.mime_type),
        }


@dataclass(frozen=True, slots=True)
class ResourceLink:
    """A link to a resource the client may read (MCP 2025-06-18 resource_link)."""

    uri: str
    name: str
    description: str | None = None
    mime_type: str | None = None

    def to_wire(self) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "resource_link", "uri": self.uri, "name": self.name}
        if self.description:
            item["description"] = self.description
        if self.mime_type:
            item["mimeType"] = self.mime_type
        return item


Content = Text | Image | Audio | EmbeddedResource | ResourceLink
CONTENT_TYPES = (Text, Image, Audio, EmbeddedResource, ResourceLink)


def resource_contents(
    uri: str, text: str | None = None, blob: bytes | str | None = None, mime_type: str | None = None
) -> dict[str, Any]:
    """One entry of ``resources/read`` contents (TextResourceContents or BlobResourceContents)."""
    item: dict[str, Any] = {"uri": uri}
    if mime_type:
        item["mimeType"] = mime_type
    if blob is not None:
        item["blob"] = _b64(blob)
    else:
        item["text"] = text if text is not None else ""
    return item


def _with_meta(item: dict[str, Any], meta: dict[str, Any] | None) -> dict[str, Any]:
    if meta:
        item["_meta"] = meta
    return item
