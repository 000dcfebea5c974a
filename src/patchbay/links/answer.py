"""How a call that needs a linked account answers: the link to Patchbay's own link page, offered the way the
client can take it (the way approvals are offered, patchbay.gate.approvals). Shared by every connector that uses
``auth = "user_oauth"``.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from patchbay.errors import RpcError
from patchbay.protocol.jsonrpc import URL_ELICITATION_REQUIRED
from patchbay.protocol.scope import InputRequired

if TYPE_CHECKING:
    from patchbay.context import Context
    from patchbay.links.credentials import LinkRequired

LINK_KEY = "patchbay_link"


def _declares_url_elicitation(ctx: Context) -> bool:
    elicitation = ctx.client_capabilities.get("elicitation")
    return isinstance(elicitation, dict) and "url" in elicitation


def link_answer(needed: LinkRequired, ctx: Context) -> dict[str, Any]:
    """As approvals answer (patchbay.gate.approvals): URL elicitation where the client declared it, else a tool
    result with the link that the model reads to the person.

    Raises:
        RpcError: -32042 for a 2025-11-25 client that declared URL-mode elicitation.
        InputRequired: for a 2026-07-28 client that declared it, until it answers.
    """
    message = needed.message
    if ctx.era == "legacy" and ctx.protocol_version >= "2025-11-25" and _declares_url_elicitation(ctx):
        elicitation = {"mode": "url", "elicitationId": f"link-{secrets.token_hex(8)}", "url": needed.url}
        elicitation["message"] = message
        raise RpcError(URL_ELICITATION_REQUIRED, "This call needs a linked account", {"elicitations": [elicitation]})
    if ctx.era == "modern" and _declares_url_elicitation(ctx):
        answer = ctx.input_answers.get(LINK_KEY)
        if answer is None:
            request = {"method": "elicitation/create", "params": {"mode": "url", "message": message, "url": needed.url}}
            raise InputRequired({LINK_KEY: request})
    text = f"{message} Open {needed.url} to link your account, then call the tool again."
    return {"content": [{"type": "text", "text": text}], "isError": False, "_meta": {"patchbay/link": needed.url}}
