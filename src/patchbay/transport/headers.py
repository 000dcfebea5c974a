"""MCP 2026-07-28 routing headers: ``MCP-Protocol-Version``, ``Mcp-Method``, ``Mcp-Name`` and ``Mcp-Param-*``.

Proxies and gateways route on these without parsing bodies, so a header that disagrees with the body is refused
with 400 and -32020 HeaderMismatch (MCP 2026-07-28 basic/transports/streamable-http).
"""

from __future__ import annotations

import base64
from typing import Any

from patchbay.errors import RpcError
from patchbay.protocol import jsonrpc

NAMED_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def _header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    raw = headers.get(name)
    if raw is None:
        return None
    value = raw.decode("latin-1").strip()
    # MCP 2026-07-28: values that are not safe ASCII arrive as =?base64?<b64>?=
    if value.startswith("=?base64?") and value.endswith("?="):
        try:
            return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
        except ValueError:
            raise _mismatch(f"{name.decode()} header is not valid base64") from None
    return value


def _mismatch(message: str) -> RpcError:
    return RpcError(jsonrpc.HEADER_MISMATCH, f"Header mismatch: {message}", status=400)


def check_routing_headers(headers: dict[bytes, bytes], method: str, params: dict[str, Any], version: str) -> None:
    header_version = _header(headers, b"mcp-protocol-version")
    if header_version != version:
        raise _mismatch(f"MCP-Protocol-Version header {header_version!r} does not match _meta version {version!r}")
    header_method = _header(headers, b"mcp-method")
    if header_method != method:
        raise _mismatch(f"Mcp-Method header value {header_method!r} does not match body value {method!r}")
    field = NAMED_METHODS.get(method)
    if field is not None:
        header_name = _header(headers, b"mcp-name")
        body_name = params.get(field)
        if header_name != body_name:
            raise _mismatch(f"Mcp-Name header value {header_name!r} does not match body value {body_name!r}")


def check_param_headers(headers: dict[bytes, bytes], header_params: dict[str, str], arguments: Any) -> None:
    arguments = arguments if isinstance(arguments, dict) else {}
    for suffix, arg in header_params.items():
        name = f"mcp-param-{suffix.lower()}".encode()
        value = _header(headers, name)
        if arg not in arguments or arguments[arg] is None:
            if value is not None:
                raise _mismatch(f"Mcp-Param-{suffix} header sent but argument {arg!r} is absent")
            continue
        if value is None:
            raise _mismatch(f"Mcp-Param-{suffix} header is required for argument {arg!r}")
        if not _same_value(value, arguments[arg]):
            raise _mismatch(f"Mcp-Param-{suffix} header value {value!r} does not match body value {arguments[arg]!r}")


def _same_value(header: str, body: Any) -> bool:
    if isinstance(body, bool):
        return header.lower() == str(body).lower()
    if isinstance(body, (int, float)):
        try:
            return float(header) == float(body)
        except ValueError:
            return False
    return header == str(body)
