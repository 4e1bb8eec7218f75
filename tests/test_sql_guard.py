"""The raw-SQL guard: the bypass corpus (tests/sql_bypasses.py), and proof that re-rendering keeps
read-only queries' meaning."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
import sqlglot
from sqlglot import exp

import emcp.sql.edgelake_dialect  # noqa: F401  (registers the "edgelake" dialect with sqlglot)
from emcp.sql.guard import FORBIDDEN_FUNCTIONS, FORBIDDEN_TABLE_FUNCTIONS, SqlRejected, check_select
from tests.sample_rows import ROWS
from tests.sql_bypasses import BYPASSES, Bypass


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.execute(
        'CREATE TABLE t (row_id INTEGER PRIMARY KEY, timestamp TEXT, device TEXT, value REAL, "the unit" TEXT)'
    )
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", ROWS)
    conn.commit()
    yield conn
    conn.close()


def rejected(sql: str, dialect: str = "sqlite") -> SqlRejected:
    with pytest.raises(SqlRejected) as info:
        check_select(sql, dialect=dialect)
    assert info.value.hint, "every rejection tells the agent how to fix its call"
    assert str(info.value) == info.value.message
    return info.value


@pytest.mark.parametrize("dialect", ["sqlite", "edgelake"])
@pytest.mark.parametrize("bypass", BYPASSES, ids=[bypass.id for bypass in BYPASSES])
def test_bypass_is_rejected(bypass: Bypass, dialect: str) -> None:
    error = rejected(bypass.sql, dialect)
    assert bypass.fragment in error.message


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        ("SELECT 1; DELETE FROM t", "found 2 statements"),
        ("SELECT * FROM t FOR UPDATE", "FOR UPDATE"),
        ("SELECT * INTO x FROM t", "INTO"),
        ("END", "COMMIT"),
        ("REINDEX", "REINDEX"),
        ("SELECT pg_read_file('/etc/passwd')", "function pg_read_file is not allowed"),
        ("SELECT nextval('s')", "function nextval is not allowed"),
        ("SELECT set_config('x', 'y', false)", "function set_config is not allowed"),
        ("WITH d AS (UPDATE t SET value = 0 RETURNING *) SELECT * FROM d", "found an UPDATE statement"),
    ],
)
def test_postgres_bypass_is_rejected(sql: str, fragment: str) -> None:
    assert fragment in rejected(sql, "postgres").message


def test_messages_say_what_was_found_and_what_is_allowed() -> None:
    assert rejected("SELECT 1; SELECT 2").message == ("only a single read-only SELECT is allowed; found 2 statements")
    assert rejected("DELETE FROM t").message == "only a single read-only SELECT is allowed; found a DELETE statement"
    assert rejected("SELECT load_extension('x')").message.startswith("function load_extension is not allowed")
    assert "load_extension" in rejected("SELECT load_extension('x')").hint


def test_parse_error_reports_the_first_line_only() -> None:
    error = rejected("SELECT FROM WHERE )")
    assert error.message.startswith("could not parse the SQL: ")
    assert "\n" not in error.message and "\x1b" not in error.message
    assert "sqlite" in error.hint


def test_deep_nesting_is_rejected_not_crashed() -> None:
    assert (
        check_select("SELECT " + "(" * 30 + "1" + ")" * 30, dialect="sqlite") == "SELECT " + "(" * 30 + "1" + ")" * 30
    )
    error = rejected("SELECT " + "abs(" * 200 + "1" + ")" * 200)
    assert "nests too deeply" in error.message


def test_sql_whose_rendering_reads_back_differently_is_rejected() -> None:
    # sqlglot renders substr(x) as SUBSTRING(x), then reads SUBSTRING(0 < 0) as broken SQL:
    # the text the database would get is not the one the guard proved.
    error = rejected("SELECT substr(0 < 0)")
    assert error.message == (
        "the SQL could not be checked: emcp normalises it to `SELECT SUBSTRING(0 < 0)`, "
        "which does not read back the same"
    )


def test_every_forbidden_function_is_rejected() -> None:
    for name in sorted(FORBIDDEN_FUNCTIONS):
        error = rejected(f"SELECT {name.upper()}('x')")
        assert f"function {name} is not allowed" in error.message
    for name in sorted(FORBIDDEN_TABLE_FUNCTIONS):
        error = rejected(f"SELECT * FROM {name} WHERE path = 'x'")  # the table-valued form, by table name
        assert f"function {name} is not allowed" in error.message


# Odd but harmless input: accepted, and what runs is one plain SELECT that changes nothing.
@pytest.mark.parametrize(
    ("sql", "rendered"),
    [
        ("SELECT 1;", "SELECT 1"),
        ("SELECT 1;;", "SELECT 1"),
        (";SELECT 1", "SELECT 1"),
        ("; ; SELECT 1 ; ;", "SELECT 1"),
        ("SELECT 1; -- trailing comment", "SELECT 1"),
        ("SELECT 1; /* it's */", "SELECT 1"),
        ("SELECT 1 /* ; DROP TABLE t */", "SELECT 1"),
        ("SELECT 1 -- ; DROP TABLE t", "SELECT 1"),
        ("SELECT 1 -- */; DELETE FROM t; /*", "SELECT 1"),
        ("SELECT 1 --\r; DELETE FROM t", "SELECT 1"),  # only a line feed ends a -- comment
        ("SELECT 1 /*!50000 ; DELETE FROM t */", "SELECT 1"),  # MySQL runs it; here it is a comment
        ("/*! DELETE FROM t */ SELECT 1", "SELECT 1"),
        ("SELECT\u00a01", "SELECT 1"),
        ("SELECT\u30001\u2028FROM\tt", "SELECT 1 FROM t"),
        ("\n\n  select   *  from t  \n", "SELECT * FROM t"),
        ("FROM t", "SELECT * FROM t"),
        ("SELECT 1 LIMIT 2, 5", "SELECT 1 LIMIT 5 OFFSET 2"),
        ("SELECT 'x;--' AS \"a;b\"", "SELECT 'x;--' AS \"a;b\""),
        ("SELECT 'it''s; DROP TABLE t'", "SELECT 'it''s; DROP TABLE t'"),
        ("SELECT 'a\\'; -- '", "SELECT 'a\\'"),
    ],
)
def test_harmless_oddities_are_normalised(sql: str, rendered: str, db: sqlite3.Connection) -> None:
    before = db.execute("SELECT * FROM t ORDER BY row_id").fetchall()
    checked = check_select(sql, dialect="sqlite")
    assert checked == rendered
    [tree] = sqlglot.parse(checked, read="sqlite")
    assert isinstance(tree, exp.Select)
    db.execute(checked).fetchall()
    assert db.execute("SELECT * FROM t ORDER BY row_id").fetchall() == before
    assert db.execute("SELECT count(*) FROM sqlite_master").fetchone() == (1,)


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("SELECT row_id FROM t WHERE device = :device AND value > :floor", {"device": "dev-002", "floor": 20}),
        ("SELECT row_id FROM t WHERE device = ? AND value > ?", ("dev-002", 20)),
    ],
)
def test_placeholders_survive_for_saved_queries(sql: str, params: object, db: sqlite3.Connection) -> None:
    checked = check_select(sql, dialect="sqlite")
    assert db.execute(checked, params).fetchall() == [(4,)]


READ_ONLY_QUERIES = [
    "SELECT * FROM t",
    "SELECT device, count(*), sum(value), avg(value), min(value), max(value), total(value) FROM t GROUP BY device",
    "SELECT device, avg(value) AS mean FROM t GROUP BY device HAVING count(*) > 1 AND avg(value) > 20",
    "SELECT group_concat(device, '|') FROM (SELECT DISTINCT device FROM t ORDER BY device)",
    "SELECT * FROM t ORDER BY value DESC, row_id LIMIT 3 OFFSET 1",
    "SELECT * FROM t ORDER BY value IS NULL, value LIMIT 2, 3",
    "SELECT row_id, value / 2, row_id / 2, row_id % 4, -value, value * 1.5 + 1 FROM t",
    "WITH per AS (SELECT device, max(value) AS peak FROM t GROUP BY device) SELECT * FROM per WHERE peak > 21",
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) SELECT sum(i) FROM n",
    "WITH v(x, y) AS (VALUES (1, 'a'), (2, 'b')) SELECT * FROM v ORDER BY x DESC",
    "SELECT row_id, value, avg(value) OVER (PARTITION BY device ORDER BY row_id) FROM t ORDER BY row_id",
    "SELECT row_id, rank() OVER w, lag(value) OVER w, row_number() OVER (ORDER BY value DESC) "
    "FROM t WINDOW w AS (ORDER BY value) ORDER BY row_id",
    "SELECT CASE WHEN value > 25 THEN 'hot' WHEN value IS NULL THEN 'none' ELSE 'ok' END FROM t",
    "SELECT CASE device WHEN 'dev-001' THEN 1 ELSE 0 END, iif(value > 20, 'y', 'n') FROM t",
    "SELECT strftime('%Y-%m-%d', timestamp) AS day, count(*) FROM t GROUP BY day ORDER BY day",
    "SELECT strftime('%H', timestamp), strftime('%s', timestamp), date(timestamp), time(timestamp) FROM t",
    "SELECT datetime(timestamp, '+1 day'), date(timestamp, 'start of month'), julianday(timestamp) FROM t",
    "SELECT unixepoch(timestamp), datetime(unixepoch(timestamp), 'unixepoch') FROM t",
    "SELECT ifnull(value, -1), coalesce(\"the unit\", 'none'), nullif(device, 'dev-001') FROM t",
    "SELECT substr(device, 1, 3), substr(device, 5), upper(device), lower('ABC'), length(device) FROM t",
    "SELECT trim('  x  '), ltrim('xxa', 'x'), instr(device, '0'), device || '-' || row_id FROM t",
    "SELECT round(value), round(value, 1), abs(-value), typeof(value), CAST(value AS INTEGER) FROM t",
    "SELECT min(value, 21), max(row_id, 3) FROM t",
    "SELECT 'a;b' AS x, 'c -- d' AS y, '/* e */' AS z, 'it''s' AS w",
    'SELECT "the unit", [the unit], `the unit` FROM t WHERE "the unit" = \'C\'',
    "SELECT * FROM t WHERE device LIKE 'dev-00%' AND value BETWEEN 18 AND 23 AND row_id NOT IN (2, 3)",
    "SELECT * FROM t WHERE device GLOB 'dev-*3' OR value IS NULL OR \"the unit\" IS NOT 'C'",
    "SELECT * FROM t WHERE value > (SELECT avg(value) FROM t) AND EXISTS (SELECT 1 FROM t AS u WHERE u.row_id = 1)",
    "SELECT a.row_id, b.row_id FROM t AS a JOIN t AS b ON a.device = b.device AND a.row_id < b.row_id",
    "SELECT device FROM t UNION SELECT 'dev-999' ORDER BY 1",
    "SELECT device FROM t INTERSECT SELECT 'dev-002'",
    "SELECT device FROM t EXCEPT SELECT 'dev-002' ORDER BY 1",
    "SELECT count(DISTINCT device), printf('%.2f', avg(value)) FROM t",
    "SELECT value FROM t WHERE value IS NOT NULL ORDER BY value DESC NULLS LAST LIMIT 1",
]


@pytest.mark.parametrize("sql", READ_ONLY_QUERIES)
def test_rerendering_preserves_meaning(sql: str, db: sqlite3.Connection) -> None:
    checked = check_select(sql, dialect="sqlite")
    assert db.execute(checked).fetchall() == db.execute(sql).fetchall()
    assert check_select(checked, dialect="sqlite") == checked, "the rendered SQL is a fixed point"
