"""Tool declarations: load the packaged tools.yaml and the user's own, and check them.

A declaration that cannot work (unknown operation, invalid JSON Schema, a
saved query that is not one read-only SELECT) stops the server at start-up
with a message naming the file and the tool, rather than failing a call later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import SchemaError
from jsonschema.validators import validator_for

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_KNOWN_KEYS = {
    "name",
    "title",
    "description",
    "operation",
    "input_schema",
    "output_schema",
    "annotations",
    "sources",
    # saved_query only
    "database",
    "sql",
}


class ToolSpecError(ValueError):
    """A tool declaration that cannot be served."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    operation: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    title: str | None = None
    annotations: dict[str, Any] = field(default_factory=dict)
    # Operation-specific options (a saved query's database and SQL).
    options: dict[str, Any] = field(default_factory=dict)
    # The source kinds the tool works on ("sqlite", "edgelake"); empty = every source.
    sources: tuple[str, ...] = ()


def _check_schema(schema: Any, where: str) -> dict[str, Any]:
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ToolSpecError(f"{where}: must be a JSON Schema with type: object")
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise ToolSpecError(f"{where}: invalid JSON Schema: {exc.message}") from None
    return schema


def parse_tool(entry: Any, origin: str, operations: set[str], default_output: dict[str, Any] | None) -> ToolSpec:
    if not isinstance(entry, dict):
        raise ToolSpecError(f"{origin}: each tool must be a mapping")
    name = entry.get("name")
    where = f"{origin}: tool {name!r}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise ToolSpecError(f"{where}: name must be 1-64 letters, digits, '_', '-' or '.'")
    unknown = set(entry) - _KNOWN_KEYS
    if unknown:
        raise ToolSpecError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_KNOWN_KEYS)}")
    operation = entry.get("operation")
    if operation not in operations:
        raise ToolSpecError(f"{where}: operation must be one of {sorted(operations)}, got {operation!r}")
    description = entry.get("description")
    if not isinstance(description, str) or not description.strip():
        raise ToolSpecError(f"{where}: a description is required (it is what the model reads)")
    input_schema = _check_schema(entry.get("input_schema", {"type": "object"}), f"{where} input_schema")
    output = entry.get("output_schema", default_output if operation == "saved_query" else None)
    output_schema = _check_schema(output, f"{where} output_schema") if output is not None else None
    options = {key: entry[key] for key in ("database", "sql") if key in entry}
    if operation == "saved_query" and not all(isinstance(options.get(k), str) for k in ("database", "sql")):
        raise ToolSpecError(f"{where}: a saved_query needs `database` and `sql` strings")
    sources = entry.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(k, str) for k in sources):
        raise ToolSpecError(f"{where}: sources must be a list of source kinds, e.g. [edgelake]")
    annotations = entry.get("annotations", {"readOnlyHint": True, "destructiveHint": False})
    if not isinstance(annotations, dict):
        raise ToolSpecError(f"{where}: annotations must be a mapping")
    return ToolSpec(
        name=name,
        title=entry.get("title"),
        description=description.strip(),
        operation=operation,
        input_schema=input_schema,
        output_schema=output_schema,
        annotations=annotations,
        options=options,
        sources=tuple(sources),
    )


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ToolSpecError(f"{origin}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tools", []), list):
        raise ToolSpecError(f"{origin}: expected a mapping with a `tools` list")
    return data


def load_tool_specs(operations: set[str], files: list[Path], inline: list[dict[str, Any]]) -> list[ToolSpec]:
    """The packaged tools, then each file's, then the config's inline ones. Names must be unique."""
    packaged = _read_yaml(resources.files("emcp.tools").joinpath("tools.yaml").read_text(), "tools.yaml")
    query_result = packaged["definitions"]["query_result"]
    sources: list[tuple[str, list[Any]]] = [("tools.yaml", packaged["tools"])]
    for path in files:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ToolSpecError(f"{path}: cannot read: {exc}") from None
        sources.append((str(path), _read_yaml(text, str(path)).get("tools", [])))
    sources.append(("config", inline))
    specs: dict[str, ToolSpec] = {}
    for origin, entries in sources:
        for entry in entries:
            spec = parse_tool(entry, origin, operations, query_result)
            if spec.name in specs:
                raise ToolSpecError(f"{origin}: tool {spec.name!r} is declared twice")
            specs[spec.name] = spec
    return list(specs.values())
