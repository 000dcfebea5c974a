"""Tamper-proof ``requestState`` for multi round-trip requests (MCP 2026-07-28 basic/patterns/mrtr).

The client holds the state between rounds, so it is attacker-controlled: it is an HMAC-SHA256-signed blob bound
to the request (method, target name, a digest of the arguments), the caller, and a short lifetime. It carries the
answers given in earlier rounds, so the server keeps nothing between them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import orjson

from patchbay.errors import RpcError
from patchbay.protocol import jsonrpc

TTL_SECONDS = 600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def request_digest(method: str, target: str, arguments: Any, principal: str) -> str:
    body = orjson.dumps([method, target, arguments, principal], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()[:32]


class StateSigner:
    """Seals and opens request states with a server key (rotate by restarting with a new key)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def seal(self, digest: str, answers: dict[str, Any]) -> str:
        payload = orjson.dumps({"d": digest, "a": answers, "e": int(time.time()) + TTL_SECONDS})
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(mac)}"

    def open(self, state: Any, digest: str) -> dict[str, Any]:
        """The answers carried in ``state``.

        Raises:
            RpcError: -32602 when the state is malformed, forged, expired or made for another request.
        """
        if not isinstance(state, str) or state.count(".") != 1:
            raise jsonrpc.invalid_params("Invalid requestState: not a state this server issued")
        body, mac = state.split(".")
        try:
            payload = _unb64(body)
            given = _unb64(mac)
        except ValueError:
            raise jsonrpc.invalid_params("Invalid requestState: not a state this server issued") from None
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()
        if not hmac.compare_digest(given, expected):
            raise jsonrpc.invalid_params("Invalid requestState: signature check failed")
        data = orjson.loads(payload)
        if data.get("e", 0) < time.time():
            raise jsonrpc.invalid_params("Invalid requestState: expired; start the request again")
        if data.get("d") != digest:
            raise RpcError(
                jsonrpc.INVALID_PARAMS, "Invalid requestState: it belongs to a different request", status=400
            )
        answers = data.get("a")
        return answers if isinstance(answers, dict) else {}
