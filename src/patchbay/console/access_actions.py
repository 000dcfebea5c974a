"""The Access page's forms: every change to who may reach the server, each recorded in the audit trail.

Changing roles, disabling or enabling a user, adding one, creating or revoking a key, revoking a client, its grants
or a linked account are ``dangerous``: the console asks for a recent sign-in first. Unlocking is not (it only lifts
a lock that a correct password lifts too). A created key is shown on the answer to its form, once: it is not
stored, so no later page can show it again. No record, notice or error holds a password, key or token.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from patchbay.auth.body import Form
from patchbay.console import access_data
from patchbay.console.access_data import FormError
from patchbay.console.core import LOCAL_COOKIE, Admin, Console, Page
from patchbay.console.signin import COOKIES

USERS, KEYS, CLIENTS, LINKS = "/access", "/access/keys", "/access/clients", "/access/links"
# The Access page's sections: (key, title, address), in the order of its local navigation.
SECTIONS = (
    ("users", "Users", "/admin/access"),
    ("keys", "API keys", "/admin/access/keys"),
    ("clients", "OAuth clients", "/admin/access/clients"),
    ("links", "Linked accounts", "/admin/access/links"),
    ("policy", "Policy playground", "/admin/access/policy"),
)


def register(console: Console) -> None:
    auth = console.runtime.auth
    if auth is None:
        return  # no accounts to change; the pages say why
    core = auth.core

    def done(request: Request, who: Admin, path: str, event: str, notice: str, **fields: Any) -> Response:
        console.audit(f"console.access.{event}", by=who.username, outcome="ok", **fields)
        return console.redirect(request, path, notice)

    def refused(request: Request, who: Admin, path: str, event: str, notice: str, **fields: Any) -> Response:
        console.audit(f"console.access.{event}", by=who.username, outcome="refused", **fields)
        return console.redirect(request, path, notice)

    def settle(
        request: Request, who: Admin, path: str, event: str, found: bool, notice: str, missing: str, **fields: Any
    ) -> Response:
        """A one-step change: ``done`` with ``notice`` and ``fields`` when the store ``found`` what it names,
        ``refused`` with ``missing`` (and no fields: they were not a real name) when not."""
        if found:
            return done(request, who, path, event, notice, **fields)
        return refused(request, who, path, event, missing)

    @console.action("/access/users/add", dangerous=True)
    async def add_user(request: Request, who: Admin, form: Form) -> Response:
        username = (form.get("username") or "").strip()
        try:
            roles = access_data.roles(form.get("roles"))
            await core.run(core.users.add, username, form.get("password") or "", roles=roles)
        except (FormError, ValueError) as exc:  # Users.add says which rule a name or password breaks
            return refused(request, who, USERS, "user_add", f"Not added: {exc}.", username=username[:200])
        return done(request, who, USERS, "user_add", f"Added {username}.", username=username, roles=roles)

    @console.action("/access/users/roles", dangerous=True)
    async def set_roles(request: Request, who: Admin, form: Form) -> Response:
        username = form.get("username") or ""
        try:
            roles = access_data.roles(form.get("roles"))
        except FormError as exc:
            return refused(request, who, USERS, "user_roles", f"Roles not changed: {exc}.", username=username[:200])
        if username == who.username and "admin" not in roles and "admin" in who.roles:
            note = "You cannot take the admin role from yourself here; ask another admin."
            return refused(request, who, USERS, "user_roles", note, username=username)
        changed = await core.run(core.users.set_roles, username, roles)
        if changed is None:
            return refused(request, who, USERS, "user_roles", f"No user is named {username[:200]!r}.")
        note = f"{username} now has the roles: {', '.join(roles) or 'none'}."
        if changed.federated:
            note += " Their identity provider sets their roles again at their next sign-in."
        return done(request, who, USERS, "user_roles", note, username=username, roles=roles)

    async def set_disabled(request: Request, who: Admin, form: Form, disabled: bool) -> Response:
        username = form.get("username") or ""
        event = "user_disable" if disabled else "user_enable"
        if disabled and username == who.username:
            return refused(request, who, USERS, event, "You cannot disable yourself.", username=username)
        user = await core.run(core.users.set_disabled, username, disabled)
        if user is None:
            return refused(request, who, USERS, event, f"No user is named {username[:200]!r}.")
        if not disabled:
            return done(request, who, USERS, event, f"Enabled {username}.", username=username)
        revoked = await core.run(core.grants.revoke_user, user.id)
        note = f"Disabled {username}; revoked {revoked} token(s)."
        return done(request, who, USERS, event, note, username=username, tokens=revoked)

    @console.action("/access/users/disable", dangerous=True)
    async def disable(request: Request, who: Admin, form: Form) -> Response:
        return await set_disabled(request, who, form, True)

    @console.action("/access/users/enable", dangerous=True)
    async def enable(request: Request, who: Admin, form: Form) -> Response:
        return await set_disabled(request, who, form, False)

    @console.action("/access/users/unlock")
    async def unlock(request: Request, who: Admin, form: Form) -> Response:
        username = form.get("username") or ""
        found = await core.run(core.users.unlock, username)
        missing = f"No user is named {username[:200]!r}."
        return settle(request, who, USERS, "user_unlock", found, f"Unlocked {username}.", missing, username=username)

    @console.action("/access/keys/create", dangerous=True)
    async def create_key(request: Request, who: Admin, form: Form) -> Response:
        name = (form.get("name") or "").strip()
        try:
            roles = access_data.roles(form.get("roles"))
            scopes = access_data.roles(form.get("scopes"))  # scope tokens follow the same rule
            lifetime = access_data.days(form.get("days"))
            view, secret = await core.run(core.keys.create, name, scopes, roles, lifetime)
        except (FormError, ValueError) as exc:
            return refused(request, who, KEYS, "key_create", f"No key created: {exc}.", key_name=name[:100])
        console.audit("console.access.key_create", by=who.username, key_name=name, roles=roles, outcome="ok")
        from patchbay.console import access_pages  # SQLAlchemy: only once sign-in (core) is on

        listed = await core.run(access_pages.keys, core.engine, "", "")
        page = Page(
            "access_keys.html",
            {
                "title": "Access",
                "section": "keys",
                "sections": SECTIONS,
                "off": None,
                "keys": listed.rows,
                "listing": listed,
                "created": {"name": view.name, "secret": secret},
            },
        )
        return console.render(request, page, who, _session(request))

    @console.action("/access/keys/revoke", dangerous=True)
    async def revoke_key(request: Request, who: Admin, form: Form) -> Response:
        name = form.get("name") or ""
        found = await core.run(core.keys.revoke, name)
        missing = f"No live key is named {name[:100]!r}."
        return settle(request, who, KEYS, "key_revoke", found, f"Revoked the key {name}.", missing, key_name=name)

    @console.action("/access/clients/revoke", dangerous=True)
    async def revoke_client(request: Request, who: Admin, form: Form) -> Response:
        client_id = form.get("client_id") or ""
        if not await core.run(core.clients.revoke, client_id):
            return refused(request, who, CLIENTS, "client_revoke", "No active client has that id.")
        tokens = await core.run(core.grants.revoke_client, client_id)
        note = f"Revoked the client and {tokens} token(s); its next token request is refused."
        return done(request, who, CLIENTS, "client_revoke", note, client_id=client_id, tokens=tokens)

    @console.action("/access/clients/revoke-grants", dangerous=True)
    async def revoke_grants(request: Request, who: Admin, form: Form) -> Response:
        client_id = form.get("client_id") or ""
        grant_id = form.get("grant_id") or ""
        back = f"/access/client?id={_quote(client_id)}"
        if grant_id:
            await core.run(core.grants.revoke_grant, grant_id)
            note = "Revoked the grant: its tokens no longer work; the person signs in again to get new ones."
            return done(request, who, back, "grant_revoke", note, client_id=client_id, grant_id=grant_id)
        tokens = await core.run(core.grants.revoke_client, client_id)
        note = f"Revoked {tokens} token(s) of this client; people sign in again (the client stays registered)."
        return done(request, who, back, "client_grants_revoke", note, client_id=client_id, tokens=tokens)

    @console.action("/access/links/revoke", dangerous=True)
    async def revoke_link(request: Request, who: Admin, form: Form) -> Response:
        subject = form.get("subject") or ""
        connector = form.get("connector") or None
        store = access_data.link_store(core.engine)
        removed = await core.run(store.remove_accounts, subject, connector)
        if not removed:
            return refused(request, who, LINKS, "link_revoke", "No such linked account.", subject=subject[:200])
        note = f"Removed {subject}'s link to {', '.join(removed)}; they are asked to link again on their next call."
        return done(request, who, LINKS, "link_revoke", note, subject=subject, connectors=removed)


def _session(request: Request) -> str:
    # The cookie the console checked this form's CSRF token against (the action ran, so it is there).
    return request.cookies.get(COOKIES.session) or request.cookies.get(LOCAL_COOKIE) or ""


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
