"""The ``[[limits]]`` tables as settings: rate limits, quotas and concurrency caps, checked when the config loads.

Everything one table can get wrong is refused here (pydantic validators, messages naming what is allowed); what
needs the whole config (a connector that does not exist, an undeclared role, a repeated ``id``) is refused by
:func:`check_limits`. docs/limits.md describes each key.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from patchbay.errors import ConfigError
from patchbay.gate.config import Kind, check_subject, check_tool_globs

Per = Literal["user", "client", "principal", "tool", "connector", "global"]
LIMIT_KEYS = (
    "id",
    "description",
    "per",
    "subjects",
    "tools",
    "resources",
    "prompts",
    "connectors",
    "kinds",
    "rate",
    "burst",
    "concurrency",
)
UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86_400.0}
_RATE = re.compile(r"^\s*([0-9][0-9_]*)\s*/\s*([a-z]+?)s?\s*$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
# Far above any sensible budget, low enough that the arithmetic stays exact in a float.
MAX_COUNT = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` calls per ``period`` seconds, as written (``unit``) for messages."""

    count: int
    period: float
    unit: str

    @property
    def interval(self) -> float:
        """Seconds between calls at the steady rate (GCRA's emission interval)."""
        return self.period / self.count

    def __str__(self) -> str:
        return f"{self.count:,} call{'s' if self.count != 1 else ''}/{self.unit}"


def parse_rate(text: str) -> Rate:
    """``"60/minute"`` → Rate(60, 60.0). Units: second, minute, hour, day (a plural ``s`` is accepted).

    Raises:
        ValueError: naming the form and the units allowed.
    """
    found = _RATE.match(text.lower())
    allowed = f"write '<calls>/<unit>' with a unit of {', '.join(UNITS)}, e.g. '60/minute'"
    if found is None or found.group(2) not in UNITS:
        raise ValueError(f"{text!r} is not a rate: {allowed}")
    count = int(found.group(1))
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"{text!r}: the number of calls must be from 1 to {MAX_COUNT:,}")
    return Rate(count, UNITS[found.group(2)], found.group(2))


class LimitRule(BaseModel):
    """One ``[[limits]]`` table: a rate (with an optional burst) or a concurrency cap, counted per ``per``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str | None = None
    description: str | None = Field(None, max_length=300)
    per: Per
    subjects: list[str] = Field(["*"], min_length=1)
    tools: list[str] = Field(["*"], min_length=1)
    # resources/read URIs and prompts/get names; none unless given. A table naming either covers no tools unless
    # it names tools too.
    resources: list[str] | None = Field(None, min_length=1)
    prompts: list[str] | None = Field(None, min_length=1)
    connectors: list[str] | None = Field(None, min_length=1)
    kinds: list[Kind] | None = Field(None, min_length=1)
    rate: str | None = None
    burst: int | None = Field(None, ge=1, le=MAX_COUNT)
    concurrency: int | None = Field(None, ge=1, le=100_000)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and not _ID.match(value):
            raise ValueError("must be 1-64 of A-Z a-z 0-9 _ . : - starting with a letter or digit")
        return value

    @field_validator("subjects")
    @classmethod
    def _subjects(cls, value: list[str]) -> list[str]:
        for subject in value:
            check_subject(subject)
        return value

    @field_validator("tools")
    @classmethod
    def _tools(cls, value: list[str]) -> list[str]:
        return check_tool_globs(value)

    @field_validator("resources", "prompts")
    @classmethod
    def _globs(cls, value: list[str] | None) -> list[str] | None:
        for glob in value or ():
            if not glob or len(glob) > 2048 or not glob.isprintable():
                raise ValueError(f"{glob!r} is not a glob: give 1-2048 printable characters, * ? [..] as wildcards")
        return value

    @property
    def covered_tools(self) -> list[str]:
        """The tool globs in force: ``tools`` as given, else every tool unless the table names resources or
        prompts (then none)."""
        if "tools" in self.model_fields_set or (self.resources is None and self.prompts is None):
            return self.tools
        return []

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value

    @model_validator(mode="after")
    def _one_budget(self) -> LimitRule:
        if (self.rate is None) == (self.concurrency is None):
            raise ValueError("give exactly one of rate (e.g. rate = '60/minute') or concurrency (e.g. concurrency = 5)")
        if self.burst is not None and self.rate is None:
            raise ValueError("burst applies to a rate: remove it, or give rate = '<calls>/<unit>'")
        return self

    @property
    def parsed_rate(self) -> Rate | None:
        return parse_rate(self.rate) if self.rate is not None else None


def check_limits_shape(value: Any, source: str) -> None:
    """The ``limits`` value is a list of tables with known keys, before pydantic reads it.

    Raises:
        ConfigError: ``[limits]`` instead of ``[[limits]]``, an entry that is not a table, or an unknown key
            (with a "did you mean").
    """
    if not isinstance(value, list):
        message = f"{source}: limits: write each limit as its own [[limits]] table (double brackets)"
        raise ConfigError(message, file=source, key="limits")
    for index, rule in enumerate(value):
        if not isinstance(rule, dict):
            raise ConfigError(f"{source}: limits[{index}]: must be a table", file=source, key=f"limits[{index}]")
        for sub in rule:
            if sub not in LIMIT_KEYS:
                key = f"limits[{index}].{sub}"
                close = difflib.get_close_matches(sub, LIMIT_KEYS, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                message = f"{source}: unknown key in [[limits]] '{key}'.{hint} Allowed: {', '.join(LIMIT_KEYS)}."
                raise ConfigError(message, file=source, key=key)


def check_limits(
    rules: Sequence[LimitRule], connectors: Sequence[str], source: str, roles: Collection[str] = ()
) -> None:
    """Checks that need the whole config; ``roles`` are the roles the config declares or hands out.

    Raises:
        ConfigError: a limit names a connector that is not configured or a role that is not declared, two limits
            share an ``id``.
    """
    ids: dict[str, int] = {}
    for index, rule in enumerate(rules):
        for subject in rule.subjects:
            if subject.startswith("role:") and subject[5:] not in roles:
                known = ", ".join(sorted(roles)) or "none are declared"
                _fail(
                    source,
                    f"limits[{index}].subjects",
                    f"the role {subject[5:]!r} is not declared (known: {known}); list every role in [gate] roles",
                )
        for name in rule.connectors or ():
            if name not in connectors:
                known = ", ".join(connectors) or "none are configured"
                _fail(source, f"limits[{index}].connectors", f"no connector is named {name!r}; known: {known}")
        if rule.id is not None:
            if rule.id in ids:
                _fail(source, f"limits[{index}].id", f"{rule.id!r} is already the id of limits[{ids[rule.id]}]")
            ids[rule.id] = index


def _fail(source: str, key: str, message: str) -> None:
    raise ConfigError(f"{source}: {key}: {message}", file=source, key=key)
