"""The bypass corpus (tests/sql_bypasses.py) end to end: the SDK's client, a real server, the `sql` tool.

The guard's own tests prove it refuses each entry; these prove the server puts
the guard in front of every source, and check where it matters: the SQLite file
is byte for byte the same afterwards and the source never started a query, and
the EdgeLake node never received a `sql` command. A plain SELECT sent the same
way afterwards does reach each source, so neither check can pass vacuously.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from jsonschema.validators import validator_for
from mcp import ClientSession

from emcp import EmcpServer, load_settings, open_server
from tests.conftest import mcp_session
from tests.edgelake_emulator import EdgeLakeEmulator, open_emulator
from tests.sql_bypasses import BYPASSES

DATABASE = "new_company"


async def refusals_missed(session: ClientSession) -> list[str]:
    """Send every corpus entry to the `sql` tool; describe each answer that is not a refusal.

    A refusal is an isError result, `Error (<code>): <what was wrong>` and a hint on how
    to fix the call. The code is the guard's `sql_rejected`, whose message must contain the
    entry's fragment, except for the entries the tool's declared input schema already refuses
    (empty, or longer than it allows): those are `invalid_arguments`. Collected rather than
    asserted one by one, so a failure lists every entry that got through, not just the first.
    """
    (tool,) = [tool for tool in (await session.list_tools()).tools if tool.name == "sql"]
    schema = validator_for(tool.input_schema)(tool.input_schema)
    missed = []
    for bypass in BYPASSES:
        arguments = {"database": DATABASE, "sql": bypass.sql}
        result = await session.call_tool("sql", arguments)
        text = result.content[0].text if result.content else ""
        error, _, hint = text.partition("\nHint: ")
        if schema.is_valid(arguments):
            said = error.startswith("Error (sql_rejected): ") and bypass.fragment in error
        else:
            said = error.startswith("Error (invalid_arguments): ")
        if not (result.is_error and said and hint.strip()):
            missed.append(f"{bypass.id}: is_error={result.is_error} {text[:200]!r}")
    return missed


def digests(directory: Path) -> dict[Path, bytes]:
    """Each file in `directory` and the SHA-256 of its bytes."""
    found = {}
    for path in directory.iterdir():
        with path.open("rb") as file:
            found[path] = hashlib.file_digest(file, "sha256").digest()
    return found


async def test_no_bypass_reaches_the_sqlite_source(server: EmcpServer, demo_dir: Path) -> None:
    files_before = await trio.to_thread.run_sync(digests, demo_dir)
    stats = server.source.statistics()
    with trio.fail_after(60):
        async with mcp_session(server) as session:
            started = stats.started
            missed = await refusals_missed(session)
            refused_started = stats.started
            control = await session.call_tool("sql", {"database": DATABASE, "sql": "SELECT count(*) AS n FROM devices"})
    assert missed == [], "\n".join(missed)
    assert refused_started == started, "a refused statement started a query at the source"
    assert not control.is_error and stats.started == started + 1
    # No byte changed, and no journal, WAL or other file appeared next to the database.
    assert await trio.to_thread.run_sync(digests, demo_dir) == files_before


@pytest.fixture
async def emulator() -> AsyncIterator[EdgeLakeEmulator]:
    async with open_emulator() as running:
        yield running


def sql_commands(emulator: EdgeLakeEmulator) -> list[str]:
    """The `sql ...` commands the node received, in order (whatever the method or header form)."""
    return [c.command for c in emulator.connections if c.command and c.command.lower().startswith("sql")]


async def test_no_bypass_reaches_the_edgelake_node(emulator: EdgeLakeEmulator, tmp_path: Path) -> None:
    settings = load_settings(
        source=f"edgelake:{emulator.url}", data_dir=tmp_path, http__port=0, http__graceful_timeout=1.0
    )
    with trio.fail_after(60):
        async with open_server(settings) as server, mcp_session(server) as session:
            missed = await refusals_missed(session)
            refused_commands = sql_commands(emulator)
            control = await session.call_tool("sql", {"database": DATABASE, "sql": "SELECT device FROM sensor LIMIT 1"})
    assert missed == [], "\n".join(missed)
    assert refused_commands == [], "a refused statement reached the EdgeLake node"
    assert not control.is_error, control.content[0].text
    assert sql_commands(emulator) == [f'sql {DATABASE} format=json "SELECT device FROM sensor LIMIT 1"']
