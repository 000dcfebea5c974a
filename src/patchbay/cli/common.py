"""Shared CLI plumbing: loading settings with readable errors, and the demo configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from patchbay import settings as settings_mod
from patchbay.errors import ConfigError
from patchbay.settings import Settings
from patchbay.transport.security import HOSTED_CLIENT_ORIGINS

if TYPE_CHECKING:
    from rich.console import Console


class Stderr:
    """rich's console on stderr, made when something is first printed: a server that starts cleanly never loads
    rich (~50 modules; docs/performance.md, idle memory)."""

    def __init__(self) -> None:
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return self._console

    def print(self, *objects: Any, **options: Any) -> None:
        self.console.print(*objects, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


def escape(markup: str) -> str:
    """``rich.markup.escape``, importing rich only when a message is printed."""
    from rich.markup import escape as escape_markup

    return escape_markup(markup)


err = Stderr()
DEMO_DIR_ENV = "PATCHBAY_DEMO_DIR"
DEMO_HANDBOOK = Path(__file__).resolve().parent.parent / "demo" / "handbook"
# Stands for "the demo's settings" where a command passes its --config path on (see `admin_config`).
DEMO_CONFIG = Path("<demo>")
AdminDemoOpt = Annotated[
    bool, typer.Option("--demo", help="Use the store of `patchbay serve --demo` (make demo), in $PATCHBAY_DEMO_DIR")
]


def admin_config(config: Path | None, demo: bool) -> Path | None:
    """The ``--config`` an admin command (audit, manifest, approvals, users, policy) goes on with: with ``--demo``,
    the demo server's settings and store. Exits (code 2) for both options at once, or a demo that never ran."""
    if not demo:
        return config
    if config is not None:
        err.print("[bold red]--demo and --config[/]: give one of them", highlight=False)
        raise typer.Exit(2)
    store = demo_dir() / "demo.db"
    if not store.is_file():
        err.print(
            f"[bold red]no demo store[/] at {escape(str(store))}: start the demo first (`make demo` or "
            f"`patchbay serve --demo`), from this folder or with {DEMO_DIR_ENV} set as it was",
            highlight=False,
        )
        raise typer.Exit(2)
    return DEMO_CONFIG


def demo_config() -> dict[str, Any]:
    from patchbay.connectors.sql import demo_crm  # the SQL stack loads only when the demo runs

    return {
        "server": {
            "name": "Patchbay demo",
            # The demo is there to be tried from ChatGPT and Claude, and `patchbay doctor --local` checks their web
            # origins; a configured server allows them once public_url is public (docs/doctor.md). Host stays
            # loopback-only, which is what stops DNS rebinding.
            "allowed_origins": list(HOSTED_CLIENT_ORIGINS),
            "instructions": (
                "A demo Kanban board: list boards, search and read cards (read-only tools), and create, update, "
                "move or delete cards (write tools). Card ids come from the list and search tools. "
                "search and fetch read the Fernhill Robotics company handbook (leave, expenses, travel, security). "
                "crm_* tools query a sample CRM database (customers, orders, tickets) and close or reopen tickets."
            ),
        },
        "connectors": [
            {"name": "kanban", "type": "kanban", "prefix": "", "seed": True},
            # search + fetch over the bundled handbook, named exactly as ChatGPT deep research expects.
            {
                "name": "handbook",
                "type": "documents",
                "prefix": "",
                "url_template": "https://intranet.example.com/handbook/{path_noext}",
                "sources": [{"name": "handbook", "folder": str(DEMO_HANDBOOK)}],
            },
            # A sample CRM (customers, orders, tickets) in SQLite: crm_query reads it, crm_close_ticket writes.
            demo_crm.demo_connector(),
        ],
    }


def demo_dir() -> Path:
    return Path(os.environ.get(DEMO_DIR_ENV, ".patchbay-demo")).resolve()


def load_settings(config: Path | None, *, demo: bool = False, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from ``config`` (or the demo), exiting with the error message (code 2) when invalid."""
    try:
        if demo or config == DEMO_CONFIG:
            data = demo_config()
            folder = demo_dir()
            folder.mkdir(parents=True, exist_ok=True)
            data["store"] = {"url": f"sqlite:///{folder / 'demo.db'}"}
            env_applied = settings_mod._apply_env(data, os.environ)
            _merge(data, overrides or {})  # command-line flags win over the environment, as with a config file
            return settings_mod.from_dict(data, source="<demo>", base_dir=folder, env_sources=env_applied)
        path = config
        if path is None and Path("patchbay.toml").is_file():
            path = Path("patchbay.toml")
        if path is None:
            raise ConfigError(
                "no config file: pass --config PATH, run `patchbay init` to write patchbay.toml, "
                "or try `patchbay serve --demo`"
            )
        loaded = settings_mod.load(path)
        if overrides:
            data = loaded.model_dump(exclude={"source", "base_dir"}, exclude_defaults=True)
            data["connectors"] = [{**c.model_dump(exclude_none=True), **c.options} for c in loaded.connectors]
            _merge(data, overrides)
            return settings_mod.from_dict(data, source=loaded.source, base_dir=loaded.base_dir)
        return loaded
    except ConfigError as exc:
        err.print(f"[bold red]config error[/]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None


def check_store(settings: Settings) -> None:
    """Exit (code 2) naming the folder and the setting when the store is a SQLite file in a missing folder."""
    folder = _sqlite_folder(settings.store_url)
    if folder is None or folder.is_dir():
        return
    origin = "PATCHBAY_STORE__URL" if os.environ.get("PATCHBAY_STORE__URL") else settings.source
    err.print(
        f"[bold red]store error[/]: the folder of store.url does not exist: {escape(str(folder))} "
        f"(store.url = {escape(repr(settings.store.url))}, from {escape(origin)}). Create the folder, or set "
        "store.url to a file in an existing folder; a relative path is relative to the config file's folder.",
        highlight=False,
    )
    raise typer.Exit(2)


def _sqlite_folder(url: str) -> Path | None:
    # Parsed by hand: serving without sign-in imports no SQLAlchemy (start-up time). SQLite creates a database
    # file but never its folder, and then says only "unable to open database file".
    scheme, sep, rest = url.partition(":///")
    path = rest.partition("?")[0]
    if not sep or scheme.split("+")[0] != "sqlite" or path in ("", ":memory:") or "mode=memory" in url:
        return None
    return Path(path).parent


def _merge(data: dict[str, Any], overrides: dict[str, Any]) -> None:
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
