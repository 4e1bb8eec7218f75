"""The structured `query` tool's SQL: a SELECT assembled from checked parts.

Agents fill in table, select, where, group_by, order_by and limit (the argument
names of EdgeLake's own MCP tool). Each part is parsed on its own as an
expression, never spliced into statement text, and kept to a small language:
the table's own columns, literals, operators and an allowlist of functions. The
statement is then built as a sqlglot tree with every identifier quoted, rendered
for the source's dialect, and proven read-only by `check_select` like raw SQL.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from emcp.sources.base import Column
from emcp.sql.guard import SqlRejected, check_select, first_line, function_names, too_deep

__all__ = ["ALLOWED_FUNCTIONS", "build_select"]

# Lower-case names of the functions a select item or where may call. Pure
# functions only: aggregates and common scalar ones of SQLite and EdgeLake. Some
# entries are the names of sqlglot's typed nodes rather than what agents write:
# in SQLite `strftime(f, x)` parses to time_to_str(ts_or_ds_to_timestamp(x)),
# `min(a, b)`/`max(a, b)` to least/greatest, `instr` to str_position.
ALLOWED_FUNCTIONS: frozenset[str] = frozenset(
    {
        # aggregates
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "group_concat",
        "total",
        # scalar
        "abs",
        "round",
        "lower",
        "upper",
        "length",
        "substr",
        "trim",
        "ltrim",
        "rtrim",
        "instr",
        "str_position",
        "coalesce",
        "ifnull",
        "nullif",
        "iif",
        "case",
        "cast",
        "least",
        "greatest",
        # date and time
        "strftime",
        "time_to_str",
        "ts_or_ds_to_timestamp",
        "date",
        "time",
        "datetime",
        "julianday",
        "unixepoch",
    }
)

# Everything else an expression may contain besides columns, allowlisted
# functions and `count(*)`: literals, arithmetic, comparisons, boolean logic,
# IN lists, BETWEEN, LIKE/GLOB, IS [NOT] NULL, CAST's type, DISTINCT in aggregates.
_ALLOWED_NODES: tuple[type[exp.Expr], ...] = (
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.Paren,
    exp.Neg,
    exp.Not,
    exp.And,
    exp.Or,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.DPipe,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Is,
    exp.NullSafeEQ,
    exp.NullSafeNEQ,
    exp.In,
    exp.Between,
    exp.Like,
    exp.ILike,
    exp.Glob,
    exp.Escape,
    exp.DataType,
    exp.DataTypeParam,
    exp.Distinct,
)

_DIRECTIONS = frozenset({"ASC", "DESC"})
_ORDER_KEYS = frozenset({"column", "direction"})


def build_select(
    *,
    table: str,
    columns: Sequence[Column],
    select: Sequence[str] = ("*",),
    where: str | None = None,
    group_by: Sequence[str] = (),
    order_by: Sequence[Mapping[str, str]] = (),
    limit: int = 100,
    dialect: str,
) -> str:
    """Build one read-only SELECT on `table` from the query tool's arguments.

    `columns` is the table's schema: every column the caller names must be one
    of them (matched case-insensitively, rendered with the schema's spelling);
    `group_by` and `order_by` may also name an alias defined in `select`. Raises `SqlRejected`
    saying which argument to fix.

    Built statements are remembered: the same arguments over the same schema
    always build the same SQL, and agents repeat their queries. Only arguments
    of exactly the documented shapes are remembered (so `"ab"` and `["a", "b"]`,
    or `True` and `1`, can never share an entry); anything else is built, and
    refused, afresh.
    """
    key = _plain_arguments(table, select, where, group_by, order_by, limit)
    if key is None:
        return _build(table, columns, select, where, group_by, order_by, limit, dialect)
    select_key, group_key, order_key = key
    return _built(table, tuple(columns), select_key, where, group_key, order_key, limit, dialect)


# Arguments with more characters than this are built afresh, which bounds what the cache holds.
_REMEMBERED_CHARS = 4096


def _plain_arguments(
    table: object, select: object, where: object, group_by: object, order_by: object, limit: object
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[tuple[str, str], ...], ...]] | None:
    """The list arguments as tuples when every argument has the shape the tool declares
    and they are not too long to remember; else None."""
    if type(table) is not str or type(limit) is not int or not (where is None or type(where) is str):
        return None
    if not (_strings(select) and _strings(group_by) and isinstance(order_by, list | tuple)):
        return None
    orders: list[tuple[tuple[str, str], ...]] = []
    for entry in order_by:
        if type(entry) is not dict or not all(type(k) is str and type(v) is str for k, v in entry.items()):
            return None
        orders.append(tuple(entry.items()))
    texts = [table, where or "", *select, *group_by, *(text for entry in orders for pair in entry for text in pair)]
    if sum(map(len, texts)) > _REMEMBERED_CHARS:
        return None
    return tuple(select), tuple(group_by), tuple(orders)  # type: ignore[arg-type]


def _strings(value: object) -> bool:
    return isinstance(value, list | tuple) and all(type(item) is str for item in value)


@functools.lru_cache(maxsize=1024)
def _built(
    table: str,
    columns: tuple[Column, ...],
    select: tuple[str, ...],
    where: str | None,
    group_by: tuple[str, ...],
    order_by: tuple[tuple[tuple[str, str], ...], ...],
    limit: int,
    dialect: str,
) -> str:
    return _build(table, columns, select, where, group_by, [dict(entry) for entry in order_by], limit, dialect)


def _build(
    table: str,
    columns: Sequence[Column],
    select: Sequence[str],
    where: str | None,
    group_by: Sequence[str],
    order_by: Sequence[Mapping[str, str]],
    limit: int,
    dialect: str,
) -> str:
    parser = _Parser(columns, Dialect.get_or_raise(dialect))

    if isinstance(select, str) or not select:
        raise SqlRejected(
            "select must be a non-empty list of columns or expressions",
            hint='pass e.g. ["*"], ["device", "value"] or ["device", "avg(value) AS mean"]',
        )
    items = [parser.select_item(item) for item in select]
    aliases = {item.alias.lower(): item.alias for item in items if isinstance(item, exp.Alias)}

    query = exp.select(*items, copy=False).from_(exp.table_(table, quoted=True), copy=False)
    if where is not None and (condition := parser.condition(where)) is not None:
        query = query.where(condition, copy=False)
    if isinstance(group_by, str):
        raise SqlRejected("group_by must be a list of column names", hint=f'pass e.g. ["{parser.example}"]')
    if group_by:
        query = query.group_by(*(parser.column_or_alias(name, aliases, "group_by") for name in group_by), copy=False)
    if order_by:
        query = query.order_by(*(parser.ordered(entry, aliases) for entry in order_by), copy=False)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise SqlRejected(
            f"limit must be a whole number of at least 1, got {limit!r}",
            hint="pass e.g. 100; use a larger limit, not none, to get more rows",
        )
    query = query.limit(limit, copy=False)
    return check_select(query.sql(dialect=dialect), dialect=dialect)


class _Parser:
    """Parses and checks the parts of one query against one table's columns."""

    def __init__(self, columns: Sequence[Column], dialect: Dialect) -> None:
        self._by_name = {column.name.lower(): column.name for column in columns}
        self._names = ", ".join(column.name for column in columns) or "(none)"
        self.example = next((column.name for column in columns if not column.system), "column")
        self._dialect = dialect
        # A dialect may add its own functions and node types (EdgeLake: now(), `NOW() - 7 days`).
        self._functions = ALLOWED_FUNCTIONS | getattr(dialect, "EXTRA_FUNCTIONS", frozenset())
        self._nodes = (*_ALLOWED_NODES, *getattr(dialect, "EXTRA_NODES", ()))

    def select_item(self, item: str) -> exp.Expr:
        """`*`, a column name as the schema spells it, or one expression with an optional alias."""
        if not isinstance(item, str):
            raise SqlRejected(f"select items must be strings, got {item!r}", hint='pass e.g. ["device", "avg(value)"]')
        if item.strip() == "*":
            return exp.Star()
        if (name := self._by_name.get(item.strip().lower())) is not None:
            return exp.column(name, quoted=True)
        what = f"select item {item!r}"
        tree = self._parse(item, exp.Expr, what)
        if isinstance(tree, exp.Alias):
            if not tree.alias:
                raise SqlRejected(f"{what} has an empty alias", hint="write e.g. avg(value) AS mean")
            tree.args["alias"].set("quoted", True)
            self._check(tree.this, what)
        else:
            self._check(tree, what)
        return tree

    def condition(self, where: str) -> exp.Expr | None:
        """One boolean expression over the table's columns, without aggregates; blank means no filter."""
        if not isinstance(where, str):
            raise SqlRejected(f"where must be a string, got {where!r}", hint='pass e.g. "value > 20"')
        if not where.strip():
            return None
        tree = self._parse(where, exp.Condition, "where")
        if aggregate := tree.find(exp.AggFunc):
            raise SqlRejected(
                f"where cannot use the aggregate {aggregate.sql(dialect=self._dialect)}: "
                "where filters rows before they are grouped",
                hint="filter on column values in where; put aggregates in select",
            )
        self._check(tree, "where")
        return tree

    def column(self, name: str, what: str) -> exp.Column:
        """A bare column name (not an expression), as group_by and order_by take."""
        if not isinstance(name, str):
            raise SqlRejected(f"{what} takes column names, got {name!r}", hint=f'pass e.g. "{self.example}"')
        known = self._by_name.get(name.strip().lower())
        if known is None:
            raise self._unknown(name, what)
        return exp.column(known, quoted=True)

    def column_or_alias(self, name: str, aliases: Mapping[str, str], what: str) -> exp.Column:
        """A column, or an alias defined in select (so rows can be grouped or sorted by a computed
        value such as a day bucket); a real column of the same name wins, as in SQL."""
        if isinstance(name, str):
            key = name.strip().lower()
            if key in aliases and key not in self._by_name:
                return exp.column(aliases[key], quoted=True)
        return self.column(name, what)

    def ordered(self, entry: Mapping[str, str], aliases: Mapping[str, str]) -> exp.Ordered:
        """`{"column": name, "direction": "ASC"|"DESC"}`; the name may be a select alias."""
        hint = f'pass e.g. [{{"column": "{self.example}", "direction": "DESC"}}]'
        if not isinstance(entry, Mapping) or not isinstance(entry.get("column"), str):
            raise SqlRejected(f"each order_by entry must be an object with a column, got {entry!r}", hint=hint)
        if extra := sorted(set(entry) - _ORDER_KEYS):
            raise SqlRejected(
                f"order_by entries take only column and direction, got {', '.join(map(str, extra))}",
                hint=hint,
            )
        direction = entry.get("direction", "ASC")
        if not isinstance(direction, str) or direction.strip().upper() not in _DIRECTIONS:
            raise SqlRejected(f"order_by direction must be ASC or DESC, got {direction!r}", hint=hint)
        target = self.column_or_alias(entry["column"], aliases, "order_by")
        desc = direction.strip().upper() == "DESC"
        # Say where the engine itself puts NULLs, or sqlglot adds a NULLS FIRST/LAST
        # that overrides the engine's default.
        ordering = self._dialect.NULL_ORDERING
        nulls_first = (ordering == "nulls_are_small" and not desc) or (ordering == "nulls_are_large" and desc)
        return exp.Ordered(this=target, desc=desc, nulls_first=nulls_first)

    def _parse(self, text: str, into: type[exp.Expr], what: str) -> exp.Expr:
        """Parse exactly one expression; no `;`, no comments, nothing left over."""
        hint = "write one SQL expression over the table's columns, e.g. value > 20 AND device = 'a-1'"
        try:
            tokens = self._dialect.tokenize(text)
        except SqlglotError as error:
            raise SqlRejected(f"could not parse {what}: {first_line(error)}", hint=hint) from None
        if any(token.token_type == TokenType.SEMICOLON for token in tokens):
            raise SqlRejected(f"{what} contains ';': only one expression is allowed", hint=hint)
        if any(token.comments for token in tokens):
            raise SqlRejected(f"{what} contains a comment: comments are not allowed", hint=hint)
        try:
            trees = self._dialect.parser().parse_into(into, tokens, text)
        except SqlglotError as error:
            raise SqlRejected(f"could not parse {what}: {first_line(error.__cause__ or error)}", hint=hint) from None
        except RecursionError:
            raise SqlRejected(too_deep(what), hint="flatten the nesting: fewer parentheses or nested calls") from None
        if len(trees) != 1 or trees[0] is None:
            raise SqlRejected(f"{what} is empty", hint=hint)
        tree = trees[0]
        # sqlglot drops a trailing AS and reads `value DESC` as an alias named DESC:
        # an alias must be spelled out as `expression AS name`.
        if tokens[-1].token_type == TokenType.ALIAS:
            raise SqlRejected(f"{what} ends with AS but names no alias", hint="write e.g. avg(value) AS mean")
        if isinstance(tree, exp.Alias) and tokens[-2].token_type != TokenType.ALIAS:
            raise SqlRejected(
                f"{what} ends with {tokens[-1].text!r}, which would silently become a column alias",
                hint="write the alias with AS (avg(value) AS mean); put ordering in order_by",
            )
        return tree

    def _check(self, tree: exp.Expr, what: str) -> None:
        """Allow only known columns, allowlisted functions and plain operators; quote the columns."""
        for node in tree.walk():
            if isinstance(node, exp.Column):
                self._resolve(node, what)
            elif isinstance(node, (exp.Identifier, *self._nodes)):
                pass  # an Identifier is a column's name, checked with its column, or a type name under CAST
            elif isinstance(node, exp.Star):
                if not isinstance(node.parent, exp.Count):
                    raise SqlRejected(
                        f"{what}: * is only allowed alone or as count(*)",
                        hint='select ["*"] for every column, or name the columns',
                    )
            elif isinstance(node, (exp.Query, exp.Exists)):
                raise SqlRejected(
                    f"{what}: subqueries are not allowed",
                    hint="query one table with plain expressions; use the sql tool for more complex SELECTs",
                )
            elif isinstance(node, exp.Func):
                if not function_names(node) & self._functions:
                    name = node.name if isinstance(node, exp.Anonymous) else type(node).sql_names()[0]
                    raise SqlRejected(
                        f"{what}: function {name.lower()} is not allowed",
                        hint="allowed functions: " + ", ".join(sorted(self._functions)),
                    )
            else:
                raise SqlRejected(
                    f"{what}: `{node.sql(dialect=self._dialect)}` is not allowed",
                    hint="use only columns, literals, arithmetic, comparisons, AND/OR/NOT, IN (...), "
                    "BETWEEN, LIKE, IS NULL, CASE, CAST and the allowed functions",
                )

    def _resolve(self, node: exp.Column, what: str) -> None:
        """Check a column reference and rewrite it to the schema's spelling, quoted."""
        if node.table or not isinstance(node.this, exp.Identifier):
            raise SqlRejected(
                f"{what}: {node.sql(dialect=self._dialect)} is not allowed; use bare column names",
                hint=f"write e.g. {self.example} rather than table.{self.example}",
            )
        known = self._by_name.get(node.name.lower())
        if known is None:
            raise self._unknown(node.name, what)
        node.set("this", exp.to_identifier(known, quoted=True))

    def _unknown(self, name: str, what: str) -> SqlRejected:
        return SqlRejected(
            f"unknown column {name!r} in {what}; valid columns: {self._names}",
            hint="use the table's column names (get_schema lists them); "
            "write string values in single quotes, e.g. device = 'a-1'",
        )
