"""The audit chain's edges: the exact checkpoint format and signature, the fallback for values JSON cannot hold,
the checkpoint timing at its boundaries, the checkpoint reader's error texts, and where the key and file come from.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from patchbay import settings as settings_mod
from patchbay.errors import ConfigError
from patchbay.gate import audit_chain
from patchbay.gate.audit_chain import Checkpointer, canonical, checkpoint_body, key_id, link, read_checkpoints

KEY = b"0123456789abcdef-checkpoint-key"
HEAD = "ab" * 32


def test_link_names_what_is_wrong_with_its_input() -> None:
    with pytest.raises(ValueError, match=r"^prev_hash must be 64 lowercase hex digits$"):
        link("X" * 64, 1, "{}")
    with pytest.raises(ValueError, match=r"^seq must be between 1 and 2\*\*63-1, got 0$"):
        link(HEAD, 0, "{}")
    assert link(HEAD, 2**63 - 1, "{}") != link(HEAD, 1, "{}")


def test_plain_records_are_written_without_the_slow_exact_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # The writer's hot path: a record of plain JSON values never goes through the RFC 8785 library.
    record = {
        "s": "text",
        "yes": True,
        "no": None,
        "big": 2**53 - 1,
        "small": -(2**53 - 1),
        "half": 0.5,
        # The bounds of plain decimal notation: from 1e-4, and the largest float that is not integral (2**52 - 0.5).
        "least": 0.0001,
        "most": -4503599627370495.5,
        "é-key": {"\ud7ff": [1, "two"]},
        "listed": [0.0001, 4503599627370495.5, 2**53 - 1, -(2**53 - 1), False, None, [0.5]],
    }
    expected = canonical(record)

    def refuse(value: Any) -> bytes:
        raise AssertionError(f"the exact path was used for {value!r}")

    monkeypatch.setattr(rfc8785, "dumps", refuse)
    assert canonical(record) == expected


def test_floats_orjson_writes_otherwise_take_the_exact_path() -> None:
    # 1.5e-06: orjson writes "1.5e-6", RFC 8785 "0.0000015"; 1.0: "1.0" against "1".
    assert '"tiny":0.0000015' in canonical({"tiny": 1.5e-06})
    assert '"whole":[1,2]' in canonical({"whole": (1.0, 2)})


def test_keys_of_objects_inside_lists_are_sorted_by_utf16_code_units() -> None:
    # U+1F600 is the surrogates D83D DE00 in UTF-16, before U+E000; by code point (orjson's order) it comes after.
    assert '"l":[[{"\U0001f600":2,"\ue000":1}]]' in canonical({"l": [[{"\ue000": 1, "\U0001f600": 2}]]})


def test_values_json_cannot_hold_are_written_in_the_documented_form() -> None:
    body = json.loads(
        canonical(
            {
                "nan": float("nan"),
                "none": None,
                "flag": True,
                "n": 7,
                "edge": 2**53 - 1,
                "beyond": -(2**53),
                "half": 0.5,
                "items": [float("inf"), 1, "x"],
                "raw": b"\xffok",
                "when": object,
                3: "three",
            }
        )
    )
    assert body == {
        "canonical_form_version": "jcs-rfc8785-v1",
        "chain_algorithm": "pb-sha256-chain-v1",
        "nan": None,
        "none": None,
        "flag": True,
        "n": 7,
        "edge": 2**53 - 1,
        "beyond": str(-(2**53)),
        "half": 0.5,
        "items": [None, 1, "x"],
        "raw": "\ufffdok",
        "when": "<class 'object'>",
        "3": "three",
    }


def test_key_id_is_16_hex_digits_of_the_domain_separated_hash() -> None:
    assert key_id(KEY) == hashlib.sha256(b"pb-audit-key-id-v1\n" + KEY).hexdigest()[:16]


def test_a_signed_checkpoint_has_every_documented_field_and_the_documented_signature() -> None:
    body = checkpoint_body(5, HEAD, 4, 1_765_040_000.12345678, KEY)
    unsigned = {
        "type": "patchbay.audit.checkpoint",
        "chain_algorithm": "pb-sha256-chain-v1",
        "seq": 5,
        "hash": HEAD,
        "count": 4,
        "ts": 1_765_040_000.123457,
        "alg": "HMAC-SHA256",
        "key_id": key_id(KEY),
    }
    sig = hmac.new(KEY, b"pb-audit-checkpoint-v1\n" + rfc8785.dumps(unsigned), hashlib.sha256).hexdigest()
    assert body == {**unsigned, "sig": sig}
    assert audit_chain.signature_ok(body, KEY)


def test_an_unsigned_checkpoint_says_so_in_every_signature_field() -> None:
    body = checkpoint_body(5, HEAD, 4, 10.0, None)
    assert (body["alg"], body["key_id"], body["sig"]) == ("none", None, None)
    assert not audit_chain.signature_ok(body, KEY)


def test_a_checkpoint_the_signer_cannot_canonicalize_is_not_trusted() -> None:
    # A number beyond 2**53 has no RFC 8785 form: such a checkpoint cannot have been signed, whatever its sig says.
    forged = {**checkpoint_body(5, HEAD, 4, 10.0, KEY), "seq": 2**64}
    assert not audit_chain.signature_ok(forged, KEY)


def test_checkpointer_defaults_are_every_1000_records_or_300_seconds_and_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    by_count = Checkpointer(key=None, file=None, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="patchbay.audit"):
        assert by_count.maybe(999, HEAD) is None
        assert by_count.maybe(1000, HEAD) is not None
    assert len([r for r in caplog.records if r.name == "patchbay.audit"]) == 1
    by_time = Checkpointer(key=None, file=None, log=False, clock=lambda: now[0])
    now[0] = 299.5
    assert by_time.maybe(1, HEAD) is None
    now[0] = 300.0
    assert by_time.maybe(2, HEAD) is not None


def test_a_checkpoint_is_due_exactly_at_the_interval() -> None:
    now = [100.0]
    checkpointer = Checkpointer(key=None, file=None, log=False, every=10, seconds=60, clock=lambda: now[0])
    now[0] = 160.0
    checkpoint = checkpointer.maybe(1, HEAD)
    assert checkpoint is not None and checkpoint["count"] == 1


def test_flushing_before_any_record_writes_nothing(tmp_path: Path) -> None:
    file = tmp_path / "cp.jsonl"
    assert Checkpointer(key=KEY, file=file, log=False).flush() is None
    assert not file.exists()


def test_checkpoint_lines_are_compact_sorted_json_in_the_file_and_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "cp.jsonl"
    checkpointer = Checkpointer(key=KEY, file=file, log=True, every=1, clock=lambda: 1_765_040_000.5)
    with caplog.at_level(logging.INFO, logger="patchbay.audit"):
        body = checkpointer.maybe(1, HEAD)
    assert body is not None
    line = json.dumps(body, separators=(",", ":"), sort_keys=True)
    assert line.startswith('{"alg":"HMAC-SHA256","chain_algorithm":"pb-sha256-chain-v1","count":1,"hash":"abab')
    assert file.read_text() == line + "\n"
    (message,) = [r.getMessage() for r in caplog.records if r.name == "patchbay.audit"]
    assert message == f"audit checkpoint {line}"


def test_the_checkpoint_reader_names_each_bad_line_and_reads_on() -> None:
    good = json.dumps(checkpoint_body(3, HEAD, 3, 10.0, None))
    lines = [
        'patchbay.audit.checkpoint {"broken',
        good,
        "a line naming patchbay.audit.checkpoint without an object",
        '["patchbay.audit.checkpoint"]',
        '{"type": "other", "note": "patchbay.audit.checkpoint", "seq": 1, "hash": "x"}',
        '{"type": "patchbay.audit.checkpoint", "seq": 4}',
        '{"type": "patchbay.audit.checkpoint", "seq": "4", "hash": "x"}',
        "unrelated",
        json.dumps({**json.loads(good), "seq": 4, "signer": {"kind": "hmac"}}),
    ]
    found = list(read_checkpoints(lines))
    assert [(number, value if isinstance(value, str) else value["seq"]) for number, value in found] == [
        (1, found[0][1]),
        (2, 3),
        (3, "not a checkpoint object"),
        (4, "not a checkpoint object"),
        (5, "not a checkpoint object"),
        (6, "a checkpoint without an integer seq and a hash"),
        (7, "a checkpoint without an integer seq and a hash"),
        (9, 4),
    ]
    assert isinstance(found[0][1], str) and found[0][1].startswith("not JSON: ")


def _audit(**values: Any) -> Any:
    return settings_mod.from_dict({"audit": values}).audit


def test_key_errors_name_the_file_or_variable_and_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as unreadable:
        audit_chain.load_key(_audit(checkpoint_key_file="nope.key"), tmp_path, {}, "patchbay.toml")
    assert str(unreadable.value) == (
        f"patchbay.toml: audit.checkpoint_key_file: cannot read {tmp_path / 'nope.key'}: No such file or directory"
    )
    assert (unreadable.value.file, unreadable.value.key) == ("patchbay.toml", "audit.checkpoint_key_file")

    (tmp_path / "short.key").write_bytes(b"too short\n")
    with pytest.raises(ConfigError) as short_file:
        audit_chain.load_key(_audit(checkpoint_key_file="short.key"), tmp_path, {}, "patchbay.toml")
    assert str(short_file.value) == (
        f"patchbay.toml: audit.checkpoint_key_file ({tmp_path / 'short.key'}): the audit checkpoint key must be at "
        "least 16 bytes (e.g. the output of `python -c 'import secrets; print(secrets.token_hex(32))'`)"
    )
    assert (short_file.value.file, short_file.value.key) == ("patchbay.toml", "audit.checkpoint_key_file")

    with pytest.raises(ConfigError) as short_env:
        audit_chain.load_key(_audit(), tmp_path, {"PATCHBAY_AUDIT_KEY": "tiny"})
    assert str(short_env.value).startswith(
        "<config>: environment variable PATCHBAY_AUDIT_KEY: the audit checkpoint key must be at least 16 bytes"
    )
    assert (short_env.value.file, short_env.value.key) == ("<config>", "audit.checkpoint_key_env")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///{dir}/p.db?timeout=5", "{dir}/p.db.checkpoints.jsonl"),
        ("sqlite+pysqlite:///{dir}/p.db", "{dir}/p.db.checkpoints.jsonl"),
        ("sqlite:///{dir}/odd:///p.db", "{dir}/odd:/p.db.checkpoints.jsonl"),
        ("sqlite:///{dir}/p.db?a=1&b=?", "{dir}/p.db.checkpoints.jsonl"),
        ("sqlite:///:memory:", "{dir}/audit-checkpoints.jsonl"),
        ("postgresql:///patchbay", "{dir}/audit-checkpoints.jsonl"),
        ("postgresql+psycopg:///patchbay?host=/run/postgresql", "{dir}/audit-checkpoints.jsonl"),
    ],
)
def test_checkpoint_file_goes_next_to_a_sqlite_file_and_to_the_config_folder_otherwise(
    tmp_path: Path, url: str, expected: str
) -> None:
    found = audit_chain.checkpoint_path(_audit(), url.format(dir=tmp_path), tmp_path)
    assert found == Path(expected.format(dir=tmp_path))


def _server_settings(folder: Path, audit: str) -> settings_mod.Settings:
    folder.mkdir()
    (folder / "audit.key").write_bytes(KEY + b"\n")
    (folder / "patchbay.toml").write_text(
        f'[store]\nurl = "postgresql://db/patchbay"\n[audit]\ncheckpoint_key_file = "audit.key"\n{audit}\n'
    )
    return settings_mod.load(folder / "patchbay.toml", env={})


def test_the_server_checkpointer_counts_records_as_configured(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = _server_settings(tmp_path / "count", "checkpoint_every = 2\ncheckpoint_seconds = 86400")
    checkpointer = audit_chain.checkpointer(settings, {})
    assert checkpointer.signed
    with caplog.at_level(logging.INFO, logger="patchbay.audit"):
        assert checkpointer.maybe(1, HEAD) is None
        written = checkpointer.maybe(2, HEAD)
    assert written is not None and written["key_id"] == key_id(KEY)
    assert len([r for r in caplog.records if r.name == "patchbay.audit"]) == 1  # checkpoint_log defaults to true
    lines = (tmp_path / "count" / "audit-checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [2]


def test_the_server_checkpointer_times_checkpoints_as_configured(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _server_settings(tmp_path / "time", "checkpoint_seconds = 1\ncheckpoint_log = false")
    checkpointer = audit_chain.checkpointer(settings, {})
    deadline = time.monotonic() + 30
    written = None
    with caplog.at_level(logging.INFO, logger="patchbay.audit"):
        while written is None and time.monotonic() < deadline:  # due one second after the checkpointer started
            written = checkpointer.maybe(1, HEAD)
            if written is None:
                time.sleep(0.05)
    assert written is not None and written["seq"] == 1
    assert not [r for r in caplog.records if r.name == "patchbay.audit"]


def test_the_server_checkpointer_names_the_config_file_in_a_key_error(tmp_path: Path) -> None:
    (tmp_path / "patchbay.toml").write_text('[audit]\ncheckpoint_key_env = "MY_AUDIT_KEY"\n')
    settings = settings_mod.load(tmp_path / "patchbay.toml", env={})
    with pytest.raises(ConfigError) as error:
        audit_chain.checkpointer(settings, {"MY_AUDIT_KEY": "short"})
    assert str(error.value).startswith(f"{settings.source}: environment variable MY_AUDIT_KEY: ")


def test_a_body_that_is_no_json_or_has_no_exact_form_is_not_canonical() -> None:
    assert not audit_chain.is_canonical("wiped")
    assert not audit_chain.is_canonical('{"n":9007199254740993}')
    assert audit_chain.is_canonical('{"n":9007199254740991}')
