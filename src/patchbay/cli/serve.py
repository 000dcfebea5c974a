"""``patchbay serve``: run the server over HTTP (default) or stdio."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import ipaddress
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from patchbay import logs
from patchbay.cli.common import check_store, err, escape, load_settings
from patchbay.errors import ConfigError, ConnectorError

log = logging.getLogger("patchbay")
# Exit codes of `patchbay serve` (docs/configuration.md): 2 the config or a connector is not usable, 3 the
# address cannot be listened on.
EXIT_CANNOT_LISTEN = 3


def serve(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="patchbay.toml to serve")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (overrides server.host)")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (overrides server.port)")] = None,
    stdio: Annotated[bool, typer.Option("--stdio", help="Speak MCP over stdin/stdout instead of HTTP")] = False,
    demo: Annotated[bool, typer.Option("--demo", help="Serve the built-in demo connectors")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse to start while any connector is down")] = False,
) -> None:
    """Serve MCP at http://HOST:PORT/mcp (or over stdio with --stdio)."""
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides.setdefault("server", {})["host"] = host
    if port is not None:
        overrides.setdefault("server", {})["port"] = port
    settings = load_settings(config, demo=demo, overrides=overrides)
    check_store(settings)
    logs.configure(settings.server.log_level, settings.server.log_format)
    if stdio:
        _serve_stdio(settings, strict=strict)
        return
    _warn_if_exposed(settings.server.host, settings.auth.mode)
    # Bound before anything starts: a taken port is reported at once, not after connectors open and log "serving".
    listener = _listen(settings.server.host, settings.server.port)
    import uvicorn

    from patchbay.app import create_app

    try:
        app = create_app(settings)
    except (ConfigError, ConnectorError) as exc:
        err.print(f"[bold red]cannot start[/]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    if strict:
        app.runtime.on_failure = "raise"
    _tune_gc()
    server = _make_server(
        app.runtime,
        (lambda: _print_demo_banner(settings)) if demo else None,
        uvicorn.Config(
            app,
            host=settings.server.host,
            port=settings.server.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=int(settings.server.shutdown_grace_seconds),
            server_header=False,
        ),
    )
    try:
        server.run(sockets=[listener])
    except SystemExit:
        # uvicorn exits 3 when the lifespan fails; here that is a connector or its configuration (the reason is
        # logged), which is exit 2 as for the configuration itself: 3 stays "cannot listen".
        raise typer.Exit(2) from None
    if not server.started:
        raise typer.Exit(1)


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, handed to uvicorn; exits with :data:`EXIT_CANNOT_LISTEN` when it cannot be."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        _cannot_listen(
            f"cannot listen on {where}: the host name does not resolve ({exc.strerror}); set --host or server.host"
        )
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart while old sockets linger
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        _cannot_listen(f"cannot listen on {where}: {_bind_problem(exc)}")
    sock.set_inheritable(True)
    return sock


def _bind_problem(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            "address already in use: another program (perhaps another `patchbay serve`) is listening there. "
            "Stop it, or choose another port with --port or server.port"
        )
    if exc.errno == errno.EACCES:
        return "permission denied: ports below 1024 need privileges; use a port such as 8000 behind a proxy"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "this machine has no such address; use 127.0.0.1, 0.0.0.0 or one of its own addresses"
    return exc.strerror or str(exc)


def _cannot_listen(message: str) -> NoReturn:
    err.print(f"[bold red]cannot start[/]: {escape(message)}", highlight=False)
    raise typer.Exit(EXIT_CANNOT_LISTEN)


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, plus: event streams end as soon as shutdown begins, and a graceful stop exits 0."""

        def __init__(self, runtime: Any, on_started: Any, config: Any) -> None:
            super().__init__(config)
            self.runtime = runtime
            self.on_started = on_started
            self.loop: asyncio.AbstractEventLoop | None = None
            self.reloads: set[asyncio.Task[None]] = set()

        async def startup(self, sockets: Any = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().startup(sockets=sockets)
            # Again now that the lifespan has run: sign-in's store, migrations and connectors are loaded only then,
            # and a collector that keeps scanning them costs every request (measured: ~7 us of 50 per call).
            _tune_gc()
            if self.started and self.on_started is not None:
                self.on_started()  # only once the port is bound: no banner before an "address in use" error

        def handle_reload(self, sig: int, frame: Any) -> None:
            # SIGHUP: connectors that can read their definitions again do (docs/python-tools.md), and clients are
            # told what changed. Runs on the event loop, like every catalog change.
            loop = self.loop
            if loop is not None and not self.should_exit:
                loop.call_soon_threadsafe(self._start_reload)

        def _start_reload(self) -> None:
            task = asyncio.get_running_loop().create_task(self.runtime.reload(), name="patchbay-reload")
            self.reloads.add(task)
            task.add_done_callback(self.reloads.discard)

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.loop is not None and not self.should_exit:
                self.loop.call_soon_threadsafe(self.runtime.begin_shutdown)
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises the signal after shutting down, so even a clean stop ends "killed by SIGTERM"
            # (143). Patchbay handled the signal: a graceful stop exits 0.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            if hasattr(signal, "SIGHUP"):  # not on Windows
                previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self.handle_reload)
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def _make_server(runtime: Any, on_started: Any, config: Any) -> Any:
    # uvicorn is imported only when serving, so `patchbay version` and friends start fast.
    return _server_class()(runtime, on_started, config)


def _serve_stdio(settings: Any, *, strict: bool) -> None:
    from patchbay.app import Runtime
    from patchbay.transport.stdio import StdioServer

    async def run() -> None:
        runtime = Runtime(settings, on_failure="raise" if strict else "retry")
        await runtime.start()
        try:
            await StdioServer(runtime.dispatcher, runtime).serve()
        finally:
            await runtime.stop()

    try:
        asyncio.run(run())
    except (ConfigError, ConnectorError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


def _tune_gc() -> None:
    # Start-up objects never die: freeze them so the collector skips them, and collect young objects less
    # often. perf-baseline measured fewer pauses for allocation-heavy MCP stacks; on Patchbay's lean path the
    # difference is within noise (docs/performance.md), and the cost is nil, so it stays.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _warn_if_exposed(host: str, auth_mode: str) -> None:
    if auth_mode != "none":
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        err.print(
            f'[bold yellow]warning[/]: serving on {host} with auth.mode = "none": anyone who can reach this '
            "address can call every tool. Bind to 127.0.0.1 or put a tunnel with its own access control in front.",
            highlight=False,
        )


def _print_demo_banner(settings: Any) -> None:
    # The same steps as the console's Connect page (patchbay.connect_steps), shortened for a terminal.
    from patchbay.connect_steps import CHATGPT_MENU, CLAUDE_MENU, claude_code_command, inspector_command

    url = settings.mcp_url
    port = settings.server.port
    err.print(
        f"\n[bold green]Patchbay demo[/] is serving at [bold]{url}[/]\n\n"
        "  Sign-in: none. This is a local demo: only a loopback Host is accepted.\n"
        f"  Try it:       {inspector_command(url)}\n"
        f"  Claude Code:  {claude_code_command('patchbay-demo', url)}\n"
        "  ChatGPT and claude.ai need a public HTTPS URL. Expose this port with a tunnel, for example\n"
        f"  `cloudflared tunnel --url http://127.0.0.1:{port}`, restart with PATCHBAY_SERVER__PUBLIC_URL set to the\n"
        "  tunnel's URL, then add <public_url>/mcp as a connector:\n"
        f"    ChatGPT: {CHATGPT_MENU}\n"
        f"    Claude:  {CLAUDE_MENU}\n"
        "  Anyone with the tunnel URL can call every tool until sign-in is set up. See docs/quickstart.md.\n",
        highlight=False,
    )
