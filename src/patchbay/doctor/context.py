"""What a check is given: the target, the client profile, the probe, the options, and the facts shared by a run.

``Conversation`` speaks MCP the way the profile's client does (its headers, Accept, versions), with raw HTTP.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from patchbay.doctor.model import Result, Status
from patchbay.doctor.probe import Probe, Reply
from patchbay.doctor.profiles import Profile

__all__ = ["MODERN", "Context", "Options", "Session", "Target"]

MODERN = "2026-07-28"
FUTURE_VERSION = "2099-01-01"  # a version no server knows: negotiation must still answer (D1)
DOCTOR_CLIENT = {"name": "patchbay-doctor", "version": "1"}


@dataclass(frozen=True)
class Options:
    """Run options. ``local`` treats a loopback/private http URL as a stand-in for the public one."""

    token: str | None = None
    local: bool = False
    calls: bool = True
    stream_hold: float = 35.0
    slow_warn: float = 2.0
    slow_fail: float = 8.0
    label: str | None = None
    # A Patchbay's [metrics] token: the report then lists its upstream MCP servers from /readyz's operator part.
    metrics_token: str | None = None


@dataclass(frozen=True)
class Target:
    url: str

    @property
    def parts(self) -> SplitResult:
        return urlsplit(self.url)

    @property
    def origin(self) -> str:
        parts = self.parts
        return urlunsplit((parts.scheme, parts.netloc, "", "", ""))

    @property
    def path(self) -> str:
        return self.parts.path or "/"

    def at(self, path: str) -> str:
        return self.origin + path

    @property
    def alternate(self) -> str:
        """The same URL with the trailing slash toggled (/mcp ↔ /mcp/)."""
        path = self.path
        other = path[:-1] if path.endswith("/") and path != "/" else path + "/"
        parts = self.parts
        return urlunsplit((parts.scheme, parts.netloc, other, parts.query, ""))


@dataclass
class Session:
    """An MCP connection opened the way the profile's client opens it."""

    reply: Reply
    version: str = ""
    session_id: str | None = None
    server_info: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    notified: Reply | None = None

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class Context:
    target: Target
    profile: Profile
    probe: Probe
    options: Options
    facts: dict[str, Any]  # shared by every profile of one run (auth documents, tool lists…)
    token: str | None = None

    # -- results
    def result(self, check_id: str, status: Status, why: str, fix: str | None = None, **details: Any) -> Result:
        from patchbay.doctor.model import CATALOG

        return Result(check_id, status, why, CATALOG[check_id].fix if fix is None else fix, self.profile.name, details)

    def ok(self, check_id: str, why: str, **details: Any) -> Result:
        return self.result(check_id, Status.PASS, why, **details)

    def fail(self, check_id: str, why: str, fix: str | None = None, **details: Any) -> Result:
        return self.result(check_id, Status.FAIL, why, fix, **details)

    def warn(self, check_id: str, why: str, fix: str | None = None, **details: Any) -> Result:
        return self.result(check_id, Status.WARN, why, fix, **details)

    def skip(self, check_id: str, why: str) -> Result:
        return self.result(check_id, Status.SKIP, why, "")

    # -- MCP over raw HTTP, as this client sends it
    def headers(
        self,
        *,
        accept: str | None = None,
        session: Session | None = None,
        version: str | None = None,
        origin: str | None = None,
        auth: bool = True,
    ) -> dict[str, str]:
        headers = {"user-agent": self.profile.user_agent, "accept": accept or self.profile.accept}
        if session is not None and session.session_id:
            headers["mcp-session-id"] = session.session_id
        if version or (session is not None and session.version):
            headers["mcp-protocol-version"] = version or (session.version if session else "")
        if origin:
            headers["origin"] = origin
        if auth and self.token:
            headers["authorization"] = f"Bearer {self.token}"
        return headers

    async def post(
        self, message: dict[str, Any], *, url: str | None = None, cached: bool = True, **header_args: Any
    ) -> Reply:
        return await self.probe.send(
            "POST", url or self.target.url, headers=self.headers(**header_args), json_body=message, cached=cached
        )

    async def initialize(self, version: str | None = None, **header_args: Any) -> Session:
        """initialize + notifications/initialized, as the profile's client does (2025 era)."""
        requested = version or self.profile.protocol_versions[0]
        params = {"protocolVersion": requested, "capabilities": {}, "clientInfo": DOCTOR_CLIENT}
        reply = await self.post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}, **header_args)
        session = Session(reply)
        message = reply.json()
        result = message.get("result") if isinstance(message, dict) else None
        if not reply.ok or not isinstance(result, dict):
            session.error = _failure(reply, message)
            return session
        session.version = str(result.get("protocolVersion", ""))
        session.session_id = reply.headers.get("mcp-session-id")
        session.server_info = result.get("serverInfo") or {}
        session.notified = await self.post(
            {"jsonrpc": "2.0", "method": "notifications/initialized"}, session=session, **header_args
        )
        return session

    async def request(
        self,
        session: Session,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        id: int = 2,
        cached: bool = True,
        **header_args: Any,
    ) -> tuple[Reply, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            message["params"] = params
        reply = await self.post(message, session=session, cached=cached, **header_args)
        return reply, reply.json()

    async def session(self) -> Session:
        """The profile's connection, opened once per run and profile."""
        key = f"session:{self.profile.name}:{self.profile.protocol_versions[0]}:{bool(self.token)}"
        if key not in self.facts:
            self.facts[key] = await self.initialize()
        session: Session = self.facts[key]
        return session

    def label(self, session: Session | None) -> str:
        """The server label clients put in tool-name prefixes: --label, else the server's name, slugged."""
        if self.options.label:
            return self.options.label
        name = str((session.server_info if session else {}).get("name") or self.target.parts.hostname or "mcp")
        slug = re.sub(r"[^a-z0-9_-]+", "_", name.lower()).strip("_")
        return slug[:24] or "mcp"

    @staticmethod
    def fresh_session_id() -> str:
        return uuid.uuid4().hex


def _failure(reply: Reply, message: Any) -> str:
    if isinstance(message, dict) and isinstance(message.get("error"), dict):
        error = message["error"]
        return f"{reply.describe()} (JSON-RPC error {error.get('code')}: {error.get('message')})"
    return reply.describe()
