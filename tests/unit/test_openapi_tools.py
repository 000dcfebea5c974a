"""OpenAPI operations to tools: selection, flat inputs, output schemas, annotations, overrides and the handlers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import jsonschema
import pytest

from patchbay.connectors.openapi.inputs import Schemas, build_inputs, output_schema
from patchbay.connectors.openapi.models import ApiSpec, ArgTarget, Body, Operation, Parameter, Plan, Success
from patchbay.connectors.openapi.options import OpenApiOptions
from patchbay.connectors.openapi.tools import build_tools, description_of
from patchbay.definitions import ToolResult
from patchbay.errors import ConfigError

TICKET = {
    "type": "object",
    "required": ["id", "title"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "integer", "readOnly": True},
        "title": {"type": "string", "description": "What is wrong", "x-internal": True},
        "state": {"type": "string", "enum": ["open", "closed"], "examples": ["open", "closed"]},
        "parent": {"$ref": "#/$defs/Ticket"},
        "owner": {"$ref": "#/$defs/User"},
    },
}
DEFS: dict[str, Any] = {
    "Ticket": TICKET,
    "User": {"type": "object", "properties": {"login": {"type": "string"}}},
    "Unused": {"type": "string"},
}


def spec(*operations: Operation, title: str = "Tickets") -> ApiSpec:
    return ApiSpec("3.1.0", title, "", (), operations, DEFS, {})


def options(**keys: Any) -> OpenApiOptions:
    return OpenApiOptions.model_validate({"spec": "tickets.yaml", "mode": "tools", **keys})


GET_TICKET = Operation(
    "GET",
    "/tickets/{id}",
    "getTicket",
    summary="Get a ticket",
    tags=("tickets",),
    parameters=(Parameter("id", "path", {"type": "integer"}, True, "The ticket's number"),),
    success=Success("200", "application/json", {"$ref": "#/$defs/Ticket"}),
)
LIST_TICKETS = Operation(
    "GET",
    "/tickets",
    "listTickets",
    tags=("tickets",),
    parameters=(Parameter("filter[state]", "query", {"type": "string"}),),
    success=Success("200", "application/json", {"type": "array", "items": {"$ref": "#/$defs/Ticket"}}),
)
UPDATE_TICKET = Operation(
    "PUT",
    "/tickets/{id}",
    "updateTicket",
    tags=("tickets",),
    parameters=(
        Parameter("id", "path", {"type": "integer"}, True),
        Parameter("id", "query", {"type": "string"}),
        Parameter("X-Request-ID", "header", {"type": "string"}),
        Parameter("Authorization", "header", {"type": "string"}),
    ),
    body=Body("application/json", {"$ref": "#/$defs/Ticket"}, required=True),
)
CREATE_USER = Operation(
    "POST", "/users", "createUser", tags=("users",), body=Body("application/json", {"type": "array"}, True)
)
PATCH_USER = Operation("PATCH", "/users/{id}", None, tags=("users",))
DELETE_USER = Operation("DELETE", "/users/{id}", "deleteUser", tags=("users", "admin"))
ALL = (GET_TICKET, LIST_TICKETS, UPDATE_TICKET, CREATE_USER, PATCH_USER, DELETE_USER)


class Recorder:
    """The invoke a connector gives: records what reached it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Plan, dict[str, Any]]] = []

    async def __call__(self, plan: Plan, arguments: dict[str, Any], ctx: Any) -> ToolResult:
        self.calls.append((plan, arguments))
        return ToolResult([{"type": "text", "text": "ok"}])


def names(**keys: Any) -> list[str]:
    return sorted(tool.name for tool in build_tools(spec(*ALL), options(**keys), Recorder()).tools)


def test_include_and_exclude_by_tag_operation_path_glob_and_method_with_exclude_winning() -> None:
    assert names(include={"tags": ["users"]}) == ["create_user", "delete_user", "patch_users_by_id"]
    assert names(include={"operations": ["*Ticket"]}, exclude={"methods": ["PUT"]}) == ["get_ticket"]
    assert names(include={"paths": ["/tickets/*"]}) == ["get_ticket", "update_ticket"]
    assert names(include={"paths": ["/**"]}, exclude={"tags": ["users"], "operations": ["GET /tickets"]}) == [
        "get_ticket",
        "update_ticket",
    ]
    assert names(include={"operations": ["patch /users/{id}"]}) == ["patch_users_by_id"]


def test_an_include_value_matching_nothing_is_logged_with_close_matches(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="patchbay.connectors.openapi"):
        assert names(include={"tags": ["ticket", "users"]}) == ["create_user", "delete_user", "patch_users_by_id"]
    assert "include.tags: 'ticket' matches no operation (did you mean 'tickets'?)" in caplog.text


def test_an_override_disables_one_operation() -> None:
    assert "delete_user" not in names(operations={"deleteUser": {"enabled": False}})


def test_an_override_naming_no_operation_is_a_config_error_with_close_matches() -> None:
    with pytest.raises(ConfigError, match=r"'getTicekt' names no operation.*did you mean 'getTicket'") as caught:
        names(operations={"getTicekt": {"title": "x"}})
    assert caught.value.key == "operations.getTicekt"


def test_overrides_rename_retitle_redescribe_and_reannotate() -> None:
    override = {
        "name": "ticket",
        "title": "One ticket",
        "description": "Read one.",
        "annotations": {"openWorldHint": False},
    }
    built = build_tools(spec(*ALL), options(operations={"GET /tickets/{id}": override}), Recorder())
    tool = next(t for t in built.tools if t.name == "ticket")
    assert (tool.title, tool.description) == ("One ticket", "Read one.")
    assert tool.annotations.open_world is False and tool.annotations.read_only is True
    assert built.plans["ticket"].operation is GET_TICKET


def test_the_spec_extension_names_hides_and_annotates_and_config_wins_over_it() -> None:
    hidden = Operation("GET", "/secret", "secret", extensions={"x-mcp": {"hidden": True}})
    extension = {"x-patchbay": {"name": "find", "annotations": {"readOnlyHint": True}}}
    named = Operation("POST", "/search", "searchTickets", extensions=extension)
    built = build_tools(spec(hidden, named), options(), Recorder())
    assert [t.name for t in built.tools] == ["find"]
    assert built.tools[0].annotations.read_only is True
    built = build_tools(spec(named), options(operations={"searchTickets": {"name": "lookup"}}), Recorder())
    assert [t.name for t in built.tools] == ["lookup"]


def test_annotations_follow_the_http_method_on_every_tool() -> None:
    built = build_tools(spec(*ALL), options(open_world=False), Recorder())
    hints = {t.name: t.annotations.to_wire(t.title) for t in built.tools}
    assert hints["get_ticket"] == {
        "readOnlyHint": True,
        "destructiveHint": False,
        "idempotentHint": True,
        "openWorldHint": False,
        "title": "Get a ticket",
    }
    for name in ("update_ticket", "delete_user"):
        assert hints[name]["destructiveHint"] is True and hints[name]["idempotentHint"] is True
        assert hints[name]["readOnlyHint"] is False
    for name in ("create_user", "patch_users_by_id"):
        assert hints[name]["destructiveHint"] is True and hints[name]["idempotentHint"] is False
    assert all(hint["title"] for hint in hints.values())


def test_parameters_and_an_object_body_become_flat_arguments_qualified_only_on_a_collision() -> None:
    args, schema = build_inputs(UPDATE_TICKET, DEFS)
    assert args == {
        "id": ArgTarget("path", "id"),
        "query_id": ArgTarget("query", "id"),
        "X_Request_ID": ArgTarget("header", "X-Request-ID"),
        "title": ArgTarget("body_property", "title"),
        "state": ArgTarget("body_property", "state"),
        "parent": ArgTarget("body_property", "parent"),
        "owner": ArgTarget("body_property", "owner"),
    }
    assert schema["required"] == ["id", "title"]
    assert schema["additionalProperties"] is False
    jsonschema.Draft202012Validator.check_schema(schema)


def test_a_body_property_named_like_a_parameter_is_qualified_as_body() -> None:
    operation = Operation(
        "POST",
        "/t/{id}",
        "x",
        parameters=(Parameter("id", "path", {"type": "string"}, True),),
        body=Body("application/json", {"type": "object", "properties": {"id": {"type": "string"}}}),
    )
    args, _ = build_inputs(operation, {})
    assert args == {"id": ArgTarget("path", "id"), "body_id": ArgTarget("body_property", "id")}


def test_names_that_are_not_safe_properties_are_sanitised_and_the_real_name_kept() -> None:
    args, schema = build_inputs(LIST_TICKETS, DEFS)
    assert args == {"filter_state": ArgTarget("query", "filter[state]")}
    assert list(schema["properties"]) == ["filter_state"]


def test_a_non_object_body_is_one_argument_named_body() -> None:
    args, schema = build_inputs(CREATE_USER, DEFS)
    assert args == {"body": ArgTarget("body", "")}
    assert schema["required"] == ["body"] and schema["properties"]["body"] == {"type": "array"}


def test_an_optional_body_makes_none_of_its_properties_required() -> None:
    operation = Operation("POST", "/t", "x", body=Body("application/json", {"$ref": "#/$defs/Ticket"}, False))
    _, schema = build_inputs(operation, DEFS)
    assert "required" not in schema


def test_descriptions_are_carried_and_vendor_keys_and_extra_examples_dropped() -> None:
    _, schema = build_inputs(GET_TICKET, DEFS)
    assert schema["properties"]["id"] == {"type": "integer", "description": "The ticket's number"}
    _, schema = build_inputs(UPDATE_TICKET, DEFS)
    assert schema["properties"]["title"] == {"type": "string", "description": "What is wrong"}
    assert schema["properties"]["state"]["examples"] == ["open"]


def test_only_the_defs_reached_are_copied_in_and_recursion_stays_a_reference() -> None:
    _, schema = build_inputs(UPDATE_TICKET, DEFS)
    assert sorted(schema["$defs"]) == ["Ticket", "User"]
    assert schema["$defs"]["Ticket"]["properties"]["parent"] == {"$ref": "#/$defs/Ticket"}
    _, schema = build_inputs(GET_TICKET, DEFS)
    assert "$defs" not in schema


def test_a_header_parameter_named_authorization_is_never_an_argument() -> None:
    args, _ = build_inputs(UPDATE_TICKET, DEFS)
    assert all(target.name != "Authorization" for target in args.values())


def test_an_object_response_gets_a_loosened_output_schema_that_accepts_what_real_apis_send() -> None:
    schema = output_schema(GET_TICKET.success, Schemas(DEFS))
    assert schema is not None and schema["type"] == "object"
    assert "required" not in schema and "additionalProperties" not in schema
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    # Missing fields, extra fields and a new enum value are all fine; a wrong type is still caught.
    assert validator.is_valid({"title": "x", "state": "archived", "extra": 1, "parent": {"new": True}})
    assert not validator.is_valid({"title": 5})


def test_arrays_scalars_and_non_json_responses_get_no_output_schema() -> None:
    schemas = Schemas(DEFS)
    assert output_schema(LIST_TICKETS.success, schemas) is None
    assert output_schema(Success("200", "application/json", {"type": "string"}), schemas) is None
    assert output_schema(Success("200", "text/csv", {"type": "object"}), schemas) is None
    assert output_schema(Success("204", None, None), schemas) is None
    built = build_tools(spec(GET_TICKET), options(output_schema=False), Recorder())
    assert built.tools[0].output_schema is None


def test_descriptions_join_summary_and_description_note_deprecation_and_are_capped() -> None:
    operation = Operation("GET", "/a", "a", summary="Short", description="Long " * 400, deprecated=True)
    text = description_of(operation)
    assert text.startswith("Deprecated. Short\n\nLong Long")
    assert len(text) <= 1000 and text.endswith("…")
    assert description_of(Operation("GET", "/a", None)) == "GET /a"


def call(tool: Any, arguments: dict[str, Any]) -> ToolResult:
    result: ToolResult = asyncio.run(tool.handler(arguments, None))
    return result


def test_a_tool_checks_its_arguments_and_invokes_with_its_plan() -> None:
    recorder = Recorder()
    built = build_tools(spec(UPDATE_TICKET), options(), recorder)
    tool = built.tools[0]
    assert call(tool, {"id": 7, "title": "Broken"}).is_error is False
    assert recorder.calls == [(built.plans["update_ticket"], {"id": 7, "title": "Broken"})]
    failed = call(tool, {"id": "seven", "title": "x", "typo": 1})
    assert failed.is_error
    text = failed.content[0]["text"]
    assert "unknown argument 'typo'" in text and "argument 'id': 'seven' is not of type 'integer'" in text
    assert "missing required argument 'title'" in call(tool, {"id": 1}).content[0]["text"]
    assert len(recorder.calls) == 1  # nothing invalid reached the API


def test_auto_mode_switches_to_search_above_the_token_budget() -> None:
    small = build_tools(spec(*ALL), options(mode="auto"), Recorder())
    assert small.mode == "tools" and small.selected == len(ALL) and small.estimated_tokens > 100
    big = build_tools(spec(*ALL), options(mode="auto", token_budget=small.estimated_tokens - 1), Recorder())
    assert big.mode == "search"
    assert [t.name for t in big.tools] == ["search_operations", "describe_operation", "call_operation"]
    assert sorted(big.plans) == sorted(small.plans)
