"""The upstream MCP servers behind a Patchbay (``type = "mcp"`` connectors), read from its /readyz operator part.

Only with the server's ``[metrics]`` token: /readyz shows each connector's operator part (type, tool count, era, a
stdio child's stderr) to nobody else. Any other MCP server has no such part; the doctor then says why it has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from patchbay.doctor.context import Target
from patchbay.doctor.probe import Probe

__all__ = ["STDERR_LINES", "Upstream", "UpstreamsReport", "read_upstreams"]

STDERR_LINES = 20  # of a failing stdio upstream's stderr, in the report


@dataclass(frozen=True)
class Upstream:
    """One ``mcp`` connector as /readyz's operator part shows it."""

    name: str
    ok: bool
    detail: str
    upstream: str  # stdio | http | sse
    era: str | None  # "2025" (handshake) | "2026-07-28" | None when it never answered
    protocol_version: str | None
    tools: int
    stderr: str  # the last lines, only when not ok ("" otherwise)

    @property
    def state(self) -> str:
        return "up" if self.ok else "degraded"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "detail": self.detail,
            "upstream": self.upstream,
            "era": self.era,
            "protocol_version": self.protocol_version,
            "tools": self.tools,
            **({"stderr": self.stderr} if self.stderr else {}),
        }


@dataclass(frozen=True)
class UpstreamsReport:
    """What /readyz said; ``problem`` is why there is nothing to show (a refused token, not a Patchbay)."""

    upstreams: tuple[Upstream, ...] = ()
    problem: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "upstreams": [u.as_json() for u in self.upstreams],
            **({"problem": self.problem} if self.problem else {}),
        }


async def read_upstreams(probe: Probe, target: Target, token: str) -> UpstreamsReport:
    """GET /readyz at the MCP URL's origin with the ``[metrics]`` token; never raises."""
    url = target.at("/readyz")
    reply = await probe.send("GET", url, headers={"authorization": f"Bearer {token}"}, cached=False)
    if reply.status == 0:
        return UpstreamsReport(problem=f"GET {url} got no answer: {reply.error}")
    body = reply.json() if reply.status in (200, 503) else None
    connectors = body.get("connectors") if isinstance(body, dict) else None
    if not isinstance(connectors, dict):
        return UpstreamsReport(problem=f"GET {url} answered {reply.status} without a Patchbay /readyz body")
    if not any(isinstance(c, dict) and "operator" in c for c in connectors.values()):
        return UpstreamsReport(
            problem=f"GET {url} shows no operator part: the server did not accept the token (it must be the "
            "server's [metrics] token_env value)"
        )
    found = [_upstream(name, c) for name, c in connectors.items() if _is_mcp(c)]
    return UpstreamsReport(tuple(sorted(found, key=lambda u: u.name)))


def _is_mcp(connector: Any) -> bool:
    return isinstance(connector, dict) and (connector.get("operator") or {}).get("type") == "mcp"


def _upstream(name: str, connector: dict[str, Any]) -> Upstream:
    operator: dict[str, Any] = connector["operator"]
    ok = connector.get("ok") is True
    stderr = operator.get("stderr") if not ok else None
    tail = "\n".join(stderr.rstrip("\n").splitlines()[-STDERR_LINES:]) if isinstance(stderr, str) else ""
    return Upstream(
        name=name,
        ok=ok,
        detail=str(connector.get("detail") or ""),
        upstream=str(operator.get("upstream") or "?"),
        era=_str_or_none(operator.get("era")),
        protocol_version=_str_or_none(operator.get("protocol_version")),
        tools=operator["tools"] if isinstance(operator.get("tools"), int) else 0,
        stderr=tail,
    )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
