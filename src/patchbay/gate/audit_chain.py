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
import hmac
import json
import logging
import math
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson
import rfc8785

from patchbay.errors import ConfigError

if TYPE_CHECKING:
    from patchbay.settings import AuditSettings, Settings

__all__ = [
    "CANONICAL_FORM_VERSION",
    "CHAIN_ALGORITHM",
    "GENESIS",
    "Checkpointer",
    "canonical",
    "canonical_bytes",
    "check_link",
    "checkpoint_body",
    "checkpoint_path",
    "checkpointer",
    "is_canonical",
    "key_id",
    "link",
    "link_checked",
    "load_key",
    "read_checkpoints",
    "signature_ok",
]

CHAIN_ALGORITHM: Final = "pb-sha256-chain-v1"
CANONICAL_FORM_VERSION: Final = "jcs-rfc8785-v1"
GENESIS: Final = "0" * 64
_DOMAIN: Final = b"pb-audit-chain-v1\n"
# RFC 8785 §3.2.2.3: JSON numbers are IEEE 754 doubles; an integer beyond ±(2**53 - 1) has no exact JCS form.
_SAFE_INTEGER: Final = 2**53 - 1
# A float is written in plain decimal notation by Python's repr (and orjson) from 1e-4 up to 1e16 exclusive
# (every float from 2**52 up is integral): the same test as "e" not in repr(value), without the repr. NaN and the
# infinities fail the comparison.
_PLAIN_MIN: Final = 1e-4
_PLAIN_MAX: Final = 1e16
_LENGTH: Final = struct.Struct(">I")
_SEQ: Final = struct.Struct(">Q")
_PREV_LENGTH: Final = _LENGTH.pack(64)  # prev_hash is always 64 ASCII hex digits (checked in link)
_log = logging.getLogger("patchbay.audit")


def link(prev_hash: str, seq: int, body: str) -> str:
    """The chain hash of record ``seq`` whose canonical text is ``body``, following the record hashed ``prev_hash``.

    Raises:
        ValueError: ``prev_hash`` is not 64 lowercase hex digits or ``seq`` is not in 1..2**63-1.
    """
    check_link(prev_hash, seq, seq)
    return link_checked(prev_hash, seq, body.encode("utf-8"))


def check_link(prev_hash: str, first: int, last: int) -> None:
    """The checks :func:`link` makes, for records ``first`` to ``last`` following ``prev_hash``.

    Raises:
        ValueError: ``prev_hash`` is not 64 lowercase hex digits or a seq is not in 1..2**63-1.
    """
    if len(prev_hash) != 64 or prev_hash.strip("0123456789abcdef"):
        raise ValueError("prev_hash must be 64 lowercase hex digits")
    for seq in (first, last):
        if not 1 <= seq < 2**63:
            raise ValueError(f"seq must be between 1 and 2**63-1, got {seq}")


def link_checked(prev_hash: str, seq: int, body: bytes) -> str:
    """:func:`link` of a ``prev_hash`` and ``seq`` that passed :func:`check_link`, ``body`` as UTF-8: for the
    writer, which checks the head it reads once per batch, then links each record to the hash it just made."""
    # One buffer, one hash call: the writer links every record, and three updates cost more than the copy.
    return hashlib.sha256(
        b"".join((_DOMAIN, _PREV_LENGTH, prev_hash.encode("ascii"), _SEQ.pack(seq), _LENGTH.pack(len(body)), body))
    ).hexdigest()


def canonical(record: Mapping[str, Any]) -> str:
    """The RFC 8785 (JCS) text of ``record`` with ``canonical_form_version`` and ``chain_algorithm`` filled in.

    Never fails on what a call can carry: a value JCS has no form for is first made JSON-representable — NaN and
    infinities become null, an integer beyond 2**53 its decimal string (exact digits matter more in evidence than
    the number type), a non-string key its ``str``, bytes and other objects their ``str`` — so a record is always
    written.
    """
    return canonical_bytes(record).decode("utf-8")


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """:func:`canonical` as UTF-8, the bytes the chain hashes (the writer hashes them before decoding once)."""
    value: dict[str, Any] = {
        "canonical_form_version": CANONICAL_FORM_VERSION,
        "chain_algorithm": CHAIN_ALGORITHM,
        **record,
    }
    if _plain(value):
        # The writer's hot path: for values like these orjson's sorted output is byte for byte the JCS text
        # (tests/unit/test_audit_chain.py holds the two against each other), at a twentieth of the cost.
        try:
            text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # e.g. a lone surrogate in a string: the exact path decides
            pass
        else:
            # ASCII text has ASCII keys, which sort alike both ways: only other text needs its keys looked at.
            if text.isascii() or _keys_sort_alike(value):
                return text
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        return rfc8785.dumps(_representable(value))


def _plain(value: Any) -> bool:
    """Whether orjson's sorted output of ``value`` is its RFC 8785 text, but for the order of keys at or above
    U+E000 (:func:`_keys_sort_alike`): JSON types only; string keys; integers JavaScript holds exactly; floats that
    both write in plain decimal notation (not integral, no exponent)."""
    kind = type(value)
    if kind is dict:
        # Loops with the scalars decided inline, not a call per value: every record passes here on the writer's
        # thread, and most of its values are strings, numbers and None.
        for key, item in value.items():
            if type(key) is not str:
                return False
            kind = type(item)
            if kind is str or item is None or kind is bool:
                continue
            if kind is int:
                if not -_SAFE_INTEGER <= item <= _SAFE_INTEGER:
                    return False
            elif kind is float:
                if not _PLAIN_MIN <= abs(item) < _PLAIN_MAX or item.is_integer():
                    return False
            elif not _plain(item):
                return False
        return True
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-_SAFE_INTEGER <= value <= _SAFE_INTEGER)
    if kind is float:
        return bool(_PLAIN_MIN <= abs(value) < _PLAIN_MAX) and not value.is_integer()
    if kind is list:
        return all(type(item) is str or _plain(item) for item in value)
    return False


def _keys_sort_alike(value: Any) -> bool:
    """Whether every key in ``value`` sorts alike by code point and by UTF-16 code unit: none at or above
    U+E000."""
    if type(value) is dict:
        return all((key.isascii() or max(key) < "\ue000") and _keys_sort_alike(v) for key, v in value.items())
    if type(value) is list:
        return all(_keys_sort_alike(item) for item in value)
    return True


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


# -- signed checkpoints ---------------------------------------------------------------------------------------------

CHECKPOINT_TYPE: Final = "patchbay.audit.checkpoint"
HMAC_ALGORITHM: Final = "HMAC-SHA256"
_KEY_ID_DOMAIN: Final = b"pb-audit-key-id-v1\n"
_SIGN_DOMAIN: Final = b"pb-audit-checkpoint-v1\n"


def key_id(key: bytes) -> str:
    """A short public name for ``key`` (16 hex digits of a domain-separated SHA-256): says which key signed a
    checkpoint without revealing anything usable about it."""
    return hashlib.sha256(_KEY_ID_DOMAIN + key).hexdigest()[:16]


def checkpoint_body(seq: int, head: str, count: int, ts: float, key: bytes | None) -> dict[str, Any]:
    """The checkpoint of the chain head ``(seq, head)``, signed with ``key`` when there is one.

    ``sig`` is the hex HMAC-SHA256, under ``key``, of ``b"pb-audit-checkpoint-v1\\n"`` followed by the RFC 8785
    text of every other field of the checkpoint.
    """
    unsigned: dict[str, Any] = {
        "type": CHECKPOINT_TYPE,
        "chain_algorithm": CHAIN_ALGORITHM,
        "seq": seq,
        "hash": head,
        "count": count,
        "ts": round(ts, 6),
        "alg": HMAC_ALGORITHM if key is not None else "none",
        "key_id": key_id(key) if key is not None else None,
    }
    unsigned["sig"] = _sign(unsigned, key) if key is not None else None
    return unsigned


def signature_ok(checkpoint: Mapping[str, Any], key: bytes) -> bool:
    """Whether ``checkpoint`` carries a valid HMAC-SHA256 signature under ``key`` (compared in constant time)."""
    sig = checkpoint.get("sig")
    if not isinstance(sig, str):
        return False
    unsigned = {k: v for k, v in checkpoint.items() if k != "sig"}
    try:
        expected = _sign(unsigned, key)
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        return False
    return hmac.compare_digest(expected, sig)


def _sign(unsigned: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, _SIGN_DOMAIN + rfc8785.dumps(dict(unsigned)), hashlib.sha256).hexdigest()


class Checkpointer:
    """Writes a signed checkpoint of the chain head every ``every`` records or ``seconds`` seconds.

    The audit writer calls :meth:`maybe` after each commit with the new head; the call costs two comparisons
    unless a checkpoint is due. A checkpoint goes where the database cannot rewrite it: appended to ``file`` (JSON
    Lines, created with mode 0600) and/or logged as one INFO line on the ``patchbay.audit`` logger. Thread-safe:
    the writer thread, the pruner and shutdown may all call it.
    """

    def __init__(
        self,
        *,
        key: bytes | None,
        file: Path | None,
        log: bool = True,
        every: int = 1000,
        seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._file = file
        self._log = log
        self._every = every
        self._seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._last_seq = 0
        self._last_at = clock()
        self._head: tuple[int, str] | None = None

    @property
    def signed(self) -> bool:
        return self._key is not None

    def maybe(self, seq: int, head: str) -> dict[str, Any] | None:
        """Write a checkpoint of ``(seq, head)`` when one is due; returns it, or None when none was due.

        Raises:
            OSError: the checkpoint file cannot be written (the caller logs it; the records are committed).
        """
        self._head = (seq, head)
        if seq - self._last_seq < self._every and self._clock() - self._last_at < self._seconds:
            return None
        return self.checkpoint(seq, head)

    def flush(self) -> dict[str, Any] | None:
        """Checkpoint the last head given to :meth:`maybe` unless one already covers it: call it at shutdown, so
        the records written since the last checkpoint are covered too.

        Raises:
            OSError: the checkpoint file cannot be written.
        """
        head = self._head
        return self.checkpoint(*head) if head is not None else None

    def checkpoint(self, seq: int, head: str) -> dict[str, Any] | None:
        """Write a checkpoint of ``(seq, head)`` now (at shutdown, after pruning); None when ``seq`` is already
        covered by the last one.

        Raises:
            OSError: the checkpoint file cannot be written.
        """
        with self._lock:
            if seq <= self._last_seq:
                self._last_at = self._clock()
                return None
            now = self._clock()
            body = checkpoint_body(seq, head, seq - self._last_seq, now, self._key)
            line = json.dumps(body, separators=(",", ":"), sort_keys=True)
            if self._file is not None:
                _append(self._file, line)
            if self._log:
                _log.info("audit checkpoint %s", line)
            self._last_seq, self._last_at = seq, now
            return body


def _append(path: Path, line: str) -> None:
    # O_APPEND: concurrent appenders (the server and a CLI) never interleave inside a line. fsync: a checkpoint is
    # evidence, written once per thousand records, so the disk sync is cheap where it counts.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoints(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Checkpoints found in ``lines`` (a checkpoint file, or a log holding "audit checkpoint {...}" lines), as
    ``(line number, checkpoint)``; a line that names a checkpoint but does not parse as one yields its error text.
    Other lines are skipped, so a whole log file can be given."""
    for number, line in enumerate(lines, start=1):
        if CHECKPOINT_TYPE not in line:
            continue
        start = line.find("{")
        try:
            value = json.loads(line[start:]) if start >= 0 else None
        except ValueError as exc:
            yield number, f"not JSON: {exc}"
            continue
        if not isinstance(value, dict) or value.get("type") != CHECKPOINT_TYPE:
            yield number, "not a checkpoint object"
        elif not isinstance(value.get("seq"), int) or not isinstance(value.get("hash"), str):
            yield number, "a checkpoint without an integer seq and a hash"
        else:
            yield number, value


MIN_KEY_BYTES: Final = 16


def load_key(audit: AuditSettings, base_dir: Path, env: Mapping[str, str], source: str = "<config>") -> bytes | None:
    """The checkpoint signing key: ``[audit] checkpoint_key_file``'s content, else the variable that
    ``checkpoint_key_env`` names; None when neither is set (checkpoints are then unsigned).

    Raises:
        ConfigError: the key file cannot be read, or the key is shorter than 16 bytes (the message names the file
            or variable, never the key).
    """
    if audit.checkpoint_key_file:
        path = base_dir / audit.checkpoint_key_file
        try:
            key = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(
                f"{source}: audit.checkpoint_key_file: cannot read {path}: {exc.strerror}",
                file=source,
                key="audit.checkpoint_key_file",
            ) from None
        where = f"audit.checkpoint_key_file ({path})"
    else:
        text = env.get(audit.checkpoint_key_env)
        if not text:
            return None
        key, where = text.strip().encode("utf-8"), f"environment variable {audit.checkpoint_key_env}"
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"{source}: {where}: the audit checkpoint key must be at least {MIN_KEY_BYTES} bytes "
            "(e.g. the output of `python -c 'import secrets; print(secrets.token_hex(32))'`)",
            file=source,
            key="audit.checkpoint_key_file" if audit.checkpoint_key_file else "audit.checkpoint_key_env",
        )
    return key


def checkpoint_path(audit: AuditSettings, store_url: str, base_dir: Path) -> Path | None:
    """Where checkpoints are appended: ``checkpoint_file`` (relative to the config folder), else next to a SQLite
    store file (``<db>.checkpoints.jsonl``), else ``audit-checkpoints.jsonl`` in the config folder; None for ""."""
    if audit.checkpoint_file is not None:
        return (base_dir / audit.checkpoint_file) if audit.checkpoint_file else None
    scheme, sep, rest = store_url.partition(":///")
    database = rest.partition("?")[0]
    if sep and scheme.split("+")[0] == "sqlite" and database and ":memory:" not in database:
        return Path(database).with_name(Path(database).name + ".checkpoints.jsonl")
    return base_dir / "audit-checkpoints.jsonl"


def checkpointer(settings: Settings, env: Mapping[str, str]) -> Checkpointer:
    """The server's checkpointer, as ``[audit]`` configures it.

    Raises:
        ConfigError: see :func:`load_key`.
    """
    audit = settings.audit
    return Checkpointer(
        key=load_key(audit, settings.base_dir, env, settings.source),
        file=checkpoint_path(audit, settings.store_url, settings.base_dir),
        log=audit.checkpoint_log,
        every=audit.checkpoint_every,
        seconds=audit.checkpoint_seconds,
    )
