"""The EdgeLake source: a whole EdgeLake network, reached through one or more of its nodes' REST API.

EdgeLake is the distributed engine: SQL sent with `destination: network` runs
on every operator holding the table and comes back consolidated. The catalogue
comes from the network's metadata (table policies), so it is the network's,
not one node's. Rows are parsed as they arrive and handed on in batches, and
leaving a query closes the connection, which is how EdgeLake learns to stop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

import emcp.sql.edgelake_dialect  # noqa: F401  (registers the "edgelake" dialect)
from emcp.settings import EdgeLakeSettings
from emcp.sources.base import Column, Params, QueryStatistics, Row, RowStream, Source, SourceError
from emcp.sources.edgelake.client import EdgeLakeClient, SqlRows
from emcp.sources.edgelake.errors import EdgeLakeError

#: Columns EdgeLake adds to every table on its own.
SYSTEM_COLUMNS = frozenset({"row_id", "insert_timestamp", "tsd_name", "tsd_id"})

# Values that can stand unquoted in an EdgeLake command's `where` (policy filters, names).
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:@-")


def plain_word(value: str, what: str) -> str:
    """A name EdgeLake's command syntax takes as is; anything else is refused, never escaped by guesswork."""
    text = str(value)
    if not text or not set(text) <= _PLAIN:
        raise SourceError(
            "bad_request",
            f"{what} {text!r} cannot be sent to EdgeLake",
            hint="use letters, digits and _ . : @ - only",
        )
    return text


def filter_value(value: object) -> str:
    """A `where` value: plain words as they are, text with spaces in double quotes, as EdgeLake's
    documentation writes `company="New Company"`; a value holding a double quote cannot be written."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if text and set(text) <= _PLAIN:
        return text
    if not text or '"' in text or not text.isprintable():
        raise SourceError(
            "bad_request",
            f"the value {text!r} cannot be sent to EdgeLake in a policy filter",
            hint="filter on values without double quotes or control characters",
        )
    return f'"{text}"'


class EdgeLakeSource(Source):
    kind = "edgelake"
    dialect = "edgelake"
    sql_notes = (
        "This server reads an EdgeLake network: each query runs on every node holding the table and the "
        "results are merged. One table per query: EdgeLake does not support JOINs or subqueries across "
        "tables. Relative time is written timestamp >= NOW() - 7 days (units: seconds, minutes, hours, "
        "days, weeks, months, years). Identifiers are plain names; string values take single quotes."
    )

    def __init__(self, nodes: Sequence[str], settings: EdgeLakeSettings) -> None:
        self._settings = settings
        self.client = EdgeLakeClient(
            nodes,
            user_agent=settings.user_agent,
            timeout=settings.timeout,
            retry_down_after=settings.retry_down_after,
        )
        self._stats = QueryStatistics()

    # -- catalogue -------------------------------------------------------------

    async def _json(self, command: str) -> Any:
        return (await self.client.get(command)).json()

    async def list_databases(self) -> list[str]:
        policies = await self._json("blockchain get (table) bring.json.unique [*][dbms]")
        return sorted({p["dbms"] for p in policies if isinstance(p, dict) and "dbms" in p})

    async def list_tables(self, database: str) -> list[str]:
        dbms = plain_word(database, "database")
        tables = await self._json(f"blockchain get (table) where dbms = {dbms} bring.json.unique [*][name]")
        names = sorted({t["name"] for t in tables if isinstance(t, dict) and "name" in t})
        if not names:
            raise SourceError(
                "unknown_database",
                f"no database named {database!r} in the network's metadata",
                hint="call list_databases to see the databases",
            )
        return names

    async def get_columns(self, database: str, table: str) -> list[Column]:
        """From the node's own schema when it holds the table; else from the table's policy,
        whose CREATE statement is the network-wide definition (a query node holds no tables)."""
        dbms, name = plain_word(database, "database"), plain_word(table, "table")
        try:
            described = await self._json(f"get columns where dbms={dbms} and table={name} and format=json")
        except EdgeLakeError as exc:
            if exc.err_code != 132:  # "Local table not declared": not held by this node
                raise
            return await self._columns_from_policy(database, dbms, name)
        return [Column(col, str(kind), system=col in SYSTEM_COLUMNS) for col, kind in described.items()]

    async def _columns_from_policy(self, database: str, dbms: str, table: str) -> list[Column]:
        policies = await self._json(f"blockchain get table where dbms = {dbms} and name = {table}")
        creates = [p["table"].get("create") for p in policies if isinstance(p, dict) and "table" in p]
        if not creates or not isinstance(creates[0], str):
            await self.list_tables(database)  # raises unknown_database when that is the problem
            raise SourceError(
                "unknown_table",
                f"no table named {table!r} in database {database!r}",
                hint=f"call list_tables with database {database!r} to see its tables",
            )
        return columns_of_create(creates[0])

    # -- queries ---------------------------------------------------------------

    @asynccontextmanager
    async def open_query(
        self, database: str, sql: str, params: Params = (), *, batch_rows: int = 1000
    ) -> AsyncIterator[RowStream]:
        text = bind_parameters(sql, params) if params else sql
        with self._stats.measure():
            async with self.client.open_sql(
                database, text, destination=self._settings.destination or None, batch_rows=batch_rows
            ) as rows:
                yield _EdgeLakeRows(rows)

    # -- node and network ------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.kind, "nodes": self.client.statistics()}
        try:
            node = await self._json("get status where format=json")
        except SourceError as exc:
            return {**out, "reachable": False, "error": exc.message}
        return {**out, "reachable": True, "node": node, "queries_running": self._stats.running}

    async def version(self) -> dict[str, Any]:
        reply = await self._json("get version where format=json")
        version = str(reply.get("version", ""))
        return {
            "engine": "edgelake",
            "version": version.removeprefix("EdgeLake Version: "),
            "node_name": reply.get("node_name"),
        }

    async def data_nodes(self, database: str, table: str) -> list[dict[str, Any]]:
        dbms = "*" if database == "*" else plain_word(database, "database")
        name = "*" if table == "*" else plain_word(table, "table")
        return list(await self._json(f"get data nodes where dbms={dbms} and table={name} and format=json"))

    async def policies(self, policy_type: str, where: Mapping[str, object] | None = None) -> list[dict[str, Any]]:
        """`blockchain get TYPE [where k = v and ...]`, unwrapped to the policies' bodies with their type."""
        kind = plain_word(policy_type, "policy type")
        command = f"blockchain get {kind}"
        if where:
            filters = " and ".join(f"{plain_word(k, 'attribute')} = {filter_value(v)}" for k, v in where.items())
            command += f" where {filters}"
        found = await self._json(command)
        return [
            {"type": key, **body}
            for policy in found
            if isinstance(policy, dict)
            for key, body in policy.items()
            if isinstance(body, dict)
        ]

    async def network_nodes(self, roles: Sequence[str]) -> list[dict[str, Any]]:
        nodes = []
        for role in roles:
            for policy in await self.policies(role):
                nodes.append(
                    {
                        "role": role,
                        "name": policy.get("name"),
                        "ip": policy.get("ip"),
                        "port": policy.get("port"),
                        "rest_port": policy.get("rest_port"),
                        "status": policy.get("status"),
                        "id": policy.get("id"),
                    }
                )
        return nodes

    async def all_policies(self, policy_types: Sequence[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for kind in policy_types:
            found.extend(await self.policies(kind))
        return found

    async def help(self, command: str) -> str:
        """EdgeLake's own help text (`help` is a GET command, as EdgeLake's REST documentation lists it)."""
        reply = await self.client.get(f"help {command}".strip())
        return reply.body.decode("latin-1")

    def statistics(self) -> QueryStatistics:
        return self._stats

    async def aclose(self) -> None:
        """Nothing to release: every request has its own connection, closed when it ends."""


class _EdgeLakeRows(RowStream):
    """Row dicts as tuples in the order of the first row's keys (EdgeLake's column order)."""

    def __init__(self, rows: SqlRows) -> None:
        self._rows = rows
        self.columns: list[str] = []

    @property
    def statistics(self) -> dict[str, Any] | None:
        return self._rows.statistics

    def __aiter__(self) -> _EdgeLakeRows:
        return self

    async def __anext__(self) -> list[Row]:
        batch = await self._rows.__anext__()
        if not self.columns:
            self.columns = list(batch[0])
        return [tuple(row.get(column) for column in self.columns) for row in batch]


def columns_of_create(create: str) -> list[Column]:
    """Columns of the first CREATE TABLE in a table policy's `create` text (PostgreSQL syntax)."""
    try:
        statements = sqlglot.parse(create, read="postgres")
    except SqlglotError as exc:
        raise SourceError("bad_reply", f"cannot read the table policy's CREATE statement: {exc}") from None
    for statement in statements:
        if isinstance(statement, exp.Create) and isinstance(statement.this, exp.Schema):
            return [
                Column(
                    definition.name,
                    definition.args["kind"].sql(dialect="postgres").lower() if definition.args.get("kind") else "",
                    nullable=not any(isinstance(c.kind, exp.NotNullColumnConstraint) for c in definition.constraints),
                    primary_key=any(isinstance(c.kind, exp.PrimaryKeyColumnConstraint) for c in definition.constraints),
                    system=definition.name in SYSTEM_COLUMNS,
                )
                for definition in statement.this.expressions
                if isinstance(definition, exp.ColumnDef)
            ]
    raise SourceError("bad_reply", "the table policy has no CREATE TABLE statement")


def bind_parameters(sql: str, params: Params) -> str:
    """EdgeLake has no bound parameters: put the values into the tree as literals, so quoting is sqlglot's."""
    tree = sqlglot.parse_one(sql, read="edgelake")
    if isinstance(params, Mapping):
        bound = exp.replace_placeholders(tree, **dict(params))
    else:
        bound = exp.replace_placeholders(tree, *params)
    return bound.sql(dialect="edgelake")
