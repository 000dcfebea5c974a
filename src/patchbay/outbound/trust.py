"""TLS trust for an operator-configured upstream whose certificate an internal CA signed (``ca_file``)."""

from __future__ import annotations

import ssl
from pathlib import Path

from patchbay.errors import ConfigError


def trusting(ca_file: str, *, base_dir: Path, key: str) -> ssl.SSLContext:
    """A client context trusting the usual public CAs (those httpx trusts) and the CA certificates in ``ca_file``.

    ``ca_file`` is relative to ``base_dir`` (the config folder); ``key`` names the setting in messages.

    Raises:
        ConfigError: the file cannot be read, or holds no PEM certificate.
    """
    import httpx  # for its default trust store (certifi), so every outbound client trusts the same public CAs

    path = base_dir / ca_file
    context = httpx.create_ssl_context(trust_env=False)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a PEM (ASCII) file"
        raise ConfigError(f"{key}: cannot read {path}: {reason}", key=key) from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigError(f"{key}: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", key=key)
    try:
        context.load_verify_locations(cadata=text)
    except ssl.SSLError as exc:
        raise ConfigError(f"{key}: {path} is not a valid PEM certificate file: {exc.reason or exc}", key=key) from None
    return context
