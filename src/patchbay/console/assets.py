"""The console's templates and static files, both shipped inside the package (no CDN, no build step).

Static files are read once and served from memory under a content-hash query (``/admin/static/console.js?v=…``),
so a browser may keep them: a new release changes the URL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import mimetypes
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.responses import Response

if TYPE_CHECKING:
    import jinja2

HERE = Path(__file__).parent
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


class Static:
    """The files of console/static/, by name."""

    def __init__(self, folder: Path = HERE / "static") -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.is_file() and not path.name.startswith("."):
                body = path.read_bytes()
                self.files[path.name] = (body, hashlib.sha256(body).hexdigest()[:16])

    def url(self, name: str) -> str:
        """The address of static file ``name``.

        Raises:
            KeyError: there is no such file (a template names a file that was never written).
        """
        return f"/admin/static/{name}?v={self.files[name][1]}"

    def response(self, name: str, if_none_match: str | None) -> Response:
        found = self.files.get(name)
        if found is None:
            return Response("Not found", status_code=404, media_type="text/plain")
        body, tag = found
        headers = {"ETag": f'"{tag}"', "Cache-Control": "public, max-age=31536000, immutable"}
        if if_none_match == f'"{tag}"':
            return Response(status_code=304, headers=headers)
        kind = TYPES.get(Path(name).suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Response(body, media_type=kind, headers=headers)


def when(epoch: float | None) -> str:
    """An epoch as UTC, to the second; ``-`` for none."""
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def number(value: float | int | None) -> str:
    """A count with thousands separators; ``-`` for none."""
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def environment(static_url: Callable[[str], str]) -> jinja2.Environment:
    """The console's Jinja2 environment: autoescape on for every template, undefined names are errors.

    Each template is compiled on first use and kept: the templates ship inside the package and never change while
    the server runs, so there is no file to stat on every request (``auto_reload``) and no cache to evict from.
    """
    import jinja2  # with the first page shown: a server nobody opens the console of never loads it

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        auto_reload=False,
        cache_size=-1,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = static_url
    env.filters["when"] = when
    env.filters["number"] = number
    return env
