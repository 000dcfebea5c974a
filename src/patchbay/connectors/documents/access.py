"""Access lists on documents and who the caller is.

A document's access list is a set of entries: ``user:<subject>``, ``role:<role>``, or ``*`` (anyone signed in).
An empty list means anyone who may call the tools may read the document.

The caller comes from ``Context.principal``. Patchbay's sign-in work will put a principal object there; this
module reads it duck-typed, so the two need only agree on this shape (attributes or mapping keys):

    subject: str              the person's stable id ("alice", an email, an IdP "sub")
    roles:   iterable of str  the roles or groups they hold ("hr", "engineering")

Until sign-in exists the principal is None: documents with an access list are then hidden, unless the source
says ``public = true``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

ANYONE_SIGNED_IN = "*"


@runtime_checkable
class Principal(Protocol):
    """The shape the documents connector reads from ``Context.principal``."""

    @property
    def subject(self) -> str: ...

    @property
    def roles(self) -> Iterable[str]: ...


def principal_tokens(principal: Any) -> frozenset[str] | None:
    """The access-list entries ``principal`` satisfies; None when nobody is signed in."""
    if principal is None:
        return None
    if isinstance(principal, Mapping):
        subject, roles = principal.get("subject"), principal.get("roles") or ()
    else:
        subject, roles = getattr(principal, "subject", None), getattr(principal, "roles", None) or ()
    tokens = {ANYONE_SIGNED_IN}
    if subject:
        tokens.add(f"user:{subject}")
    tokens.update(f"role:{role}" for role in roles if isinstance(role, str) and role)
    return frozenset(tokens)


def may_read(acl: Iterable[str], public: bool, tokens: frozenset[str] | None) -> bool:
    """The rule search and fetch apply (in SQL for search; here for fetch and resources)."""
    entries = set(acl)
    if not entries:
        return True
    if tokens is None:
        return public
    return bool(entries & tokens)
