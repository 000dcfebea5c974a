"""Two connectors' tools and a config for the policy tests (unit, property and e2e): a CRM and a file share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
CRM = HERE / "crm.py"
FILES = HERE / "files.py"

# Every role the tests' rules name, declared as [gate] roles requires.
ROLES = ["sales", "support-lead", "ops", "admin", "x", "y"]

# The example, as rules: sales reads the CRM, only support leads close tickets and only below urgent,
# nobody writes to files_*, the client named "chatgpt" gets read tools only.
EXAMPLE_RULES: list[dict[str, Any]] = [
    {"id": "sales-read", "subjects": ["role:sales"], "tools": ["crm_*"], "kinds": ["read"], "effect": "allow"},
    {
        "id": "leads-close",
        "description": "support leads close tickets below urgent",
        "subjects": ["role:support-lead"],
        "tools": ["crm_close_ticket"],
        "effect": "allow",
        "when": {"priority": {"in": ["low", "normal", "high"]}},
    },
    {"subjects": ["*"], "tools": ["files_*"], "kinds": ["write"], "effect": "deny", "description": "nobody writes"},
    {"subjects": ["client:chatgpt"], "kinds": ["write"], "effect": "deny", "description": "ChatGPT reads only"},
    {"subjects": ["*"], "tools": ["files_*"], "kinds": ["read"], "effect": "allow"},
]


def connectors(**crm: Any) -> list[dict[str, Any]]:
    return [
        {"name": "crm", "type": "python", "path": str(CRM), **crm},
        {"name": "files", "type": "python", "path": str(FILES)},
    ]


def config_head(store_url: str, roles: list[str]) -> str:
    """The TOML both policy config files start with: the store, sign-in, [gate] (default deny, ``roles``) and the two
    connectors (files' read_file public); each test adds its own [[policy]] tables."""
    declared = ", ".join(f'"{role}"' for role in roles)
    return f"""
[store]
url = "{store_url}"

[auth]
mode = "oauth"

[gate]
default = "deny"
roles = [{declared}]

[[connectors]]
name = "crm"
type = "python"
path = "{CRM}"

[[connectors]]
name = "files"
type = "python"
path = "{FILES}"
public_tools = ["read_file"]
"""
