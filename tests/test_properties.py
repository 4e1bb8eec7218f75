"""Properties of the two parsers untrusted input meets first: the SQL guard and the message intake.

The corpus (tests/sql_bypasses.py) holds the attacks someone thought of; these
let Hypothesis look for the ones nobody did. For the guard: whatever the text,
`check_select` refuses it with `SqlRejected` or returns SQL that it accepts again
unchanged (what runs is exactly what was proven) and that runs on the demo data
without changing anything, even with no authorizer behind it. For the intake:
whatever the bytes, `parse_message` returns a valid JSON-RPC message built only
from what was sent, or raises `IntakeError`; nothing else escapes to a transport.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp_types import JSONRPCError, JSONRPCNotification, JSONRPCRequest, JSONRPCResponse

import emcp.sql.edgelake_dialect  # noqa: F401  (registers the "edgelake" dialect with sqlglot)
from emcp.sql.guard import SqlRejected, check_select
from emcp.transport.intake import IntakeError, parse_message
from emcp.transport.outbound import message_json
from tests.strategies import message_bodies

# ---------------------------------------------------------------- the SQL guard

_KEYWORDS = (
    "SELECT FROM WHERE WITH RECURSIVE AS MATERIALIZED NOT INSERT INTO VALUES UPDATE SET DELETE REPLACE "
    "PRAGMA ATTACH DETACH DATABASE BEGIN COMMIT ROLLBACK SAVEPOINT RELEASE END CREATE TEMP TABLE VIEW "
    "TRIGGER DROP VACUUM UNION ALL JOIN ON GROUP BY ORDER LIMIT OFFSET HAVING CASE WHEN THEN ELSE "
    "RETURNING EXPLAIN NULL IS IN EXISTS LIKE GLOB CAST OVER WINDOW DISTINCT "
    "sensor devices events device value timestamp x main temp "
    "load_extension readfile writefile pragma_optimize pragma_table_info fsdir json_each count abs"
)
_WORDS = [
    *_KEYWORDS.split(),
    *["*", ",", "(", ")", ";", "=", "<>", "||", "+", "-", ".", "?", ":p", "@p", "$p", "1", "0x10", "X'00'"],
    *["'a'", "'it''s'", "'a;b'", '"a b"', "[x]", "`y`", "E'x'", "$$", "--", "/*", "*/", "/*!", "#", "NOW() - 7 days"],
    *["\u00a0", "\u200b", "\uff1b", "\ufeff", "\u202e", "\x00"],
]
_SEPARATORS = [" ", "", "\t", "\n", "\r\n", "\x0b", "\x0c"]

token_soups = st.lists(st.tuples(st.sampled_from(_WORDS), st.sampled_from(_SEPARATORS)), max_size=40).map(
    lambda pairs: "".join(word + separator for word, separator in pairs)
)

# Most token soups fail to parse; these are SELECTs with hostile parts in many slots (and
# calls with the arity sqlglot expects), so that a good share is accepted and the property
# is about what the guard lets through, not only about what it refuses.
_NAMES = ["device", "value", "timestamp", "level", "x", '"the unit"', "[device]", "`value`", "sensor.value"]
_LITERALS = ["1", "-2.5", "0x1F", "X'00FF'", "'a'", "'it''s'", "'; DELETE FROM sensor; --'", "NULL", "?", ":p"]
_ARITIES = {"count": 1, "abs": 1, "coalesce": 2, "substr": 2, "upper": 1, "json_extract": 2, "iif": 3, "typeof": 1}
_ARITIES |= {"printf": 2, "random": 0, "load_extension": 1, "readfile": 1, "writefile": 2, "pragma_optimize": 0}
_TABLES = ["sensor", "devices", "events", "main.sensor", "nowhere", "pragma_optimize", "fsdir", "sqlite_schema"]
_TABLES += ["json_each('[1, 2]')", "(SELECT 1 AS x)", "pragma_table_info('sensor')", "sensor AS s JOIN devices AS d"]
_OPERATORS = ["+", "-", "*", "/", "||", "=", "<>", "<", ">=", "AND", "OR", "IS", "IS NOT", "LIKE", "->>"]
_HEADS = ["", "", "", "WITH w AS (SELECT 1 AS x) ", "/* c */ ", "\ufeff", "EXPLAIN "]
_HEADS += ["WITH w AS MATERIALIZED (DELETE FROM sensor RETURNING *) "]
_HEADS += ["WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) "]
_TAILS = ["", "", "", ";", " ;;", " -- ; DROP TABLE sensor", " /* ; */", " LIMIT 3", " ORDER BY 1 DESC"]
_TAILS += [" GROUP BY 1 HAVING count(*) > 1", " UNION SELECT 1", "; DELETE FROM sensor", " INTO x", " FOR UPDATE"]


def _call(name: str) -> st.SearchStrategy[str]:
    return st.lists(expressions, min_size=_ARITIES[name], max_size=_ARITIES[name]).map(
        lambda args: f"{name}({', '.join(args)})"
    )


expressions: st.SearchStrategy[str] = st.recursive(
    st.sampled_from(_NAMES + _LITERALS),
    lambda inner: st.one_of(
        st.builds("{} {} {}".format, inner, st.sampled_from(_OPERATORS), inner),
        st.sampled_from(sorted(_ARITIES)).flatmap(_call),
        st.builds("(SELECT {} FROM {} WHERE {})".format, inner, st.sampled_from(_TABLES), inner),
        st.builds("CASE WHEN {} THEN {} ELSE {} END".format, inner, inner, inner),
    ),
    max_leaves=6,
)
hostile_selects = st.builds(
    "{}SELECT {} FROM {} WHERE {}{}".format,
    st.sampled_from(_HEADS),
    st.lists(expressions, min_size=1, max_size=3).map(", ".join),
    st.sampled_from(_TABLES),
    expressions,
    st.sampled_from(_TAILS),
)


@pytest.fixture(scope="module")
def demo_db(demo_dir: Path) -> Iterator[sqlite3.Connection]:
    """The demo data, read-only, with no authorizer: the guard is the only thing being tested."""
    conn = sqlite3.connect(f"file:{demo_dir / 'new_company.db'}?mode=ro", uri=True, isolation_level=None)
    yield conn
    conn.close()


def connection_state(conn: sqlite3.Connection, database: Path) -> tuple[Any, ...]:
    """Everything a statement that got past the guard could have changed, connection and file."""
    stat = os.stat(database)
    return (
        conn.total_changes,
        conn.in_transaction,
        conn.execute("SELECT type, name FROM temp.sqlite_schema").fetchall(),
        [name for _, name, _ in conn.execute("PRAGMA database_list")],
        conn.execute("PRAGMA query_only").fetchall(),
        (stat.st_size, stat.st_mtime_ns),
    )


@settings(max_examples=400)
@given(
    sql=st.one_of(st.text(max_size=80), token_soups, hostile_selects), dialect=st.sampled_from(["sqlite", "edgelake"])
)
def test_the_guard_refuses_or_returns_sql_that_only_reads(
    sql: str, dialect: str, demo_db: sqlite3.Connection, demo_dir: Path
) -> None:
    database = demo_dir / "new_company.db"
    before = connection_state(demo_db, database)
    try:
        checked = check_select(sql, dialect=dialect)
    except SqlRejected as rejection:
        assert rejection.message and rejection.hint
        return
    assert check_select(checked, dialect=dialect) == checked, "what runs must be exactly what was proven"
    # Interrupted after this many VM steps: a cross join of a million rows is a fine thing for
    # the guard to accept, but not for every example to run to the end.
    demo_db.set_progress_handler(lambda: 1, 200_000)
    try:
        demo_db.execute(checked).fetchmany(20)
    except sqlite3.Error:
        pass  # unknown names, EdgeLake's NOW() - 7 days, unbound parameters, interrupted: none change anything
    finally:
        demo_db.set_progress_handler(None, 0)
    assert connection_state(demo_db, database) == before


# ---------------------------------------------------------------- the message intake

_INTAKE_CODES = {"empty_body", "invalid_json", "batch_not_supported", "invalid_jsonrpc"}


@settings(max_examples=500)
@given(body=message_bodies)
def test_intake_returns_a_message_made_of_what_was_sent_or_refuses(body: bytes) -> None:
    try:
        message = parse_message(body)
    except IntakeError as refusal:
        assert refusal.code in _INTAKE_CODES and refusal.message
        return
    assert isinstance(message, JSONRPCRequest | JSONRPCNotification | JSONRPCResponse | JSONRPCError)
    sent = orjson.loads(body)
    wire = orjson.loads(message_json(message))
    assert {key: sent[key] for key in wire} == wire, "every field comes from the body, unchanged"
    assert parse_message(message_json(message)) == message, "the message can be forwarded as it was taken"
