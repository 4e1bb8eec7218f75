"""The served tools: their MCP descriptions, argument checking, and the error boundary.

`call()` never raises for anything a client can cause: bad arguments, SQL the
guard refuses, source errors and timeouts all come back as `isError` results
whose text says what to fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import mcp_types as types
import trio
from jsonschema.validators import validator_for

from emcp.errors import ActionableError
from emcp.json_text import dumps
from emcp.settings import Settings
from emcp.sources.base import Source
from emcp.sql.guard import SqlRejected, check_select
from emcp.tools.context import ToolCall, ToolOutput
from emcp.tools.operations import OPERATIONS
from emcp.tools.spec import ToolSpec, ToolSpecError, load_tool_specs

# Operations whose callers write SQL, and so need the source's notes on its dialect.
_TAKES_SQL = frozenset({"query", "sql"})


def _error_result(code: str, message: str, hint: str = "") -> types.CallToolResult:
    text = f"Error ({code}): {message}" + (f"\nHint: {hint}" if hint else "")
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def _argument_error(error: Any) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return f"argument {path!r}: {error.message}" if path else error.message


class ToolSet:
    def __init__(self, specs: list[ToolSpec]) -> None:
        self._specs = {spec.name: spec for spec in specs}
        self._validators = {spec.name: validator_for(spec.input_schema)(spec.input_schema) for spec in specs}
        self._defaults = {
            spec.name: {
                key: prop["default"]
                for key, prop in spec.input_schema.get("properties", {}).items()
                if isinstance(prop, dict) and "default" in prop
            }
            for spec in specs
        }
        self.names = list(self._specs)
        self.tools = [
            types.Tool(
                name=spec.name,
                title=spec.title,
                description=spec.description,
                input_schema=spec.input_schema,
                output_schema=spec.output_schema,
                annotations=types.ToolAnnotations.model_validate(spec.annotations, by_name=False),
            )
            for spec in specs
        ]

    @classmethod
    def load(cls, settings: Settings, source: Source) -> ToolSet:
        """The tools for `source`: checked declarations, saved queries proven read-only now, not at call time."""
        specs = load_tool_specs(set(OPERATIONS), settings.tools_files, settings.tools)
        checked = []
        for spec in specs:
            if spec.sources and source.kind not in spec.sources:
                continue
            if spec.operation in _TAKES_SQL and source.sql_notes:
                spec = dataclasses.replace(spec, description=f"{spec.description}\n\n{source.sql_notes}")
            if spec.operation == "saved_query":
                try:
                    proven = check_select(spec.options["sql"], dialect=source.dialect)
                except SqlRejected as exc:
                    raise ToolSpecError(f"tool {spec.name!r}: {exc.message}") from None
                spec = dataclasses.replace(spec, options={**spec.options, "sql": proven})
            checked.append(spec)
        return cls(checked)

    def spec(self, name: str) -> ToolSpec | None:
        return self._specs.get(name)

    async def call(
        self, name: str, arguments: dict[str, Any] | None, make_call: Callable[[ToolSpec], ToolCall]
    ) -> types.CallToolResult:
        spec = self._specs[name]
        args = {**self._defaults[name], **(arguments or {})}
        errors = sorted(self._validators[name].iter_errors(args), key=lambda e: list(e.absolute_path))
        if errors:
            return _error_result(
                "invalid_arguments",
                "; ".join(_argument_error(e) for e in errors[:5]),
                f"check the arguments against the input schema of {name!r} (tools/list)",
            )
        call = make_call(spec)
        timeout = call.timeout
        try:
            with trio.move_on_after(timeout or float("inf")) as deadline:
                structured = await OPERATIONS[spec.operation](call, args)
        except ActionableError as exc:
            return _error_result(exc.code, exc.message, exc.hint)
        except SqlRejected as exc:
            return _error_result("sql_rejected", exc.message, exc.hint)
        if deadline.cancelled_caught:
            return _error_result(
                "timeout",
                f"the call ran longer than {timeout:g} s and was stopped (its query was interrupted)",
                "narrow the query (where, limit) or aggregate it",
            )
        output = structured if isinstance(structured, ToolOutput) else ToolOutput(structured)
        text = output.text if output.text is not None else dumps(output.structured).decode()
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text), *output.extra],
            structured_content=output.structured if spec.output_schema is not None else None,
        )
