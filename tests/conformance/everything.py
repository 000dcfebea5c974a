"""The "everything" fixture the MCP conformance suite calls by name, written with Patchbay's public API.

Names and behaviours follow the suite's server scenarios (0.1.16 and 0.2.0-alpha.12).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from patchbay import (
    Audio,
    Context,
    EmbeddedResource,
    Image,
    Text,
    ToolError,
    prompt,
    resource,
    tool,
)

# A 1x1 PNG and a tiny WAV, so content checks see real media.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
WAV = base64.b64decode("UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA=")

READ = {"read_only": True, "open_world": False}


@tool(**READ)
async def test_simple_text() -> str:
    """Returns a simple text response."""
    return "This is a simple text response for testing."


@tool(**READ)
async def test_image_content() -> Image:
    """Returns an image."""
    return Image(PNG, "image/png")


@tool(**READ)
async def test_audio_content() -> Audio:
    """Returns audio."""
    return Audio(WAV, "audio/wav")


@tool(**READ)
async def test_embedded_resource() -> EmbeddedResource:
    """Returns an embedded resource."""
    return EmbeddedResource(
        "test://embedded-resource", text="This is an embedded resource content.", mime_type="text/plain"
    )


@tool(**READ)
async def test_multiple_content_types() -> list[Text | Image | EmbeddedResource]:
    """Returns text, an image and an embedded resource."""
    return [
        Text("Multiple content types test:"),
        Image(PNG, "image/png"),
        EmbeddedResource(
            "test://mixed-content-resource",
            text='{"test": "data", "value": 123}',
            mime_type="application/json",
        ),
    ]


@tool(**READ)
async def test_tool_with_logging(ctx: Context) -> str:
    """Sends three log messages while it runs."""
    for step in ("Tool execution started", "Tool processing data", "Tool execution completed"):
        await ctx.info(step)
        await asyncio.sleep(0.05)
    return "Tool with logging executed successfully"


@tool(**READ)
async def test_logging_tool(ctx: Context) -> str:
    """Logs three messages; clients see them only when they ask for a log level."""
    for step in ("one", "two", "three"):
        await ctx.info(f"logging tool step {step}")
    return "Logging tool done"


@tool(**READ)
async def test_error_handling() -> str:
    """Always fails, as a tool error."""
    raise ToolError("This tool intentionally returns an error for testing")


@tool(**READ)
async def test_tool_with_progress(ctx: Context) -> str:
    """Reports progress 0, 50 and 100 of 100."""
    for value in (0, 50, 100):
        await ctx.report_progress(value, 100, f"step {value}")
        await asyncio.sleep(0.02)
    return "Tool with progress executed successfully"


@tool(**READ)
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Asks the client's model to answer ``prompt``."""
    result = await ctx.sample(prompt, max_tokens=100)
    content = result.get("content") or {}
    text = content.get("text", "") if isinstance(content, dict) else ""
    return f"LLM response: {text}"


@tool(**READ)
async def test_elicitation(message: str, ctx: Context) -> str:
    """Asks the user for a username and an email."""
    schema = {
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "Your username"},
            "email": {"type": "string", "description": "Your email address"},
        },
        "required": ["username", "email"],
    }
    answer = await ctx.elicit(message, schema)
    return f"User response: action={answer.get('action')}, content={answer.get('content')}"


@tool(**READ)
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Elicits primitives that carry defaults (SEP-1034)."""
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
    }
    answer = await ctx.elicit("Please review and update the form fields with defaults", schema)
    return f"Elicitation completed: action={answer.get('action')}, content={answer.get('content')}"


@tool(**READ)
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Elicits every enum shape of SEP-1330."""
    titled = [{"const": f"value{i}", "title": f"Option {i}"} for i in (1, 2, 3)]
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {"type": "string", "oneOf": titled},
            "legacyEnum": {
                "type": "string",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
            },
            "titledMulti": {"type": "array", "items": {"anyOf": titled}},
        },
    }
    answer = await ctx.elicit("Please select options", schema)
    return f"Elicitation completed: action={answer.get('action')}, content={answer.get('content')}"


SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


@tool(input_schema=SCHEMA_2020_12, **READ)
async def json_schema_2020_12_tool(name: str = "", address: dict[str, Any] | None = None) -> str:
    """Publishes a JSON Schema 2020-12 input schema unchanged."""
    return f"Received: {name}, {address}"


@tool(**READ)
async def test_reconnection(ctx: Context) -> str:
    """Ends its SSE response early; the client resumes the stream to get the result (SSE polling)."""
    await ctx.close_stream()
    await asyncio.sleep(0.1)
    return "Reconnection test completed"


@tool(requires={"sampling": {}}, **READ)
async def test_missing_capability(ctx: Context) -> str:
    """Needs the client's sampling capability."""
    result = await ctx.sample("Say hello", max_tokens=20)
    return str(result.get("content"))


@tool(**READ)
async def test_streaming_elicitation(ctx: Context) -> str:
    """Asks for input; in 2026-07-28 that becomes an input_required result, never a request on the stream."""
    answer = await ctx.elicit("Anything to add?", {"type": "object", "properties": {"note": {"type": "string"}}})
    return f"Got {answer.get('action')}"


@tool(
    input_schema={
        "type": "object",
        "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
        "required": ["region"],
    },
    **READ,
)
async def test_x_mcp_header(region: str) -> str:
    """Echoes a region that also travels in the Mcp-Param-Region header."""
    return f"Region: {region}"


@tool(**READ)
async def test_trigger_tool_change(ctx: Context) -> str:
    """Adds or removes a tool, so subscribed clients get notifications/tools/list_changed."""
    if "test_dynamic_tool" in globals():
        del globals()["test_dynamic_tool"]
    else:

        async def test_dynamic_tool() -> str:
            """A tool that comes and goes with test_trigger_tool_change."""
            return "dynamic"

        globals()["test_dynamic_tool"] = tool(test_dynamic_tool, **READ)
    ctx.lists_changed()
    return "tool list changed"


@tool(**READ)
async def test_trigger_prompt_change(ctx: Context) -> str:
    """Adds or removes a prompt, so subscribed clients get notifications/prompts/list_changed."""
    if "test_dynamic_prompt" in globals():
        del globals()["test_dynamic_prompt"]
    else:

        async def test_dynamic_prompt() -> str:
            """A prompt that comes and goes with test_trigger_prompt_change."""
            return "dynamic prompt"

        globals()["test_dynamic_prompt"] = prompt(test_dynamic_prompt)
    ctx.lists_changed()
    return "prompt list changed"


# -- multi round-trip (2026-07-28 input_required) ---------------------------------------------------------

NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def _elicit(message: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": "elicitation/create",
        "params": {"mode": "form", "message": message, "requestedSchema": schema},
    }


def _sample(text: str) -> dict[str, Any]:
    return {
        "method": "sampling/createMessage",
        "params": {
            "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
            "maxTokens": 100,
        },
    }


ROOTS = {"method": "roots/list", "params": {}}


def _accepted(answer: dict[str, Any], field: str) -> str:
    content = answer.get("content") if answer.get("action") == "accept" else None
    if not isinstance(content, dict) or field not in content:
        raise ToolError(f"expected an accepted answer with '{field}'")
    return str(content[field])


@tool(**READ)
async def test_input_required_result_elicitation(ctx: Context) -> str:
    """Asks for the user's name."""
    answer = await ctx.elicit("What is your name?", NAME_SCHEMA, key="user_name")
    return f"Hello, {_accepted(answer, 'name')}!"


@tool(**READ)
async def test_input_required_result_sampling(ctx: Context) -> str:
    """Asks the client's model a question."""
    answer = await ctx.sample("What is the capital of France?", max_tokens=100, key="capital_question")
    content = answer.get("content") or {}
    return f"The model said: {content.get('text', '') if isinstance(content, dict) else ''}"


@tool(**READ)
async def test_input_required_result_list_roots(ctx: Context) -> str:
    """Asks for the client's roots."""
    roots = await ctx.list_roots(key="client_roots")
    return f"Roots: {', '.join(str(r.get('uri')) for r in roots)}"


@tool(**READ)
async def test_input_required_result_request_state(ctx: Context) -> str:
    """Asks for a confirmation carried through requestState."""
    answer = await ctx.elicit(
        "Confirm?",
        {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
        key="confirm",
    )
    return f"state-ok: {_accepted(answer, 'ok')}"


@tool(**READ)
async def test_input_required_result_multiple_inputs(ctx: Context) -> str:
    """Asks for three inputs at once."""
    answers = await ctx.ask(
        {
            "user_name": _elicit("What is your name?", NAME_SCHEMA),
            "greeting": _sample("Write a greeting"),
            "client_roots": ROOTS,
        }
    )
    return f"Got {', '.join(sorted(answers))}"


@tool(**READ)
async def test_input_required_result_multi_round(ctx: Context) -> str:
    """Asks for a name, then for a colour, in two rounds."""
    name = _accepted(await ctx.elicit("What is your name?", NAME_SCHEMA, key="step1"), "name")
    color_schema = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
    color = _accepted(await ctx.elicit(f"Hi {name}, favourite colour?", color_schema, key="step2"), "color")
    return f"{name} likes {color}"


@tool(**READ)
async def test_input_required_result_tampered_state(ctx: Context) -> str:
    """Asks for a confirmation; a tampered requestState must be refused."""
    answer = await ctx.elicit("Confirm?", {"type": "object", "properties": {"ok": {"type": "boolean"}}}, key="confirm")
    return f"confirmed: {answer.get('action')}"


@tool(**READ)
async def test_input_required_result_capabilities(ctx: Context) -> str:
    """Asks only for what the client declared it can do."""
    caps = ctx.client_capabilities
    if "elicitation" in caps:
        answer = await ctx.elicit("Anything?", {"type": "object", "properties": {"x": {"type": "string"}}}, key="ask")
    elif "sampling" in caps:
        answer = await ctx.sample("Say something", max_tokens=50, key="sample")
    else:
        return "The client can take no input requests."
    return f"Got {sorted(answer)}"


# -- resources ----------------------------------------------------------------------------------------------


@resource("test://static-text", name="static-text", mime_type="text/plain")
async def static_text() -> str:
    """A static text resource."""
    return "This is the content of the static text resource."


@resource("test://static-binary", name="static-binary", mime_type="image/png")
async def static_binary() -> bytes:
    """A static binary resource (a PNG)."""
    return PNG


@resource(
    "test://template/{id}/data",
    name="template-data",
    mime_type="application/json",
    completions={"id": ["1", "2", "3", "123"]},
)
async def template_data(id: str) -> str:
    """Data for any id."""
    return f'{{"id": "{id}", "templateTest": true, "data": "Data for ID: {id}"}}'


@resource("test://watched-resource", name="watched-resource", mime_type="text/plain")
async def watched_resource() -> str:
    """A resource clients may subscribe to."""
    return "Watched resource content"


# -- prompts ------------------------------------------------------------------------------------------------


@prompt
async def test_simple_prompt() -> str:
    """A simple prompt without arguments."""
    return "This is a simple prompt for testing."


@prompt(completions={"arg1": ["paris", "park", "party", "test", "testing"]})
async def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with two required arguments."""
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@prompt
async def test_prompt_with_embedded_resource(resourceUri: str) -> list[Any]:
    """A prompt that embeds a resource."""
    return [
        (
            "user",
            EmbeddedResource(resourceUri, text="Embedded resource content for testing.", mime_type="text/plain"),
        ),
        ("user", "Please process the embedded resource above."),
    ]


@prompt
async def test_prompt_with_image() -> list[Any]:
    """A prompt that carries an image."""
    return [("user", Image(PNG, "image/png")), ("user", "Please analyze the image above.")]


@prompt
async def test_input_required_result_prompt(ctx: Context) -> str:
    """A prompt that first asks the user for context."""
    answer = await ctx.elicit(
        "What context should the prompt use?",
        {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]},
        key="user_context",
    )
    return f"Use this context: {_accepted(answer, 'context')}"
