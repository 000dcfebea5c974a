"""The ``[[policy]]`` rules and the ``[gate]`` table as settings: their shape, checked when the config loads.

Checks that need the whole config (a rule naming a connector that does not exist) run in
:func:`patchbay.gate.rules.check_policy`; everything a single rule can get wrong is refused here, so a server never
starts with a rule it cannot evaluate.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from patchbay.errors import ConfigError
from patchbay.gate.limits_caps import PROFILES

WritesMode = Literal["on", "off", "approve"]
Kind = Literal["read", "write", "destructive", "open_world"]
SUBJECT_PREFIXES = ("user:", "role:", "client:", "scope:", "key:")
OPERATORS = ("eq", "ne", "in", "not_in", "lt", "le", "gt", "ge", "exists", "matches")
# A `matches` pattern runs on every matching call: a cap keeps it reviewable and its cost small (Python's re has
# no timeout, so catastrophic patterns are the operator's to avoid; docs/policy.md says so).
MAX_PATTERN = 256
RULE_KEYS = ("id", "description", "subjects", "except", "tools", "connectors", "kinds", "effect", "when")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


class GateSettings(BaseModel):
    """``[gate]``: what happens to a call no rule decides, and the global write switch."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    default: Literal["allow", "deny"] = "allow"
    """The effect when no [[policy]] rule matches a caller and tool; allow keeps configs without rules working."""
    writes: WritesMode = "on"
    """Tools without readOnlyHint: on (as the rules say), off (refused and unlisted), approve (a person approves each
    call). A connector's own `writes` wins for its tools."""
    roles: list[str] = []
    """The roles [[policy]] rules may name (with those an [auth.upstream] role map hands out, and the approver
    roles): a rule naming any other role is a config error, so a typo cannot silently match nobody."""
    call_timeout_seconds: float = Field(60, gt=0, le=86_400)
    """Seconds a call may run before it is cancelled and answered "timed out"; a connector's timeout_seconds and
    tool_timeouts win (docs/limits.md)."""
    max_result_bytes: int | None = Field(1_048_576, ge=1024)
    """A tools/call result larger than this (JSON bytes of content and structuredContent) is cut, with a note, for
    clients without a profile in client_result_bytes; unset for no cap."""
    client_result_bytes: dict[str, int] = {}
    """Result caps per client profile, replacing the built-in ones: chatgpt (100000), claude (150000),
    claude-code (80000); the profile comes from the client's clientInfo.name."""

    @field_validator("client_result_bytes")
    @classmethod
    def _client_result_bytes(cls, value: dict[str, int]) -> dict[str, int]:
        for name, limit in value.items():
            if name not in PROFILES:
                raise ValueError(f"{name!r} is not a client profile: use one of {', '.join(PROFILES)}")
            if limit < 1024:
                raise ValueError(f"{name}: must be at least 1024 bytes, got {limit}")
        return value

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        for role in value:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", role):
                raise ValueError(
                    f"{role!r} is not a role name: use 1-64 of A-Z a-z 0-9 _ . : - starting with a letter or digit"
                )
        return value


class PolicyRule(BaseModel):
    """One ``[[policy]]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    id: str | None = None
    description: str | None = Field(None, max_length=300)
    subjects: list[str] = Field(min_length=1)
    except_: list[str] = Field([], alias="except")
    tools: list[str] = Field(["*"], min_length=1)
    connectors: list[str] | None = Field(None, min_length=1)
    kinds: list[Kind] | None = Field(None, min_length=1)
    effect: Literal["allow", "deny", "approve"]
    when: dict[str, Any] | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and not _ID.match(value):
            raise ValueError("must be 1-64 of A-Z a-z 0-9 _ . : - starting with a letter or digit")
        return value

    @field_validator("subjects", "except_")
    @classmethod
    def _subjects(cls, value: list[str]) -> list[str]:
        for subject in value:
            check_subject(subject)
        return value

    @field_validator("tools")
    @classmethod
    def _tools(cls, value: list[str]) -> list[str]:
        return check_tool_globs(value)

    @field_validator("when")
    @classmethod
    def _when(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("is empty: name at least one argument, e.g. when = { priority = { ne = 'urgent' } }")
        for path, ops in value.items():
            check_condition(path, ops)
        return value


def check_tool_globs(value: list[str]) -> list[str]:
    """Raises ValueError for a glob that could never match a public tool name; returns ``value``."""
    for glob in value:
        if not glob or not re.fullmatch(r"[A-Za-z0-9_.*?\[\]!-]{1,128}", glob):
            raise ValueError(f"{glob!r} is not a tool name glob: use tool name characters and * ? [..]")
    return value


def check_subject(subject: str) -> None:
    """Raises ValueError naming the allowed forms when ``subject`` is not one of them."""
    if subject in ("*", "anonymous"):
        return
    prefix, sep, rest = subject.partition(":")
    if not sep or f"{prefix}:" not in SUBJECT_PREFIXES or not rest.strip():
        raise ValueError(
            f"{subject!r} is not a subject: use '*', 'anonymous', or one of "
            + ", ".join(f"'{p}<name>'" for p in SUBJECT_PREFIXES)
        )


def check_condition(path: str, ops: Any) -> None:
    """Raises ValueError for a condition that cannot be evaluated: bad path, operator or operand."""
    if not re.fullmatch(r"[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*", path):
        raise ValueError(f"{path!r} is not an argument path: use argument names joined by '.', e.g. 'ticket.id'")
    if not isinstance(ops, dict) or not ops:
        raise ValueError(f"{path}: give a table of operators, e.g. {{ eq = 'x' }}; allowed: {', '.join(OPERATORS)}")
    for op, operand in ops.items():
        if op not in OPERATORS:
            raise ValueError(f"{path}: unknown operator {op!r}; allowed: {', '.join(OPERATORS)}")
        _check_operand(path, op, operand)


def _check_operand(path: str, op: str, operand: Any) -> None:
    scalar = (str, int, float, bool)
    if op in ("eq", "ne") and not isinstance(operand, scalar):
        raise ValueError(f"{path}.{op}: must be a string, number or boolean, got {operand!r}")
    if op in ("in", "not_in") and (not isinstance(operand, list) or not all(isinstance(v, scalar) for v in operand)):
        raise ValueError(f"{path}.{op}: must be a list of strings, numbers or booleans, got {operand!r}")
    if op in ("lt", "le", "gt", "ge") and (isinstance(operand, bool) or not isinstance(operand, (str, int, float))):
        raise ValueError(f"{path}.{op}: must be a number or a string, got {operand!r}")
    if op == "exists" and not isinstance(operand, bool):
        raise ValueError(f"{path}.exists: must be true or false, got {operand!r}")
    if op == "matches":
        if not isinstance(operand, str) or len(operand) > MAX_PATTERN:
            raise ValueError(f"{path}.matches: must be a regular expression of at most {MAX_PATTERN} characters")
        try:
            re.compile(operand)
        except re.error as exc:
            raise ValueError(f"{path}.matches: {operand!r} is not a valid regular expression ({exc})") from None


def check_policy(
    rules: Sequence[PolicyRule], connectors: Sequence[str], source: str, roles: Collection[str] = ()
) -> None:
    """Checks that need the whole config; ``roles`` are the roles the config declares or hands out.

    Raises:
        ConfigError: a rule names a connector that is not configured or a role that is not declared, or two rules
            share an ``id``.
    """
    ids: dict[str, int] = {}
    for index, rule in enumerate(rules):
        for key, subjects in (("subjects", rule.subjects), ("except", rule.except_)):
            for subject in subjects:
                if subject.startswith("role:") and subject[5:] not in roles:
                    known = ", ".join(sorted(roles)) or "none are declared"
                    raise ConfigError(
                        f"{source}: policy[{index}].{key}: the role {subject[5:]!r} is not declared (known: {known}); "
                        "list every role your rules name in [gate] roles",
                        file=source,
                        key=f"policy[{index}].{key}",
                    )
        for name in rule.connectors or ():
            if name not in connectors:
                known = ", ".join(connectors) or "none are configured"
                raise ConfigError(
                    f"{source}: policy[{index}].connectors: no connector is named {name!r}; known: {known}",
                    file=source,
                    key=f"policy[{index}].connectors",
                )
        if rule.id is not None:
            if rule.id in ids:
                raise ConfigError(
                    f"{source}: policy[{index}].id: {rule.id!r} is already the id of policy[{ids[rule.id]}]; "
                    "ids must be unique",
                    file=source,
                    key=f"policy[{index}].id",
                )
            ids[rule.id] = index
