"""The audit chain's building blocks: canonical record text, the chain link, checkpoints and their key."""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from pathlib import Path

import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st

from patchbay import settings as settings_mod
from patchbay.errors import ConfigError
from patchbay.gate import audit_chain
from patchbay.gate.audit_chain import Checkpointer, canonical, is_canonical, link, read_checkpoints
from patchbay.gate.audit_verify import verify
from patchbay.store import create_engine, upgrade


def test_canonical_text_is_jcs_with_the_form_and_chain_named() -> None:
    body = canonical({"b": 1, "a": "é", "n": 1.0, "nested": {"z": [3, 2], "y": None}})
    assert body == (
        '{"a":"é","b":1,"canonical_form_version":"jcs-rfc8785-v1","chain_algorithm":"pb-sha256-chain-v1",'
        '"n":1,"nested":{"y":null,"z":[3,2]}}'
    )
    assert is_canonical(body)
    assert not is_canonical('{"b":1,"a":2}')


def test_canonical_text_never_fails_on_what_json_cannot_hold_exactly() -> None:
    body = json.loads(canonical({"nan": float("nan"), "big": 2**64, 7: b"raw", "when": object}))
    assert body["nan"] is None
    assert body["big"] == str(2**64)
    assert body["7"] == "raw"
    assert isinstance(body["when"], str)


def test_link_hashes_the_documented_length_prefixed_bytes() -> None:
    prev, body = "ab" * 32, '{"a":1}'
    expected = hashlib.sha256(
        b"pb-audit-chain-v1\n"
        + struct.pack(">I", 64)
        + prev.encode()
        + struct.pack(">Q", 7)
        + struct.pack(">I", len(body.encode()))
        + body.encode()
    ).hexdigest()
    assert link(prev, 7, body) == expected
    assert link(prev, 8, body) != expected
    assert link(audit_chain.GENESIS, 7, body) != expected


@pytest.mark.parametrize(("prev", "seq"), [("", 1), ("AB" * 32, 1), ("ab" * 31, 1), ("ab" * 32, 0), ("ab" * 32, 2**63)])
def test_link_refuses_a_malformed_prev_hash_or_seq(prev: str, seq: int) -> None:
    with pytest.raises(ValueError):
        link(prev, seq, "{}")


def test_checkpoints_come_every_n_records_or_after_the_interval(tmp_path: Path) -> None:
    now = [100.0]
    file = tmp_path / "cp.jsonl"
    checkpointer = Checkpointer(key=b"k" * 16, file=file, log=False, every=3, seconds=60, clock=lambda: now[0])
    written = [checkpointer.maybe(seq, f"{seq:064x}") for seq in range(1, 8)]
    assert [c["seq"] for c in written if c is not None] == [3, 6]
    now[0] += 61
    checkpoint = checkpointer.maybe(7, f"{7:064x}")
    assert checkpoint is not None and (checkpoint["seq"], checkpoint["count"]) == (7, 1)
    assert checkpointer.flush() is None  # seq 7 is already covered
    checkpointer.maybe(8, f"{8:064x}")
    flushed = checkpointer.flush()
    assert flushed is not None and flushed["seq"] == 8
    found = [c for _, c in read_checkpoints(file.read_text().splitlines())]
    assert [c["seq"] for c in found if isinstance(c, dict)] == [3, 6, 7, 8]
    assert file.stat().st_mode & 0o777 == 0o600


def test_a_checkpoint_is_logged_as_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    checkpointer = Checkpointer(key=None, file=None, log=True, every=1)
    with caplog.at_level(logging.INFO, logger="patchbay.audit"):
        checkpointer.maybe(1, "0" * 64)
    (message,) = [r.getMessage() for r in caplog.records if r.name == "patchbay.audit"]
    (found,) = list(read_checkpoints([f"2026-12-06 INFO {message}"]))
    assert found[1] == audit_chain.checkpoint_body(1, "0" * 64, 1, found[1]["ts"], None)
    assert found[1]["alg"] == "none" and found[1]["sig"] is None


def test_unreadable_checkpoint_lines_are_reported_with_their_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url)
    engine = create_engine(url)
    try:
        lines = ['{"type":"patchbay.audit.checkpoint","seq":"x"}', "noise", 'patchbay.audit.checkpoint {"broken']
        report = verify(engine, read_checkpoints(lines))
    finally:
        engine.dispose()
    assert [(f.problem, f.detail.split(":")[0]) for f in report.findings] == [
        ("bad_checkpoint", "checkpoint line 1"),
        ("bad_checkpoint", "checkpoint line 3"),
    ]


def test_the_key_comes_from_the_named_variable_or_a_file(tmp_path: Path) -> None:
    audit = settings_mod.from_dict({"audit": {"checkpoint_key_env": "MY_KEY"}}).audit
    assert audit_chain.load_key(audit, tmp_path, {}) is None
    assert audit_chain.load_key(audit, tmp_path, {"MY_KEY": " 0123456789abcdef \n"}) == b"0123456789abcdef"
    (tmp_path / "key").write_bytes(b"from-a-file-0123456789\n")
    from_file = settings_mod.from_dict({"audit": {"checkpoint_key_file": "key"}}).audit
    assert audit_chain.load_key(from_file, tmp_path, {"PATCHBAY_AUDIT_KEY": "ignored-because-file"}) == (
        b"from-a-file-0123456789"
    )


def test_a_short_or_unreadable_key_is_a_config_error_that_never_shows_the_key(tmp_path: Path) -> None:
    audit = settings_mod.from_dict({}).audit
    with pytest.raises(ConfigError) as short:
        audit_chain.load_key(audit, tmp_path, {"PATCHBAY_AUDIT_KEY": "tiny-secret"}, "patchbay.toml")
    assert "patchbay.toml: environment variable PATCHBAY_AUDIT_KEY" in str(short.value)
    assert "tiny-secret" not in str(short.value)
    missing = settings_mod.from_dict({"audit": {"checkpoint_key_file": "nope.key"}}).audit
    with pytest.raises(ConfigError) as unreadable:
        audit_chain.load_key(missing, tmp_path, {}, "patchbay.toml")
    assert unreadable.value.key == "audit.checkpoint_key_file" and "nope.key" in str(unreadable.value)


def test_checkpoint_file_defaults_next_to_the_sqlite_store(tmp_path: Path) -> None:
    audit = settings_mod.from_dict({}).audit
    assert (
        audit_chain.checkpoint_path(audit, f"sqlite:///{tmp_path}/p.db", tmp_path)
        == tmp_path / "p.db.checkpoints.jsonl"
    )
    assert audit_chain.checkpoint_path(audit, "postgresql://db/x", tmp_path) == tmp_path / "audit-checkpoints.jsonl"
    off = settings_mod.from_dict({"audit": {"checkpoint_file": ""}}).audit
    assert audit_chain.checkpoint_path(off, "postgresql://db/x", tmp_path) is None
    named = settings_mod.from_dict({"audit": {"checkpoint_file": "cp/audit.jsonl"}}).audit
    assert audit_chain.checkpoint_path(named, "sqlite://", tmp_path) == tmp_path / "cp/audit.jsonl"


def test_bad_audit_settings_name_the_key_and_what_is_allowed() -> None:
    with pytest.raises(ConfigError, match=r"audit.keep_days: Input should be greater than or equal to 0"):
        settings_mod.from_dict({"audit": {"keep_days": -1}})
    with pytest.raises(ConfigError, match=r"audit.checkpoint_key_env: String should match pattern"):
        settings_mod.from_dict({"audit": {"checkpoint_key_env": "MY KEY"}})
    with pytest.raises(ConfigError, match=r"Did you mean 'checkpoint_every'"):
        settings_mod.from_dict({"audit": {"checkpoint_evry": 10}})


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(value=_JSON)
@example(value={"\ue000": 1, "\U0001f600": 2})  # code point order and UTF-16 order disagree on these keys
@example(value=[100.0, 1e-07, 1e21, 0.5, 2**53])
def test_the_fast_canonical_text_is_exactly_the_rfc8785_text(value: object) -> None:
    # canonical() takes orjson's sorted output for plain values: it must never differ from the JCS reference.
    record = {"value": value}
    expected = {
        "canonical_form_version": audit_chain.CANONICAL_FORM_VERSION,
        "chain_algorithm": audit_chain.CHAIN_ALGORITHM,
    }
    try:
        reference = rfc8785.dumps({**expected, **record}).decode("utf-8")
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        reference = rfc8785.dumps(audit_chain._representable({**expected, **record})).decode("utf-8")
    assert canonical(record) == reference
