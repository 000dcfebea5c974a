"""[[limits]], the timeout keys and the result caps as config: what loads, and every error naming file and key."""

from __future__ import annotations

from typing import Any

import pytest

from patchbay.errors import ConfigError
from patchbay.gate.limits_config import parse_rate
from patchbay.settings import from_dict

CRM = {"name": "crm", "type": "python", "path": "crm.py"}


def load(**data: Any) -> Any:
    data.setdefault("connectors", [CRM])
    return from_dict(data, source="limits.toml")


def refused(**data: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(**data)
    return caught.value


def test_the_issue_examples_are_valid_limits() -> None:
    settings = load(
        limits=[
            {"per": "user", "rate": "60/minute"},
            {"per": "client", "kinds": ["write"], "rate": "10/minute"},
            {"per": "user", "tools": ["search"], "rate": "1000/day", "burst": 100},
            {"per": "connector", "connectors": ["crm"], "concurrency": 5},
        ]
    )
    assert [rule.per for rule in settings.limits] == ["user", "client", "user", "connector"]
    assert settings.limits[2].burst == 100 and settings.limits[3].concurrency == 5


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [("60/minute", 60, 60.0), ("10/second", 10, 1.0), ("1000/day", 1000, 86_400.0), ("5 / hours", 5, 3600.0)],
)
def test_rates_are_calls_per_unit(text: str, count: int, period: float) -> None:
    rate = parse_rate(text)
    assert (rate.count, rate.period) == (count, period)


@pytest.mark.parametrize(
    ("limit", "key", "words"),
    [
        ({"per": "user", "rate": "60/week"}, "limits[0].rate", "unit of second, minute, hour, day"),
        ({"per": "user", "rate": "sixty/minute"}, "limits[0].rate", "'<calls>/<unit>'"),
        ({"per": "user", "rate": "0/minute"}, "limits[0].rate", "from 1 to"),
        ({"per": "users", "rate": "1/minute"}, "limits[0].per", "'user', 'client', 'principal', 'tool'"),
        ({"per": "user"}, "limits[0]", "exactly one of rate"),
        ({"per": "user", "rate": "1/minute", "concurrency": 2}, "limits[0]", "exactly one of rate"),
        ({"per": "tool", "concurrency": 2, "burst": 4}, "limits[0]", "burst applies to a rate"),
        ({"per": "tool", "concurrency": 0}, "limits[0].concurrency", "greater than or equal to 1"),
        ({"per": "user", "rate": "1/minute", "burst": 0}, "limits[0].burst", "greater than or equal to 1"),
        ({"per": "user", "rate": "1/minute", "subjects": ["ada"]}, "limits[0].subjects", "'user:<name>'"),
        ({"per": "user", "rate": "1/minute", "tools": ["crm tools"]}, "limits[0].tools", "not a tool name glob"),
        ({"per": "user", "rate": "1/minute", "kinds": ["writes"]}, "limits[0].kinds[0]", "'write'"),
        ({"per": "user", "rate": "1/minute", "id": "a b"}, "limits[0].id", "A-Z a-z 0-9"),
    ],
)
def test_a_bad_limit_names_the_file_the_key_and_what_is_allowed(limit: dict[str, Any], key: str, words: str) -> None:
    error = str(refused(limits=[limit]))
    assert error.startswith(f"limits.toml: {key}:"), error
    assert words in error


def test_an_unknown_key_in_a_limit_suggests_the_right_one() -> None:
    error = refused(limits=[{"per": "user", "rates": "1/minute"}])
    assert error.key == "limits[0].rates"
    assert "Did you mean 'rate'?" in str(error) and "concurrency" in str(error)


def test_a_single_bracket_limits_table_says_to_use_double_brackets() -> None:
    error = refused(limits={"per": "user", "rate": "1/minute"})
    assert "[[limits]]" in str(error) and error.key == "limits"


def test_a_limit_that_is_not_a_table_is_refused() -> None:
    assert refused(limits=["60/minute"]).key == "limits[0]"


def test_a_limit_naming_an_unknown_connector_lists_the_known_ones() -> None:
    error = refused(limits=[{"per": "connector", "connectors": ["crn"], "concurrency": 5}])
    assert error.key == "limits[0].connectors"
    assert "no connector is named 'crn'; known: crm" in str(error)


def test_a_limit_naming_an_undeclared_role_is_refused() -> None:
    error = refused(limits=[{"per": "user", "rate": "1/minute", "subjects": ["role:sales"]}])
    assert error.key == "limits[0].subjects" and "'sales' is not declared" in str(error)
    assert load(limits=[{"per": "user", "rate": "1/minute", "subjects": ["role:sales"]}], gate={"roles": ["sales"]})


def test_two_limits_with_one_id_are_refused() -> None:
    twice = [{"id": "calls", "per": "user", "rate": "1/minute"}, {"id": "calls", "per": "tool", "concurrency": 1}]
    error = refused(limits=twice)
    assert error.key == "limits[1].id" and "already the id of limits[0]" in str(error)


def test_the_timeout_and_cap_keys_load_and_refuse_bad_values() -> None:
    crm = {**CRM, "timeout_seconds": 30, "tool_timeouts": {"query": 120}}
    settings = load(connectors=[crm], gate={"call_timeout_seconds": 20, "client_result_bytes": {"chatgpt": 50_000}})
    assert settings.connectors[0].timeout_seconds == 30 and settings.connectors[0].tool_timeouts == {"query": 120}
    assert "timeout_seconds" not in settings.connectors[0].options  # not handed to the connector type
    assert settings.gate.call_timeout_seconds == 20 and settings.gate.client_result_bytes == {"chatgpt": 50_000}
    assert "connectors[crm].timeout_seconds" in str(refused(connectors=[{**CRM, "timeout_seconds": 0}]))
    assert "connectors[crm].tool_timeouts.query" in str(refused(connectors=[{**CRM, "tool_timeouts": {"query": -1}}]))
    assert "gate.call_timeout_seconds" in str(refused(gate={"call_timeout_seconds": -5}))
    assert "gate.max_result_bytes" in str(refused(gate={"max_result_bytes": 10}))
    error = str(refused(gate={"client_result_bytes": {"gpt": 50_000}}))
    assert "gate.client_result_bytes" in error and "use one of chatgpt, claude, claude-code" in error
    assert "at least 1024 bytes" in str(refused(gate={"client_result_bytes": {"claude": 10}}))
