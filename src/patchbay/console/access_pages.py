"""The Access page's lists (users, API keys, OAuth clients) a page at a time: at most ``PAGE_SIZE`` rows, keyset
pages over a unique sort key, and a filter on the names, so a team with thousands of accounts or registered
clients gets a short page, as the Audit and Tools pages do.

A page link carries ``after``: the sort key of the last row of the page before it, as base64url JSON (clients sort
newest first by ``(created_at, client_id)``, so their key is a pair). A link that does not decode is refused with
a precise message rather than silently showing the first page.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, Engine, or_, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from patchbay.auth.clients import Client, client_view
from patchbay.auth.keys import KeyView, key_view
from patchbay.auth.users import UserView, user_view
from patchbay.console.access_data import FormError
from patchbay.store.models import AuthApiKey, AuthClient, AuthUser

__all__ = ["PAGE_SIZE", "Listing", "clients", "keys", "users"]

PAGE_SIZE = 50
MAX_FILTER = 200
T = TypeVar("T")


@dataclass(frozen=True)
class Listing(Generic[T]):
    rows: list[T]
    query: str
    prev_url: str | None
    next_url: str | None


@dataclass(frozen=True)
class _Order:
    """A list's sort: ``columns`` (unique together), newest first when ``descending``."""

    model: Any
    columns: tuple[InstrumentedAttribute[Any], ...]
    descending: bool
    searched: tuple[InstrumentedAttribute[Any], ...]
    view: Callable[[Any], Any]
    path: str


_USERS = _Order(AuthUser, (AuthUser.username,), False, (AuthUser.username, AuthUser.display_name), user_view, "")
_KEYS = _Order(AuthApiKey, (AuthApiKey.name,), False, (AuthApiKey.name,), key_view, "/keys")
_CLIENTS = _Order(
    AuthClient,
    (AuthClient.created_at, AuthClient.client_id),
    True,
    (AuthClient.name, AuthClient.client_id),
    client_view,
    "/clients",
)


def users(engine: Engine, query: str, after: str, size: int = PAGE_SIZE) -> Listing[UserView]:
    """Users by name whose username or display name contains ``query``. Raises FormError: ``after`` is damaged."""
    return _listing(engine, _USERS, query, after, size)


def keys(engine: Engine, query: str, after: str, size: int = PAGE_SIZE) -> Listing[KeyView]:
    """API keys by name containing ``query``. Raises FormError: ``after`` is damaged."""
    return _listing(engine, _KEYS, query, after, size)


def clients(engine: Engine, query: str, after: str, size: int = PAGE_SIZE) -> Listing[Client]:
    """OAuth clients, newest first, whose name or id contains ``query``. Raises FormError: ``after`` is damaged."""
    return _listing(engine, _CLIENTS, query, after, size)


def _listing(engine: Engine, order: _Order, query: str, after: str, size: int) -> Listing[Any]:
    query = query.strip()[:MAX_FILTER]
    cursor = _decode(after, len(order.columns)) if after else None
    key = tuple_(*order.columns)
    sort = [c.desc() if order.descending else c.asc() for c in order.columns]
    backwards = [c.asc() if order.descending else c.desc() for c in order.columns]
    where: list[ColumnElement[bool]] = []
    if query:
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(or_(*(c.ilike(pattern, escape="\\") for c in order.searched)))
    with Session(engine) as session:
        forward = select(order.model).where(*where)
        if cursor is not None:
            forward = forward.where(key < cursor if order.descending else key > cursor)
        found = list(session.scalars(forward.order_by(*sort).limit(size + 1)))
        before: list[Any] = []
        if cursor is not None:  # the previous page ends at the cursor's row; its own cursor is the row before
            back = select(order.model).where(*where, key >= cursor if order.descending else key <= cursor)
            before = list(session.scalars(back.order_by(*backwards).limit(size + 1)))
        rows = [order.view(r) for r in found[:size]]
        next_key = _key(found[size - 1], order) if len(found) > size else None
        prev_key = None if cursor is None else (_key(before[size], order) if len(before) > size else ())
    return Listing(rows, query, _url(order, query, prev_key), _url(order, query, next_key))


def _key(row: Any, order: _Order) -> tuple[Any, ...]:
    return tuple(getattr(row, c.key) for c in order.columns)


def _url(order: _Order, query: str, key: Sequence[Any] | None) -> str | None:
    """The address of a page: ``key`` is the cursor (``()``: the first page; None: no such page)."""
    if key is None:
        return None
    params = {"q": query} if query else {}
    if key:
        params["after"] = base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")
    return f"/admin/access{order.path}" + (f"?{urlencode(params)}" if params else "")


def _decode(after: str, width: int) -> tuple[Any, ...]:
    """Raises FormError: ``after`` is not a cursor of this list (a link that was cut or edited)."""
    damaged = FormError("after", "this page link is damaged: open the list again from its first page")
    if len(after) > 4096:
        raise damaged
    try:
        value = json.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)))
    except (binascii.Error, ValueError):
        raise damaged from None
    if not isinstance(value, list) or len(value) != width:
        raise damaged
    if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
        raise damaged
    return tuple(value)
