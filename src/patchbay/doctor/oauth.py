"""The client side of OAuth 2.1 for ``--interactive``: PKCE (RFC 7636), an authorization request with ``resource``
(RFC 8707), a loopback callback (RFC 8252 §7.3), the code exchange and a refresh."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import anyio.abc

from patchbay.doctor.probe import Probe

__all__ = ["Callback", "SignIn", "SignInError", "exchange", "pkce_pair", "refresh", "sign_in"]

_PAGE = b"<!doctype html><title>patchbay doctor</title><p>Signed in. You can close this tab and return to the terminal."


class SignInError(Exception):
    """The interactive sign-in could not complete; the message says which step and why."""


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) — RFC 7636 §4.1-§4.2."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class SignIn:
    access_token: str
    refresh_token: str | None
    client_id: str
    client_secret: str | None
    token_endpoint: str
    scope: str


class Callback:
    """A one-shot HTTP listener on 127.0.0.1 that receives the authorization response."""

    def __init__(self) -> None:
        self.params: dict[str, str] | None = None
        self._done = anyio.Event()
        self._listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None
        self.port = 0

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self._listener = listener
        self.port = int(listener.extra(anyio.abc.SocketAttribute.local_port))  # noqa: S610 (anyio, not Django)
        tg.start_soon(listener.serve, self._handle)

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = b""
            with anyio.move_on_after(10):
                while b"\r\n\r\n" not in data and len(data) < 16384:
                    data += await stream.receive(4096)
            line = data.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split(" ")
            target = parts[1] if len(parts) > 1 else "/"
            if urlsplit(target).path != "/callback":
                await stream.send(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                return
            self.params = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
            head = (
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n"
                f"content-length: {len(_PAGE)}\r\nconnection: close\r\n\r\n"
            )
            await stream.send(head.encode() + _PAGE)
            self._done.set()

    async def wait(self, seconds: float) -> dict[str, str]:
        with anyio.move_on_after(seconds):
            await self._done.wait()
        if self.params is None:
            raise SignInError(f"no answer on {self.redirect_uri} within {seconds:.0f} s")
        return self.params

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.aclose()


async def _register(probe: Probe, metadata: dict[str, Any], redirect_uri: str) -> tuple[str, str | None]:
    endpoint = metadata.get("registration_endpoint")
    if not isinstance(endpoint, str):
        raise SignInError("the authorization server has no registration_endpoint (DCR); pass --token instead")
    payload = {
        "client_name": "patchbay doctor",
        "redirect_uris": [redirect_uri],
        "application_type": "native",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    reply = await probe.send("POST", endpoint, json_body=payload, time_limit=15, cached=False)
    doc = reply.json()
    if reply.status not in (200, 201) or not isinstance(doc, dict) or "client_id" not in doc:
        raise SignInError(f"registration failed: {reply.describe()}")
    secret = doc.get("client_secret")
    return str(doc["client_id"]), secret if isinstance(secret, str) else None


async def exchange(probe: Probe, token_endpoint: str, form: dict[str, str]) -> dict[str, Any]:
    """POST a form to the token endpoint (RFC 6749 §4.1.3); the JSON answer, or SignInError."""
    reply = await probe.send(
        "POST", token_endpoint, form=form, headers={"accept": "application/json"}, time_limit=15, cached=False
    )
    doc = reply.json()
    if reply.status != 200 or not isinstance(doc, dict) or not isinstance(doc.get("access_token"), str):
        raise SignInError(f"token request failed: {reply.describe()}")
    return doc


async def refresh(probe: Probe, signin: SignIn, resource: str) -> dict[str, Any]:
    if not signin.refresh_token:
        raise SignInError("no refresh token was issued")
    form = {
        "grant_type": "refresh_token",
        "refresh_token": signin.refresh_token,
        "client_id": signin.client_id,
        "resource": resource,
    }
    if signin.client_secret:
        form["client_secret"] = signin.client_secret
    return await exchange(probe, signin.token_endpoint, form)


async def sign_in(
    probe: Probe,
    metadata: dict[str, Any],
    resource: str,
    scopes: list[str],
    show: Callable[[str], None],
    wait_seconds: float = 300.0,
) -> SignIn:
    """Register, send the person to the authorization page (``show(url)``), receive the code on loopback, exchange it.

    Raises:
        SignInError: registration, the authorization response or the token exchange failed.
    """
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    callback = Callback()
    async with anyio.create_task_group() as tg:
        await callback.start(tg)
        try:
            client_id, secret = await _register(probe, metadata, callback.redirect_uri)
            params = {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": callback.redirect_uri,
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "resource": resource,
            }
            if scopes:
                params["scope"] = " ".join(scopes)
            endpoint = str(metadata["authorization_endpoint"])
            show(endpoint + ("&" if "?" in endpoint else "?") + urlencode(params))
            answer = await callback.wait(wait_seconds)
        finally:
            tg.cancel_scope.cancel()  # stop serving before the listener closes
    await callback.close()
    if answer.get("state") != state:
        raise SignInError("the callback's state does not match the request (possible CSRF); try again")
    if "code" not in answer:
        raise SignInError(
            f"the authorization server answered error={answer.get('error')}: {answer.get('error_description', '')}"
        )
    form = {
        "grant_type": "authorization_code",
        "code": answer["code"],
        "redirect_uri": callback.redirect_uri,
        "client_id": client_id,
        "code_verifier": verifier,
        "resource": resource,
    }
    if secret:
        form["client_secret"] = secret
    token_endpoint = str(metadata["token_endpoint"])
    doc = await exchange(probe, token_endpoint, form)
    refresh_token = doc.get("refresh_token")
    return SignIn(
        doc["access_token"],
        refresh_token if isinstance(refresh_token, str) else None,
        client_id,
        secret,
        token_endpoint,
        str(doc.get("scope", "")),
    )
