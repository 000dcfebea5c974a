"""The audit trail's tamper evidence: canonical record bytes and the hash chain that links them.

Every audit record is stored as its canonical JSON text (``body``) and a ``hash`` that covers the previous record's
hash, the record's sequence number and that text, so changing, inserting or deleting a record breaks the chain from
that point on. The shape follows SEP-3004 (Tamper-Evident Audit Record Contract, draft): each body names its
``canonical_form_version`` and ``chain_algorithm``, so a verifier in any language knows how to recompute it and a
later change of either can be told apart and migrated.

The exact bytes hashed for record ``seq`` (docs/audit.md, "Tamper evidence")::

    SHA-256( b"pb-audit-chain-v1\\n"
             || u32be(len(P)) || P      P = prev_hash as ASCII (64 lowercase hex digits; 64 zeros for seq 1)
             || u64be(seq)
             || u32be(len(B)) || B )    B = body as UTF-8 (RFC 8785 JCS text of the record)

and ``hash`` is that digest as 64 lowercase hex digits. Length prefixes make the encoding unambiguous: no two
``(prev_hash, seq, body)`` triples share the hashed bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping
from typing import Any, Final

import rfc8785

__all__ = [
    "CANONICAL_FORM_VERSION",
    "CHAIN_ALGORITHM",
    "GENESIS",
    "canonical",
    "is_canonical",
    "link",
]

CHAIN_ALGORITHM: Final = "pb-sha256-chain-v1"
CANONICAL_FORM_VERSION: Final = "jcs-rfc8785-v1"
GENESIS: Final = "0" * 64
_DOMAIN: Final = b"pb-audit-chain-v1\n"
# RFC 8785 §3.2.2.3: JSON numbers are IEEE 754 doubles; an integer beyond ±(2**53 - 1) has no exact JCS form.
_SAFE_INTEGER: Final = 2**53 - 1


def link(prev_hash: str, seq: int, body: str) -> str:
    """The chain hash of record ``seq`` whose canonical text is ``body``, following the record hashed ``prev_hash``.

    Raises:
        ValueError: ``prev_hash`` is not 64 lowercase hex digits or ``seq`` is not in 1..2**63-1.
    """
    if len(prev_hash) != 64 or prev_hash.strip("0123456789abcdef"):
        raise ValueError("prev_hash must be 64 lowercase hex digits")
    if not 1 <= seq < 2**63:
        raise ValueError(f"seq must be between 1 and 2**63-1, got {seq}")
    prev = prev_hash.encode("ascii")
    text = body.encode("utf-8")
    digest = hashlib.sha256(_DOMAIN)
    digest.update(struct.pack(">I", len(prev)) + prev)
    digest.update(struct.pack(">Q", seq))
    digest.update(struct.pack(">I", len(text)) + text)
    return digest.hexdigest()


def canonical(record: Mapping[str, Any]) -> str:
    """The RFC 8785 (JCS) text of ``record`` with ``canonical_form_version`` and ``chain_algorithm`` filled in.

    Never fails on what a call can carry: a value JCS has no form for is first made JSON-representable — NaN and
    infinities become null, an integer beyond 2**53 its decimal string (exact digits matter more in evidence than
    the number type), a non-string key its ``str``, bytes and other objects their ``str`` — so a record is always
    written.
    """
    value: dict[str, Any] = {
        "canonical_form_version": CANONICAL_FORM_VERSION,
        "chain_algorithm": CHAIN_ALGORITHM,
        **record,
    }
    try:
        return rfc8785.dumps(value).decode("utf-8")
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        return rfc8785.dumps(_representable(value)).decode("utf-8")


def is_canonical(body: str) -> bool:
    """Whether ``body`` is exactly the JCS text of the JSON it holds (a verifier's check on stored bodies)."""
    try:
        return rfc8785.dumps(_loads(body)).decode("utf-8") == body
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        return False


def _loads(body: str) -> Any:
    # json, not orjson: it keeps integers of any size exact, so a non-canonical big number is caught, not rounded.
    return json.loads(body)


def _representable(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if abs(value) <= _SAFE_INTEGER else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _representable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_representable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)
