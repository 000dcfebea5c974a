"""What is measured: the servers, and the configurations (server, era, tool) driven by wrk."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench import policy, signin, wire

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
PATCHBAY_CONFIG = BENCH / "patchbay.toml"

Era = Literal["modern", "session"]


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server on a given port (always 127.0.0.1)."""

    name: str
    module_args: tuple[str, ...] = ()
    """For our peers: `python -m <module_args...>`; empty for Patchbay."""

    def argv(self, port: int, max_sessions: int = 0) -> list[str]:
        if self.name == "patchbay":
            return patchbay_argv(port)
        if self.name == "patchbay-signin":
            return patchbay_argv(port, signin.config_path())
        if self.name == "patchbay-gate":
            return patchbay_argv(port, policy.config_path())
        extra = ["--max-sessions", str(max_sessions)] if max_sessions else []
        return [sys.executable, "-m", *self.module_args, "--port", str(port), *extra]


def patchbay_argv(port: int, config: Path = PATCHBAY_CONFIG) -> list[str]:
    script = Path(sys.executable).parent / "patchbay"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "patchbay"]
    return [*head, "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]


def patchbay_available() -> bool:
    return importlib.util.find_spec("patchbay") is not None


STARLETTE = ServerSpec("starlette", ("bench.servers.starlette_echo",))
ASGI = ServerSpec("asgi", ("bench.servers.asgi_echo",))
SDK_MODERN = ServerSpec("sdk-modern-json", ("bench.servers.sdk_server", "--mode", "modern-json"))
SDK_SESSION_SSE = ServerSpec("sdk-session-sse", ("bench.servers.sdk_server", "--mode", "session-sse"))
PATCHBAY = ServerSpec("patchbay")
PATCHBAY_SIGNIN = ServerSpec("patchbay-signin")  # auth.mode = "api_key": bench/signin.py
PATCHBAY_GATE = ServerSpec("patchbay-gate")  # 100 [[policy]] rules, none denying add: bench/policy.py


@dataclass(frozen=True)
class Config:
    """One throughput configuration: a server, the era of the calls, and the tool called."""

    name: str
    label: str
    server: ServerSpec
    era: Era
    tool: str = "add"
    progress: bool = False
    expect_content_type: str | None = None
    """The content type the probe must see before load starts (None: either)."""

    @property
    def is_patchbay(self) -> bool:
        return self.server in (PATCHBAY, PATCHBAY_SIGNIN, PATCHBAY_GATE)

    def body_template(self) -> str:
        if self.era == "modern":
            return wire.modern_call_template(self.tool)
        return wire.session_call_template(self.tool, self.progress)

    def headers(self, session_id: str | None) -> dict[str, str]:
        sign_in = signin.authorization() if self.server is PATCHBAY_SIGNIN else {}
        if self.era == "modern":
            return {**wire.modern_headers(self.tool), **sign_in}
        assert session_id is not None
        return {**wire.session_headers(session_id), **sign_in}


JSON = "application/json"
SSE = "text/event-stream"

CONFIGS: tuple[Config, ...] = (
    Config("asgi-echo", "bare ASGI echo (reference, no framework)", ASGI, "modern", expect_content_type=JSON),
    Config("starlette-echo", "Starlette JSON-RPC echo (ceiling)", STARLETTE, "modern", expect_content_type=JSON),
    Config("sdk-modern-json", "SDK, 2026-07-28 envelope, JSON", SDK_MODERN, "modern", expect_content_type=JSON),
    Config(
        "sdk-session-sse",
        "SDK, stateful session, SSE (default), add",
        SDK_SESSION_SSE,
        "session",
        expect_content_type=SSE,
    ),
    Config(
        "sdk-session-sse-progress",
        "SDK, stateful session, SSE, add_with_progress",
        SDK_SESSION_SSE,
        "session",
        tool="add_with_progress",
        progress=True,
        expect_content_type=SSE,
    ),
    Config(
        "patchbay-modern-json",
        "Patchbay, 2026-07-28 envelope, JSON",
        PATCHBAY,
        "modern",
        expect_content_type=JSON,
    ),
    # Right after the same configuration without sign-in, so each round measures the two back to back.
    Config(
        "patchbay-modern-json-signin",
        "Patchbay, 2026-07-28 envelope, JSON, sign-in on (API key)",
        PATCHBAY_SIGNIN,
        "modern",
        expect_content_type=JSON,
    ),
    Config(
        "patchbay-modern-json-gate",
        "Patchbay, 2026-07-28 envelope, JSON, policy gate on (100 rules)",
        PATCHBAY_GATE,
        "modern",
        expect_content_type=JSON,
    ),
    Config(
        "patchbay-session-json",
        "Patchbay, 2025 session, JSON (add)",
        PATCHBAY,
        "session",
        expect_content_type=JSON,
    ),
    Config(
        "patchbay-session-json-gate",
        "Patchbay, 2025 session, JSON (add), policy gate on (100 rules)",
        PATCHBAY_GATE,
        "session",
        expect_content_type=JSON,
    ),
    Config(
        "patchbay-session-sse-progress",
        "Patchbay, 2025 session, SSE (add_with_progress)",
        PATCHBAY,
        "session",
        tool="add_with_progress",
        progress=True,
        expect_content_type=SSE,
    ),
)

# Memory per open session and cold start: which servers.
SESSION_SERVERS: tuple[ServerSpec, ...] = (SDK_SESSION_SSE, PATCHBAY)
COLDSTART_SERVERS: tuple[ServerSpec, ...] = (STARLETTE, SDK_MODERN, PATCHBAY)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None
