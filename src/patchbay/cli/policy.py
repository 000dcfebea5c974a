"""``patchbay policy``: what the [[policy]] rules decide for one caller and tool (explain), and a summary (check)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from patchbay.cli.common import AdminDemoOpt, admin_config, err, load_settings
from patchbay.cli.users import auth_store
from patchbay.errors import ConfigError, ConnectorError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from patchbay.auth.principal import Principal
    from patchbay.settings import Settings

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="patchbay.toml")]
app = typer.Typer(help="Explain and check the [[policy]] rules.", no_args_is_help=True)
out = Console(highlight=False)


@app.command("explain")
def explain(
    tool: Annotated[str, typer.Option("--tool", "-t", help="The tool's public name")],
    user: Annotated[str | None, typer.Option("--user", "-u", help="A local user (roles from the store)")] = None,
    key: Annotated[str | None, typer.Option("--key", "-k", help="An API key's name")] = None,
    anonymous: Annotated[bool, typer.Option("--anonymous", help="A caller that has not signed in")] = False,
    client: Annotated[str | None, typer.Option("--client", help="The OAuth client's id or name")] = None,
    scope: Annotated[list[str] | None, typer.Option("--scope", help="Token scopes (default: default_scopes)")] = None,
    args: Annotated[str, typer.Option("--args", "-a", help="The call's arguments, a JSON object")] = "{}",
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON")] = False,
    config: ConfigOpt = None,
    demo: AdminDemoOpt = False,
) -> None:
    """Say whether the caller may call TOOL with these arguments (allow, deny or approve), which rule decided and
    why, and whether the tool is in the caller's tools/list."""
    config = admin_config(config, demo)
    if sum((user is not None, key is not None, anonymous)) != 1:
        _fail("give exactly one of --user NAME, --key NAME or --anonymous")
    try:
        arguments = json.loads(args)
    except json.JSONDecodeError as exc:
        _fail(f"--args: not JSON ({exc})")
    if not isinstance(arguments, dict):
        _fail("--args: must be a JSON object, e.g. '{\"id\": 3}'")
    settings = load_settings(config)
    principal = None if anonymous else _principal(settings, config, user, key, client, scope)
    decision, listed = _decide(settings, tool, principal, arguments)
    if as_json:
        answer = {"effect": decision.effect, "rule": decision.rule, "reason": decision.reason, "listed": listed}
        typer.echo(json.dumps(answer))
        return
    who = "anonymous" if principal is None else principal.subject
    out.print(f"[bold]{decision.effect}[/]: {escape(who)} calling {escape(tool)}")
    out.print(f"  rule:   {escape(decision.rule)}")
    out.print(f"  reason: {escape(decision.reason)}")
    out.print(f"  listed: {'yes' if listed else 'no'} (in this caller's tools/list)")


@app.command("check")
def check(config: ConfigOpt = None) -> None:
    """Validate the rules and print a summary; warn about roles nobody has."""
    settings = load_settings(config)
    gate = settings.gate
    out.print(f"{len(settings.policy)} rules; default {gate.default}; writes {gate.writes} (global)")
    for index, rule in enumerate(settings.policy):
        name = rule.id or f"policy[{index}]"
        when = f" when {', '.join(rule.when)}" if rule.when else ""
        line = f"  {name}: {rule.effect} {', '.join(rule.subjects)} → {', '.join(rule.tools)}{when}"
        out.print(escape(line))
    for connector in settings.connectors:
        if connector.writes is not None:
            out.print(f"  connector {escape(connector.name)}: writes {connector.writes}")
    roles = {s[5:] for rule in settings.policy for s in (*rule.subjects, *rule.except_) if s.startswith("role:")}
    if roles and settings.auth.mode == "none":
        err.print(
            '[bold yellow]warning[/]: [auth] mode = "none": every caller is anonymous, so only "*" and '
            '"anonymous" subjects ever match'
        )
        return
    if roles:
        with auth_store(config) as engine:
            unknown = sorted(roles - _known_roles(settings, engine))
        for role in unknown:
            err.print(f"[bold yellow]warning[/]: no user, API key or IdP role map has the role {escape(role)!r}")


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error[/]: {escape(message)}", highlight=False)
    raise typer.Exit(2)


def _principal(
    settings: Settings,
    config: Path | None,
    user: str | None,
    key: str | None,
    client: str | None,
    scope: list[str] | None,
) -> Principal:
    from patchbay.auth.clients import Clients
    from patchbay.auth.keys import ApiKeys
    from patchbay.auth.principal import Principal
    from patchbay.auth.users import Users

    scopes = frozenset(scope or settings.auth.default_scopes)
    with auth_store(config) as engine:
        client_id = client_name = client
        if client is not None:
            found = next((c for c in Clients(engine).list() if client in (c.client_id, c.name)), None)
            if found is not None:
                client_id, client_name = found.client_id, found.name
        if key is not None:
            view = next((k for k in ApiKeys(engine).list() if k.name == key and not k.revoked), None)
            if view is None:
                _fail(f"--key: no live API key is named {key!r} (see `patchbay keys list`)")
            return Principal(f"key:{key}", "api_key", frozenset(scope or view.scopes), frozenset(view.roles))
        assert user is not None
        found_user = Users(engine).by_name(user)
        if found_user is None:
            _fail(f"--user: no user is named {user!r} (see `patchbay users list`)")
        roles = found_user.roles
    return Principal(f"user:{user}", "user", scopes, roles, user, client_id, client_name=client_name)


def _decide(settings: Settings, tool: str, principal: Principal | None, arguments: dict[str, Any]) -> Any:
    from patchbay.app import Runtime
    from patchbay.auth.access import ToolAccessPolicy

    async def go() -> Any:
        runtime = Runtime(settings)
        await runtime.start(on_failure="report")
        try:
            gate = runtime.dispatcher.gate
            if settings.auth.mode != "none":  # as in the server: scopes and public tools are rules too
                gate.access = ToolAccessPolicy(None, tuple(settings.auth.default_scopes), advertise=True)
            if tool not in runtime.catalog.tools:
                _fail(f"--tool: no tool is named {tool!r} (see `patchbay tools`)")
            return gate.decide(tool, principal, arguments), gate.is_listed(tool, principal)
        finally:
            await runtime.stop()

    try:
        return asyncio.run(go())
    except (ConfigError, ConnectorError) as exc:
        _fail(f"cannot start: {exc}")


def _known_roles(settings: Settings, engine: Engine) -> set[str]:
    from patchbay.auth.keys import ApiKeys
    from patchbay.auth.users import Users

    roles = {r for user in Users(engine).list() for r in user.roles}
    roles |= {r for key in ApiKeys(engine).list() for r in key.roles}
    upstream = settings.auth.upstream
    if upstream is not None:
        roles |= {*upstream.default_roles, *(r for mapped in upstream.role_map.values() for r in mapped)}
    return roles
