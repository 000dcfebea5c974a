"""``@tool``, ``@resource`` and ``@prompt``: plain Python functions become MCP definitions.

The input schema comes from the signature and the output schema from the return annotation, both through
pydantic, built once at decoration time; each call validates its arguments with the compiled validator.
A decorated function stays an ordinary function; its definition is at ``fn.__patchbay__``.
"""

from __future__ import annotations

import functools
import inspect
import json
import types
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, Union, get_type_hints, overload

import anyio.to_thread
import orjson
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from patchbay.content import CONTENT_TYPES, resource_contents
from patchbay.context import Context
from patchbay.definitions import (
    Completer,
    Prompt,
    PromptArgument,
    PromptResult,
    Resource,
    ResourceTemplate,
    Tool,
    ToolAnnotations,
    ToolResult,
)
from patchbay.errors import ToolError

F = TypeVar("F", bound=Callable[..., Any])
ATTR = "__patchbay__"
_NO_SCHEMA_RETURNS = (str, ToolResult, PromptResult, type(None), *CONTENT_TYPES)


@overload
def tool(
    fn: F,
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    destructive: bool | None = None,
    idempotent: bool | None = None,
    open_world: bool = True,
    icons: list[dict[str, Any]] | None = None,
    meta: dict[str, Any] | None = None,
    input_schema: dict[str, Any] | None = None,
    output_schema: dict[str, Any] | None = None,
    requires: dict[str, Any] | None = None,
    scopes: list[str] | None = None,
    public: bool = False,
) -> F: ...


@overload
def tool(
    fn: None = None,
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    destructive: bool | None = None,
    idempotent: bool | None = None,
    open_world: bool = True,
    icons: list[dict[str, Any]] | None = None,
    meta: dict[str, Any] | None = None,
    input_schema: dict[str, Any] | None = None,
    output_schema: dict[str, Any] | None = None,
    requires: dict[str, Any] | None = None,
    scopes: list[str] | None = None,
    public: bool = False,
) -> Callable[[F], F]: ...


def tool(
    fn: F | None = None,
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    read_only: bool = False,
    destructive: bool | None = None,
    idempotent: bool | None = None,
    open_world: bool = True,
    icons: list[dict[str, Any]] | None = None,
    meta: dict[str, Any] | None = None,
    input_schema: dict[str, Any] | None = None,
    output_schema: dict[str, Any] | None = None,
    requires: dict[str, Any] | None = None,
    scopes: list[str] | None = None,
    public: bool = False,
) -> Any:
    """Make ``fn`` a tool. Use bare (``@tool``) or with options (``@tool(read_only=True)``).

    The annotations default to the safe side: not read-only, destructive, not idempotent, open world. Say
    ``read_only=True`` for tools that only look things up, and ``open_world=False`` for tools that touch only
    your own systems. Give ``input_schema`` to publish a hand-written JSON Schema instead of the signature's
    (arguments are then passed through unvalidated, by name).

    When sign-in is on, ``scopes`` are the OAuth scopes a caller needs for this tool, and ``public=True`` lets
    anyone call it without signing in; the connector's config can override both.

    Raises:
        TypeError: when the signature cannot be described as JSON Schema.
    """

    def decorate(func: F) -> F:
        annotations = ToolAnnotations(
            read_only=read_only,
            destructive=(not read_only) if destructive is None else destructive,
            idempotent=read_only if idempotent is None else idempotent,
            open_world=open_world,
        )
        signature = _Signature(func)
        schema = input_schema if input_schema is not None else signature.input_schema()
        out = _Output(func) if output_schema is None else _Output(func, explicit=output_schema)
        definition = Tool(
            name=name or func.__name__,
            title=title,
            description=description or inspect.getdoc(func) or "",
            input_schema=schema,
            output_schema=out.schema,
            annotations=annotations,
            icons=icons,
            meta=meta,
            requires=requires,
            scopes=list(scopes) if scopes is not None else None,
            public=public,
            handler=_tool_handler(func, signature, out, raw=input_schema is not None),
        )
        setattr(func, ATTR, definition)
        return func

    return decorate(fn) if fn is not None else decorate


def resource(
    uri: str,
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    mime_type: str | None = None,
    icons: list[dict[str, Any]] | None = None,
    completions: dict[str, Iterable[str] | Completer] | None = None,
) -> Callable[[F], F]:
    """Make ``fn`` the reader of ``uri``; a URI with ``{param}`` segments makes a resource template.

    The function returns ``str`` (text), ``bytes`` (blob), any JSON-able value (sent as JSON text), or a list of
    ready ``resources/read`` content dicts. Template parameters arrive as keyword arguments.
    """

    def decorate(func: F) -> F:
        signature = _Signature(func)
        handler = _resource_handler(func, signature, mime_type)
        common = {
            "name": name or func.__name__,
            "handler": handler,
            "title": title,
            "description": description or inspect.getdoc(func),
            "mime_type": mime_type,
            "icons": icons,
        }
        definition: Resource | ResourceTemplate
        if "{" in uri:
            definition = ResourceTemplate(uri_template=uri, completions=_completers(completions), **common)
        else:
            definition = Resource(uri=uri, **common)
        setattr(func, ATTR, definition)
        return func

    return decorate


@overload
def prompt(
    fn: F,
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    icons: list[dict[str, Any]] | None = None,
    completions: dict[str, Iterable[str] | Completer] | None = None,
) -> F: ...


@overload
def prompt(
    fn: None = None,
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    icons: list[dict[str, Any]] | None = None,
    completions: dict[str, Iterable[str] | Completer] | None = None,
) -> Callable[[F], F]: ...


def prompt(
    fn: F | None = None,
    *,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    icons: list[dict[str, Any]] | None = None,
    completions: dict[str, Iterable[str] | Completer] | None = None,
) -> Any:
    """Make ``fn`` a prompt. Its string parameters are the prompt's arguments (required unless defaulted).

    It returns a ``str`` (one user message), a list of messages (``{"role", "content"}`` dicts or
    ``(role, content)`` pairs where content is a ``str`` or a content item), or a ``PromptResult``.
    """

    def decorate(func: F) -> F:
        signature = _Signature(func)
        arguments = [PromptArgument(p.name, None, p.default is inspect.Parameter.empty) for p in signature.parameters]
        definition = Prompt(
            name=name or func.__name__,
            title=title,
            description=description or inspect.getdoc(func) or "",
            arguments=arguments,
            icons=icons,
            completions=_completers(completions),
            handler=_prompt_handler(func, signature),
        )
        setattr(func, ATTR, definition)
        return func

    return decorate(fn) if fn is not None else decorate


class _Signature:
    """A function's parameters, which one takes the Context, and the compiled validator for the rest."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.is_async = inspect.iscoroutinefunction(func)
        hints = get_type_hints(func, include_extras=True)
        self.context_param: str | None = None
        self.parameters: list[inspect.Parameter] = []
        fields: dict[str, Any] = {}
        for param in inspect.signature(func).parameters.values():
            annotation = hints.get(param.name, Any)
            if annotation is Context:
                self.context_param = param.name
                continue
            if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                raise TypeError(f"{func.__qualname__}: *args and **kwargs cannot be described as tool input")
            self.parameters.append(param)
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (annotation, default)
        self.model: type[BaseModel] = create_model(
            f"{func.__name__}_arguments", __config__=ConfigDict(extra="ignore"), **fields
        )
        self.names = tuple(fields)

    def input_schema(self) -> dict[str, Any]:
        schema = self.model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        schema.setdefault("properties", {})
        schema["type"] = "object"
        return schema

    def bind(self, arguments: dict[str, Any], *, raw: bool = False) -> dict[str, Any]:
        if raw:
            missing = [
                p.name for p in self.parameters if p.default is inspect.Parameter.empty and p.name not in arguments
            ]
            if missing:
                raise ToolError(f"Invalid arguments: missing required argument(s): {', '.join(missing)}")
            return {n: arguments[n] for n in self.names if n in arguments}
        try:
            return self.model.__pydantic_validator__.validate_python(arguments).__dict__  # type: ignore[no-any-return]
        except ValidationError as exc:
            raise ToolError(f"Invalid arguments: {_describe(exc)}") from None

    async def call(self, kwargs: dict[str, Any], ctx: Context) -> Any:
        if self.context_param is not None:
            kwargs = {**kwargs, self.context_param: ctx}
        if self.is_async:
            return await self.func(**kwargs)
        return await anyio.to_thread.run_sync(functools.partial(self.func, **kwargs))


class _Output:
    """Output schema from the return annotation and the conversion of returned values to a ToolResult."""

    def __init__(self, func: Callable[..., Any], explicit: dict[str, Any] | None = None) -> None:
        self.adapter: TypeAdapter[Any] | None = None
        self.wrap = False
        self.schema: dict[str, Any] | None = explicit
        if explicit is not None:
            return
        returns = get_type_hints(func, include_extras=True).get("return", Any)
        if returns is Any or (isinstance(returns, type) and issubclass(returns, _NO_SCHEMA_RETURNS)):
            return
        if _is_content(returns):
            return
        self.adapter = TypeAdapter(returns)
        schema = self.adapter.json_schema()
        schema.pop("title", None)
        if schema.get("type") == "object":
            self.schema = schema
        else:
            self.wrap = True
            defs = schema.pop("$defs", None)
            self.schema = {"type": "object", "properties": {"result": schema}, "required": ["result"]}
            if defs:
                self.schema["$defs"] = defs

    def to_result(self, value: Any) -> ToolResult:
        if isinstance(value, ToolResult):
            return value
        if self.adapter is not None:
            data = self.adapter.dump_python(value, mode="json")
            structured = {"result": data} if self.wrap else data
            return ToolResult([_json_text(structured)], structured=structured)
        if self.schema is not None:  # explicit output schema: the function returns the structured value
            return ToolResult([_json_text(value)], structured=value)
        return ToolResult(to_content(value))


def to_content(value: Any) -> list[dict[str, Any]]:
    """Any returned value as a list of content items."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if isinstance(value, CONTENT_TYPES):
        return [value.to_wire()]
    if isinstance(value, list) and value and all(isinstance(v, CONTENT_TYPES) for v in value):
        return [v.to_wire() for v in value]
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return [_json_text(value)]


def _tool_handler(func: Callable[..., Any], signature: _Signature, out: _Output, *, raw: bool) -> Any:
    async def handle(arguments: dict[str, Any], ctx: Context) -> ToolResult:
        kwargs = signature.bind(arguments, raw=raw)
        return out.to_result(await signature.call(kwargs, ctx))

    handle.__qualname__ = f"tool:{func.__qualname__}"
    return handle


def _resource_handler(func: Callable[..., Any], signature: _Signature, mime_type: str | None) -> Any:
    async def handle(uri: str, params: dict[str, str], ctx: Context) -> list[dict[str, Any]]:
        value = await signature.call(signature.bind(params), ctx)
        if isinstance(value, bytes):
            return [resource_contents(uri, blob=value, mime_type=mime_type or "application/octet-stream")]
        if isinstance(value, str):
            return [resource_contents(uri, text=value, mime_type=mime_type or "text/plain")]
        if isinstance(value, list) and all(isinstance(v, dict) and "uri" in v for v in value):
            return value
        text = json.dumps(value, ensure_ascii=False, default=str)
        return [resource_contents(uri, text=text, mime_type=mime_type or "application/json")]

    return handle


def _prompt_handler(func: Callable[..., Any], signature: _Signature) -> Any:
    async def handle(arguments: dict[str, str], ctx: Context) -> PromptResult:
        value = await signature.call(signature.bind(arguments), ctx)
        if isinstance(value, PromptResult):
            return value
        if isinstance(value, str):
            return PromptResult([{"role": "user", "content": {"type": "text", "text": value}}])
        return PromptResult([_message(m) for m in value])

    return handle


def _message(message: Any) -> dict[str, Any]:
    if isinstance(message, dict):
        return message
    role, body = message
    item = {"type": "text", "text": body} if isinstance(body, str) else body.to_wire()
    return {"role": role, "content": item}


def _completers(spec: dict[str, Iterable[str] | Completer] | None) -> dict[str, Completer]:
    completers: dict[str, Completer] = {}
    for arg, source in (spec or {}).items():
        if callable(source):
            completers[arg] = source
        else:
            completers[arg] = _prefix_completer(tuple(source))
    return completers


def _prefix_completer(values: tuple[str, ...]) -> Completer:
    async def complete(prefix: str, _context: dict[str, str]) -> list[str]:
        return [v for v in values if v.startswith(prefix)]

    return complete


def _is_content(annotation: Any) -> bool:
    """Content items, unions of them, and lists of those are content, not structured output:
    ``Text``, ``Text | Image``, ``list[Text]``, ``list[Text | Image]``, ``list[Content]``."""
    if annotation in CONTENT_TYPES:
        return True
    args: tuple[Any, ...] = getattr(annotation, "__args__", ())
    if getattr(annotation, "__origin__", None) is list:
        return len(args) == 1 and _is_content(args[0])
    return bool(args) and all(a in CONTENT_TYPES or a is type(None) for a in args) and _is_union(annotation)


def _is_union(annotation: Any) -> bool:
    return isinstance(annotation, types.UnionType) or getattr(annotation, "__origin__", None) is Union


def _json_text(value: Any) -> dict[str, Any]:
    return {"type": "text", "text": orjson.dumps(value, default=str).decode()}


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
