"""Tamper-proof ``requestState`` for multi round-trip requests (MCP 2026-07-28 basic/patterns/mrtr).

The client holds the state between rounds, so it is attacker-controlled: it is an HMAC-SHA256-signed blob bound
to the request (method, target name, a digest of the arguments), the caller, and a short lifetime. It carries the
answers given in earlier rounds, so the server keeps nothing between them.

Each state is good for one retry. A single process remembers the states used; a fleet records them in Redis
(:class:`patchbay.fleet.limits.SharedNonces`, given as ``spent``) so a state used on one replica is refused on
every other, and refuses states while Redis is down rather than risk a replay.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from patchbay.errors import RpcError
from patchbay.protocol import jsonrpc

TTL_SECONDS = 600
USED = "Invalid requestState: already used; start the request again"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def request_digest(method: str, target: str, arguments: Any, principal: str) -> str:
    body = orjson.dumps([method, target, arguments, principal], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()[:32]


class SpentStates(Protocol):
    async def spend(self, nonce: str, expiry: float) -> bool:
        """Record ``nonce`` as used until ``expiry`` (epoch seconds); False when it was used before.

        Raises:
            RpcError: the record cannot be reached (the state is then refused).
        """
        ...


class StateSigner:
    """Seals and opens request states with a server key.

    Each state is good for one retry: a replayed state (for example the round that confirmed a delete) is
    refused. The record of used states lives in this process, or in ``spent`` (a fleet's shared record). States
    signed with one of ``previous_keys`` (from ``server.previous_secrets``) are still accepted.
    """

    def __init__(
        self,
        key: bytes,
        *,
        max_remembered: int = 100_000,
        previous_keys: Sequence[bytes] = (),
        spent: SpentStates | None = None,
    ) -> None:
        self._key = key
        self._keys = (key, *previous_keys)
        self.spent = spent
        self._used: dict[str, float] = {}  # nonce -> expiry, oldest first
        self._max_remembered = max_remembered

    def seal(self, digest: str, answers: dict[str, Any], carry: Any = None) -> str:
        """A state for the retry of the request ``digest`` names, carrying ``answers`` and, when not None,
        ``carry``: a handler's own opaque state (an upstream server's ``requestState``, wrapped, never trusted as
        ours)."""
        body: dict[str, Any] = {"d": digest, "a": answers, "e": int(time.time()) + TTL_SECONDS}
        body["n"] = secrets.token_urlsafe(12)
        if carry is not None:
            body["c"] = carry
        payload = orjson.dumps(body)
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(mac)}"

    def open(self, state: Any, digest: str) -> dict[str, Any]:
        """The answers carried in ``state``.

        Raises:
            RpcError: -32602 when the state is malformed, forged, expired or made for another request.
        """
        return self.open_with_carry(state, digest)[0]

    def open_with_carry(self, state: Any, digest: str) -> tuple[dict[str, Any], Any]:
        """The answers carried in ``state`` and the ``carry`` it was sealed with (None if none).

        Raises:
            RpcError: -32602 when the state is malformed, forged, expired, used or made for another request.
        """
        data = self._verify(state, digest)
        self._spend(str(data.get("n", "")), float(data["e"]))
        answers = data.get("a")
        return (answers if isinstance(answers, dict) else {}), data.get("c")

    async def open_once(self, state: Any, digest: str) -> tuple[dict[str, Any], Any]:
        """As :meth:`open_with_carry`, spending the state in the shared record when there is one.

        Raises:
            RpcError: -32602 as for :meth:`open_with_carry`; the shared record's error when it cannot be reached.
        """
        if self.spent is None:
            return self.open_with_carry(state, digest)
        data = self._verify(state, digest)
        if not await self.spent.spend(str(data.get("n", "")), float(data["e"])):
            raise jsonrpc.invalid_params(USED)
        answers = data.get("a")
        return (answers if isinstance(answers, dict) else {}), data.get("c")

    def _verify(self, state: Any, digest: str) -> dict[str, Any]:
        if not isinstance(state, str) or state.count(".") != 1:
            raise jsonrpc.invalid_params("Invalid requestState: not a state this server issued")
        body, mac = state.split(".")
        try:
            payload = _unb64(body)
            given = _unb64(mac)
        except ValueError:
            raise jsonrpc.invalid_params("Invalid requestState: not a state this server issued") from None
        if not any(hmac.compare_digest(given, hmac.new(k, payload, hashlib.sha256).digest()) for k in self._keys):
            raise jsonrpc.invalid_params(
                "Invalid requestState: not signed by this server (altered, or issued before a restart or by another "
                "replica without the same server.secret); start the request again"
            )
        data: dict[str, Any] = orjson.loads(payload)  # signed by us, so one of our own objects
        if data.get("e", 0) < time.time():
            raise jsonrpc.invalid_params("Invalid requestState: expired; start the request again")
        if data.get("d") != digest:
            raise RpcError(
                jsonrpc.INVALID_PARAMS, "Invalid requestState: it belongs to a different request", status=400
            )
        return data

    def _spend(self, nonce: str, expiry: float) -> None:
        now = time.time()
        while self._used:  # forget states that have expired anyway
            oldest, until = next(iter(self._used.items()))
            if until >= now and len(self._used) < self._max_remembered:
                break
            del self._used[oldest]
        if nonce in self._used:
            raise jsonrpc.invalid_params(USED)
        self._used[nonce] = expiry
