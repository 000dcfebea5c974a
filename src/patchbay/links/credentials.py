"""What a connector asks at call time: the headers to send upstream for this caller, and under which identity.

``Credentials.headers_for(principal)`` answers ``(identity, headers)``: identity ``""`` for credentials shared by
every caller (none, static headers, client credentials) and ``"user:<name>"`` for a linked account, so a pool of
upstream sessions keyed by identity never hands one person's session to another. The caller's own token to
Patchbay is never among the headers: they come only from config, from tokens Patchbay obtained itself, or from
the person's linked account.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from patchbay.errors import PatchbayError

SHARED = ""


class LinkError(PatchbayError):
    """Credentials for a call cannot be had; ``str()`` is a sentence a person can act on, without secrets."""


class LinkRequired(LinkError):
    """The caller has not linked their account at the upstream (or the link expired and cannot be refreshed).

    ``url`` is Patchbay's own link page for the connector (never the upstream's authorization server: the person
    must be signed in to Patchbay so the link lands on their account). The connector offers it like an approval
    link: URL elicitation, an ``input_required`` link, or a link in the tool result.
    """

    def __init__(self, url: str, message: str) -> None:
        super().__init__(message)
        self.url = url
        self.message = message


class LinkUnavailable(LinkError):
    """The upstream's authorization server cannot be reached or refused Patchbay (not the person's doing)."""


@runtime_checkable
class Credentials(Protocol):
    """Upstream credentials of one connector (``credentials_for`` builds them from its options)."""

    async def headers_for(self, principal: Any) -> tuple[str, dict[str, str]]:
        """``(identity, headers)`` for a call made by ``principal`` (a ``Principal`` or None when anonymous).

        Raises:
            LinkRequired: ``user_oauth`` and this person has no usable link; offer ``url``.
            LinkUnavailable: a token could not be obtained (token endpoint down, client refused).
        """
        ...

    def invalidate(self, identity: str) -> None:
        """The upstream answered 401 for ``identity``: forget its access token so the next call refreshes it (or,
        when that fails, asks the person to link again)."""
        ...


class NoCredentials:
    """``auth = "none"``: nothing is added (besides configured static headers, when there are any)."""

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        self._headers = dict(headers or {})

    async def headers_for(self, principal: Any) -> tuple[str, dict[str, str]]:
        return SHARED, dict(self._headers)

    def invalidate(self, identity: str) -> None:
        return None


def subject_of(principal: Any) -> str | None:
    """The stable ``user:<name>`` of a signed-in person, or None (anonymous, API key, external token)."""
    subject = getattr(principal, "subject", None)
    kind = getattr(principal, "kind", None)
    if isinstance(subject, str) and kind == "user" and subject.startswith("user:"):
        return subject
    return None
