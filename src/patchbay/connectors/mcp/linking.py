"""``auth = "user_oauth"``: whose linked account reads the upstream's lists, and what is published before anyone linked.

An upstream behind per-person accounts answers nothing without one, so its lists are read with a person's linked
account: ``list_with`` names whose, else the account linked to this connector most recently refreshed. Until the
first person links, the connector is up and publishes one tool, ``connect``, whose call answers with the link page
the way approvals do (URL elicitation, an ``input_required`` link, or a link in the result). When an account is
linked here (the link page's callback) the connector is told at once; a link made on another replica is found by
the periodic re-list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from patchbay.auth.principal import Principal
from patchbay.connectors.mcp.proxy import Proxy, Unlinked
from patchbay.context import Context
from patchbay.definitions import Tool, ToolAnnotations, ToolResult
from patchbay.links import LinkError

if TYPE_CHECKING:
    from patchbay.links.hub import LinkHub

CONNECT = "connect"


class NobodyLinked(LinkError):
    """No account is linked to this connector yet (or not the one ``list_with`` names): its lists cannot be read."""


async def lister(hub: LinkHub, connector: str, list_with: str | None) -> Principal:
    """The person whose linked account reads the lists.

    Raises:
        NobodyLinked: nobody linked an account to ``connector`` yet.
    """
    if list_with is not None:
        return _person(f"user:{list_with}")
    accounts = await hub.run(hub.store.accounts, None, connector)
    if not accounts:
        raise NobodyLinked(
            f"no account is linked yet: its tools appear once someone links one at {hub.link_url(connector)}"
        )
    newest = max(accounts, key=lambda account: account.updated_at)
    return _person(newest.subject)


def _person(subject: str) -> Principal:
    return Principal(subject=subject, kind="user", username=subject.removeprefix("user:"))


def connect_tool(name: str, proxy: Proxy, linked: Callable[[], None]) -> Tool:
    """``connect``: the one tool of a connector nobody has linked yet; its call offers the caller the link page."""

    async def call(arguments: dict[str, Any], ctx: Context) -> ToolResult:
        try:
            await proxy.credentials_of(ctx)
        except Unlinked as needed:
            answer = needed.answer
            return ToolResult(answer["content"], is_error=bool(answer["isError"]), meta=answer["_meta"])
        linked()  # the caller is linked: their account can list now (a link made on another replica)
        text = f"Your {name} account is linked. Its tools are being listed now; ask for the tool list again."
        return ToolResult([{"type": "text", "text": text}])

    return Tool(
        name=CONNECT,
        description=f"Link your {name} account to use its tools.",
        input_schema={"type": "object", "properties": {}},
        handler=call,
        title=f"Connect {name}",
        annotations=ToolAnnotations(read_only=True, destructive=False, idempotent=True, open_world=False),
    )
