"""Reading an API description: a file or URL, JSON or YAML, OpenAPI 3.0/3.1/3.2 or Swagger 2.0 → :class:`ApiSpec`.

``parse_document`` does the conversion (synchronous, no I/O except through ``resolve``); ``load_path`` reads a
file and the files it references beside it; ``load_spec`` is what the connector calls at start-up: a file or a
URL fetched through the SSRF guard, size-capped, external references read per ``external_refs``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import anyio
import orjson
import yaml  # type: ignore[import-untyped]

from patchbay.connectors.openapi import parse, swagger2
from patchbay.connectors.openapi.context import Context, OperationError, requirements, text
from patchbay.connectors.openapi.models import ApiSpec
from patchbay.connectors.openapi.options import OpenApiOptions
from patchbay.connectors.openapi.refs import ROOT_URI, Documents, RefError, Resolve, document_base, external_refs
from patchbay.connectors.openapi.schemas import SchemaConverter
from patchbay.errors import ConfigError, ConnectorError
from patchbay.links.options import resolve_value
from patchbay.outbound import Fetcher, FetchError, Refused
from patchbay.outbound.fetcher import trusting_origin

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
FETCH_DEADLINE = 120.0
_ACCEPT = "application/json, application/yaml;q=0.9, text/yaml;q=0.9, */*;q=0.5"
_NON_LOCAL_REF = re.compile(rb"""\$ref['"]?\s*:\s*['"]?(?!#)""")


class _YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML 1.2 scalars where YAML 1.1 surprises: ``on``/``yes``/``no`` stay strings, dates stay strings."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_document(data: bytes, name: str) -> tuple[Any, bool]:
    """The parsed JSON or YAML text, and whether it shares nodes (YAML aliases). Keys that YAML 1.1 reads as
    numbers (status codes such as ``200:``) become strings, as they are in JSON.

    Raises:
        ConfigError: it is neither JSON nor YAML (or is HTML), with the parser's position.
    """
    start = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"<"):
        raise ConfigError(f"{name}: is HTML or XML, not a JSON or YAML API description", key="spec")
    if start.startswith((b"{", b"[")):
        try:
            return orjson.loads(data), False
        except orjson.JSONDecodeError:
            pass  # YAML flow style also starts with { or [
    try:
        document = yaml.load(data, Loader=_YamlLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid syntax"
        raise ConfigError(f"{name}: not valid JSON or YAML{where}: {problem}", key="spec") from None
    except (ValueError, RecursionError):
        raise ConfigError(f"{name}: not valid JSON or YAML (nested too deep or bad text)", key="spec") from None
    return _string_keys(document)


def _string_keys(document: Any) -> tuple[Any, bool]:
    """Every mapping key as a string (iterative: any depth), and whether any node is reached twice."""
    seen: set[int] = set()
    shared = False
    stack = [document]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            shared = True
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            if any(not isinstance(key, str) for key in node):
                fixed = {_key_text(key): value for key, value in node.items()}
                node.clear()
                node.update(fixed)
            stack.extend(value for value in node.values() if isinstance(value, dict | list))
        elif isinstance(node, list):
            stack.extend(value for value in node if isinstance(value, dict | list))
    return document, shared


def _key_text(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return "null" if key is None else str(key)


def version_of(document: Any, name: str) -> str:
    """The document's ``openapi`` / ``swagger`` version, or a ConfigError saying what the document looks like."""
    label = name or "the spec"
    if not isinstance(document, dict):
        kind = "a list" if isinstance(document, list) else f"a single {type(document).__name__} value"
        raise ConfigError(f"{label}: is {kind}, not an OpenAPI or Swagger document (an object)", key="spec")
    for field, supported in (("openapi", ("3.0", "3.1", "3.2")), ("swagger", ("2.0",))):
        if field in document:
            value = document[field]
            version = str(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
            if version.startswith(supported):
                return version
            raise ConfigError(
                f"{label}: {field} version {str(value)[:40]!r} is not supported; "
                "Patchbay reads OpenAPI 3.0, 3.1, 3.2 and Swagger 2.0",
                key="spec",
            )
    raise ConfigError(f"{label}: {_looks_like(document)}", key="spec")


def _looks_like(document: dict[str, Any]) -> str:
    if "asyncapi" in document:
        return "is an AsyncAPI document, not an OpenAPI or Swagger one"
    if "swaggerVersion" in document:
        return "is a Swagger 1.x resource listing; convert it to OpenAPI 3 (or Swagger 2.0) first"
    info = document.get("info")
    if isinstance(info, dict) and ("_postman_id" in info or "item" in document):
        return "is a Postman collection; export the API as OpenAPI instead"
    if "$schema" in document or "properties" in document or document.get("type") == "object":
        return "looks like a JSON Schema, not an API description (no openapi or swagger field)"
    keys = ", ".join(sorted(str(key) for key in document)[:6]) or "nothing"
    return f"not an OpenAPI or Swagger document: no openapi or swagger field (its top-level keys: {keys})"


def root_uri(source: str) -> str:
    if source.startswith(("http://", "https://", "file:")):
        return urldefrag(source)[0]
    return Path(source).absolute().as_uri() if source else ROOT_URI


def parse_document(
    document: dict[str, Any], *, source: str = "", resolve: Resolve | None = None, shared: bool = False
) -> ApiSpec:
    """The :class:`ApiSpec` of an OpenAPI 3.x or Swagger 2.0 document already parsed from JSON or YAML.

    ``resolve(absolute_uri)`` returns another document an external ``$ref`` names (or raises, which skips the
    operations that need it); None refuses external references. ``shared``: the document reuses nodes (YAML
    aliases), so each is converted once.

    Raises:
        ConfigError: the document is not an OpenAPI/Swagger document of a supported version, or its top level
            (``paths``, ``security``) is malformed. A bad operation never raises: it is listed in ``skipped``.
    """
    version = version_of(document, source)
    ctx = _context(document, source, version, resolve, shared=shared)
    if version == "2.0" or version.startswith("2"):
        operations, skipped = swagger2.operations(ctx, document)
        schemes = swagger2.security_schemes(document.get("securityDefinitions"))
        servers = swagger2.servers(document, source)
    else:
        operations, skipped = parse.operations(ctx, document.get("paths"))
        components = document.get("components")
        raw = components.get("securitySchemes") if isinstance(components, dict) else None
        schemes = parse.security_schemes(raw, ctx.documents)
        servers = parse.servers(document.get("servers")) or ("/",)
    info = document.get("info")
    info = info if isinstance(info, dict) else {}
    return ApiSpec(
        version=version,
        title=text(info.get("title")),
        description=text(info.get("description")),
        servers=servers,
        operations=tuple(operations),
        defs=ctx.schemas.defs,
        schemes=schemes,
        skipped=tuple(skipped),
        source=source,
    )


def _context(document: dict[str, Any], source: str, version: str, resolve: Resolve | None, *, shared: bool) -> Context:
    """The documents, schema converter and top-level security the operations are converted with.

    Raises:
        ConfigError: ``paths`` or the top-level ``security`` is malformed.
    """
    documents = Documents(root_uri(source), document, resolve)
    converter = SchemaConverter(documents, openapi30=not version.startswith(("3.1", "3.2")))
    if shared:
        converter.share_nodes()
    paths = document.get("paths")
    if paths is not None and not isinstance(paths, dict):
        raise ConfigError(f"{source or 'the spec'}: paths must be an object", key="spec")
    top = document.get("security")
    try:
        security = requirements(top, "security") if top is not None else None
    except OperationError as exc:
        raise ConfigError(f"{source or 'the spec'}: {exc}", key="spec") from None
    return Context(documents, converter, security)


def read_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[Any, bool]:
    """A JSON or YAML file, parsed. Raises ConfigError: missing, unreadable, larger than ``max_bytes``, bad."""
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"spec file {path}: {exc.strerror or 'cannot be read'}", key="spec") from None
    if len(data) > max_bytes:
        raise ConfigError(f"spec file {path} is larger than max_spec_bytes ({max_bytes} bytes)", key="spec")
    return read_document(data, str(path))


def file_resolver(folder: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Resolve:
    """Reads ``file:`` URIs inside ``folder`` (never outside it, whatever ``..`` or links say)."""
    inside = folder.resolve()

    def resolve(uri: str) -> Any:
        parts = urlsplit(uri)
        if parts.scheme != "file":
            raise RefError(f"only files beside the spec may be read, not {uri}")
        path = Path(unquote(parts.path)).resolve()  # a file: URI of this (POSIX) machine
        if not path.is_relative_to(inside):
            raise RefError(f"{path} is outside the spec's folder {inside}")
        return read_file(path, max_bytes)[0]

    return resolve


def load_path(path: Path) -> ApiSpec:
    """A spec file and the files its ``$ref``s name in its folder. Raises ConfigError as :func:`parse_document`."""
    document, shared = read_file(path)
    return parse_document(
        document, source=str(path.absolute()), resolve=file_resolver(path.absolute().parent), shared=shared
    )


async def load_spec(options: OpenApiOptions, *, base_dir: Path, fetcher: Fetcher) -> ApiSpec:
    """The spec ``options.spec`` names: a file (relative to ``base_dir``) or an http(s) URL, with its external
    references (files beside a file spec; URLs on the spec's origin or under ``external_refs``). Parsing runs in
    a worker thread: a large spec does not stall the server.

    Raises:
        ConfigError: (key ``spec``) a missing or unreadable file, not JSON/YAML, not an OpenAPI/Swagger document,
            or a URL the outbound policy refuses.
        ConnectorError: the URL cannot be reached or does not answer 200 (worth retrying later).
    """
    spec = options.spec
    if spec.startswith(("http://", "https://")):
        # The operator named the spec's host: it is admitted whatever it resolves to (an internal API's own
        # server), like an mcp connector's url; external documents on other hosts stay under [outbound].
        fetcher = await trusting_origin(fetcher, spec)
    reader = _Reader(options, base_dir, fetcher)
    if spec.startswith(("http://", "https://")):
        source = spec
        document, shared = await reader.url(spec, root=True)
    else:
        path = (base_dir / spec).absolute()
        source = str(path)
        document, shared = await anyio.to_thread.run_sync(read_file, path, options.max_spec_bytes)
    found = await reader.gather(root_uri(source), document)
    parsed = await anyio.to_thread.run_sync(
        partial(parse_document, document, source=source, resolve=found.get_or_raise, shared=shared)
    )
    if source.startswith(("http://", "https://")):
        # Relative server URLs are relative to where the spec was read (OpenAPI 3.1 §4.8.5).
        return replace(parsed, servers=tuple(urljoin(source, server) for server in parsed.servers))
    return parsed


class _Found(dict[str, Any]):
    """Prefetched external documents by URI; a refused or failed one holds its reason as a RefError."""

    def get_or_raise(self, uri: str) -> Any:
        value = self.get(uri)
        if isinstance(value, RefError):
            raise value
        if value is None:
            raise RefError(f"{uri} was not read")
        return value


class _Reader:
    """Reads the spec and its external documents for :func:`load_spec` under its allowlist."""

    def __init__(self, options: OpenApiOptions, base_dir: Path, fetcher: Fetcher) -> None:
        self.options = options
        self.base_dir = base_dir
        self.fetcher = fetcher
        self.origin = _origin(options.spec) if options.spec.startswith(("http://", "https://")) else ""
        self.folder = (base_dir / options.spec).absolute().parent if not self.origin else None

    def headers(self, url: str) -> dict[str, str]:
        """``spec_headers`` go to the spec's own origin only: a credential for it is never sent elsewhere."""
        headers = {"Accept": _ACCEPT}
        if _origin(url) == self.origin:
            for name, value in self.options.spec_headers.items():
                headers[name] = resolve_value(value, base_dir=self.base_dir, where=f"spec_headers.{name}")
        return headers

    async def url(self, url: str, *, root: bool = False) -> tuple[Any, bool]:
        cap = self.options.max_spec_bytes
        try:
            async with self.fetcher.stream(
                "GET", url, headers=self.headers(url), max_bytes=cap, deadline=FETCH_DEADLINE
            ) as response:
                if response.status != 200:
                    raise ConnectorError(f"spec: GET {url} answered {response.status}")
                data = await response.read()
        except Refused as exc:
            if root:
                raise ConfigError(
                    f"spec: {url} is refused by the outbound address policy ({exc}); allow its network in "
                    "[outbound] allowed_networks",
                    key="spec",
                ) from None
            raise RefError(f"{url} is refused by the outbound address policy ({exc})") from None
        except FetchError as exc:
            raise ConnectorError(f"spec: cannot read {url}: {exc}") from None
        return await anyio.to_thread.run_sync(read_document, data, url)

    def refusal(self, uri: str) -> str | None:
        if uri.startswith("file:"):
            if self.folder is None:
                return f"{uri}: a spec read from a URL may not reference local files"
            return None
        if not uri.startswith(("http://", "https://")):
            return f"{uri}: only http(s) URLs and files beside the spec may be referenced"
        if self.origin and _origin(uri) == self.origin:
            return None
        if any(uri.startswith(prefix) for prefix in self.options.external_refs):
            return None
        return f"{uri} is not on the spec's origin or under an external_refs prefix"

    async def read(self, uri: str) -> Any:
        reason = self.refusal(uri)
        if reason is not None:
            raise RefError(reason)
        if uri.startswith("file:"):
            assert self.folder is not None
            resolve = file_resolver(self.folder, self.options.max_spec_bytes)
            return await anyio.to_thread.run_sync(resolve, uri)
        return (await self.url(uri))[0]

    async def gather(self, root: str, document: Any) -> _Found:
        """Every document reachable through external references, read once each (a failure kept as its reason:
        only the operations that need it are skipped)."""
        found = _Found()
        queue: list[tuple[str, Any]] = [(root, document)]
        fetch: Callable[[str], Awaitable[Any]] = self.read
        while queue:
            uri, node = queue.pop()
            if node is document and not _may_have_external_refs(document):
                continue
            base = document_base(uri, node)
            for ref in external_refs(node):
                target = urldefrag(urljoin(base, ref))[0]
                if target in found or target == root:
                    continue
                try:
                    found[target] = await fetch(target)
                except (RefError, ConfigError, ConnectorError) as exc:
                    found[target] = RefError(f"cannot read {target}: {exc}")
                    continue
                queue.append((target, found[target]))
        return found


def _may_have_external_refs(document: Any) -> bool:
    """A cheap pre-check on a large document: serialise once and look for a ``$ref`` not starting with #."""
    try:
        return bool(_NON_LOCAL_REF.search(orjson.dumps(document)))
    except (TypeError, orjson.JSONEncodeError):
        return True


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
