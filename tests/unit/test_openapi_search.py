"""Search mode: three tools that find, describe and call any selected operation, with a small tools/list."""

from __future__ import annotations

import asyncio
from typing import Any

from patchbay.catalog.catalog import tool_wire
from patchbay.connectors.openapi.models import ApiSpec, Body, Operation, Parameter, Plan
from patchbay.connectors.openapi.options import OpenApiOptions
from patchbay.connectors.openapi.search import Index, words
from patchbay.connectors.openapi.tokens import estimate_tokens
from patchbay.connectors.openapi.tools import build_tools
from patchbay.definitions import Tool, ToolResult

OPERATIONS = (
    Operation("GET", "/tickets", "listTickets", summary="List tickets", tags=("tickets",)),
    Operation(
        "POST",
        "/tickets",
        "createTicket",
        summary="Open a new ticket",
        tags=("tickets",),
        body=Body(
            "application/json",
            {"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}}},
            required=True,
        ),
    ),
    Operation("GET", "/customers/{id}", "getCustomer", summary="Get a customer", tags=("customers",)),
    Operation(
        "DELETE",
        "/customers/{id}",
        "deleteCustomer",
        summary="Remove a customer for good",
        tags=("customers",),
        parameters=(Parameter("id", "path", {"type": "integer"}, True),),
    ),
    Operation("GET", "/invoices", "listInvoices", description="Every invoice of a customer, newest first."),
)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Plan, dict[str, Any]]] = []

    async def __call__(self, plan: Plan, arguments: dict[str, Any], ctx: Any) -> ToolResult:
        self.calls.append((plan, arguments))
        return ToolResult([{"type": "text", "text": "done"}])


def search_mode(recorder: Recorder, *operations: Operation, title: str = "Helpdesk", **keys: Any) -> dict[str, Tool]:
    spec = ApiSpec("3.1.0", title, "", (), operations or OPERATIONS, {}, {})
    options = OpenApiOptions.model_validate({"spec": "helpdesk.yaml", "mode": "search", **keys})
    built = build_tools(spec, options, recorder, prefix="desk_")
    assert built.mode == "search"
    return {tool.name: tool for tool in built.tools}


def run(tool: Tool, arguments: dict[str, Any]) -> ToolResult:
    result: ToolResult = asyncio.run(tool.handler(arguments, None))  # type: ignore[arg-type]
    return result


def test_words_split_camel_case_and_drop_plurals() -> None:
    assert words("listTickets of customers") == ["list", "ticket", "of", "customer"]


def test_bm25_ranks_the_document_with_the_rarer_matching_word_first_and_ties_stably() -> None:
    index = Index([("a", ["ticket", "list"]), ("b", ["ticket", "delete"]), ("c", ["invoice"])])
    assert [name for name, _ in index.search("delete ticket")] == ["b", "a"]
    assert [name for name, _ in index.search("ticket")] == ["a", "b"]
    assert index.search("nothing here") == []


def test_search_operations_finds_operations_by_summary_tag_and_description() -> None:
    tools = search_mode(Recorder())
    found = run(tools["search_operations"], {"query": "remove customer"}).structured
    assert found["operations"][0] == {
        "name": "delete_customer",
        "title": "Remove a customer for good",
        "method": "DELETE",
        "path": "/customers/{id}",
    }
    newest = run(tools["search_operations"], {"query": "newest invoices"}).structured
    assert newest["operations"][0]["name"] == "list_invoices"


def test_search_operations_filters_by_tag_and_limits_the_results() -> None:
    tools = search_mode(Recorder())
    found = run(tools["search_operations"], {"query": "", "tag": "Tickets", "limit": 1}).structured
    assert found == {"operations": [found["operations"][0]], "matched": 2}
    assert found["operations"][0]["name"] in {"list_tickets", "create_ticket"}
    unknown = run(tools["search_operations"], {"query": "x", "tag": "nope"})
    assert unknown.is_error and "the tags are: customers, tickets" in unknown.content[0]["text"]
    assert run(tools["search_operations"], {"query": "x", "limit": 21}).is_error


def test_describe_operation_gives_the_input_schema_and_hints() -> None:
    tools = search_mode(Recorder())
    described = run(tools["describe_operation"], {"name": "create_ticket"}).structured
    assert described["method"] == "POST" and described["path"] == "/tickets"
    assert described["inputSchema"]["required"] == ["title"]
    assert described["annotations"]["readOnlyHint"] is False
    by_id = run(tools["describe_operation"], {"name": "createTicket"}).structured
    assert by_id["name"] == "create_ticket"
    missing = run(tools["describe_operation"], {"name": "create_tickt"})
    assert missing.is_error and "did you mean 'create_ticket'" in missing.content[0]["text"]


def test_call_operation_checks_the_arguments_against_that_operation_and_invokes_its_plan() -> None:
    recorder = Recorder()
    tools = search_mode(recorder)
    bad = run(tools["call_operation"], {"name": "create_ticket", "arguments": {"titel": "x"}})
    assert bad.is_error and "unknown argument 'titel'" in bad.content[0]["text"]
    assert recorder.calls == []
    good = run(tools["call_operation"], {"name": "create_ticket", "arguments": {"title": "Printer on fire"}})
    assert not good.is_error
    [(plan, arguments)] = recorder.calls
    assert plan.operation.key == "POST /tickets" and plan.tool_name == "create_ticket"
    assert arguments == {"title": "Printer on fire"}


def test_call_operation_is_as_dangerous_as_the_worst_operation_it_reaches() -> None:
    writes = search_mode(Recorder())["call_operation"].annotations
    assert (writes.read_only, writes.destructive, writes.idempotent) == (False, True, False)
    reads = search_mode(Recorder(), OPERATIONS[0], OPERATIONS[2], open_world=False)["call_operation"].annotations
    assert (reads.read_only, reads.destructive, reads.open_world) == (True, False, False)
    finder = search_mode(Recorder())["search_operations"].annotations
    assert finder.read_only and not finder.open_world


def test_the_search_tool_list_is_small_whatever_the_number_of_operations() -> None:
    many = tuple(
        Operation("GET", f"/things{i}/{{id}}", f"getThing{i}", summary=f"Get thing {i} " + "words " * 50)
        for i in range(500)
    )
    tools = search_mode(Recorder(), *many, title="A" * 500)
    wire = [tool_wire("desk_" + tool.name, tool) for tool in tools.values()]
    assert estimate_tokens(wire) <= 1500
