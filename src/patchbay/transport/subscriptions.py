"""What one 2026-07-28 ``subscriptions/listen`` subscription is sent, whatever the transport (MCP 2026-07-28
basic/patterns/subscriptions): its acknowledgement first, then only the notification types its filter asked for,
each tagged with the subscription's id (the listen request's JSON-RPC id, unchanged)."""

from __future__ import annotations

from typing import Any

from patchbay.protocol import jsonrpc, versions

ACKNOWLEDGED = "notifications/subscriptions/acknowledged"
FLAGS = {
    "notifications/tools/list_changed": "toolsListChanged",
    "notifications/prompts/list_changed": "promptsListChanged",
    "notifications/resources/list_changed": "resourcesListChanged",
}


def listen_filter(params: dict[str, Any]) -> dict[str, Any]:
    """``params.notifications`` of a listen request.

    Raises:
        RpcError: it is not an object (-32602).
    """
    wanted = params.get("notifications") or {}
    if not isinstance(wanted, dict):
        raise jsonrpc.invalid_params("subscriptions/listen params.notifications must be an object")
    return wanted


def acknowledgement(wanted: dict[str, Any], subscription_id: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": ACKNOWLEDGED,
        "params": {"notifications": wanted, "_meta": {versions.META_SUBSCRIPTION_ID: subscription_id}},
    }


def for_subscription(
    wanted: dict[str, Any], subscription_id: Any, method: str, params: dict[str, Any]
) -> dict[str, Any] | None:
    """The message the subscription gets for a published notification, or None when its filter leaves it out
    (the server MUST NOT send types the client did not request)."""
    flag = FLAGS.get(method)
    if flag is not None:
        if not wanted.get(flag):
            return None
    elif method == "notifications/resources/updated":
        uris = wanted.get("resourceSubscriptions")
        if not isinstance(uris, list) or params.get("uri") not in uris:
            return None
    else:
        return None
    body = {**params, "_meta": {**(params.get("_meta") or {}), versions.META_SUBSCRIPTION_ID: subscription_id}}
    return {"jsonrpc": "2.0", "method": method, "params": body}


def closing_result(subscription_id: Any) -> dict[str, Any]:
    """The result that ends a subscription the server closes on its own (graceful closure)."""
    return {"resultType": "complete", "_meta": {versions.META_SUBSCRIPTION_ID: subscription_id}}
