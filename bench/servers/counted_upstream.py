"""The proxy benchmark's upstream: `patchbay serve` with bench/patchbay.toml, counting the handshakes it answers.

The count is read from the upstream's side, so a proxy that opened a new upstream session per call could not hide
it: every ``initialize`` and ``server/discover`` this process answers (over HTTP or stdio) bumps a counter that is
written to the file named by ``--handshakes`` as ``{"initialize": n, "server/discover": m}``. Handshakes are
rare, so writing on each one costs ordinary calls nothing. Wrapping the dispatcher happens here, in the benchmark's
process, before Patchbay builds anything: the product has no hook for it.

Run: python -m bench.servers.counted_upstream --handshakes FILE (--stdio | --port PORT)
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from patchbay.cli import app
from patchbay.protocol.dispatch import Dispatcher

CONFIG = Path(__file__).resolve().parent.parent / "patchbay.toml"
_counts = {"initialize": 0, "server/discover": 0}
_target: list[Path] = []


def _record(method: str) -> None:
    _counts[method] += 1
    for path in _target:
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(_counts))
        partial.replace(path)  # the reader never sees a half-written file


def _counting_initialize(original: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    @functools.wraps(original)
    def initialize_result(self: Dispatcher, version: str) -> dict[str, Any]:
        _record("initialize")
        return original(self, version)

    return initialize_result


def _counting_discover(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def discover(self: Dispatcher, params: dict[str, Any], scope: Any) -> dict[str, Any]:
        _record("server/discover")
        result: dict[str, Any] = await original(self, params, scope)
        return result

    return discover


def read_counts(path: Path) -> dict[str, int]:
    """The counts a counted upstream wrote to `path` (zero before its first handshake)."""
    try:
        counts: dict[str, int] = json.loads(path.read_text())
    except FileNotFoundError:
        return {"initialize": 0, "server/discover": 0}
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers.counted_upstream")
    parser.add_argument("--handshakes", type=Path, required=True, help="the file the counts are written to")
    parser.add_argument("--stdio", action="store_true")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    _target.append(args.handshakes)
    # The dispatcher's handler table binds methods when it is built, so the class is patched before that.
    Dispatcher.initialize_result = _counting_initialize(Dispatcher.initialize_result)  # type: ignore[method-assign]
    Dispatcher.discover = _counting_discover(Dispatcher.discover)  # type: ignore[method-assign]
    serve = ["serve", "--config", str(CONFIG)]
    serve += ["--stdio"] if args.stdio else ["--host", "127.0.0.1", "--port", str(args.port)]
    app(args=serve, prog_name="patchbay")


if __name__ == "__main__":
    main(sys.argv[1:])
