"""Spec intake over real-world corpora from npm (installed by `make node`): every file of @readme/oas-examples
(Swagger 2.0, OpenAPI 3.0 and 3.1, JSON and YAML, circular and edge-case fixtures) and GitHub's published
description (@octokit/openapi, ~1,000 operations). Each loads; every operation the document declares is either
converted or listed as skipped with a reason; at least 99% are converted; every schema produced is valid JSON
Schema 2020-12 and every reference in it names a definition that exists."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from patchbay.connectors.openapi.models import METHODS, ApiSpec
from patchbay.connectors.openapi.spec import load_path, read_file
from tests.support.node import NodeToolsMissing, package_dir

META = Draft202012Validator(Draft202012Validator.META_SCHEMA)  # one metaschema validator for every check


def _corpus_dir(name: str) -> Path:
    try:
        return package_dir(name)
    except NodeToolsMissing as exc:
        pytest.skip(f"the npm spec corpora are not installed: {exc}")


def _examples() -> list[Path]:
    try:
        root = package_dir("@readme/oas-examples")
    except NodeToolsMissing:
        return []
    return sorted(
        p
        for version in ("2.0", "3.0", "3.1")
        for p in (root / version).rglob("*")
        if p.suffix in (".json", ".yaml", ".yml")
    )


def declared_operations(path: Path) -> int:
    """Operations the document declares, counted independently of intake (local Path Item refs followed)."""
    document, _ = read_file(path)
    total = 0
    for key, item in (document.get("paths") or {}).items():
        if key.startswith("x-"):
            continue
        ref = item.get("$ref") if isinstance(item, dict) else None
        if isinstance(ref, str) and ref.startswith("#/"):
            item = _pointer(document, ref[1:])
        total += sum(1 for method in (*METHODS, "query") if method in item)
        total += len(item.get("additionalOperations") or {})
    return total


def _pointer(document: Any, pointer: str) -> Any:
    for token in pointer.lstrip("/").split("/"):
        document = document[token.replace("~1", "/").replace("~0", "~")]
    return document


def schemas_of(spec: ApiSpec) -> Iterator[tuple[str, dict[str, Any]]]:
    for key, schema in spec.defs.items():
        yield f"$defs/{key}", schema
    for op in spec.operations:
        for param in op.parameters:
            yield f"{op.key} parameter {param.name}", param.schema
        if op.body is not None:
            yield f"{op.key} body", op.body.schema
        if op.success is not None and op.success.schema is not None:
            yield f"{op.key} response", op.success.schema


def dangling_refs(schema: Any, defs: dict[str, Any]) -> list[str]:
    found: list[str] = []
    stack = [schema]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and not (ref.startswith("#/$defs/") and ref[len("#/$defs/") :] in defs):
                found.append(ref)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def check(path: Path, spec: ApiSpec) -> None:
    declared = declared_operations(path)
    skips = [f"{s.key}: {s.reason}" for s in spec.skipped]
    assert len(spec.operations) + len(spec.skipped) == declared, skips
    assert len(spec.operations) >= 0.99 * declared, f"{path.name} skipped {len(skips)} of {declared}: {skips}"
    checked: set[int] = set()  # intake shares one schema object between operations: check each once
    for where, schema in schemas_of(spec):
        if id(schema) in checked:
            continue
        checked.add(id(schema))
        META.validate(schema)
        assert not dangling_refs(schema, spec.defs), (where, dangling_refs(schema, spec.defs))


@pytest.mark.parametrize("path", _examples(), ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
def test_every_oas_examples_file_loads_with_its_operations_converted(path: Path) -> None:
    check(path, load_path(path))


def test_the_oas_examples_corpus_is_there_to_test() -> None:
    root = _corpus_dir("@readme/oas-examples")
    assert len(_examples()) >= 100, f"expected the whole corpus under {root}"


def test_githubs_published_description_loads_with_its_operations_converted() -> None:
    path = _corpus_dir("@octokit/openapi") / "generated" / "api.github.com.json"
    spec = load_path(path)
    check(path, spec)
    assert len(spec.operations) >= 1000
    assert spec.servers == ("https://api.github.com",)
