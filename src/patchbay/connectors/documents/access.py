"""Access lists on documents and who the caller is.

A document's access list is a set of entries: ``user:<name>``, ``key:<api key name>``, ``role:<role>``, or ``*``
(anyone signed in). An empty list means anyone who may call the tools may read the document.

The caller is ``Context.principal`` (``patchbay.auth.principal.Principal``), read duck-typed (attributes or
mapping keys) so tests and plug-ins can pass their own:

    subject: str              "user:alice" (local account), "key:ci" (API key), or an external IdP's "sub"
    roles:   iterable of str  the roles the person holds ("hr", "engineering")

A subject with a ``user:`` or ``key:`` prefix is its own entry; any other subject (an external ``sub``) is
matched as ``user:<sub>``. Until sign-in is configured the principal is None: documents with an access list are
then hidden, unless the source says ``public = true``.
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
    if isinstance(subject, str) and subject:
        tokens.add(subject if subject.startswith(("user:", "key:")) else f"user:{subject}")
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
