"""Proof that a piece of raw SQL is exactly one read-only query.

Agents send SQL written by a model, so the text is untrusted. Rather than
pattern-matching the text, the guard parses it with sqlglot, rejects every tree
that could write, change session state or reach outside the database, and
returns the SQL re-rendered from the tree it checked: what the database runs is
what was proven, not the original text with whatever comments, odd whitespace
or tokenizer disagreements it carried. Sources still open their databases
read-only; this is the first line of defence, not the only one.
"""

from __future__ import annotations

import functools

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

__all__ = [
    "FORBIDDEN_FUNCTIONS",
    "FORBIDDEN_TABLE_FUNCTIONS",
    "SqlRejected",
    "check_select",
    "first_line",
    "function_names",
    "too_deep",
]


class SqlRejected(Exception):
    """SQL emcp refuses to run; reported to the agent as a tool error it can fix.

    `message` says what was found and what is allowed, `hint` how to change the call.
    """

    def __init__(self, message: str, *, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


# Table-valued functions that list or read files. SQLite also finds them by a
# bare table name, their arguments given as hidden columns (`SELECT name FROM
# fsdir WHERE path = '/etc'`), so a table of that name is refused too.
FORBIDDEN_TABLE_FUNCTIONS: frozenset[str] = frozenset({"fsdir", "zipfile", "fileio_ls", "fileio_scan", "lines_read"})

# SQLite runs `PRAGMA x` for the table-valued function (or bare table name)
# `pragma_x`, and some pragmas write: `SELECT * FROM pragma_optimize(0x10002)`
# runs ANALYZE and creates sqlite_stat1.
_PRAGMA_PREFIX = "pragma_"

# Functions that read or write files, load native code, run SQL given as a string,
# change server or sequence state, or leak build internals, across the engines a
# source may speak (SQLite and its CLI/sqlean extensions, PostgreSQL, DuckDB,
# MySQL). Matched case-insensitively against the name as written (unknown
# functions) and every name sqlglot knows a typed function by.
FORBIDDEN_FUNCTIONS: frozenset[str] = FORBIDDEN_TABLE_FUNCTIONS | frozenset(
    {
        # SQLite core and CLI
        "load_extension",
        "readfile",
        "writefile",
        "edit",
        "fts3_tokenizer",
        "sqlite_compileoption_get",
        "sqlite_compileoption_used",
        "sqlar_compress",
        "sqlar_uncompress",
        # sqlean extensions: file I/O and SQL-from-a-string
        "eval",
        "define",
        "undefine",
        "fileio_read",
        "fileio_write",
        "fileio_append",
        "fileio_mkdir",
        "fileio_symlink",
        # PostgreSQL
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "lo_import",
        "lo_export",
        "lo_unlink",
        "dblink",
        "dblink_exec",
        "set_config",
        "nextval",
        "setval",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        # DuckDB and other engines sqlglot models as typed nodes
        "read_csv",
        "read_csv_auto",
        "read_parquet",
        "read_json",
        "read_json_auto",
        "read_text",
        "read_blob",
        "parquet_scan",
        "to_file",
        "next_value_for",
        "load_file",
    }
)

# Statements and clauses that write data, change the schema, the session, the
# connection or the transaction, move files, or run procedural code. `Command` is
# sqlglot's fallback for statements it cannot parse (PRAGMA in some dialects,
# VACUUM, REPLACE INTO, EXPLAIN, ALTER ... in SQLite): unknown means rejected.
_FORBIDDEN_NODES: tuple[type[exp.Expr], ...] = (
    # data changes
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Copy,
    exp.LoadData,
    exp.Export,
    exp.MultitableInserts,
    exp.Into,
    exp.Returning,
    exp.OnConflict,
    # schema and catalogue changes
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.TruncateTable,
    exp.Undrop,
    exp.Comment,
    exp.Analyze,
    exp.Refresh,
    exp.Cache,
    exp.Uncache,
    exp.Grant,
    exp.Revoke,
    exp.Install,
    # session, connection and transaction state
    exp.Pragma,
    exp.Attach,
    exp.Detach,
    exp.Set,
    exp.Use,
    exp.AlterSession,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Lock,
    exp.LockingStatement,
    exp.Kill,
    exp.Declare,
    # files moved in and out of stages
    exp.Put,
    exp.Get,
    # procedural code, and whatever sqlglot could not parse as plain SQL
    exp.Command,
    exp.Execute,
    exp.Block,
    exp.IfBlock,
    exp.WhileBlock,
    exp.LoopBlock,
    exp.RepeatBlock,
    exp.StoredProcedure,
    exp.Return,
    exp.EndStatement,
)

# Keywords for nodes whose class key is not what the agent wrote.
_KEYWORDS: dict[type[exp.Expr], str] = {
    exp.Transaction: "BEGIN",
    exp.TruncateTable: "TRUNCATE",
    exp.LoadData: "LOAD DATA",
    exp.MultitableInserts: "INSERT ALL",
    exp.AlterSession: "ALTER SESSION",
    exp.LockingStatement: "LOCKING",
    exp.StoredProcedure: "CALL",
    exp.EndStatement: "END",
    exp.Into: "INTO",
    exp.Lock: "FOR UPDATE/FOR SHARE",
    exp.OnConflict: "ON CONFLICT",
}
_CLAUSES = (exp.Into, exp.Returning, exp.OnConflict, exp.Lock)

_ONLY_SELECT = "only a single read-only SELECT is allowed"
_FLATTEN_HINT = "flatten the nesting: fewer parentheses, nested calls or nested subqueries (a WITH clause helps)"
_READ_ONLY_HINT = (
    "emcp gives read-only access: send one SELECT (optionally WITH name AS (SELECT ...) SELECT ...) "
    "that only reads; use the schema tools to inspect tables instead of PRAGMA or DESCRIBE"
)


def function_names(node: exp.Func) -> frozenset[str]:
    """Lower-case names a function call may have been written with.

    sqlglot turns many calls into typed nodes (`ifnull(a, b)` becomes `Coalesce`),
    so a typed node answers to every name sqlglot parses into it; an unknown
    function keeps the name it was written with.
    """
    if isinstance(node, exp.Anonymous):
        return frozenset({node.name.lower()})
    return frozenset(name.lower() for name in type(node).sql_names())


def first_line(error: BaseException) -> str:
    """The headline of a sqlglot error; the lines after it draw the SQL with terminal colours."""
    return (str(error).splitlines() or [type(error).__name__])[0]


def check_select(sql: str, *, dialect: str) -> str:
    """Return `sql` re-rendered by sqlglot if it is exactly one read-only query.

    Accepted: one SELECT, or a UNION/INTERSECT/EXCEPT of SELECTs, optionally with
    a WITH clause whose CTEs are queries. Empty statements (stray `;`) and
    comments are dropped; the returned text carries no comments, so nothing the
    guard did not see can reach the database. Raises `SqlRejected` otherwise.

    The database parses the returned text, not the tree checked here, so that
    text is checked as well and must come back unchanged: sqlglot does not
    always read its own rendering the way it read the original (it writes
    `!x` as `NOT x` but `substr(x)` as `SUBSTRING(x)`, which it then cannot
    parse), and SQL whose meaning could shift on the way is refused.

    Proofs are remembered: agents and dashboards send the same SQL again and
    again, and a proof is a pure function of the text and the dialect.
    """
    if len(sql) <= _REMEMBERED_SQL_CHARS:
        return _proven(sql, dialect)
    return _prove(sql, dialect)


# SQL longer than this is proven afresh each time, so the cache holds at most
# about `maxsize` x 2 x this many characters.
_REMEMBERED_SQL_CHARS = 4096


def _prove(sql: str, dialect: str) -> str:
    try:
        rendered = _check_select(sql, dialect)
        try:
            # Text that renders to itself reads back the same by definition: checking
            # it again would repeat the same deterministic work (built SQL always is).
            stable = rendered == sql or _check_select(rendered, dialect) == rendered
        except SqlRejected:
            stable = False
    except RecursionError:
        # sqlglot's parser recurses about twenty frames per level of nesting, so
        # some forty nested parentheses or calls exhaust Python's stack.
        raise SqlRejected(too_deep("the SQL"), hint=_FLATTEN_HINT) from None
    if not stable:
        excerpt = rendered if len(rendered) <= 80 else rendered[:77] + "..."
        raise SqlRejected(
            f"the SQL could not be checked: emcp normalises it to `{excerpt}`, which does not read back the same",
            hint=f"write it in plain {dialect} SQL: the usual function names with their usual arguments, "
            "standard operators (NOT rather than !)",
        )
    return rendered


# Successes only: a rejection raises, and lru_cache keeps nothing for a call that raised.
_proven = functools.lru_cache(maxsize=1024)(_prove)


def too_deep(what: str) -> str:
    return f"{what} nests too deeply to be checked (over about 40 levels of parentheses or calls)"


def _check_select(sql: str, dialect: str) -> str:
    try:
        parsed = sqlglot.parse(sql, read=dialect)
    except SqlglotError as error:
        raise SqlRejected(
            f"could not parse the SQL: {first_line(error)}",
            hint=f"send one valid {dialect} SELECT statement: string literals in single quotes, "
            "identifiers with spaces or odd characters in double quotes",
        ) from None

    # A statement that is only comments parses as `Semicolon`, an empty one as None.
    statements = [tree for tree in parsed if tree is not None and not isinstance(tree, exp.Semicolon)]
    if len(statements) != 1:
        found = "no statement" if not statements else f"{len(statements)} statements"
        raise SqlRejected(
            f"{_ONLY_SELECT}; found {found}",
            hint="send exactly one SELECT statement per call; run further statements as separate calls",
        )
    tree = statements[0]

    for node in tree.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            raise SqlRejected(f"{_ONLY_SELECT}; found {_describe(node)}", hint=_READ_ONLY_HINT)
        names = _called_names(node)
        if pragmas := sorted(name for name in names if name.startswith(_PRAGMA_PREFIX)):
            raise SqlRejected(f"{_ONLY_SELECT}; found {pragmas[0]}, which runs a PRAGMA", hint=_READ_ONLY_HINT)
        if banned := names & FORBIDDEN_FUNCTIONS:
            name = min(banned)
            raise SqlRejected(
                f"function {name} is not allowed: it reaches outside the database or changes its state",
                hint=f"remove the call to {name}; functions that touch files, load code or change "
                "server state are not available",
            )
    # After the walk, so a data-modifying CTE is reported by what it does (DELETE...).
    for cte in tree.find_all(exp.CTE):
        if not isinstance(cte.this, exp.Query):
            raise SqlRejected(
                f"{_ONLY_SELECT}; the WITH clause {cte.alias_or_name!r} is not a query",
                hint="every WITH name AS (...) must hold a SELECT",
            )

    if not isinstance(tree, (exp.Select, exp.SetOperation)):
        if isinstance(tree, exp.Subquery):
            raise SqlRejected(
                f"{_ONLY_SELECT}; found a query wrapped in parentheses",
                hint="remove the parentheses around the whole statement",
            )
        text = tree.sql(dialect=dialect, comments=False)
        excerpt = text if len(text) <= 60 else text[:57] + "..."
        raise SqlRejected(f"{_ONLY_SELECT}; found `{excerpt}`, which is not a SELECT", hint=_READ_ONLY_HINT)

    return tree.sql(dialect=dialect, comments=False)


def _called_names(node: exp.Expr) -> frozenset[str]:
    """Lower-case names by which `node` may call a function: a call's names, or a table's
    name when SQLite could take it for a table-valued function (a pragma or a file lister)."""
    if isinstance(node, exp.Func):
        return function_names(node)
    if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
        name = node.name.lower()
        if name in FORBIDDEN_TABLE_FUNCTIONS or name.startswith(_PRAGMA_PREFIX):
            return frozenset({name})
    return frozenset()


def _describe(node: exp.Expr) -> str:
    """Name a forbidden node the way the agent wrote it: 'a DELETE statement'."""
    keyword = node.name.upper() if isinstance(node, exp.Command) else _KEYWORDS.get(type(node))
    keyword = keyword or node.key.upper()
    article = "an" if keyword[0] in "AEIO" or (keyword[0] == "U" and not keyword.startswith("US")) else "a"
    kind = "clause" if isinstance(node, _CLAUSES) else "statement"
    return f"{article} {keyword} {kind}"
