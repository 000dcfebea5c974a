"""How each MCP client connects to this server: the steps and snippets `patchbay serve --demo` prints and the
console's Connect page shows, built from one place so the two never disagree.

Everything is derived from the settings: the MCP URL (``public_url`` + ``/mcp``), the sign-in mode, and whether
that URL is one a hosted client can reach (public HTTPS). References: connect-chatgpt.md, connect-claude.md;
the API shapes follow OpenAI's Responses ``mcp`` tool and Anthropic's Messages MCP connector.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from patchbay.settings import Settings

__all__ = [
    "CHATGPT_MENU",
    "CLAUDE_MENU",
    "ClientSetup",
    "claude_code_command",
    "client_setups",
    "inspector_command",
    "is_public_https",
    "server_label",
]

# Where each hosted client keeps its connectors (the menu path a person follows).
CHATGPT_MENU = "Settings → Apps & Connectors → Create (developer mode)"
CLAUDE_MENU = "Settings → Connectors → Add custom connector"
# Anthropic's Messages API MCP connector beta (mcp-requirements.md §6.6).
MESSAGES_BETA = "mcp-client-2025-11-20"
_KEY_PLACEHOLDER = "<an API key from patchbay keys create>"


@dataclass(frozen=True)
class ClientSetup:
    """One client's way in: ``steps`` to follow in order, then an optional command or snippet to paste."""

    id: str
    title: str
    steps: tuple[str, ...]
    snippet: str = ""
    snippet_label: str = ""
    # Why this client cannot use the server as configured (empty when it can).
    blocker: str = ""


def server_label(settings: Settings) -> str:
    """A connector name for commands and API snippets: the server's name as a lowercase slug."""
    slug = re.sub(r"[^a-z0-9]+", "-", settings.server.name.lower()).strip("-")
    return slug or "patchbay"


def claude_code_command(name: str, url: str) -> str:
    return f"claude mcp add --transport http {name} {url}"


def inspector_command(url: str) -> str:
    return f"npx @modelcontextprotocol/inspector --cli {url} --transport http --method tools/list"


def is_public_https(url: str) -> bool:
    """Whether a hosted client (ChatGPT, claude.ai, the vendor APIs) could reach ``url``: https, and a host that
    is not a loopback or private address. A name is taken at its word; only literal addresses are judged."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return False
    try:
        return ipaddress.ip_address(parts.hostname).is_global
    except ValueError:
        return True


def client_setups(settings: Settings) -> list[ClientSetup]:
    """The setup of every client the Connect page lists, in the order people usually try them."""
    url = settings.mcp_url
    name = server_label(settings)
    hosted_blocker = "" if is_public_https(url) else f"{url} is not a public HTTPS URL, which this client needs."
    return [
        _chatgpt(url, settings.auth.mode, hosted_blocker),
        _claude(url, settings.auth.mode, hosted_blocker),
        _claude_code(url, name, settings.auth.mode),
        _responses(url, name, settings.auth.mode, hosted_blocker),
        _messages(url, name, settings.auth.mode, hosted_blocker),
        _inspector(url, settings.auth.mode),
    ]


def _sign_in_step(mode: str) -> str:
    if mode == "oauth":
        return "Authentication: OAuth. The client discovers the rest itself and opens Patchbay's sign-in page."
    if mode == "none":
        return "Authentication: none. Anyone who can reach the URL can call every tool."
    if mode == "api_key":
        return "Authentication: this server takes API keys only, which this client cannot send: use mode oauth."
    return "Authentication: OAuth, through your identity provider (auth.mode external)."


def _chatgpt(url: str, mode: str, blocker: str) -> ClientSetup:
    steps = (
        "In ChatGPT, turn on developer mode: Settings → Apps & Connectors → Advanced (on Business and Enterprise "
        "an admin enables it).",
        f"Open {CHATGPT_MENU}, name the connector and set MCP Server URL to {url}.",
        _sign_in_step(mode),
        "Sign in and allow access; ChatGPT then lists the tools.",
    )
    return ClientSetup("chatgpt", "ChatGPT", steps, blocker=blocker)


def _claude(url: str, mode: str, blocker: str) -> ClientSetup:
    steps = (
        f"In claude.ai or Claude Desktop open {CLAUDE_MENU}.",
        f"Name it and paste the URL {url}, then Add and Connect.",
        _sign_in_step(mode),
        "The connector then works in Claude Desktop and on mobile too.",
    )
    return ClientSetup("claude", "Claude (web and Desktop)", steps, blocker=blocker)


def _claude_code(url: str, name: str, mode: str) -> ClientSetup:
    steps = ["Run this in a terminal on a machine that can reach the server."]
    if mode in ("oauth", "external"):
        steps.append("Then type /mcp in Claude Code and choose Authenticate to sign in.")
    elif mode == "api_key":
        steps.append("Add --header 'Authorization: Bearer <API key>' with a key from patchbay keys create.")
    return ClientSetup(
        "claude-code", "Claude Code", tuple(steps), claude_code_command(name, url), "Command", blocker=""
    )


def _responses(url: str, name: str, mode: str, blocker: str) -> ClientSetup:
    tool: dict[str, object] = {"type": "mcp", "server_label": name, "server_url": url, "require_approval": "never"}
    if mode != "none":
        # The Responses API runs no OAuth: it sends what it is given (connect-chatgpt.md).
        tool["authorization"] = _KEY_PLACEHOLDER
    steps = (
        "Add this entry to the tools list of a Responses API request.",
        "The API does not sign in: create a key with patchbay keys create --name responses and put it in authorization."
        if mode != "none"
        else "No credential is needed while auth.mode is none.",
    )
    return ClientSetup(
        "responses", "OpenAI Responses API", steps, json.dumps({"tools": [tool]}, indent=2), "JSON", blocker
    )


def _messages(url: str, name: str, mode: str, blocker: str) -> ClientSetup:
    server: dict[str, object] = {"type": "url", "url": url, "name": name}
    if mode != "none":
        server["authorization_token"] = _KEY_PLACEHOLDER
    body = {"mcp_servers": [server], "tools": [{"type": "mcp_toolset", "mcp_server_name": name}]}
    steps = (
        f"Send the header anthropic-beta: {MESSAGES_BETA} and add these fields to a Messages API request.",
        "The API does not sign in: put an API key from patchbay keys create in authorization_token."
        if mode != "none"
        else "No credential is needed while auth.mode is none.",
    )
    return ClientSetup("messages", "Anthropic Messages API", steps, json.dumps(body, indent=2), "JSON", blocker)


def _inspector(url: str, mode: str) -> ClientSetup:
    steps = ["List the tools from a terminal with the MCP Inspector's command-line mode."]
    if mode != "none":
        steps.append("Without --cli the Inspector opens in a browser and runs the sign-in itself.")
    return ClientSetup("inspector", "MCP Inspector", tuple(steps), inspector_command(url), "Command")
