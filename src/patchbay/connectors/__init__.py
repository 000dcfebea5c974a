"""Connectors source tools, resources and prompts. Built-ins register exactly like third-party ones."""
