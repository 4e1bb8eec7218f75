"""The fixtures the MCP conformance suite expects of a server, added to emcp for the test only.

`@modelcontextprotocol/conformance` (0.1.16) drives a server through fixed names: tools such as
`test_simple_text` or `test_sampling`, resources under `test://`, prompts such as
`test_simple_prompt`. emcp ships none of them, so `customize` adds them to the SDK `Server` the
test starts (`emcp.open_server(settings, customize=customize)`). It wraps emcp's own handlers
rather than replacing them: emcp's tools and block resources keep working next to the fixtures,
and the suite's `tools-list`/`resources-list` checks see both.

Every fixture does what its scenario checks for real: progress and log notifications go out on
the request's stream while the call runs, `test_sampling` and the elicitation tools send
`sampling/createMessage` and `elicitation/create` to the client and wait for its answer, the
image and audio are valid PNG and WAV files, `logging/setLevel` filters later log notifications.
That way a pass says emcp's transport carried the traffic, not that a fixture faked a result.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import wave
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, Final, get_args

import jsonschema
import mcp_types as types
import trio
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from pydantic import BaseModel

from emcp.dispatch import RESOURCE_NOT_FOUND

Ctx = ServerRequestContext[Any]
Handler = Callable[[Ctx, Any], Awaitable[Any]]
ToolFn = Callable[[Ctx, dict[str, Any]], Awaitable[types.CallToolResult]]

#: The suite's scenarios wait about 200 ms after a call for its notifications; the spec of
#: `test_tool_with_logging` and `test_tool_with_progress` asks for ~50 ms between them.
STEP_DELAY: Final = 0.05
#: Keys of the SDK's per-connection scratch dict (`Connection.state`) used here.
LOG_LEVEL_KEY: Final = "conformance/log_level"
SUBSCRIPTIONS_KEY: Final = "conformance/subscriptions"
#: Severity order, lowest first, as the `LoggingLevel` literal declares it (RFC 5424).
LOG_LEVELS: Final[tuple[types.LoggingLevel, ...]] = get_args(types.LoggingLevel)


def _png_1x1_red() -> bytes:
    """A real 1x1 red PNG (what the suite's image scenarios suggest), built rather than pasted."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte, then one red pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _wav_silence() -> bytes:
    """A real WAV file (10 ms of 8 kHz mono silence): `tools-call-audio` insists on audio/wav."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x00\x00" * 80)
    return out.getvalue()


PNG_B64: Final = base64.b64encode(_png_1x1_red()).decode()
WAV_B64: Final = base64.b64encode(_wav_silence()).decode()


# --- helpers ------------------------------------------------------------------------------------


def _connection_state(ctx: Ctx) -> dict[str, Any]:
    """The SDK's per-connection scratch dict, so one session's log level never reaches another.

    SDK 2.3 gives lowlevel handlers a `ServerRequestContext`, whose `session` proxy keeps the
    `Connection` private; `Connection.state` is still the SDK's intended home for such data.
    """
    return ctx.session._connection.state


def _text(text: str) -> types.TextContent:
    return types.TextContent(type="text", text=text)


def _result(*content: types.ContentBlock) -> types.CallToolResult:
    return types.CallToolResult(content=list(content))


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[_text(text)], is_error=True)


async def _log(ctx: Ctx, level: types.LoggingLevel, message: str) -> None:
    """A `notifications/message` on this request's stream, unless below the session's level.

    Sent as a plain notification: `ServerSession.send_log_message` is deprecated in SDK 2.3
    and its warning would be an error under this project's `filterwarnings = error`.
    """
    threshold = _connection_state(ctx).get(LOG_LEVEL_KEY, LOG_LEVELS[0])
    if LOG_LEVELS.index(level) < LOG_LEVELS.index(threshold):
        return
    notification = types.LoggingMessageNotification(
        params=types.LoggingMessageNotificationParams(level=level, logger="conformance", data=message)
    )
    await ctx.session.send_notification(notification, related_request_id=ctx.request_id)


async def _elicit(ctx: Ctx, message: str, schema: dict[str, Any]) -> types.ElicitResult:
    """Send `elicitation/create` on this request's stream and wait for the client's answer."""
    request = types.ElicitRequest(params=types.ElicitRequestFormParams(message=message, requested_schema=schema))
    metadata = ServerMessageMetadata(related_request_id=ctx.request_id)
    return await ctx.session.send_request(request, types.ElicitResult, metadata=metadata)


def _capability_missing(ctx: Ctx, name: str) -> types.CallToolResult | None:
    """The spec's answer when a client lacks the capability a tool needs: an error result."""
    capabilities = ctx.session.client_capabilities
    if capabilities is None or getattr(capabilities, name) is None:
        return _error(f"The client did not declare the {name!r} capability this tool needs")
    return None


# --- tools ------------------------------------------------------------------------------------

NO_ARGS: Final[dict[str, Any]] = {"type": "object", "properties": {}}


async def simple_text(ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
    return _result(_text("This is a simple text response for testing."))


async def image_content(ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
    return _result(types.ImageContent(type="image", data=PNG_B64, mime_type="image/png"))


async def audio_content(ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
    return _result(types.AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav"))


async def embedded_resource(ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
    resource = types.TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
    )
    return _result(types.EmbeddedResource(type="resource", resource=resource))


async def multiple_content_types(ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
    resource = types.TextResourceContents(
        uri="test://mixed-content-resource",
        mime_type="application/json",
        text=json.dumps({"test": "data", "value": 123}),
    )
    return _result(
        _text("Multiple content types test:"),
        types.ImageContent(type="image", data=PNG_B64, mime_type="image/png"),
        types.EmbeddedResource(type="resource", resource=resource),
    )


async def tool_with_logging(ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
    await _log(ctx, "info", "Tool execution started")
    await trio.sleep(STEP_DELAY)
    await _log(ctx, "info", "Tool processing data")
    await trio.sleep(STEP_DELAY)
    await _log(ctx, "info", "Tool execution completed")
    return _result(_text("Tool with logging executed successfully"))


async def tool_with_progress(ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
    """Progress 0, 50, 100 of 100; the SDK sends nothing when the call carried no progressToken."""
    for done in (0, 50, 100):
        if done:
            await trio.sleep(STEP_DELAY)
        await ctx.session.report_progress(done, 100, f"Completed step {done} of 100")
    return _result(_text("Tool with progress executed successfully"))


async def error_handling(ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
    return _error("This tool intentionally returns an error for testing")


async def sampling(ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
    """Ask the client's LLM through `sampling/createMessage` and return what it answered.

    Sent with `send_request`: `ServerSession.create_message` is deprecated in SDK 2.3.
    """
    if missing := _capability_missing(ctx, "sampling"):
        return missing
    request = types.CreateMessageRequest(
        params=types.CreateMessageRequestParams(
            messages=[types.SamplingMessage(role="user", content=_text(str(args.get("prompt", ""))))],
            max_tokens=100,
        )
    )
    metadata = ServerMessageMetadata(related_request_id=ctx.request_id)
    answer = await ctx.session.send_request(request, types.CreateMessageResult, metadata=metadata)
    reply = answer.content.text if isinstance(answer.content, types.TextContent) else f"<{answer.content.type}>"
    return _result(_text(f"LLM response: {reply}"))


async def elicitation(ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
    if missing := _capability_missing(ctx, "elicitation"):
        return missing
    answer = await _elicit(
        ctx,
        str(args.get("message", "")),
        {
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            },
            "required": ["username", "email"],
        },
    )
    return _result(_text(f"User response: action={answer.action}, content={json.dumps(answer.content)}"))


async def elicitation_defaults(ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
    """SEP-1034: a default for every primitive type the elicitation schema allows."""
    if missing := _capability_missing(ctx, "elicitation"):
        return missing
    answer = await _elicit(
        ctx,
        "Please review and update the form fields with defaults",
        {
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
        },
    )
    return _result(_text(f"Elicitation completed: action={answer.action}, content={json.dumps(answer.content)}"))


async def elicitation_enums(ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
    """SEP-1330: the five enum shapes, untitled and titled, single and multi-select, and legacy."""
    if missing := _capability_missing(ctx, "elicitation"):
        return missing
    options = ["option1", "option2", "option3"]
    answer = await _elicit(
        ctx,
        "Please select options from the enum fields",
        {
            "type": "object",
            "properties": {
                "untitledSingle": {"type": "string", "description": "Untitled single-select", "enum": options},
                "titledSingle": {
                    "type": "string",
                    "description": "Titled single-select",
                    "oneOf": [
                        {"const": "value1", "title": "First Option"},
                        {"const": "value2", "title": "Second Option"},
                        {"const": "value3", "title": "Third Option"},
                    ],
                },
                "legacyEnum": {
                    "type": "string",
                    "description": "Legacy titled enum",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"],
                },
                "untitledMulti": {
                    "type": "array",
                    "description": "Untitled multi-select",
                    "items": {"type": "string", "enum": options},
                },
                "titledMulti": {
                    "type": "array",
                    "description": "Titled multi-select",
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
    )
    return _result(_text(f"Elicitation completed: action={answer.action}, content={json.dumps(answer.content)}"))


JSON_SCHEMA_2020_12: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
    "additionalProperties": False,
}


async def json_schema_2020_12(ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
    """Validate the arguments against the 2020-12 schema the tool advertises, `$ref` and all."""
    try:
        jsonschema.Draft202012Validator(JSON_SCHEMA_2020_12).validate(args)
    except jsonschema.ValidationError as exc:
        return _error(f"Invalid arguments: {exc.message}")
    return _result(_text(f"Accepted: {json.dumps(args, sort_keys=True)}"))


async def reconnection(ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
    """SEP-1699 polling: close the request's SSE stream mid-call; the client resumes it by GET.

    Only a transport that can resume (an event store) hands handlers `close_sse_stream`.
    """
    if ctx.close_sse_stream is None:
        return _error("This transport cannot close a request's SSE stream for the client to resume")
    await _log(ctx, "info", "Before disconnect")
    await ctx.close_sse_stream()
    await trio.sleep(4 * STEP_DELAY)  # the client reconnects meanwhile
    await _log(ctx, "info", "After reconnect")
    return _result(_text("Reconnection test completed"))


def _tool(name: str, description: str, schema: dict[str, Any], fn: ToolFn) -> tuple[types.Tool, ToolFn]:
    return types.Tool(name=name, description=description, input_schema=schema), fn


def _args(**properties: str) -> dict[str, Any]:
    """An input schema of required string arguments, each with its description."""
    return {
        "type": "object",
        "properties": {key: {"type": "string", "description": text} for key, text in properties.items()},
        "required": list(properties),
    }


TOOLS: Final[dict[str, tuple[types.Tool, ToolFn]]] = {
    tool.name: (tool, fn)
    for tool, fn in [
        _tool("test_simple_text", "Returns one text block", NO_ARGS, simple_text),
        _tool("test_image_content", "Returns a 1x1 PNG image", NO_ARGS, image_content),
        _tool("test_audio_content", "Returns a short WAV clip", NO_ARGS, audio_content),
        _tool("test_embedded_resource", "Returns an embedded text resource", NO_ARGS, embedded_resource),
        _tool("test_multiple_content_types", "Returns text, image and resource", NO_ARGS, multiple_content_types),
        _tool("test_tool_with_logging", "Sends three info log messages while it runs", NO_ARGS, tool_with_logging),
        _tool("test_tool_with_progress", "Reports progress 0, 50, 100 of 100", NO_ARGS, tool_with_progress),
        _tool("test_error_handling", "Always returns an error result", NO_ARGS, error_handling),
        _tool("test_sampling", "Asks the client's LLM", _args(prompt="The prompt to send to the LLM"), sampling),
        _tool(
            "test_elicitation", "Asks the user for input", _args(message="The message to show the user"), elicitation
        ),
        _tool(
            "test_elicitation_sep1034_defaults",
            "Elicits with a default for every primitive type",
            NO_ARGS,
            elicitation_defaults,
        ),
        _tool("test_elicitation_sep1330_enums", "Elicits with every enum schema shape", NO_ARGS, elicitation_enums),
        _tool(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features",
            JSON_SCHEMA_2020_12,
            json_schema_2020_12,
        ),
        _tool("test_reconnection", "Closes its SSE stream mid-call, then answers", NO_ARGS, reconnection),
    ]
}


# --- resources and prompts --------------------------------------------------------------------

RESOURCES: Final[dict[str, tuple[types.Resource, types.TextResourceContents | types.BlobResourceContents]]] = {
    resource.uri: (resource, contents)
    for resource, contents in [
        (
            types.Resource(
                uri="test://static-text",
                name="static-text",
                description="A static text resource",
                mime_type="text/plain",
            ),
            types.TextResourceContents(
                uri="test://static-text",
                mime_type="text/plain",
                text="This is the content of the static text resource.",
            ),
        ),
        (
            types.Resource(
                uri="test://static-binary", name="static-binary", description="A 1x1 PNG", mime_type="image/png"
            ),
            types.BlobResourceContents(uri="test://static-binary", mime_type="image/png", blob=PNG_B64),
        ),
        (
            types.Resource(
                uri="test://watched-resource",
                name="watched-resource",
                description="A resource clients can subscribe to",
                mime_type="text/plain",
            ),
            types.TextResourceContents(
                uri="test://watched-resource", mime_type="text/plain", text="Watched resource content"
            ),
        ),
    ]
}

TEMPLATE: Final = types.ResourceTemplate(
    name="template-data",
    uri_template="test://template/{id}/data",
    description="JSON data for an id, substituted from the URI",
    mime_type="application/json",
)
TEMPLATE_PREFIX, TEMPLATE_SUFFIX = "test://template/", "/data"


def _read_fixture(uri: str) -> types.ReadResourceResult | None:
    """The fixture resource at `uri` (a static one or the template's), or None if not ours."""
    if uri in RESOURCES:
        return types.ReadResourceResult(contents=[RESOURCES[uri][1]])
    key = uri.removeprefix(TEMPLATE_PREFIX).removesuffix(TEMPLATE_SUFFIX)
    if uri.startswith(TEMPLATE_PREFIX) and uri.endswith(TEMPLATE_SUFFIX) and key and "/" not in key:
        data = {"id": key, "templateTest": True, "data": f"Data for ID: {key}"}
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type="application/json", text=json.dumps(data))]
        )
    return None


def _user(content: types.ContentBlock) -> types.PromptMessage:
    return types.PromptMessage(role="user", content=content)


PromptFn = Callable[[dict[str, str]], list[types.PromptMessage]]

PROMPTS: Final[dict[str, tuple[types.Prompt, PromptFn]]] = {
    prompt.name: (prompt, fn)
    for prompt, fn in [
        (
            types.Prompt(name="test_simple_prompt", description="A prompt without arguments"),
            lambda args: [_user(_text("This is a simple prompt for testing."))],
        ),
        (
            types.Prompt(
                name="test_prompt_with_arguments",
                description="A prompt with two required arguments",
                arguments=[
                    types.PromptArgument(name="arg1", description="First test argument", required=True),
                    types.PromptArgument(name="arg2", description="Second test argument", required=True),
                ],
            ),
            lambda args: [_user(_text(f"Prompt with arguments: arg1='{args['arg1']}', arg2='{args['arg2']}'"))],
        ),
        (
            types.Prompt(
                name="test_prompt_with_embedded_resource",
                description="A prompt that embeds a resource",
                arguments=[
                    types.PromptArgument(name="resourceUri", description="URI of the resource to embed", required=True)
                ],
            ),
            lambda args: [
                _user(
                    types.EmbeddedResource(
                        type="resource",
                        resource=types.TextResourceContents(
                            uri=args["resourceUri"],
                            mime_type="text/plain",
                            text="Embedded resource content for testing.",
                        ),
                    )
                ),
                _user(_text("Please process the embedded resource above.")),
            ],
        ),
        (
            types.Prompt(name="test_prompt_with_image", description="A prompt with an image"),
            lambda args: [
                _user(types.ImageContent(type="image", data=PNG_B64, mime_type="image/png")),
                _user(_text("Please analyze the image above.")),
            ],
        ),
    ]
}

#: Candidates `completion/complete` filters by prefix, per prompt argument.
COMPLETIONS: Final[dict[tuple[str, str], list[str]]] = {
    ("test_prompt_with_arguments", "arg1"): ["paris", "park", "party", "test", "testing"],
    ("test_prompt_with_arguments", "arg2"): ["hello", "help", "world"],
}


# --- handlers wrapping emcp's -----------------------------------------------------------------

Inner = Handler | None
Wrapper = Callable[[Inner], Handler]


def _not_found(uri: str) -> MCPError:
    return MCPError(code=RESOURCE_NOT_FOUND, message=f"Resource not found: {uri}", data={"uri": uri})


def _listing(result_type: type[BaseModel], field: str, fixtures: list[BaseModel]) -> Wrapper:
    """A `*/list` handler: the wrapped handler's items, then the fixtures on the last page."""

    def make(inner: Inner) -> Handler:
        async def handler(ctx: Ctx, params: types.PaginatedRequestParams) -> BaseModel:
            result = await inner(ctx, params) if inner else result_type(**{field: []})
            if getattr(result, "next_cursor", None) is not None:
                return result
            return result.model_copy(update={field: [*getattr(result, field), *fixtures]})

        return handler

    return make


def _call_tool(inner: Inner) -> Handler:
    async def handler(ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name in TOOLS:
            return await TOOLS[params.name][1](ctx, params.arguments or {})
        if inner is None:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name!r}")
        return await inner(ctx, params)

    return handler


def _read_resource(inner: Inner) -> Handler:
    async def handler(ctx: Ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        if (fixture := _read_fixture(uri)) is not None:
            return fixture
        if inner is None:
            raise _not_found(uri)
        return await inner(ctx, params)

    return handler


def _subscription(subscribe: bool) -> Wrapper:
    """`resources/subscribe` or `resources/unsubscribe` of a fixture resource, kept per session."""

    def make(inner: Inner) -> Handler:
        async def handler(ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
            uri = str(params.uri)
            if _read_fixture(uri) is None:
                if inner is None:
                    raise _not_found(uri)
                return await inner(ctx, params)
            subscribed: set[str] = _connection_state(ctx).setdefault(SUBSCRIPTIONS_KEY, set())
            if subscribe:
                subscribed.add(uri)
            else:
                subscribed.discard(uri)
            return types.EmptyResult()

        return handler

    return make


def _get_prompt(inner: Inner) -> Handler:
    async def handler(ctx: Ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        if params.name not in PROMPTS:
            if inner is None:
                raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown prompt: {params.name!r}")
            return await inner(ctx, params)
        prompt, render = PROMPTS[params.name]
        args = params.arguments or {}
        if missing := [a.name for a in prompt.arguments or [] if a.required and a.name not in args]:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Missing prompt arguments: {', '.join(missing)}")
        return types.GetPromptResult(description=prompt.description, messages=render(args))

    return handler


def _complete(inner: Inner) -> Handler:
    async def handler(ctx: Ctx, params: types.CompleteRequestParams) -> types.CompleteResult:
        ref = params.ref
        key = (ref.name, params.argument.name) if isinstance(ref, types.PromptReference) else None
        if key not in COMPLETIONS:
            if inner is not None:
                return await inner(ctx, params)
            return types.CompleteResult(completion=types.Completion(values=[]))
        values = [v for v in COMPLETIONS[key] if v.startswith(params.argument.value)]
        return types.CompleteResult(completion=types.Completion(values=values, total=len(values), has_more=False))

    return handler


def _set_level(inner: Inner) -> Handler:
    """Remember the session's level: `_log` drops what is below it from then on."""

    async def handler(ctx: Ctx, params: types.SetLevelRequestParams) -> types.EmptyResult:
        _connection_state(ctx)[LOG_LEVEL_KEY] = params.level
        if inner is not None:
            await inner(ctx, params)
        return types.EmptyResult()

    return handler


#: method -> (params model, wrapper factory given the handler already registered, if any)
WRAPPERS: Final[dict[str, tuple[type[BaseModel], Wrapper]]] = {
    "tools/list": (
        types.PaginatedRequestParams,
        _listing(types.ListToolsResult, "tools", [tool for tool, _ in TOOLS.values()]),
    ),
    "tools/call": (types.CallToolRequestParams, _call_tool),
    "resources/list": (
        types.PaginatedRequestParams,
        _listing(types.ListResourcesResult, "resources", [resource for resource, _ in RESOURCES.values()]),
    ),
    "resources/templates/list": (
        types.PaginatedRequestParams,
        _listing(types.ListResourceTemplatesResult, "resource_templates", [TEMPLATE]),
    ),
    "resources/read": (types.ReadResourceRequestParams, _read_resource),
    "resources/subscribe": (types.SubscribeRequestParams, _subscription(subscribe=True)),
    "resources/unsubscribe": (types.UnsubscribeRequestParams, _subscription(subscribe=False)),
    "prompts/list": (
        types.PaginatedRequestParams,
        _listing(types.ListPromptsResult, "prompts", [prompt for prompt, _ in PROMPTS.values()]),
    ),
    "prompts/get": (types.GetPromptRequestParams, _get_prompt),
    "completion/complete": (types.CompleteRequestParams, _complete),
    "logging/setLevel": (types.SetLevelRequestParams, _set_level),
}


def customize(server: Server[Any]) -> None:
    """Add the conformance fixtures to `server`, each wrapping the handler already there, if any."""
    for method, (params_type, wrap) in WRAPPERS.items():
        entry = server.get_request_handler(method)
        server.add_request_handler(method, params_type, wrap(entry.handler if entry is not None else None))
