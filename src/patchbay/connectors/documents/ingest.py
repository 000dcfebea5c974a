"""Bringing the index up to date with the sources, incrementally.

A file is re-read only when its size or modification time changed, and re-indexed only when its content hash
changed; files gone from a folder (and rows gone from a query) are removed; a link or access change from the
config is applied without re-reading. Files that cannot be read are logged, counted and remembered (not
retried until they change); they never stop a run. Runs are synchronous: callers put them on a worker thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import quote

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from patchbay.connectors.documents.chunking import chunk_sections
from patchbay.connectors.documents.extract import ExtractError, extract, kind_of, markdown
from patchbay.connectors.documents.index import DocumentRecord, Index, Known, Writer
from patchbay.connectors.documents.options import DocumentsOptions, SourceOptions
from patchbay.store import create_engine, resolve_url

log = logging.getLogger("patchbay.documents")
NO_URL = "no link: the row's url is empty or not http(s), and the source has no url_template"
BATCH = 2000  # documents per transaction: searches see progress, and a crash loses little


class SourceError(Exception):
    """A whole source cannot be read (missing folder, failing query); ``str()`` says which and why."""


class Stopped(Exception):
    """The run was asked to stop (the server is shutting down)."""


class Progress(Protocol):
    def add_total(self, count: int) -> None: ...

    def advance(self, label: str) -> None: ...


class EmbeddingPass(Protocol):
    """Vectors for the passages that have none (hybrid ranking; ``hybrid.PassageEmbedder``)."""

    def fill(self, writer: Writer, progress: Progress, stop: threading.Event) -> int: ...


class _Quiet:
    def add_total(self, count: int) -> None:
        pass

    def advance(self, label: str) -> None:
        pass


@dataclass
class Report:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    embedded: int = 0
    """Passages given a vector in this run (hybrid ranking only)."""
    skipped_files: list[tuple[str, str, str]] = field(default_factory=list)
    """(source, path, reason) of files skipped in this run (newly or still unreadable)."""
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def indexed(self) -> int:
        return self.added + self.updated + self.unchanged

    def summary(self) -> str:
        embedded = f", {self.embedded} passages embedded" if self.embedded else ""
        return (
            f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, {self.removed} removed, "
            f"{self.skipped} skipped{embedded} in {self.seconds:.1f} s"
        )


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob as a regex: ``**`` spans folders, ``*`` and ``?`` stay within one path segment."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$")


def _any_of(patterns: list[str]) -> re.Pattern[str] | None:
    """One regex for a list of globs (one match per file instead of one per pattern); None for no globs."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{glob_regex(p).pattern})" for p in patterns))


@dataclass
class _Item:
    """One candidate document from a source, before reading."""

    key: str
    path: str
    acl: tuple[str, ...]
    url: str
    mtime_ns: int = 0
    size: int = 0
    file: Path | None = None
    row: dict[str, Any] | None = None


class Indexer:
    """Indexes every source of one documents connector into its :class:`Index`."""

    def __init__(
        self, index: Index, options: DocumentsOptions, *, base_dir: Path, store_url: str, connector: str
    ) -> None:
        self.index = index
        self.options = options
        self.base_dir = base_dir
        self.store_url = store_url
        self.connector = connector
        self.embedding: EmbeddingPass | None = None
        """Set for hybrid ranking: run after the text pass."""
        self.stop = threading.Event()
        self._running = threading.Lock()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Block until no run is in progress (or ``timeout`` seconds pass)."""
        if self._running.acquire(timeout=timeout):
            self._running.release()

    def run(self, progress: Progress | None = None, *, strict: bool = False) -> Report:
        """Index every source once. With ``strict`` a source that cannot be read raises SourceError; otherwise
        the error is logged, put in the report, and that source's documents are left as they were."""
        report = Report()
        started = time.perf_counter()
        with self._running, self.index.writer() as writer:
            gone = writer.sources() - {s.name for s in self.options.sources}
            for name in gone:  # a source removed from the config
                with writer.batch():
                    report.removed += len(writer.known(name))
                    writer.remove_source(name)
            for source in self.options.sources:
                try:
                    self._source(writer, source, progress or _Quiet(), report)
                except SourceError as exc:
                    if strict:
                        raise
                    log.error("%s", exc)
                    report.errors.append(str(exc))
                except Stopped:
                    break
            if self.embedding is not None and not self.stop.is_set():
                report.embedded = self.embedding.fill(writer, progress or _Quiet(), self.stop)
            if report.added + report.updated + report.removed > 1000:
                writer.optimize()  # merges FTS segments after a large run: faster searches, smaller file
        report.seconds = time.perf_counter() - started
        return report

    def _source(self, writer: Writer, source: SourceOptions, progress: Progress, report: Report) -> None:
        items = list(self._folder_items(source) if source.kind == "folder" else self._sql_items(source))
        progress.add_total(len(items))
        known = writer.known(source.name)
        skipped_before = writer.known_skipped(source.name)
        seen: set[str] = set()
        pending = 0
        writer.conn.execute("BEGIN IMMEDIATE")
        try:
            for item in items:
                if self.stop.is_set():
                    raise Stopped
                seen.add(item.key)
                outcome = self._one(writer, source, item, known.get(item.key), skipped_before.get(item.key))
                _count(report, outcome, source.name, item)
                progress.advance(item.path)
                pending += 1
                if pending >= BATCH:
                    writer.conn.execute("COMMIT")
                    writer.conn.execute("BEGIN IMMEDIATE")
                    pending = 0
            removed = [k.id for key, k in known.items() if key not in seen]
            writer.remove(removed)
            writer.forget_skipped(source.name, [k for k in skipped_before if k not in seen])
            report.removed += len(removed)
        finally:
            writer.conn.execute("COMMIT")

    def _one(
        self,
        writer: Writer,
        source: SourceOptions,
        item: _Item,
        known: Known | None,
        skipped: tuple[int, int, str] | None,
    ) -> str:
        public = source.public
        if not item.url:
            writer.skip(source.name, item.key, item.path, 0, 0, NO_URL)
            return f"skipped:{NO_URL}"
        same_stat = item.row is None and (item.mtime_ns, item.size)
        if known is not None and same_stat == (known.mtime_ns, known.size):
            self._restamp(writer, known, item, public)
            return "unchanged"
        if known is None and skipped is not None and same_stat == skipped[:2]:
            return "still-skipped:" + skipped[2]  # not retried until the file changes
        try:
            data = self._read(item)
        except ExtractError as exc:
            writer.skip(source.name, item.key, item.path, item.mtime_ns, item.size, str(exc))
            return f"skipped:{exc}"
        sha = hashlib.sha256(data).hexdigest()
        if known is not None and known.sha == sha:
            writer.touch(known.id, item.mtime_ns, item.size)
            self._restamp(writer, known, item, public)
            return "unchanged"
        try:
            record, chunks = self._build(source, item, data, sha)
        except ExtractError as exc:
            writer.skip(source.name, item.key, item.path, item.mtime_ns, item.size, str(exc))
            return f"skipped:{exc}"
        writer.put(record, chunks, new=known is None and skipped is None)
        return "updated" if known is not None else "added"

    def _restamp(self, writer: Writer, known: Known, item: _Item, public: bool) -> None:
        if known.url != item.url or known.acl != " ".join(item.acl) or known.public != public:
            writer.restamp(known.id, item.url, item.acl, public)

    def _read(self, item: _Item) -> bytes:
        if item.row is not None:
            return _row_bytes(item.row)
        assert item.file is not None
        if item.size > self.options.max_file_bytes:
            raise ExtractError(f"larger than max_file_bytes ({item.size} > {self.options.max_file_bytes})")
        try:
            return item.file.read_bytes()
        except OSError as exc:
            raise ExtractError(f"cannot read: {exc.strerror or exc}") from None

    def _build(self, source: SourceOptions, item: _Item, data: bytes, sha: str) -> tuple[DocumentRecord, list[Any]]:
        if item.row is not None:
            extracted = markdown(str(item.row.get("body") or "").encode())
            extracted.title = str(item.row.get("title") or "").strip() or extracted.title or item.key
            kind, updated = "record", _iso(item.row.get("updated_at"))
        else:
            kind = kind_of(PurePosixPath(item.path).suffix) or "text"
            extracted = extract(kind, data, _title_from_name(item.path))
            updated = datetime.fromtimestamp(item.mtime_ns / 1e9).astimezone().isoformat(timespec="seconds")
        chunks = chunk_sections(extracted.sections, self.options.chunk_chars)
        if not any(c.body for c in chunks) and not extracted.title:
            raise ExtractError("no text in the document")
        record = DocumentRecord(
            doc_id=f"{source.name}:{item.key}",
            source=source.name,
            key=item.key,
            path=item.path,
            kind=kind,
            title=extracted.title[:500],
            url=item.url,
            updated_at=updated,
            mtime_ns=item.mtime_ns,
            size=item.size,
            sha=sha,
            acl=item.acl,
            public=source.public,
            chars=sum(len(c.body) for c in chunks),
        )
        return record, chunks

    # -- sources ---------------------------------------------------------------------------------------------

    def folder_root(self, source: SourceOptions) -> Path:
        assert source.folder is not None
        return (self.base_dir / source.folder).resolve()

    def _folder_items(self, source: SourceOptions) -> Iterator[_Item]:
        root = self.folder_root(source)
        if not root.is_dir():
            raise SourceError(
                f"documents connector '{self.connector}', source '{source.name}': folder {root} does not exist "
                "or is not a folder (its documents are kept until it is back)"
            )
        include = _any_of(source.include)
        exclude = _any_of(source.exclude)
        rules = sorted(((len(r.path), glob_regex(r.path), tuple(r.allow)) for r in source.access), reverse=True)
        template = source.url_template or self.options.url_template or ""
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                file = Path(folder, name)
                rel = file.relative_to(root).as_posix()
                if name.startswith(".") or not (include and include.match(rel)) or (exclude and exclude.match(rel)):
                    continue
                if file.is_symlink() and not file.resolve().is_relative_to(root):
                    # A link out of the folder would publish files the operator never chose to share.
                    log.warning("documents source '%s': ignored %s: it links outside the folder", source.name, rel)
                    continue
                try:
                    stat = file.stat()
                except OSError:
                    continue  # vanished since the walk listed it
                key = hashlib.sha256(rel.encode()).hexdigest()[:20]
                acl = next((allow for _, rx, allow in rules if rx.match(rel)), tuple(source.allow))
                url = render_url(template, source=source.name, key=key, path=rel)
                yield _Item(key, rel, acl, url, stat.st_mtime_ns, stat.st_size, file=file)

    def _sql_items(self, source: SourceOptions) -> Iterator[_Item]:
        assert source.query is not None
        where = f"documents connector '{self.connector}', source '{source.name}'"
        try:
            engine = create_engine(resolve_url(source.database or self.store_url, self.base_dir))
        except (SQLAlchemyError, ValueError) as exc:
            # The URL may hold a password: name the problem, never echo the URL.
            raise SourceError(
                f"{where}: invalid database URL ({exc.__class__.__name__}); expected dialect+driver://user@host/db"
            ) from None
        try:
            with engine.connect() as conn:
                rows = [dict(r) for r in conn.execute(text(source.query)).mappings()]
        except SQLAlchemyError as exc:
            detail = getattr(exc, "orig", None) or exc.__class__.__name__
            raise SourceError(f"{where}: the query failed: {detail}") from None
        finally:
            engine.dispose()
        if rows:
            missing = {"id", "title", "body"} - set(rows[0])
            if missing:
                raise SourceError(f"{where}: the query must return columns id, title, body; missing {sorted(missing)}")
        template = source.url_template or self.options.url_template or ""
        for row in rows:
            key = quote(str(row["id"]), safe="")
            url = str(row.get("url") or "")
            if not url.startswith(("http://", "https://")):
                url = render_url(template, source=source.name, key=key, path=key) if template else ""
            yield _Item(key, f"row {row['id']}", tuple(source.allow), url, row=row)


def render_url(template: str, *, source: str, key: str, path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    stem = name[:dot] if dot > 0 else name
    noext = path[: len(path) - len(name) + len(stem)]
    fields = {
        "id": quote(f"{source}:{key}", safe=":"),
        "key": key,
        "source": source,
        "path": quote(path, safe="/"),
        "path_noext": quote(noext, safe="/"),
        "stem": quote(stem, safe=""),
        "name": quote(name, safe=""),
    }
    return template.format_map(fields)


def _count(report: Report, outcome: str, source: str, item: _Item) -> None:
    if outcome in ("added", "updated", "unchanged"):
        setattr(report, outcome, getattr(report, outcome) + 1)
        return
    reason = outcome.split(":", 1)[1]
    report.skipped += 1
    report.skipped_files.append((source, item.path, reason))
    if outcome.startswith("skipped:"):
        log.warning("documents source '%s': skipped %s: %s", source, item.path, reason)


def _row_bytes(row: dict[str, Any]) -> bytes:
    parts = [str(row.get(k) if row.get(k) is not None else "") for k in ("title", "body", "url", "updated_at")]
    return "\x00".join(parts).encode()


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _title_from_name(path: str) -> str:
    return PurePosixPath(path).stem.replace("-", " ").replace("_", " ").strip().capitalize() or path
