"""``$ref`` resolution across one or more documents: JSON Pointers, base URIs and which documents may be read.

A reference is resolved against the base URI of the document it is written in (OpenAPI 3.1 §4.3 "Relative
References in API Description URIs"), which is the document's retrieval URI unless an OpenAPI 3.2 ``$self``
says otherwise. Fragments are JSON Pointers (RFC 6901: ``~1`` is ``/``, ``~0`` is ``~``) written in a URI, so
they are percent-decoded first (RFC 3986 §2.1). Documents other than the root come from a ``resolve`` callback
that decides what may be read; without one, external references are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin

ROOT_URI = "file:///openapi"
MAX_HOPS = 32  # a $ref chain longer than this is treated as a cycle
MAX_DOCUMENTS = 200

Resolve = Callable[[str], Any]


class RefError(ValueError):
    """A reference that cannot be followed: a missing target, a refused or unreadable document, a cycle."""


@dataclass(frozen=True, slots=True)
class Located:
    """A node found by following references: the node, the base URI for references inside it, its URI."""

    node: Any
    base: str
    uri: str  # absolute, with the fragment: "file:///specs/api.yaml#/components/schemas/Pet"


def document_base(retrieval_uri: str, document: Any) -> str:
    """The base URI of a document: its OpenAPI 3.2 ``$self`` resolved against where it was read, else that."""
    if isinstance(document, dict):
        declared = document.get("$self")
        if isinstance(declared, str) and declared:
            return urldefrag(urljoin(retrieval_uri, declared))[0]
    return retrieval_uri


def pointer_tokens(fragment: str) -> list[str]:
    """The reference tokens of a URI fragment holding a JSON Pointer (RFC 6901 §3, §6).

    Raises:
        RefError: the fragment is not empty and not a pointer.
    """
    text = unquote(fragment)
    if text == "":
        return []
    if not text.startswith("/"):
        raise RefError(f"fragment {fragment!r} is not a JSON Pointer (it must start with /)")
    return [token.replace("~1", "/").replace("~0", "~") for token in text[1:].split("/")]


def walk_pointer(document: Any, tokens: list[str], where: str) -> Any:
    """The node at ``tokens`` in ``document``. Raises RefError naming the first token that does not exist."""
    node = document
    for depth, token in enumerate(tokens):
        if isinstance(node, dict):
            if token not in node:
                at = "/" + "/".join(tokens[:depth])
                raise RefError(f"{where} does not resolve: no {token!r} in {at if depth else 'the document'}")
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise RefError(f"{where} does not resolve: {token!r} is not in a list or object there")
    return node


@dataclass(slots=True)
class Documents:
    """Every document of one API description, read once each, by URI (no fragment)."""

    root_uri: str
    root: Any
    resolve: Resolve | None = None
    loaded: dict[str, Any] = field(default_factory=dict)
    bases: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.loaded[self.root_uri] = self.root
        self.bases[self.root_uri] = document_base(self.root_uri, self.root)

    @property
    def root_base(self) -> str:
        return self.bases[self.root_uri]

    def document(self, uri: str) -> tuple[Any, str]:
        """The document at ``uri`` (no fragment) and its base URI.

        Raises:
            RefError: external references are refused here, or ``resolve`` refused or failed to read it.
        """
        if uri in self.loaded:
            return self.loaded[uri], self.bases[uri]
        if uri == self.root_base:
            return self.root, self.root_base
        if uri in self.refused:
            raise RefError(self.refused[uri])
        reason = self._fetch(uri)
        if reason is not None:
            self.refused[uri] = reason
            raise RefError(reason)
        return self.loaded[uri], self.bases[uri]

    def _fetch(self, uri: str) -> str | None:
        if self.resolve is None:
            return f"external reference to {uri} refused: this spec may not read other documents"
        if len(self.loaded) >= MAX_DOCUMENTS:
            return f"external reference to {uri} refused: more than {MAX_DOCUMENTS} documents"
        try:
            document = self.resolve(uri)
        except Exception as exc:
            return f"cannot read {uri}: {exc}"
        self.loaded[uri] = document
        self.bases[uri] = document_base(uri, document)
        return None

    def locate(self, ref: str, base: str) -> Located:
        """The target of ``ref`` written in a document whose base URI is ``base``.

        Raises:
            RefError: it does not resolve (the message names the reference).
        """
        if ref.startswith("#"):  # same document: most references, and urljoin is the slow part of intake
            uri, fragment = base, ref[1:]
        else:
            uri, fragment = urldefrag(urljoin(base, ref))
        document, doc_base = self.document(uri or base)
        node = walk_pointer(document, pointer_tokens(fragment), f"$ref {ref!r}")
        return Located(node, doc_base, f"{uri or base}#{fragment}")

    def follow(self, node: Any, base: str, uri: str = "") -> Located:
        """``node`` itself, or what its ``$ref`` chain ends at (for Path Item, Parameter, Request Body, Response
        and Security Scheme objects, whose ``$ref`` replaces the whole object).

        Raises:
            RefError: a reference does not resolve, or the chain is a cycle.
        """
        located = Located(node, base, uri)
        for _ in range(MAX_HOPS):
            ref = located.node.get("$ref") if isinstance(located.node, dict) else None
            if not isinstance(ref, str):
                return located
            located = self.locate(ref, located.base)
        raise RefError(f"$ref chain from {uri or 'here'} is longer than {MAX_HOPS} hops (a cycle?)")


def external_refs(document: Any, limit: int = 100_000) -> list[str]:
    """Every ``$ref`` value in ``document`` that names another document (not starting with ``#``), in order,
    each once. Iterative: a deep or shared (YAML alias) structure costs no recursion and each node is seen once."""
    found: dict[str, None] = {}
    stack = [document]
    seen: set[int] = set()
    while stack and len(found) < limit:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and not ref.startswith("#"):
                found[ref] = None
            stack.extend(value for value in node.values() if isinstance(value, dict | list))
        elif isinstance(node, list):
            stack.extend(value for value in node if isinstance(value, dict | list))
    return list(found)
