"""The structured query builder: every argument good and bad, injection attempts, and real runs on SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from emcp.sources.base import Column
from emcp.sql.build import build_select
from emcp.sql.guard import SqlRejected
from tests.sample_rows import ROWS

COLUMNS = [
    Column("row_id", "INTEGER", nullable=False, primary_key=True, system=True),
    Column("timestamp", "TEXT"),
    Column("device", "TEXT"),
    Column("value", "REAL"),
    Column("unit", "TEXT"),
]

# A table whose real column names need quoting.
ODD_COLUMNS = [Column("my col", "INTEGER"), Column('we"ird', "TEXT"), Column("Select", "TEXT")]


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE sensor (row_id INTEGER PRIMARY KEY, timestamp TEXT, device TEXT, value REAL, unit TEXT)")
    conn.executemany("INSERT INTO sensor VALUES (?, ?, ?, ?, ?)", ROWS)
    conn.execute('CREATE TABLE "odd table" ("my col" INTEGER, "we""ird" TEXT, "Select" TEXT)')
    conn.executemany('INSERT INTO "odd table" VALUES (?, ?, ?)', [(1, "a", "x"), (2, "b", "y")])
    conn.commit()
    yield conn
    conn.close()


def build(**arguments: Any) -> str:
    arguments.setdefault("table", "sensor")
    arguments.setdefault("columns", COLUMNS)
    arguments.setdefault("dialect", "sqlite")
    return build_select(**arguments)


def run(db: sqlite3.Connection, **arguments: Any) -> list[tuple[Any, ...]]:
    return db.execute(build(**arguments)).fetchall()


def rejected(**arguments: Any) -> SqlRejected:
    with pytest.raises(SqlRejected) as info:
        build(**arguments)
    assert info.value.hint, "every rejection tells the agent how to fix its call"
    return info.value


def test_defaults_select_everything_with_a_limit(db: sqlite3.Connection) -> None:
    assert build() == 'SELECT * FROM "sensor" LIMIT 100'
    assert run(db) == ROWS


def test_table_name_is_quoted(db: sqlite3.Connection) -> None:
    sql = build(table="odd table", columns=ODD_COLUMNS, select=["my col", 'we"ird', "select"])
    assert sql == 'SELECT "my col", "we""ird", "Select" FROM "odd table" LIMIT 100'
    assert db.execute(sql).fetchall() == [(1, "a", "x"), (2, "b", "y")]


def test_columns_match_case_insensitively_and_render_the_schema_spelling(db: sqlite3.Connection) -> None:
    sql = build(select=["DEVICE", " Value ", '"UNIT"'], where="VALUE > 25", order_by=[{"column": "Row_ID"}])
    assert sql == ('SELECT "device", "value", "unit" FROM "sensor" WHERE "value" > 25 ORDER BY "row_id" ASC LIMIT 100')
    assert db.execute(sql).fetchall() == [("dev-002", 25.5, "C"), ("dev-003", 101.3, "kPa")]


def test_aggregates_group_by_and_order_by_alias(db: sqlite3.Connection) -> None:
    rows = run(
        db,
        select=["device", "count(*) AS n", "avg(value)", "max(value) AS peak", "min(value)", "sum(value)"],
        group_by=["device"],
        order_by=[{"column": "peak", "direction": "desc"}],
    )
    assert rows == [
        ("dev-003", 2, 101.3, 101.3, 101.3, 101.3),
        ("dev-002", 2, 21.75, 25.5, 18.0, 43.5),
        ("dev-001", 2, 21.25, 22.0, 20.5, 42.5),
    ]


def test_date_functions_and_aliases_with_spaces(db: sqlite3.Connection) -> None:
    sql = build(
        select=["strftime('%Y-%m-%d', timestamp) AS \"the day\"", "count(DISTINCT device) AS devices"],
        where="timestamp >= '2026-01-02' AND date(timestamp) < '2026-01-03'",
        group_by=["unit"],
        order_by=[{"column": "The Day", "direction": "ASC"}],
    )
    assert 'AS "the day"' in sql and 'ORDER BY "the day"' in sql
    assert db.execute(sql).fetchall() == [("2026-01-02", 1), ("2026-01-02", 1)]


def test_group_by_a_select_alias_buckets_by_day(db: sqlite3.Connection) -> None:
    sql = build(
        select=["strftime('%Y-%m-%d', timestamp) AS day", "count(*) AS n"],
        group_by=["day"],
        order_by=[{"column": "day"}],
    )
    assert 'GROUP BY "day"' in sql
    days = db.execute(sql).fetchall()
    assert sum(n for _, n in days) == db.execute("SELECT count(*) FROM sensor").fetchone()[0]
    assert [d for d, _ in days] == sorted({d for d, _ in days})


SCALARS = {
    "row_id": 1,
    "round(value / 2, 1)": 10.3,
    "upper(substr(device, 1, 3)) || '-' || lower(unit)": "DEV-c",
    "length(device) + row_id % 2": 8,
    "ifnull(unit, 'none')": "C",
    "coalesce(value, -1)": 20.5,
    "nullif(unit, 'C')": None,
    "abs(-value)": 20.5,
    "CASE WHEN value > 25 THEN 'hot' WHEN value IS NULL THEN 'unknown' ELSE 'ok' END AS level": "ok",
    "iif(value > 20, 1, 0)": 1,
    "CAST(value AS INTEGER)": 20,
    "min(value, 21)": 20.5,
    "max(row_id, 3)": 3,
    "julianday(timestamp) - julianday('2026-01-01')": 0.0,
    "datetime(timestamp, '+1 hour')": "2026-01-01 01:00:00",
    "time(timestamp)": "00:00:00",
    "unixepoch(timestamp) - unixepoch('2026-01-01')": 0,
    "trim('  x ') || ltrim('xxa', 'x') || rtrim('ayy', 'y')": "xaa",
    "instr(device, '-')": 4,
    "total(value) - value": 0.0,
    "group_concat(unit)": "C",
}


def test_scalar_functions_and_operators(db: sqlite3.Connection) -> None:
    [row] = run(db, select=list(SCALARS), where="row_id = 1")
    assert dict(zip(SCALARS, row, strict=True)) == SCALARS


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("device = 'dev-001'", [1, 2]),
        ("device IN ('dev-001', 'dev-003') AND value IS NOT NULL", [1, 2, 5]),
        ("device NOT IN ('dev-001', 'dev-003')", [3, 4]),
        ("value BETWEEN 20 AND 25.5", [1, 2, 4]),
        ("value NOT BETWEEN 20 AND 25.5", [3, 5]),
        ("device LIKE '%3'", [5, 6]),
        ("device NOT LIKE 'dev-00_'", []),
        ("device GLOB 'dev-00[12]'", [1, 2, 3, 4]),
        ("unit IS NULL", [6]),
        ("NOT (value > 20) OR value IS NULL", [3, 6]),
        ("(value + 1) * 2 > 50 AND unit <> 'kPa'", [4]),
        ("lower(unit) = 'kpa'", [5]),
        ("timestamp < '2026-01-02'", [1, 2]),
        ("strftime('%H', timestamp) = '01'", [2, 4]),
        ("CASE WHEN unit = 'C' THEN value ELSE 0 END > 21", [2, 4]),
        ("value IS 22.0", [2]),
        ("TRUE", [1, 2, 3, 4, 5, 6]),
        ("", [1, 2, 3, 4, 5, 6]),
        ("   ", [1, 2, 3, 4, 5, 6]),
    ],
)
def test_where_filters_rows(where: str, expected: list[int], db: sqlite3.Connection) -> None:
    rows = run(db, select=["row_id"], where=where, order_by=[{"column": "row_id"}])
    assert [row_id for (row_id,) in rows] == expected


def test_order_by_direction_defaults_to_ascending_and_is_case_insensitive(db: sqlite3.Connection) -> None:
    order = [{"column": "device", "direction": "dEsC"}, {"column": "row_id"}]
    assert [r for (r,) in run(db, select=["row_id"], order_by=order)] == [5, 6, 3, 4, 1, 2]
    assert [r for (r,) in run(db, select=["row_id"], order_by=[{"column": "value", "direction": "asc"}])] == [
        6,
        3,
        1,
        2,
        4,
        5,
    ]


def test_limit(db: sqlite3.Connection) -> None:
    assert build(limit=1).endswith("LIMIT 1")
    assert len(run(db, limit=2)) == 2


def test_star_alongside_expressions(db: sqlite3.Connection) -> None:
    sql = build(select=["*", "count(*)"])
    assert sql == 'SELECT *, COUNT(*) FROM "sensor" LIMIT 100'
    assert db.execute(sql).fetchall()[0][-1] == 6


def test_postgres_rendering() -> None:
    sql = build(
        select=["device", "group_concat(unit)", "substr(device, 1, 3) AS prefix"],
        where="value > 20",
        group_by=["device"],
        order_by=[{"column": "prefix", "direction": "DESC"}],
        limit=5,
        dialect="postgres",
    )
    assert sql == (
        'SELECT "device", STRING_AGG("unit", \',\'), SUBSTRING("device" FROM 1 FOR 3) AS "prefix" '
        'FROM "sensor" WHERE "value" > 20 GROUP BY "device" ORDER BY "prefix" DESC LIMIT 5'
    )


@pytest.mark.parametrize(
    ("where", "fragment"),
    [
        ("1=1; DROP TABLE sensor", "where contains ';'"),
        ("1=1;", "where contains ';'"),
        ("value > 1 ; ", "where contains ';'"),
        ("1=1 -- ", "where contains a comment"),
        ("1=1 -- \n; DROP TABLE sensor", "where contains"),
        ("1=1 /* */ OR 1=1", "where contains a comment"),
        ("value > 1 /* ; DROP TABLE sensor */", "where contains a comment"),
        ("value > (SELECT 1)", "subqueries are not allowed"),
        ("value IN (SELECT value FROM sensor)", "subqueries are not allowed"),
        ("EXISTS (SELECT 1)", "subqueries are not allowed"),
        ("1=1 UNION SELECT * FROM sqlite_master", "could not parse where"),
        ("load_extension('x')", "function load_extension is not allowed"),
        ("readfile('/etc/passwd') IS NOT NULL", "function readfile is not allowed"),
        ("LOAD_EXTENSION('x') = 1", "function load_extension is not allowed"),
        ("printf('%s', device) = 'x'", "function printf is not allowed"),
        ("row_number() OVER () > 1", "not allowed"),
        ("count(*) > 1", "where cannot use the aggregate COUNT(*)"),
        ("avg(value) > 1", "where cannot use the aggregate"),
        ("value > ?", "`?` is not allowed"),
        ("value > :floor", "is not allowed"),
        ("value > @floor", "is not allowed"),
        ("value = 1 garbage", "could not parse where"),
        ("value = 1)", "could not parse where"),
        ("(value = 1", "could not parse where"),
        ("value = 1 AS x", "could not parse where"),
        ("value = 'unterminated", "could not parse where"),
        ("sensor.value > 1", "use bare column names"),
        ("main.sensor.value > 1", "use bare column names"),
        ("nope > 1", "unknown column 'nope' in where; valid columns: row_id, timestamp, device, value, unit"),
        ('device = "dev-001"', "unknown column 'dev-001'"),
        ('"value; DROP TABLE sensor" > 1', "unknown column 'value; DROP TABLE sensor'"),
        ('"my col" > 1', "unknown column 'my col'"),
        ("value COLLATE nocase = 'x'", "is not allowed"),
        ("value\uff1b DROP TABLE sensor", "could not parse where"),
        ("(" * 60 + "value > 1" + ")" * 60, "where nests too deeply"),
    ],
)
def test_where_injection_is_rejected(where: str, fragment: str, db: sqlite3.Connection) -> None:
    assert fragment in rejected(where=where).message
    assert db.execute("SELECT count(*) FROM sensor").fetchone() == (6,)


def test_where_must_be_a_string() -> None:
    assert "where must be a string" in rejected(where=1).message


@pytest.mark.parametrize(
    ("select", "fragment"),
    [
        ("*", "select must be a non-empty list"),
        ([], "select must be a non-empty list"),
        ([1], "select items must be strings"),
        (["nope"], "unknown column 'nope' in select item 'nope'"),
        (["my col"], "ends with 'col', which would silently become a column alias"),
        (['"my col"'], "unknown column 'my col'"),
        (["value; DROP TABLE sensor"], "contains ';'"),
        (["value -- comment"], "contains a comment"),
        (["(SELECT 1)"], "subqueries are not allowed"),
        (["t.*"], "use bare column names"),
        (["sensor.value"], "use bare column names"),
        (["sum(*)"], "* is only allowed alone or as count(*)"),
        (["value * *"], "* is only allowed alone or as count(*)"),
        (["load_extension('x')"], "function load_extension is not allowed"),
        (["writefile('x', device)"], "function writefile is not allowed"),
        (["random()"], "function rand is not allowed"),
        (["row_number() OVER ()"], "is not allowed"),
        (["count(*) FILTER (WHERE value > 1)"], "is not allowed"),
        (["value DESC"], "would silently become a column alias"),
        (["value peak"], "would silently become a column alias"),
        (["value AS"], "ends with AS but names no alias"),
        (['value AS ""'], "has an empty alias"),
        (["value AS a AS b"], "could not parse"),
        (["abs(" * 60 + "value" + ")" * 60], "nests too deeply"),
        (["value, device"], "could not parse"),
        (["?"], "is not allowed"),
        (["x'00'"], "is not allowed"),
        ([""], "is empty"),
    ],
)
def test_bad_select_is_rejected(select: Any, fragment: str) -> None:
    assert fragment in rejected(select=select).message


@pytest.mark.parametrize(
    ("group_by", "fragment"),
    [
        ("device", "group_by must be a list of column names"),
        (["nope"], "unknown column 'nope' in group_by"),
        (["avg(value)"], "unknown column 'avg(value)' in group_by"),
        (["device; DROP TABLE sensor"], "unknown column"),
        ([None], "group_by takes column names"),
    ],
)
def test_bad_group_by_is_rejected(group_by: Any, fragment: str) -> None:
    assert fragment in rejected(group_by=group_by).message


@pytest.mark.parametrize(
    ("order_by", "fragment"),
    [
        (["device"], "each order_by entry must be an object with a column"),
        ([{"direction": "ASC"}], "each order_by entry must be an object with a column"),
        ([{"column": 1}], "each order_by entry must be an object with a column"),
        ([{"column": "device", "direction": "sideways"}], "direction must be ASC or DESC, got 'sideways'"),
        ([{"column": "device", "direction": "DESC; DROP TABLE sensor"}], "direction must be ASC or DESC"),
        ([{"column": "device", "direction": None}], "direction must be ASC or DESC"),
        ([{"column": "device", "dir": "DESC"}], "order_by entries take only column and direction, got dir"),
        ([{"column": "nope"}], "unknown column 'nope' in order_by"),
        ([{"column": "value DESC"}], "unknown column 'value DESC' in order_by"),
        ([{"column": "avg(value)"}], "unknown column"),
    ],
)
def test_bad_order_by_is_rejected(order_by: Sequence[Mapping[str, Any]], fragment: str) -> None:
    assert fragment in rejected(order_by=order_by).message


def test_order_by_alias_must_be_defined_in_select() -> None:
    assert build(select=["max(value) AS peak"], order_by=[{"column": "PEAK"}]).endswith('ORDER BY "peak" ASC LIMIT 100')
    assert "unknown column 'peak'" in rejected(order_by=[{"column": "peak"}]).message


@pytest.mark.parametrize("limit", [0, -1, True, False, 1.5, "10", None])
def test_bad_limit_is_rejected(limit: Any) -> None:
    assert "limit must be a whole number of at least 1" in rejected(limit=limit).message


def test_odd_real_columns_are_usable_but_only_when_real(db: sqlite3.Connection) -> None:
    sql = build(
        table="odd table",
        columns=ODD_COLUMNS,
        select=['"my col" * 10 AS "x y"', '"we""ird"'],
        where='"my col" > 1 AND "select" = \'y\'',
        group_by=["my col"],
        order_by=[{"column": "x y"}],
    )
    assert db.execute(sql).fetchall() == [(20, "b")]
    with pytest.raises(SqlRejected, match="unknown column 'my col; DROP TABLE sensor'"):
        build(table="odd table", columns=ODD_COLUMNS, select=['"my col; DROP TABLE sensor"'])


def test_built_sql_never_changes_the_database(db: sqlite3.Connection) -> None:
    run(db, select=["device", "count(*)"], where="value > 0", group_by=["device"])
    assert db.execute("SELECT count(*) FROM sensor").fetchone() == (6,)
    assert not db.in_transaction
