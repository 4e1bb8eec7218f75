"""The EdgeLake SQL dialect: relative time survives the guard, identifiers travel unquoted."""

from __future__ import annotations

import pytest

import emcp.sql.edgelake_dialect  # noqa: F401  (registers the dialect)
from emcp.sources.base import Column
from emcp.sql.build import build_select
from emcp.sql.guard import SqlRejected, check_select

COLUMNS = [Column(name, "text") for name in ("row_id", "timestamp", "device", "value")]


@pytest.mark.parametrize(
    ("sql", "rendered"),
    [
        (
            "select count(*) as n from sensor where timestamp >= NOW() - 3 days",
            "SELECT count(*) AS n FROM sensor WHERE timestamp >= now() - 3 days",
        ),
        (
            "select device from sensor where timestamp > now() - 12 hours and timestamp < now() + 1 minute",
            "SELECT device FROM sensor WHERE timestamp > now() - 12 hours AND timestamp < now() + 1 minute",
        ),
        (
            "select increments(day, 1, timestamp), min(timestamp) as day_start from sensor",
            "SELECT increments(day, 1, timestamp), min(timestamp) AS day_start FROM sensor",
        ),
        # Inside a string literal nothing is rewritten.
        ("select 'NOW() - 3 days' as s from sensor", "SELECT 'NOW() - 3 days' AS s FROM sensor"),
        ('select "device" from "sensor"', "SELECT device FROM sensor"),
    ],
)
def test_guard_renders_edgelake_sql(sql: str, rendered: str) -> None:
    assert check_select(sql, dialect="edgelake") == rendered
    assert '"' not in rendered


def test_identifiers_that_need_quotes_are_refused() -> None:
    with pytest.raises(SqlRejected, match="cannot be sent to EdgeLake"):
        check_select('select "my col" from sensor', dialect="edgelake")


def test_query_builder_takes_relative_time_on_edgelake() -> None:
    sql = build_select(
        table="sensor",
        columns=COLUMNS,
        select=["device", "count(*) AS n"],
        where="timestamp >= NOW() - 7 days AND value > 1",
        group_by=["device"],
        order_by=[{"column": "n", "direction": "DESC"}],
        limit=10,
        dialect="edgelake",
    )
    assert sql == (
        "SELECT device, count(*) AS n FROM sensor WHERE timestamp >= now() - 7 days AND value > 1 "
        "GROUP BY device ORDER BY n DESC LIMIT 10"
    )


@pytest.mark.parametrize("where", ["value > 3 days", "device = 'a' - 2 fortnights"])
def test_a_unit_without_now_minus_is_not_an_interval(where: str) -> None:
    with pytest.raises(SqlRejected):
        build_select(table="sensor", columns=COLUMNS, where=where, dialect="edgelake")


def test_sqlite_does_not_take_edgelake_functions() -> None:
    with pytest.raises(SqlRejected, match="function now is not allowed"):
        build_select(table="sensor", columns=COLUMNS, where="timestamp > now()", dialect="sqlite")
