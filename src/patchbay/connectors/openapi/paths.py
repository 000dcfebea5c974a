"""The Paths Object walked once for every version: each operation converted on its own, one that fails skipped.

The version-specific part is given: which (method, Operation Object) pairs a Path Item holds, and how one
operation converts. Everything around it is here, once: skipping ``x-`` keys, following Path Item references,
guarding each conversion (a bad operation must never fail the spec), skipping an operation whose referenced
schemas failed, and the Operation fields every version reads alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from patchbay.connectors.openapi.content import finish
from patchbay.connectors.openapi.context import Context, OperationError, extensions, requirements, text
from patchbay.connectors.openapi.models import METHODS, Body, Operation, Parameter, Skipped, Success
from patchbay.connectors.openapi.refs import Located, RefError
from patchbay.connectors.openapi.schemas import SchemaError

Methods = Callable[[dict[str, Any]], Iterable[tuple[str, Any]]]
# (ctx, METHOD, path, Operation Object, its Path Item): the operation, or OperationError / SchemaError / RefError.
Convert = Callable[[Context, str, str, dict[str, Any], Located], Operation]

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 §5.6.2: a method is a token


def path_operations(item: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(METHOD, Operation Object) of an OpenAPI 3 Path Item: the fixed fields, 3.2's ``query`` and
    ``additionalOperations`` (whose keys are kept as written, so :func:`method_problem` can tell them apart)."""
    for method in (*METHODS, "query"):
        if method in item:
            yield method.upper(), item[method]
    extra = item.get("additionalOperations")
    if isinstance(extra, dict):
        for method, operation in extra.items():
            yield f"+{method}", operation


def method_problem(method: str) -> str | None:
    """Why an ``additionalOperations`` key (``+NAME``) cannot be an operation, or None."""
    if not method.startswith("+"):
        return None
    name = method[1:]
    if not _TOKEN.match(name):
        return f"additionalOperations key {name!r} is not an HTTP method name"
    if name.lower() in (*METHODS, "query"):
        return f"additionalOperations may not redefine {name.upper()} (OpenAPI 3.2 §4.8.9.1)"
    return None


def operations(ctx: Context, paths: Any, methods: Methods, convert: Convert) -> tuple[list[Operation], list[Skipped]]:
    """Every operation of ``paths``, each converted on its own: one that fails is skipped with its reason."""
    done: list[Operation] = []
    skipped: list[Skipped] = []
    for one in each_operation(ctx, paths, methods, convert):
        if isinstance(one, Operation):
            done.append(one)
        else:
            skipped.append(one)
    return done, skipped


def each_operation(ctx: Context, paths: Any, methods: Methods, convert: Convert) -> Iterator[Operation | Skipped]:
    if not isinstance(paths, dict):
        return
    for path, node in paths.items():
        if not isinstance(path, str) or path.startswith("x-"):
            continue
        try:
            item = ctx.documents.follow(node, ctx.documents.root_base)
        except RefError as exc:
            yield Skipped(f"* {path}", f"the path item cannot be read: {exc}")
            continue
        if not isinstance(item.node, dict):
            yield Skipped(f"* {path}", "the path item is not an object")
            continue
        for method, op in methods(item.node):
            yield guarded(ctx, method, path, op, item, convert)


def guarded(ctx: Context, method: str, path: str, op: Any, item: Located, convert: Convert) -> Operation | Skipped:
    """One operation, or why not; never raises (a bad operation must not fail the spec)."""
    problem = method_problem(method)
    method = method.lstrip("+").upper()
    key = f"{method} {path}"
    try:
        if problem:
            return Skipped(key, problem)
        if not path.startswith("/"):
            raise OperationError("the path does not start with /")
        if not isinstance(op, dict):
            raise OperationError("the operation is not an object")
        with ctx.schemas.collect() as refs:
            operation = convert(ctx, method, path, op, item)
            ctx.schemas.drain()
        broken = ctx.schemas.broken(refs)
        if broken:
            return Skipped(key, broken)
        return finish(ctx, operation)
    except (OperationError, SchemaError, RefError) as exc:
        return Skipped(key, str(exc))
    except Exception as exc:
        return Skipped(key, f"cannot be converted ({type(exc).__name__}: {str(exc)[:200]})")


def operation(
    ctx: Context,
    method: str,
    path: str,
    op: dict[str, Any],
    item: dict[str, Any],
    params: list[Parameter],
    content: tuple[Body | None, Success | None],
    servers: tuple[str, ...] = (),
) -> Operation:
    """The :class:`Operation` with the fields every version reads alike; the top-level ``security`` applies when
    the operation has none (an explicit ``security: []`` stays empty, OpenAPI 3.1 §4.8.10.1)."""
    security = op.get("security")
    tags = op.get("tags")
    op_id = op.get("operationId")
    return Operation(
        method=method,
        path=path,
        operation_id=op_id if isinstance(op_id, str) and op_id else None,
        # OpenAPI 3 §4.8.9: a Path Item's summary and description apply to all its operations.
        summary=text(op.get("summary")) or text(item.get("summary")),
        description=text(op.get("description")) or text(item.get("description")),
        tags=tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
        deprecated=op.get("deprecated") is True,
        parameters=tuple(params),
        body=content[0],
        success=content[1],
        security=(requirements(security, "security") if security is not None else ctx.security) or (),
        servers=servers,
        idempotency_header=next(
            (p.name for p in params if p.location == "header" and p.name.lower() == "idempotency-key"), None
        ),
        extensions=extensions(op),
    )
