"""Per-tool access once sign-in is on: the ``securitySchemes`` each tool advertises, and the tool-level
challenge a call gets when its caller lacks what the tool needs.

OpenAI Apps SDK auth: a tool lists ``noauth`` (anonymous allowed) and/or ``oauth2`` with the scopes it needs,
at the top level and in ``_meta``; a refused call returns ``isError`` with ``_meta["mcp/www_authenticate"]``
holding an RFC 6750 challenge with both ``error`` and ``error_description`` (that is what opens ChatGPT's
account-linking UI). reference/mcp-requirements.md §5.5.
"""

from __future__ import annotations

from typing import Any

from patchbay.auth.principal import Principal
from patchbay.catalog import ToolAccess
from patchbay.definitions import ToolResult


class ToolAccessPolicy:
    def __init__(self, prm_url: str | None, default_scopes: tuple[str, ...], advertise: bool) -> None:
        self.prm_url = prm_url
        self.default_scopes = default_scopes
        self.advertise = advertise

    def schemes(self, access: ToolAccess) -> list[dict[str, Any]] | None:
        if not self.advertise:
            return None
        oauth2 = {"type": "oauth2", "scopes": list(access.scopes or self.default_scopes)}
        return [{"type": "noauth"}, oauth2] if access.public else [oauth2]

    def denied(self, name: str, access: ToolAccess | None, principal: Any) -> dict[str, Any] | None:
        """The finished ``tools/call`` result refusing the call, or None when the caller may go ahead."""
        if access is None or access.public:
            return None
        if isinstance(principal, Principal):
            missing = [s for s in access.scopes if s not in principal.scopes]
            if not missing:
                return None
            wanted = " ".join(dict.fromkeys([*principal.scopes, *access.scopes]))
            description = f"The tool '{name}' needs the scope(s): {' '.join(missing)}"
            return self._refusal(f"Permission required: {description}. Sign in again to grant it.", description, wanted)
        wanted = " ".join(access.scopes or self.default_scopes)
        description = "You need to sign in to use this tool"
        return self._refusal(f"Authentication required: {description.lower()}.", description, wanted)

    def _refusal(self, text: str, description: str, scope: str) -> dict[str, Any]:
        parts = []
        if self.prm_url:
            parts.append(f'resource_metadata="{self.prm_url}"')
        if scope:
            parts.append(f'scope="{scope}"')
        parts.append('error="insufficient_scope"')
        parts.append(f'error_description="{description}"')
        challenge = "Bearer " + ", ".join(parts)
        return ToolResult.error(text, meta={"mcp/www_authenticate": [challenge]}).to_wire()
