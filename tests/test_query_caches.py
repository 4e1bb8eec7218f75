"""What the query path remembers (schemas, built SQL, proofs) and that remembering never changes an answer."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from emcp.server import open_server
from emcp.settings import load_settings
from emcp.sources.base import Column, SourceError
from emcp.sources.schema_cache import SchemaCache
from emcp.sources.sqlite import SqliteSource
from emcp.sql import build as build_module
from emcp.sql import guard as guard_module
from emcp.sql.build import build_select
from emcp.sql.guard import SqlRejected, check_select
from tests.conftest import mcp_session

COLUMNS = (Column("device", "TEXT"), Column("value", "REAL"))


@pytest.fixture
def own_data(tmp_path: Path) -> Path:
    """A database of this test's own, whose schema the test may change under the server."""
    with sqlite3.connect(tmp_path / "own.db") as conn:
        conn.execute("CREATE TABLE readings (device TEXT, value REAL)")
        conn.execute("INSERT INTO readings VALUES ('a', 1.5), ('b', 2.5)")
    return tmp_path


@pytest.fixture
async def own_source(own_data: Path) -> AsyncIterator[SqliteSource]:
    source = SqliteSource(own_data)
    try:
        yield source
    finally:
        await source.aclose()


def add_column(data: Path) -> None:
    with sqlite3.connect(data / "own.db") as conn:
        conn.execute("ALTER TABLE readings ADD COLUMN site TEXT DEFAULT 'north'")


async def test_schema_is_remembered_for_its_ttl_then_asked_again(own_source: SqliteSource, own_data: Path) -> None:
    cache = SchemaCache(ttl=30)
    with trio.fail_after(10 + 31):  # 10 s of real time, and the 31 s the clock is moved by below
        first, remembered = await cache.columns(own_source, "own", "readings")
        assert not remembered and [c.name for c in first] == ["device", "value"]
        add_column(own_data)
        again, remembered = await cache.columns(own_source, "own", "readings")
        assert remembered and again == first  # within the TTL: the source was not asked
        fresh, remembered = await cache.columns(own_source, "own", "readings", fresh=True)
        assert not remembered and [c.name for c in fresh] == ["device", "value", "site"]


async def test_schema_expires(own_source: SqliteSource, own_data: Path, mock_clock: trio.testing.MockClock) -> None:
    # Trio's clock at the pace of real time (so the deadline is a real one), moved past the TTL by hand.
    mock_clock.rate = 1.0
    cache = SchemaCache(ttl=30)
    with trio.fail_after(10 + 31):  # 10 s of real time, and the 31 s the clock is moved by below
        await cache.columns(own_source, "own", "readings")
        add_column(own_data)
        mock_clock.jump(29)
        assert (await cache.columns(own_source, "own", "readings"))[1] is True
        mock_clock.jump(2)
        columns, remembered = await cache.columns(own_source, "own", "readings")
    assert not remembered and [c.name for c in columns][-1] == "site"


async def test_ttl_zero_always_asks_and_failures_are_not_remembered(own_source: SqliteSource, own_data: Path) -> None:
    with trio.fail_after(10):
        never = SchemaCache(ttl=0)
        await never.columns(own_source, "own", "readings")
        assert (await never.columns(own_source, "own", "readings"))[1] is False

        cache = SchemaCache(ttl=30)
        with pytest.raises(SourceError):
            await cache.columns(own_source, "own", "later")
        with sqlite3.connect(own_data / "own.db") as conn:
            conn.execute("CREATE TABLE later (x INTEGER)")
        columns, remembered = await cache.columns(own_source, "own", "later")
    assert not remembered and [c.name for c in columns] == ["x"]


async def test_schema_cache_keeps_at_most_max_tables(own_source: SqliteSource, own_data: Path) -> None:
    with sqlite3.connect(own_data / "own.db") as conn:
        conn.execute("CREATE TABLE other (x INTEGER)")
    cache = SchemaCache(ttl=30, max_tables=1)
    with trio.fail_after(10):
        await cache.columns(own_source, "own", "readings")
        await cache.columns(own_source, "own", "other")  # pushes readings out
        assert (await cache.columns(own_source, "own", "other"))[1] is True
        assert (await cache.columns(own_source, "own", "readings"))[1] is False


async def test_query_naming_a_column_added_since_the_schema_was_remembered(own_data: Path) -> None:
    """The remembered schema lacks `site`: the call is checked against a fresh schema, not refused."""
    settings = load_settings(data_dir=own_data, http__port=0, http__graceful_timeout=1.0)
    assert settings.query.schema_ttl > 0
    with trio.fail_after(20):
        async with open_server(settings) as server, mcp_session(server) as session:
            before = await session.call_tool("query", {"database": "own", "table": "readings", "select": ["device"]})
            assert not before.is_error, before.content
            add_column(own_data)
            after = await session.call_tool(
                "query", {"database": "own", "table": "readings", "select": ["device", "site"], "where": "value > 2"}
            )
            assert not after.is_error, after.content
            assert after.structured_content["rows"] == [["b", "north"]]
            # A column that is in neither schema is still refused, naming the columns there are.
            wrong = await session.call_tool("query", {"database": "own", "table": "readings", "select": ["nope"]})
    assert wrong.is_error
    assert "unknown column 'nope'" in wrong.content[0].text and "site" in wrong.content[0].text


def test_built_sql_is_remembered_and_the_same_as_built_afresh() -> None:
    args = {"where": "device = 'a' AND value > 2", "order_by": [{"column": "value", "direction": "DESC"}], "limit": 5}
    build_module._built.cache_clear()
    first = build_select(table="readings", columns=COLUMNS, dialect="sqlite", **args)
    again = build_select(table="readings", columns=COLUMNS, dialect="sqlite", **args)
    assert again == first
    assert build_module._built.cache_info().hits == 1
    # The uncached builder gives the same text.
    assert build_module._build("readings", COLUMNS, ("*",), args["where"], (), args["order_by"], 5, "sqlite") == first


@pytest.mark.parametrize(
    ("remembered", "lookalike"),
    [
        ({"select": ["ab"]}, {"select": "ab"}),  # a string is not a list of one item
        ({"select": ["a", "b"]}, {"select": "ab"}),  # nor a list of its characters
        ({"limit": 1}, {"limit": True}),  # True == 1 in Python, not in the tool's schema
        ({"limit": 2}, {"limit": 2.0}),
        ({"group_by": ["device"]}, {"group_by": "device"}),
        ({"order_by": [{"column": "device"}]}, {"order_by": [[("column", "device")]]}),
    ],
)
def test_a_remembered_build_never_answers_for_an_argument_of_another_shape(
    remembered: dict[str, object], lookalike: dict[str, object]
) -> None:
    columns = (*COLUMNS, Column("ab", "TEXT"), Column("a", "TEXT"), Column("b", "TEXT"))
    build_select(table="readings", columns=columns, dialect="sqlite", **remembered)  # type: ignore[arg-type]
    with pytest.raises(SqlRejected):
        build_select(table="readings", columns=columns, dialect="sqlite", **lookalike)  # type: ignore[arg-type]


def test_long_arguments_are_built_afresh_not_remembered() -> None:
    build_module._built.cache_clear()
    where = " OR ".join(f"value = {i}" for i in range(600))  # over 4096 characters
    build_select(table="readings", columns=COLUMNS, where=where, dialect="sqlite")
    assert build_module._built.cache_info().currsize == 0


def test_proofs_are_remembered_and_refusals_are_not() -> None:
    guard_module._proven.cache_clear()
    sql = "select device, avg(value) from readings group by device"
    assert check_select(sql, dialect="sqlite") == check_select(sql, dialect="sqlite")
    assert guard_module._proven.cache_info().hits == 1
    for _ in range(2):
        with pytest.raises(SqlRejected):
            check_select("DELETE FROM readings", dialect="sqlite")
    assert guard_module._proven.cache_info().currsize == 1
    long_sql = "SELECT device FROM readings WHERE value IN (" + ", ".join(map(str, range(1500))) + ")"
    check_select(long_sql, dialect="sqlite")
    assert guard_module._proven.cache_info().currsize == 1


def test_text_already_in_normal_form_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second reading proves that the rendering reads back the same; for text that already
    is its own rendering, the first reading proved it."""
    parses: list[str] = []
    check = guard_module._check_select

    def counting(sql: str, dialect: str) -> str:
        parses.append(sql)
        return check(sql, dialect)

    monkeypatch.setattr(guard_module, "_check_select", counting)
    normal = guard_module._prove("select device from readings", "sqlite")
    assert len(parses) == 2  # written by hand: read, then its rendering read back
    parses.clear()
    assert guard_module._prove(normal, "sqlite") == normal
    assert parses == [normal]
