"""Compiled ``[[policy]]`` rules: who a rule is about, which tools, and (at call time only) which arguments.

Every rule is split by construction into a list-time part (subjects, tools) and a call-time part (``when``), so a
condition on arguments can never make a tool vanish from a list (the trap of agentgateway#3092).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from patchbay.auth.principal import Principal
from patchbay.definitions import ToolAnnotations
from patchbay.gate.config import PolicyRule

Test = Callable[[Any], bool]
_ABSENT: Any = object()


@dataclass(frozen=True, slots=True)
class Condition:
    """``when`` entry: an argument path and the tests its value must all pass. A missing argument fails every
    test but ``exists = false``."""

    path: tuple[str, ...]
    tests: tuple[Test, ...]
    absent_ok: bool

    def holds(self, arguments: Mapping[str, Any]) -> bool:
        value: Any = arguments
        for part in self.path:
            value = value.get(part, _ABSENT) if isinstance(value, dict) else _ABSENT
            if value is _ABSENT:
                return self.absent_ok
        return all(test(value) for test in self.tests)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    """``policy[<index>]`` or the rule's ``id``."""
    description: str | None
    effect: str
    subjects: tuple[str, ...]
    excepted: tuple[str, ...]
    tools: tuple[re.Pattern[str], ...]
    connectors: frozenset[str] | None
    kinds: frozenset[str] | None
    conditions: tuple[Condition, ...]

    def covers(self, tool: str, connector: str | None, annotations: ToolAnnotations) -> bool:
        """The tool part: name globs, connectors and annotation classes all match."""
        if not any(p.match(tool) for p in self.tools):
            return False
        if self.connectors is not None and connector not in self.connectors:
            return False
        return self.kinds is None or bool(self.kinds & kinds_of(annotations))

    def applies_to(self, principal: Principal | None) -> bool:
        """The subject part: one subject matches and no ``except`` entry does."""
        return any(subject_matches(s, principal) for s in self.subjects) and not any(
            subject_matches(s, principal) for s in self.excepted
        )

    def holds(self, arguments: Mapping[str, Any]) -> bool:
        return all(c.holds(arguments) for c in self.conditions)

    def because(self) -> str:
        return f"{self.name} ({self.description})" if self.description else self.name


def kinds_of(annotations: ToolAnnotations) -> frozenset[str]:
    """The annotation classes a tool belongs to; a tool is a write unless it says readOnlyHint."""
    if annotations.read_only:
        return frozenset({"read", "open_world"} if annotations.open_world else {"read"})
    kinds = {"write"}
    if annotations.destructive:
        kinds.add("destructive")
    if annotations.open_world:
        kinds.add("open_world")
    return frozenset(kinds)


def subject_matches(subject: str, principal: Principal | None) -> bool:
    if subject == "*":
        return True
    if principal is None:
        return subject == "anonymous"
    prefix, _, value = subject.partition(":")
    if prefix == "user":
        return principal.kind != "api_key" and value in (principal.username, principal.subject)
    if prefix == "role":
        return value in principal.roles
    if prefix == "scope":
        return value in principal.scopes
    if prefix == "key":
        return principal.kind == "api_key" and principal.subject == subject
    if prefix == "client":
        return value in (principal.client_id, principal.client_name)
    return False


def compile_rules(rules: Sequence[PolicyRule]) -> list[Rule]:
    return [compile_rule(index, rule) for index, rule in enumerate(rules)]


def compile_rule(index: int, rule: PolicyRule) -> Rule:
    conditions = tuple(_condition(path, ops) for path, ops in (rule.when or {}).items())
    return Rule(
        name=rule.id or f"policy[{index}]",
        description=rule.description,
        effect=rule.effect,
        subjects=tuple(rule.subjects),
        excepted=tuple(rule.except_),
        tools=tuple(re.compile(fnmatch.translate(glob)) for glob in rule.tools),
        connectors=frozenset(rule.connectors) if rule.connectors is not None else None,
        kinds=frozenset(rule.kinds) if rule.kinds is not None else None,
        conditions=conditions,
    )


def _condition(path: str, ops: Mapping[str, Any]) -> Condition:
    tests = [_test(op, operand) for op, operand in ops.items() if op != "exists"]
    exists = ops.get("exists")
    # Every operator must hold: `exists = false` fails on a present value and passes alone on an absent one.
    absent_ok = exists is False and not tests
    if exists is False:
        tests.append(lambda v: False)
    return Condition(tuple(path.split(".")), tuple(tests), absent_ok)


def _same(a: Any, b: Any) -> bool:
    # JSON true is not 1: compare booleans only with booleans, numbers only with numbers.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and bool(a == b)


def _ordered(a: Any, b: Any) -> bool:
    numbers = isinstance(a, (int, float)) and isinstance(b, (int, float))
    numbers = numbers and not isinstance(a, bool) and not isinstance(b, bool)
    return numbers or (isinstance(a, str) and isinstance(b, str))


def _test(op: str, operand: Any) -> Test:
    if op == "eq":
        return lambda v: _same(v, operand)
    if op == "ne":
        return lambda v: not _same(v, operand)
    if op == "in":
        return lambda v: any(_same(v, o) for o in operand)
    if op == "not_in":
        return lambda v: not any(_same(v, o) for o in operand)
    if op == "lt":
        return lambda v: _ordered(v, operand) and v < operand
    if op == "le":
        return lambda v: _ordered(v, operand) and v <= operand
    if op == "gt":
        return lambda v: _ordered(v, operand) and v > operand
    if op == "ge":
        return lambda v: _ordered(v, operand) and v >= operand
    if op == "matches":
        pattern = re.compile(operand)
        return lambda v: isinstance(v, str) and pattern.fullmatch(v) is not None
    raise AssertionError(f"operator {op!r} passed validation")  # pragma: no cover - config.check_condition
