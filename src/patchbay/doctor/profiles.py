"""Client profiles as data: read from profiles.toml shipped in this package."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

__all__ = ["PROFILE_NAMES", "Profile", "load_profiles"]

PROFILE_NAMES = ("chatgpt", "claude", "responses", "messages")

Level = Literal["fail", "warn", "off"]


@dataclass(frozen=True)
class Profile:
    """How one client connects; every field is documented at the top of profiles.toml."""

    name: str
    title: str
    surfaces: str
    hosted: bool
    port_443: Level
    user_agent: str
    origins: tuple[str, ...]
    accept: str
    accept_variants: tuple[str, ...]
    opening: Literal["discover-then-initialize", "initialize"]
    protocol_versions: tuple[str, ...]
    oauth: Literal["client", "caller"]
    registration: tuple[str, ...]
    redirect_uris: tuple[str, ...]
    auth_methods: tuple[str, ...]
    tool_name_prefix: str
    tool_name_max: int
    tool_name_pattern: str
    result_chars_max: int
    result_chars_warn: int
    call_timeout_s: float
    discovery_timeout_s: float
    search_fetch: Level
    annotations: Literal["fail", "warn"]
    schema_rules: Literal["openai", "anthropic"]
    dcr_payload: dict[str, Any] = field(default_factory=dict)

    def redirect_uris_for(self, port: int) -> list[str]:
        return [uri.replace("{port}", str(port)) for uri in self.redirect_uris]


def _profile(name: str, data: dict[str, Any]) -> Profile:
    values = dict(data)
    for key in ("origins", "accept_variants", "protocol_versions", "registration", "redirect_uris", "auth_methods"):
        values[key] = tuple(values.get(key, ()))
    values.setdefault("dcr_payload", {})
    return Profile(name=name, **values)


def load_profiles() -> dict[str, Profile]:
    """Every profile in profiles.toml, keyed by name, in PROFILE_NAMES order."""
    text = resources.files("patchbay.doctor").joinpath("profiles.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    return {name: _profile(name, data[name]) for name in PROFILE_NAMES}
