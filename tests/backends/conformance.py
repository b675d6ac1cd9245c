"""The conformance fixture: a backend implementing what every server scenario of
`@modelcontextprotocol/conformance` asks for, to be served *behind* the gateway (`"namespace": ""`), so the
suite tests the gateway's forwarding of tools, resources, templates, prompts, completion, logging, progress,
sampling and elicitation (and `tests/gateway/test_input_rounds.py` its relaying of input rounds).

Run as `python -m tests.backends.conformance [--http PORT]`.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import sys
from typing import Annotated, Any

import anyio
import mcp_types
from fastmcp import Context, FastMCP
from fastmcp.prompts import Message
from fastmcp.resources import ResourceContent, ResourceResult
from fastmcp.tools.base import ToolResult
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from tests.backends import refuse_on_stdin, started

# A 1x1 red PNG and a 1-sample silent WAV.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV = base64.b64encode(
    b"RIFF"
    + (38).to_bytes(4, "little")
    + b"WAVEfmt "
    + (16).to_bytes(4, "little")
    + (1).to_bytes(2, "little")
    + (1).to_bytes(2, "little")
    + (8000).to_bytes(4, "little")
    + (16000).to_bytes(4, "little")
    + (2).to_bytes(2, "little")
    + (16).to_bytes(2, "little")
    + b"data"
    + (2).to_bytes(4, "little")
    + b"\x00\x00"
).decode()

server = FastMCP("conformance-fixture")
SUBSCRIPTIONS: set[str] = set()


def _result(*content: Any, is_error: bool = False) -> ToolResult:
    return ToolResult(content=list(content), is_error=is_error)


class _NeedInput(Exception):
    """Raised by `_ask` in the 2026-07-28 era: the tool answers `input_required` and is called again."""

    def __init__(self, result: mcp_types.InputRequiredResult) -> None:
        self.result = result


async def _ask(ctx: Context, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Ask the client (sampling or elicitation) and return its raw result.

    Handshake era: a server-to-client request on this call's stream. 2026 era (no back-channel): the
    guard pattern of SEP-2322, answering `input_required` and reading the answer on the retried call.
    """
    request: Any
    if method == "sampling/createMessage":
        request = mcp_types.CreateMessageRequest(params=mcp_types.CreateMessageRequestParams.model_validate(params))
        result_type: Any = mcp_types.CreateMessageResult
    else:
        request = mcp_types.ElicitRequest(params=mcp_types.ElicitRequestFormParams.model_validate(params))
        result_type = mcp_types.ElicitResult
    session = ctx.session
    if session.protocol_version in MODERN_PROTOCOL_VERSIONS:
        answers = ctx.input_responses or {}
        if "ask" in answers:
            return answers["ask"].model_dump(by_alias=True, mode="json", exclude_none=True)
        raise _NeedInput(mcp_types.InputRequiredResult(input_requests={"ask": request}, request_state="asked"))
    metadata = ServerMessageMetadata(related_request_id=ctx.request_context.request_id)  # type: ignore[union-attr]
    result = await session.send_request(request, result_type, metadata=metadata)
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


def _asks(tool: Any) -> Any:
    """Let a tool that calls `_ask` answer `input_required` in the 2026 era."""

    @functools.wraps(tool)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await tool(*args, **kwargs)
        except _NeedInput as need:
            return need.result

    return wrapper


# ---------------------------------------------------------------------------------------------- tools


@server.tool(description="Returns a simple text response")
def test_simple_text() -> ToolResult:
    return _result(mcp_types.TextContent(type="text", text="This is a simple text response for testing."))


@server.tool(description="Returns an image")
def test_image_content() -> ToolResult:
    return _result(mcp_types.ImageContent(type="image", data=PNG, mime_type="image/png"))


@server.tool(description="Returns audio")
def test_audio_content() -> ToolResult:
    return _result(mcp_types.AudioContent(type="audio", data=WAV, mime_type="audio/wav"))


@server.tool(description="Returns an embedded resource")
def test_embedded_resource() -> ToolResult:
    return _result(
        mcp_types.EmbeddedResource(
            type="resource",
            resource=mcp_types.TextResourceContents(
                uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
            ),
        )
    )


@server.tool(description="Returns text, an image and a resource")
def test_multiple_content_types() -> ToolResult:
    return _result(
        mcp_types.TextContent(type="text", text="Multiple content types test:"),
        mcp_types.ImageContent(type="image", data=PNG, mime_type="image/png"),
        mcp_types.EmbeddedResource(
            type="resource",
            resource=mcp_types.TextResourceContents(
                uri="test://mixed-content-resource",
                mime_type="application/json",
                text=json.dumps({"test": "data", "value": 123}),
            ),
        ),
    )


@server.tool(description="Sends three log messages while it runs")
async def test_tool_with_logging(ctx: Context) -> str:
    await ctx.log("Tool execution started", level="info")
    await anyio.sleep(0.05)
    await ctx.log("Tool processing data", level="info")
    await anyio.sleep(0.05)
    await ctx.log("Tool execution completed", level="info")
    return "Tool with logging executed successfully"


@server.tool(description="Always fails")
def test_error_handling() -> ToolResult:
    return _result(
        mcp_types.TextContent(type="text", text="This tool intentionally returns an error for testing"), is_error=True
    )


@server.tool(description="Reports progress 0, 50, 100 of 100")
async def test_tool_with_progress(ctx: Context) -> str:
    for step in (0, 50, 100):
        await ctx.report_progress(step, 100)
        if step < 100:
            await anyio.sleep(0.05)
    return "Tool with progress executed successfully"


@server.tool(description="Asks the client's LLM (sampling/createMessage)")
@_asks
async def test_sampling(prompt: str, ctx: Context) -> str:
    result = await _ask(
        ctx,
        "sampling/createMessage",
        {"messages": [{"role": "user", "content": {"type": "text", "text": prompt}}], "maxTokens": 100},
    )
    content = result.get("content")
    text = content.get("text") if isinstance(content, dict) else json.dumps(content)
    return f"LLM response: {text}"


@server.tool(description="Asks the user for a username and email (elicitation/create)")
@_asks
async def test_elicitation(message: str, ctx: Context) -> str:
    result = await _ask(
        ctx,
        "elicitation/create",
        {
            "message": message,
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"},
                },
                "required": ["username", "email"],
            },
        },
    )
    return f"User response: action={result.get('action')}, content={json.dumps(result.get('content'))}"


@server.tool(description="Elicitation whose schema has defaults for every primitive type (SEP-1034)")
@_asks
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    result = await _ask(
        ctx,
        "elicitation/create",
        {
            "message": "Please review your profile",
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "Name", "default": "John Doe"},
                    "age": {"type": "integer", "description": "Age", "default": 30},
                    "score": {"type": "number", "description": "Score", "default": 95.5},
                    "status": {
                        "type": "string",
                        "description": "Status",
                        "enum": ["active", "inactive", "pending"],
                        "default": "active",
                    },
                    "verified": {"type": "boolean", "description": "Verified", "default": True},
                },
            },
        },
    )
    return f"Elicitation completed: action={result.get('action')}, content={json.dumps(result.get('content'))}"


@server.tool(description="Elicitation with all five enum schema variants (SEP-1330)")
@_asks
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    result = await _ask(
        ctx,
        "elicitation/create",
        {
            "message": "Pick some options",
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                    "titledSingle": {
                        "type": "string",
                        "oneOf": [
                            {"const": "value1", "title": "First Option"},
                            {"const": "value2", "title": "Second Option"},
                            {"const": "value3", "title": "Third Option"},
                        ],
                    },
                    "legacyEnum": {
                        "type": "string",
                        "enum": ["opt1", "opt2", "opt3"],
                        "enumNames": ["Option One", "Option Two", "Option Three"],
                    },
                    "untitledMulti": {
                        "type": "array",
                        "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
                    },
                    "titledMulti": {
                        "type": "array",
                        "items": {
                            "anyOf": [
                                {"const": "value1", "title": "First Choice"},
                                {"const": "value2", "title": "Second Choice"},
                                {"const": "value3", "title": "Third Choice"},
                            ]
                        },
                    },
                },
            },
        },
    )
    return f"Elicitation completed: action={result.get('action')}, content={json.dumps(result.get('content'))}"


@server.tool(
    description="Asks the user's name (elicitation), read-only: the gateway caches it",
    annotations={"readOnlyHint": True},
)
@_asks
async def test_greeting(ctx: Context) -> str:
    result = await _ask(
        ctx,
        "elicitation/create",
        {
            "message": "What is your name?",
            "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        },
    )
    return f"Hello, {(result.get('content') or {}).get('name')}!"


@server.tool(description="Asks the user's name; its `region` travels in an Mcp-Param header too (SEP-2243)")
@_asks
async def test_greeting_by_region(
    region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], ctx: Context
) -> str:
    result = await _ask(
        ctx,
        "elicitation/create",
        {
            "message": f"What is your name, {region}?",
            "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        },
    )
    return f"Hello, {(result.get('content') or {}).get('name')} of {region}!"


@server.tool(description="2026 era: answers input_required carrying only a requestState of `size` characters")
async def test_request_state(size: int, ctx: Context) -> Any:
    if ctx.request_state is not None:
        return f"state of {len(ctx.request_state)} characters came back"
    return mcp_types.InputRequiredResult(request_state="s" * size)


@server.tool(description="Closes its SSE stream mid-call when served over HTTP (SEP-1699), then answers")
async def test_reconnection(ctx: Context) -> str:
    await anyio.sleep(0.1)
    return "Reconnection test completed"


def _json_schema_2020_12_tool() -> None:
    from fastmcp.tools.function_tool import FunctionTool
    from pydantic import PrivateAttr

    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}
        },
        "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
        "additionalProperties": False,
    }

    class RawSchemaTool(FunctionTool):
        """Lists its input schema verbatim (FastMCP would inline the `$ref`)."""

        _raw_schema: dict[str, Any] = PrivateAttr(default_factory=dict)

        def to_mcp_tool(self, **overrides: Any) -> Any:
            return super().to_mcp_tool(**{"inputSchema": self._raw_schema, **overrides})

    def run(name: str | None = None, address: dict[str, Any] | None = None) -> str:
        return f"name={name}, address={json.dumps(address)}"

    tool = RawSchemaTool.from_function(
        run, name="json_schema_2020_12_tool", description="Tool with JSON Schema 2020-12 features"
    )
    tool._raw_schema = schema
    server.add_tool(tool)


_json_schema_2020_12_tool()


# ---------------------------------------------------------------------------------------------- resources


@server.resource("test://static-text", name="static-text", description="A static text resource", mime_type="text/plain")
def static_text() -> str:
    return "This is the content of the static text resource."


@server.resource(
    "test://static-binary", name="static-binary", description="A static binary resource (PNG)", mime_type="image/png"
)
def static_binary() -> bytes:
    return base64.b64decode(PNG)


@server.resource(
    "test://watched-resource", name="watched-resource", description="A resource to subscribe to", mime_type="text/plain"
)
def watched_resource() -> str:
    return "Watched resource content."


@server.resource(
    "test://template/{id}/data", name="template-data", description="Data for an id", mime_type="application/json"
)
def template_data(id: str) -> ResourceResult:
    body = json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"}, separators=(",", ":"))
    return ResourceResult(contents=[ResourceContent(content=body, mime_type="application/json")])


@server.tool(description="Announces that test://watched-resource changed (to its subscribers)")
async def touch_watched_resource(ctx: Context) -> str:
    if "test://watched-resource" in SUBSCRIPTIONS:
        await ctx.send_notification(
            mcp_types.ResourceUpdatedNotification(
                params=mcp_types.ResourceUpdatedNotificationParams(uri="test://watched-resource")
            )
        )
        return "notified"
    return "no subscribers"


async def _subscribe(ctx: Any, params: mcp_types.SubscribeRequestParams) -> mcp_types.EmptyResult:
    SUBSCRIPTIONS.add(str(params.uri))
    return mcp_types.EmptyResult()


async def _unsubscribe(ctx: Any, params: mcp_types.UnsubscribeRequestParams) -> mcp_types.EmptyResult:
    SUBSCRIPTIONS.discard(str(params.uri))
    return mcp_types.EmptyResult()


server._mcp_server.add_request_handler("resources/subscribe", mcp_types.SubscribeRequestParams, _subscribe)
server._mcp_server.add_request_handler("resources/unsubscribe", mcp_types.UnsubscribeRequestParams, _unsubscribe)


# ---------------------------------------------------------------------------------------------- prompts


@server.prompt(description="A prompt without arguments")
def test_simple_prompt() -> str:
    return "This is a simple prompt for testing."


@server.prompt(description="A prompt with two required arguments")
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@server.prompt(description="A prompt that embeds a resource")
def test_prompt_with_embedded_resource(resourceUri: str) -> list[Message]:
    resource = mcp_types.EmbeddedResource(
        type="resource",
        resource=mcp_types.TextResourceContents(
            uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
        ),
    )
    return [Message(resource, role="user"), Message("Please process the embedded resource above.", role="user")]


@server.prompt(description="A prompt with an image")
def test_prompt_with_image() -> list[Message]:
    image = mcp_types.ImageContent(type="image", data=PNG, mime_type="image/png")
    return [Message(image, role="user"), Message("Please analyze the image above.", role="user")]


@server.completion
def complete(ref: Any, argument: mcp_types.CompletionArgument, context: Any) -> list[str]:
    candidates = {"arg1": ["paris", "park", "party"], "arg2": ["world", "word"], "id": ["123", "456"]}
    return [value for value in candidates.get(argument.name, []) if value.startswith(argument.value)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None, help="serve Streamable HTTP on this port")
    parser.add_argument("--name", default=None, help="unused; names the process in ps output")
    parser.add_argument(
        "--legacy",
        action="store_true",
        help="speak only the handshake era (no server/discover): sampling and elicitation are "
        "server-to-client requests instead of input_required rounds",
    )
    args = parser.parse_args()
    started()
    if args.legacy:
        server._mcp_server._request_handlers.pop("server/discover", None)
        if not args.http:
            # seeing `server/discover` would lock the stdio connection into the 2026 era: the client falls back
            refuse_on_stdin("server/discover", {"code": -32601, "message": "Method not found"})
    if args.http:
        server.run(transport="http", host="127.0.0.1", port=args.http, show_banner=False)
    else:
        server.run(show_banner=False)
    sys.exit(0)


if __name__ == "__main__":
    main()
