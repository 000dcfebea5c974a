"""The console's pages, one module each, in navigation order. Each module has ``register(console)``; a module not
written yet is skipped."""

PAGES = ["overview", "connect", "tools", "changes", "approvals", "audit", "access", "config"]
# Navigation labels that are not simply the module's name, capitalised.
TITLES = {"config": "Configuration"}
