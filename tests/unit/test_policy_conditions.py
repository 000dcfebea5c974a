"""``when`` conditions: each operator, missing arguments, nested paths, and JSON types kept apart."""

from __future__ import annotations

from typing import Any

import pytest

from patchbay.gate.config import PolicyRule
from patchbay.gate.rules import compile_rule


def holds(when: dict[str, Any], arguments: dict[str, Any]) -> bool:
    return compile_rule(0, PolicyRule(subjects=["*"], effect="deny", when=when)).holds(arguments)


@pytest.mark.parametrize(
    ("ops", "value", "expected"),
    [
        ({"eq": "urgent"}, "urgent", True),
        ({"eq": "urgent"}, "Urgent", False),
        ({"eq": 1}, True, False),
        ({"eq": True}, 1, False),
        ({"eq": 1}, 1.0, True),
        ({"eq": "1"}, 1, False),
        ({"eq": True}, True, True),
        ({"eq": False}, False, True),
        ({"eq": False}, True, False),
        ({"ne": True}, 1, True),
        ({"ne": "urgent"}, "low", True),
        ({"ne": "urgent"}, "urgent", False),
        ({"in": ["low", "normal"]}, "normal", True),
        ({"in": ["low", "normal"]}, "high", False),
        ({"in": [0, 1]}, False, False),
        ({"not_in": ["urgent"]}, "low", True),
        ({"not_in": ["urgent"]}, "urgent", False),
        ({"lt": 10}, 9.5, True),
        ({"lt": 10}, 10, False),
        ({"le": 10}, 10, True),
        ({"le": 10}, 11, False),
        ({"le": 10}, True, False),
        ({"le": 10}, "5", False),
        ({"ge": 10}, 10, True),
        ({"ge": 10}, 9.5, False),
        ({"gt": 1000}, 1001, True),
        ({"gt": 1000}, 1000, False),
        ({"gt": 1000}, "2000", False),
        ({"gt": 0}, True, False),
        ({"ge": "m"}, "m", True),
        ({"ge": "m"}, "a", False),
        ({"ge": "m"}, 5, False),
        ({"ge": 5}, "z", False),
        ({"lt": 5}, None, False),
        ({"lt": 5}, [1], False),
        ({"matches": "[A-Z]{3}-[0-9]+"}, "ABC-12", True),
        ({"matches": "[A-Z]{3}-[0-9]+"}, "ABC-12 and more", False),
        ({"matches": "[0-9]+"}, 12, False),
        ({"exists": True}, None, True),
        ({"exists": False}, "x", False),
        ({"gt": 1, "lt": 5}, 3, True),
        ({"gt": 1, "lt": 5}, 7, False),
    ],
)
def test_each_operator_on_a_present_argument(ops: dict[str, Any], value: Any, expected: bool) -> None:
    assert holds({"x": ops}, {"x": value}) is expected


@pytest.mark.parametrize(
    "ops",
    [{"eq": 1}, {"ne": 1}, {"not_in": [1]}, {"lt": 1}, {"matches": ".*"}, {"exists": True}, {"exists": False, "ne": 1}],
)
def test_a_condition_on_a_missing_argument_is_false(ops: dict[str, Any]) -> None:
    assert holds({"x": ops}, {"y": 1}) is False


def test_exists_false_alone_holds_for_a_missing_argument() -> None:
    assert holds({"x": {"exists": False}}, {}) is True


def test_dotted_paths_reach_into_nested_objects_and_stop_at_non_objects() -> None:
    when = {"ticket.priority": {"eq": "urgent"}}
    assert holds(when, {"ticket": {"priority": "urgent"}}) is True
    assert holds(when, {"ticket": {"priority": "low"}}) is False
    assert holds(when, {"ticket": "urgent"}) is False
    assert holds(when, {"ticket.priority": "urgent"}) is False


def test_every_key_of_when_must_hold() -> None:
    when = {"amount": {"gt": 1000}, "currency": {"eq": "EUR"}}
    assert holds(when, {"amount": 2000, "currency": "EUR"}) is True
    assert holds(when, {"amount": 2000, "currency": "USD"}) is False
    assert holds(when, {"amount": 20, "currency": "EUR"}) is False
