"""``patchbay init``: write a commented starter config and an example tools module."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from patchbay.cli.common import err

STARTER = """# Patchbay configuration. Every key is documented in docs/configuration.md.
# Environment variables override keys: PATCHBAY_<SECTION>__<KEY>, e.g. PATCHBAY_SERVER__PORT=9000.

[server]
name = "My Patchbay"
# The address to bind. Keep 127.0.0.1 unless a proxy or tunnel on another host must reach it.
host = "127.0.0.1"
port = 8000
# The public URL people paste into ChatGPT or Claude (without /mcp), e.g. your tunnel's HTTPS URL.
# public_url = "https://mcp.example.com"
# Guidance for the model, shown to every client; put the key facts in the first 512 characters.
# instructions = "Tools for Acme's CRM. Look customers up by email before opening tickets."

[store]
# Patchbay's own state. A relative SQLite path is relative to this file.
url = "sqlite:///patchbay.db"

# Each [[connectors]] table adds a source of tools. Tool names get the prefix "<name>_" unless you set one.
[[connectors]]
name = "tools"
type = "python"
path = "tools.py"
prefix = ""
"""

TOOLS = '''"""Example tools. Each @tool function becomes an MCP tool; its signature is its input schema."""

from patchbay import Context, tool


@tool(read_only=True, open_world=False)
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(read_only=True, open_world=False, title="Greet someone")
async def greet(name: str, ctx: Context) -> str:
    """Say hello to someone by name."""
    await ctx.info(f"greeting {name}")
    return f"Hello, {name}!"
'''


def init(
    directory: Annotated[Path, typer.Argument(help="Where to write patchbay.toml and tools.py")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files")] = False,
) -> None:
    """Write a commented patchbay.toml and an example tools.py."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("patchbay.toml", STARTER), ("tools.py", TOOLS)):
        target = directory / name
        if target.exists() and not force:
            err.print(f"[yellow]kept[/] {escape(str(target))} (exists; use --force to overwrite)", highlight=False)
            continue
        target.write_text(text, encoding="utf-8")
        written.append(str(target))
    for path in written:
        err.print(f"[green]wrote[/] {escape(path)}", highlight=False)
    err.print(f"Next: [bold]patchbay serve --config {escape(str(directory / 'patchbay.toml'))}[/]", highlight=False)
