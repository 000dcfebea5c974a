"""JSON-RPC 2.0 codes and the MCP-reserved ones (MCP 2026-07-28 basic/index: error code allocation)."""

from __future__ import annotations

from typing import Any, Final

from patchbay.errors import RpcError

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
# Legacy range: session and resource errors used by 2025-era SDKs.
SESSION_NOT_FOUND: Final = -32001
RESOURCE_NOT_FOUND_LEGACY: Final = -32002
URL_ELICITATION_REQUIRED: Final = -32042
# MCP 2026-07-28 reserved range.
HEADER_MISMATCH: Final = -32020
MISSING_CLIENT_CAPABILITY: Final = -32021
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022


def error_response(request_id: Any, error: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def result_response(request_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def invalid_params(message: str, data: Any = None) -> RpcError:
    return RpcError(INVALID_PARAMS, message, data, status=400)


def method_not_found(method: str, *, status: int = 200) -> RpcError:
    return RpcError(METHOD_NOT_FOUND, f"Method not found: {method}", status=status)
