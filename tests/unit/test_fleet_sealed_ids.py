"""Sealed session ids at their edges: key-id collisions in the ring, the length limit, canonical spelling,
truncation, and payloads that are authentic but not what this version seals."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from patchbay.fleet.sessions import Sealed, SealedIds

SECRET = b"the-current-secret"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def sealed(**fields: Any) -> Sealed:
    values: dict[str, Any] = {
        "sid": "cd" * 16,
        "owner": "alice",
        "version": "2025-11-25",
        "caps": {"sampling": {}},
        "client_info": {"name": "edge-client", "version": "1"},
        "iat": 1_700_000_000,
        "exp": 2_000_000_000,
    }
    return Sealed(**(values | fields))


def raw_of(session_id: str) -> bytes:
    text = session_id.removeprefix("pb1.")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def format_key(secret: bytes) -> tuple[bytes, AESGCM]:
    """The key id and cipher of ``secret`` as the format defines them, written out here rather than imported."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"patchbay session ids v1").derive(secret)
    return hashlib.sha256(b"patchbay key id\x00" + key).digest()[:2], AESGCM(key)


def test_sealed_ids_need_a_secret() -> None:
    with pytest.raises(ValueError, match=r"^sealed session ids need at least one secret \(server\.secret\)$"):
        SealedIds([])


def test_two_secrets_whose_key_ids_collide_both_open_their_ids() -> None:
    # The key id is 2 bytes, so two secrets of a ring may share one; found here by trying secrets in turn.
    seen: dict[bytes, bytes] = {}
    for n in range(100_000):
        secret = f"secret-{n}".encode()
        key_id = raw_of(SealedIds([secret]).seal(sealed()))[:2]
        if key_id in seen:
            first, second = seen[key_id], secret
            break
        seen[key_id] = secret
    else:
        pytest.fail("no two secrets with the same key id")
    ring = SealedIds([first, second])
    assert ring.unseal(SealedIds([second]).seal(sealed())) == sealed()
    assert ring.unseal(SealedIds([first]).seal(sealed())) == sealed()
    assert SealedIds([first]).unseal(SealedIds([second]).seal(sealed())) is None


def test_a_spilled_session_says_so_in_its_id() -> None:
    ids = SealedIds([SECRET])
    assert ids.unseal(ids.seal(sealed(spilled=True))) == sealed(spilled=True)
    assert ids.unseal(ids.seal(sealed(client_info=None))) == sealed(client_info=None)


def test_ids_of_every_length_open() -> None:
    # base64 pads each length differently (RFC 4648 §4); the id drops the padding and must still open.
    ids = SealedIds([SECRET])
    remainders = set()
    for n in range(6):
        one = sealed(client_info={"name": "c" * n})
        session_id = ids.seal(one)
        remainders.add(len(raw_of(session_id)) % 3)
        assert ids.unseal(session_id) == one
    assert remainders == {0, 1, 2}


def test_an_id_up_to_4096_characters_opens_and_a_longer_one_is_refused() -> None:
    ids = SealedIds([SECRET])
    by_length = {}
    for n in range(2850, 2880):
        one = sealed(caps={"experimental": {"pad": "p" * n}})
        session_id = ids.seal(one)
        by_length[len(session_id)] = (session_id, one)
    session_id, one = by_length[4096]
    assert ids.unseal(session_id) == one
    longer, _ = by_length[4098]  # 4097 characters is no base64 length
    assert ids.unseal(longer) is None


def test_every_other_spelling_of_the_last_character_is_refused() -> None:
    ids = SealedIds([SECRET])
    session_id = next(s for n in range(3) if len(raw_of(s := ids.seal(sealed(client_info={"name": "c" * n})))) % 3 == 1)
    same_bytes = [
        session_id[:-1] + ch
        for ch in ALPHABET
        if ch != session_id[-1] and raw_of(session_id[:-1] + ch) == raw_of(session_id)
    ]
    assert len(same_bytes) == 15  # one byte in the last two characters leaves 4 unused bits
    assert ids.unseal(session_id) is not None
    for spelling in same_bytes:
        assert ids.unseal(spelling) is None, spelling


def test_every_truncation_of_a_genuine_id_is_unknown_never_an_exception() -> None:
    ids = SealedIds([SECRET])
    session_id = ids.seal(sealed())
    for end in range(len(session_id)):
        assert ids.unseal(session_id[:end]) is None, end


@pytest.mark.parametrize(
    "fields",
    [
        {"sid": 7},
        {"version": None},
        {"caps": ["sampling"]},
        {"iat": "1700000000"},
        {"exp": 2_000_000_000.5},
        {"owner": 42},
    ],
    ids=["sid", "version", "caps", "iat", "exp", "owner"],
)
def test_an_authentic_payload_with_a_field_of_the_wrong_type_is_unknown(fields: dict[str, Any]) -> None:
    # Another version of Patchbay holding the same secret could seal what this one does not read.
    ids = SealedIds([SECRET])
    assert ids.unseal(ids.seal(sealed(**fields))) is None


def test_client_info_that_is_not_an_object_is_dropped_and_the_session_still_opens() -> None:
    ids = SealedIds([SECRET])
    assert ids.unseal(ids.seal(sealed(client_info=["unit-client"]))) == sealed(client_info=None)


def test_an_anonymous_session_opens_with_no_owner() -> None:
    ids = SealedIds([SECRET])
    assert ids.unseal(ids.seal(sealed(owner=None))) == sealed(owner=None)


def test_an_id_sealed_by_hand_as_the_format_says_opens_and_a_sealed_id_decrypts_by_hand() -> None:
    # During a rolling upgrade replicas of two releases open each other's ids: the key's derivation from the
    # secret (RFC 5869 info), its id and the associated data are part of the format, not of one release.
    key_id, aead = format_key(SECRET)
    nonce = bytes(range(12))
    payload = {
        "s": "cd" * 16,
        "o": "alice",
        "v": "2025-11-25",
        "c": {"sampling": {}},
        "t": 1_700_000_000,
        "e": 2_000_000_000,
        "i": {"name": "edge-client", "version": "1"},
    }
    raw = key_id + nonce + aead.encrypt(nonce, orjson.dumps(payload), b"patchbay-session-v1")
    ids = SealedIds([SECRET])
    assert ids.unseal("pb1." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()) == sealed()
    sealed_raw = raw_of(ids.seal(sealed()))
    assert sealed_raw[:2] == key_id
    assert orjson.loads(aead.decrypt(sealed_raw[2:14], sealed_raw[14:], b"patchbay-session-v1")) == payload


def test_ids_ending_in_any_base64_character_open() -> None:
    # Sealed bytes a multiple of 3 long have no padding, so the id's last character is any of the 64 (the tag's
    # bits, random with the nonce); all but about 10^-7 of the time one of a thousand ids ends in "X".
    ids = SealedIds([SECRET])
    one = next(s for n in range(3) if len(raw_of(ids.seal(s := sealed(client_info={"name": "c" * n})))) % 3 == 0)
    last = set()
    for _ in range(1000):
        session_id = ids.seal(one)
        last.add(session_id[-1])
        assert ids.unseal(session_id) == one, session_id
    assert "X" in last
