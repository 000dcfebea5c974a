"""Cutting a tools/call result to a client's limit: valid results, whole blocks, a note saying what was cut."""

from __future__ import annotations

import datetime
from typing import Any

import orjson
import pytest

from patchbay.doctor.profiles import load_profiles
from patchbay.gate.limits_caps import PROFILES, cap_result, profile_of


def size(wire: dict[str, Any]) -> int:
    parts = [wire["content"], *([wire["structuredContent"]] if "structuredContent" in wire else [])]
    return sum(len(orjson.dumps(part)) for part in parts)


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def note(wire: dict[str, Any]) -> str:
    last = wire["content"][-1]
    assert last["type"] == "text" and last["text"].startswith("[Patchbay cut this result")
    return str(last["text"])


def test_a_result_that_fits_is_returned_as_it_is() -> None:
    wire = {"content": [text("x" * 900)], "structuredContent": {"a": 1}, "isError": False}
    assert cap_result(wire, 1024, strict_structure=True) is wire


def test_a_long_text_is_cut_to_the_limit_with_a_note_saying_how_much_was_left_out() -> None:
    wire = {"content": [text("x" * 300_000)], "isError": False}
    capped = cap_result(wire, 100_000, strict_structure=False)
    assert size(capped) <= 100_000
    assert capped["isError"] is False and len(capped["content"]) == 2
    kept = capped["content"][0]["text"]
    assert kept == "x" * len(kept) and len(kept) > 95_000  # cut near the limit, not far below it
    assert f"cut from 300,000 to {len(kept):,} characters" in note(capped)
    assert "limit of 100,000 bytes" in note(capped) and "300,0" in note(capped)
    assert capped["_meta"]["patchbay/truncated"] == {"limitBytes": 100_000, "fullBytes": size(wire)}
    assert wire["content"][0]["text"] == "x" * 300_000  # the tool's own result is not changed


@pytest.mark.parametrize("unit", ["é", "日本", "🙂", '"\\\n', "\u0001"])
def test_text_of_multibyte_or_escaped_characters_is_cut_on_a_character_boundary_within_the_limit(unit: str) -> None:
    wire = {"content": [text(unit * 50_000)], "isError": False}
    capped = cap_result(wire, 20_000, strict_structure=False)
    assert size(capped) <= 20_000
    kept = capped["content"][0]["text"]
    assert kept and kept == unit * (len(kept) // len(unit)) + unit[: len(kept) % len(unit)]
    orjson.loads(orjson.dumps(capped))  # still valid JSON end to end


def test_blocks_after_the_cut_are_left_out_and_counted_by_type() -> None:
    image = {"type": "image", "data": "A" * 10_000, "mimeType": "image/png"}
    wire = {"content": [text("a" * 5_000), image, text("b" * 5_000), text("c" * 10)], "isError": False}
    capped = cap_result(wire, 8_000, strict_structure=False)
    assert size(capped) <= 8_000
    assert capped["content"][0] == text("a" * 5_000)
    assert [block["type"] for block in capped["content"]] == ["text", "text"]
    assert "3 content blocks (1 image, 2 text) left out" in note(capped)


def test_structured_content_that_fits_is_kept_whole_and_the_text_shares_the_rest() -> None:
    rows = {"rows": [{"id": i, "name": f"customer {i}"} for i in range(200)]}
    wire = {"content": [text(orjson.dumps(rows).decode() * 10)], "structuredContent": rows, "isError": False}
    capped = cap_result(wire, 30_000, strict_structure=True)
    assert capped["structuredContent"] == rows and capped["isError"] is False
    assert size(capped) <= 30_000


def test_structured_content_too_large_alone_is_left_out_and_a_schema_tool_says_it_is_an_error() -> None:
    rows = {"rows": ["r" * 100 for _ in range(2_000)]}
    wire = {"content": [text("summary")], "structuredContent": rows, "isError": False}
    strict = cap_result(wire, 50_000, strict_structure=True)
    assert "structuredContent" not in strict and strict["isError"] is True
    assert strict["content"][0] == text("summary")
    assert "the structured result (" in note(strict) and "bytes) was left out" in note(strict)
    loose = cap_result(wire, 50_000, strict_structure=False)
    assert "structuredContent" not in loose and loose["isError"] is False


def test_existing_meta_is_kept_beside_the_truncation_marker() -> None:
    wire = {"content": [text("x" * 5_000)], "isError": False, "_meta": {"trace": "t1"}}
    capped = cap_result(wire, 2_000, strict_structure=False)
    assert capped["_meta"]["trace"] == "t1" and "patchbay/truncated" in capped["_meta"]


@pytest.mark.parametrize(
    ("name", "profile"),
    [
        ("openai-mcp", "chatgpt"),
        ("OpenAI-MCP/1.0.0", "chatgpt"),
        ("Anthropic", "claude"),
        ("Anthropic/ClaudeAI", "claude"),
        ("claude-ai", "claude"),
        ("claude-code", "claude-code"),
        ("unit-test", None),
        ("mcp-inspector", None),
    ],
)
def test_the_client_profile_comes_from_client_info_name(name: str, profile: str | None) -> None:
    assert profile_of({"name": name, "version": "1"}) == profile


def test_clients_without_a_usable_client_info_have_no_profile() -> None:
    assert profile_of(None) is None and profile_of({}) is None and profile_of({"name": 3}) is None


def test_the_caps_are_no_looser_than_the_limits_the_doctor_checks_against() -> None:
    doctor = load_profiles()
    assert PROFILES["chatgpt"].result_bytes <= doctor["chatgpt"].result_chars_max
    assert PROFILES["claude"].result_bytes <= doctor["claude"].result_chars_max


def test_a_structured_result_with_integer_keys_or_dates_is_measured_not_refused() -> None:
    structured = {1: "one", "when": datetime.date(2026, 1, 2), "rows": ["r" * 100] * 100}
    wire = {"content": [text("y" * 5_000)], "structuredContent": structured, "isError": False}
    assert cap_result(wire, 100_000, strict_structure=True) is wire
    capped = cap_result(wire, 4_000, strict_structure=False)
    assert "structuredContent" not in capped and note(capped)
