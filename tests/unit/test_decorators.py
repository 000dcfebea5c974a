"""``@tool``: schemas from signatures and return annotations, how results are shaped, how failures surface, and
the annotation defaults. Handlers are driven directly with a Context over a 2025-era CallScope.

reference/mcp-requirements.md §2.7; STYLE.md habit 5 (nothing leaks a stack trace or a secret).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Annotated, Any, Optional

import httpx2 as httpx
import pytest
from fixtures.tools import SECRET
from fixtures.wire import JSON_POST, assert_json, client_for, request, running
from pydantic import BaseModel, Field
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

import patchbay
from patchbay import Context, Image, Text, ToolError, tool
from patchbay.definitions import Tool
from patchbay.protocol.scope import CallScope
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio


def definition(fn: Any) -> Tool:
    found: Tool = fn.__patchbay__
    return found


async def run(fn: Any, **arguments: Any) -> dict[str, Any]:
    scope = CallScope(era="legacy", version="2025-11-25", request_id=1, method="tools/call", client_caps={})
    result = await definition(fn).handler(arguments, Context(scope))
    return result.to_wire()


class Address(BaseModel):
    street: str
    city: str = "Paris"


class Totals(TypedDict):
    count: int
    label: str


def test_input_schema_comes_from_the_signature() -> None:
    @tool
    async def search(
        query: str,
        limit: int = 10,
        after: Optional[str] = None,  # noqa: UP045 - the spelling users write is what is under test
        score: float | None = None,
        size: Annotated[int, Field(description="Page size", ge=1, le=100)] = 20,
    ) -> str:
        return query

    schema = definition(search).input_schema
    assert schema["type"] == "object"
    assert schema["required"] == ["query"]
    props = schema["properties"]
    assert props["query"] == {"type": "string"}
    assert props["limit"] == {"type": "integer", "default": 10}
    assert props["after"]["default"] is None
    assert {"type": "string"} in props["after"]["anyOf"] and {"type": "null"} in props["after"]["anyOf"]
    assert {"type": "number"} in props["score"]["anyOf"]
    assert props["size"]["description"] == "Page size"
    assert props["size"]["minimum"] == 1 and props["size"]["maximum"] == 100
    assert "title" not in schema and all("title" not in p for p in props.values())


def test_context_is_injected_by_annotation_and_left_out_of_the_schema() -> None:
    @tool
    async def who(name: str, ctx: Context) -> str:
        return name

    assert set(definition(who).input_schema["properties"]) == {"name"}


async def test_context_reaches_the_function() -> None:
    seen: list[Any] = []

    @tool
    async def who(ctx: Context) -> str:
        seen.append(ctx)
        return ctx.protocol_version

    result = await run(who)
    assert isinstance(seen[0], Context)
    assert result["content"] == [{"type": "text", "text": "2025-11-25"}]


def test_pydantic_models_as_parameters_become_defs() -> None:
    @tool
    async def ship(to: Address) -> str:
        return to.city

    schema = definition(ship).input_schema
    assert schema["properties"]["to"] == {"$ref": "#/$defs/Address"}
    assert schema["$defs"]["Address"]["required"] == ["street"]


async def test_pydantic_model_arguments_are_validated_into_models() -> None:
    @tool
    async def ship(to: Address) -> str:
        assert isinstance(to, Address)
        return f"{to.street}, {to.city}"

    result = await run(ship, to={"street": "1 Rue"})
    assert result["content"][0]["text"] == "1 Rue, Paris"


@pytest.mark.parametrize(
    ("annotation", "value", "schema"),
    [
        (int, 3, {"type": "integer"}),
        (list[int], [1, 2], {"type": "array", "items": {"type": "integer"}}),
        (bool, True, {"type": "boolean"}),
    ],
    ids=["int", "list", "bool"],
)
async def test_non_object_returns_are_wrapped_in_result(annotation: Any, value: Any, schema: dict[str, Any]) -> None:
    async def compute() -> Any:
        return value

    compute.__annotations__["return"] = annotation
    wrapped = tool(compute)
    out = definition(wrapped).output_schema
    assert out == {"type": "object", "properties": {"result": schema}, "required": ["result"]}
    result = await run(wrapped)
    assert result["structuredContent"] == {"result": value}
    assert result["isError"] is False
    assert result["content"][0]["type"] == "text"  # §2.7: structured content duplicated as JSON text


async def test_typed_dict_returns_are_not_wrapped() -> None:
    @tool
    async def totals() -> Totals:
        return {"count": 2, "label": "two"}

    out = definition(totals).output_schema
    assert out is not None and out["type"] == "object"
    assert set(out["properties"]) == {"count", "label"}
    assert (await run(totals))["structuredContent"] == {"count": 2, "label": "two"}


async def test_model_returns_are_not_wrapped() -> None:
    @tool
    async def where() -> Address:
        return Address(street="2 Rue")

    out = definition(where).output_schema
    assert out is not None and out["type"] == "object" and "street" in out["properties"]
    assert (await run(where))["structuredContent"] == {"street": "2 Rue", "city": "Paris"}


@pytest.mark.parametrize("kind", ["str", "image", "content-list", "none"])
async def test_content_returns_have_no_output_schema(kind: str) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\xff"

    async def show() -> Any:
        if kind == "str":
            return "hello"
        if kind == "image":
            return Image(png)
        if kind == "content-list":
            return [Text("a"), Image(png)]
        return None

    show.__annotations__["return"] = {"str": str, "image": Image, "content-list": list[Text | Image], "none": None}[
        kind
    ]
    made = tool(show)
    assert definition(made).output_schema is None
    result = await run(made)
    assert "structuredContent" not in result
    if kind == "image":
        assert result["content"][0]["type"] == "image"
        assert result["content"][0]["mimeType"] == "image/png"


async def test_a_union_of_content_types_is_content_not_structured_output() -> None:
    """`-> Text | Image` is content like `-> list[Text | Image]`: no outputSchema, the image sent as an image."""

    @tool
    async def maybe_picture(as_text: bool = False) -> Text | Image:
        return Text("none") if as_text else Image(b"\x89PNG\r\n\x1a\n\x00\xff")

    assert definition(maybe_picture).output_schema is None
    result = await run(maybe_picture)
    assert result["isError"] is False
    assert result["content"][0]["type"] == "image"


async def test_sync_functions_run_in_a_worker_thread() -> None:
    loop_thread = threading.current_thread().name

    @tool
    def where_am_i() -> str:
        return threading.current_thread().name

    result = await run(where_am_i)
    assert result["content"][0]["text"] != loop_thread


async def test_invalid_arguments_raise_a_tool_error_naming_the_field() -> None:
    @tool
    async def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(ToolError, match=r"b: .*integer"):
        await run(add, a=1, b="x")
    with pytest.raises(ToolError, match="a: Field required"):
        await run(add, b=1)


async def test_extra_arguments_are_ignored() -> None:
    @tool
    async def one(a: int) -> int:
        return a

    assert (await run(one, a=1, unexpected="x"))["structuredContent"] == {"result": 1}


def test_var_args_are_refused_at_decoration() -> None:
    with pytest.raises(TypeError, match="args"):

        @tool
        async def anything(*args: Any, **kwargs: Any) -> str:
            return ""


def test_annotation_defaults_are_the_safe_side() -> None:
    """§2.7: absent hints mean may write, destroy, repeat with effect, reach outside systems."""

    @tool
    async def plain() -> str:
        return ""

    assert definition(plain).annotations.to_wire(None) == SAFE_SIDE


SAFE_SIDE = {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": False, "openWorldHint": True}


def test_the_public_tool_annotations_default_to_the_safe_side() -> None:
    """docs/connectors.md: ``ToolAnnotations()`` may write, is destructive, not idempotent, open world; a
    hand-built ``Tool`` without annotations gets exactly those."""
    hints = patchbay.ToolAnnotations()
    assert (hints.read_only, hints.destructive, hints.idempotent, hints.open_world) == (False, True, False, True)
    assert hints.to_wire(None) == SAFE_SIDE
    hand_built = patchbay.Tool(name="t", description="", input_schema={"type": "object"}, handler=_answer)
    assert hand_built.annotations == hints


async def _answer(arguments: dict[str, Any], ctx: Context) -> patchbay.ToolResult:
    return patchbay.ToolResult([{"type": "text", "text": "ok"}])


HAND_BUILT_TOOLS = """
from typing import Any

from patchbay import Context, Tool, ToolAnnotations, ToolResult


async def answer(arguments: dict[str, Any], ctx: Context) -> ToolResult:
    return ToolResult([{"type": "text", "text": "ok"}])


def unmarked() -> None: ...
def reader() -> None: ...


unmarked.__patchbay__ = Tool(name="unmarked", description="No hints.", input_schema={"type": "object"}, handler=answer)
reader.__patchbay__ = Tool(
    name="reader", description="Looks.", input_schema={"type": "object"}, handler=answer,
    annotations=ToolAnnotations(read_only=True),
)
"""


async def test_hand_built_tools_list_the_default_annotations_on_the_wire(tmp_path: Path) -> None:
    (tmp_path / "hand_built.py").write_text(HAND_BUILT_TOOLS)
    data = {
        "server": {"name": "annotations"},
        "store": {"url": "sqlite:///:memory:"},
        "connectors": [{"name": "hb", "type": "python", "path": "hand_built.py", "prefix": ""}],
    }
    async with running(from_dict(data, base_dir=tmp_path)) as app, client_for(app) as http:
        response = await http.post("/mcp", json=request("tools/list", {}), headers=JSON_POST)
    listed = {t["name"]: t["annotations"] for t in assert_json(response)["result"]["tools"]}
    assert listed["unmarked"] == SAFE_SIDE
    # read_only alone: the other hints follow from it, whatever the dataclass defaults say.
    assert listed["reader"] == {
        "readOnlyHint": True,
        "destructiveHint": False,
        "idempotentHint": True,
        "openWorldHint": True,
    }


def test_read_only_tools_are_not_destructive_and_idempotent() -> None:
    @tool(read_only=True)
    async def look() -> str:
        return ""

    wire = definition(look).annotations.to_wire(None)
    assert wire == {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True, "openWorldHint": True}


def test_explicit_hints_are_kept() -> None:
    @tool(destructive=False, idempotent=True, open_world=False, title="Archive a card")
    async def archive() -> str:
        return ""

    wire = definition(archive).annotations.to_wire(definition(archive).title)
    assert wire == {
        "readOnlyHint": False,
        "destructiveHint": False,
        "idempotentHint": True,
        "openWorldHint": False,
        "title": "Archive a card",
    }


def test_name_and_description_default_to_the_function() -> None:
    @tool
    async def lookup_customer(email: str) -> str:
        """Find a customer by email."""
        return email

    made = definition(lookup_customer)
    assert made.name == "lookup_customer"
    assert made.description == "Find a customer by email."
    renamed = definition(tool(name="find", description="Finds.")(lookup_customer))
    assert (renamed.name, renamed.description) == ("find", "Finds.")


async def test_a_decorated_function_stays_callable() -> None:
    @tool
    async def double(x: int) -> int:
        return 2 * x

    assert await double(4) == 8


async def test_a_tool_error_message_reaches_the_client(client: httpx.AsyncClient) -> None:
    response = await client.post("/mcp", json=request("tools/call", {"name": "refuse"}), headers=JSON_POST)
    result = assert_json(response)["result"]
    assert result["isError"] is True
    assert result["content"] == [{"type": "text", "text": "The ticket is closed; reopen it first."}]


async def test_an_unexpected_exception_is_an_error_result_with_a_reference_and_no_details(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    response = await client.post("/mcp", json=request("tools/call", {"name": "explode"}, 9), headers=JSON_POST)
    assert response.status_code == 200
    result = assert_json(response)["result"]
    assert result["isError"] is True
    text = result["content"][0]["text"]
    assert "reference" in text
    for leak in (SECRET, "RuntimeError", "postgres://", "Traceback", "tools.py"):
        assert leak not in response.text, leak
    reference = text.rsplit("reference ", 1)[1].rstrip(").")
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the operator has the details, under the same reference


async def test_structured_output_over_the_wire_matches_the_output_schema(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/mcp", json=request("tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}}), headers=JSON_POST
    )
    result = assert_json(response)["result"]
    assert result["structuredContent"] == {"result": 5}
    assert [c["type"] for c in result["content"]] == ["text"]
    assert json.loads(result["content"][0]["text"]) == {"result": 5}  # §2.7: structured output also as JSON text
    mirrored = await client.post(
        "/mcp",
        json=request("tools/call", {"name": "mirror", "arguments": {"point": {"x": 1, "y": 2}}}),
        headers=JSON_POST,
    )
    assert assert_json(mirrored)["result"]["structuredContent"] == {"x": 2, "y": 1}
