"""Known ways to get a write, a second statement or a file past a read-only SQL check.

One corpus serves every test that proves the `sql` tool read-only: the guard on
its own (tests/test_sql_guard.py) and the tool end to end on each source, where
the SQLite file must stay byte for byte the same and the EdgeLake node must never
receive the statement (tests/test_sql_bypasses.py). Every entry is refused by the
guard, and `fragment` is what the refusal must say, so a refusal for the wrong
reason (a parse error where a DELETE was meant to be found) shows up too.

Entries are grouped by the trick they try. Tricks that only work where the text
reaching the database differs from the text checked (comments, look-alike
characters, quoting) are harmless here as long as the guard refuses them or,
for the harmless ones, re-renders them without the hidden part; the second kind
lives with the guard's own tests (`test_harmless_oddities_are_normalised`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BYPASSES", "CORPUS", "Bypass"]

# What the guard's refusals say, by kind.
TWO = "found 2 statements"
NONE = "found no statement"
UNPARSABLE = "could not parse the SQL"
NOT_SELECT = "which is not a SELECT"
PRAGMA_FN = "which runs a PRAGMA"
TOO_DEEP = "nests too deeply"


def _fn(name: str) -> str:
    return f"function {name} is not allowed"


@dataclass(frozen=True)
class Bypass:
    """One attempt: the SQL an agent might send, and what the refusal must contain."""

    category: str
    sql: str
    fragment: str

    @property
    def id(self) -> str:
        """A short test id: the category and the start of the SQL, printable."""
        head = self.sql[:40].encode("unicode_escape").decode("ascii")
        more = f"... ({len(self.sql)} characters)" if len(self.sql) > 40 else ""
        return f"{self.category}: {head}{more}"


CORPUS: dict[str, list[tuple[str, str]]] = {
    "stacked statements": [
        ("SELECT 1; DELETE FROM t", TWO),
        ("SELECT 1;DELETE FROM t;", TWO),
        ("SELECT 1;; ;DELETE FROM t", TWO),
        ("SELECT * FROM t; UPDATE t SET value = 0", TWO),
        ("SELECT * FROM t; INSERT INTO t (row_id) VALUES (99)", TWO),
        ("SELECT * FROM t; DROP TABLE t", TWO),
        ("SELECT * FROM t; PRAGMA writable_schema = 1", TWO),
        ("SELECT 1; SELECT 2", TWO),
        ("SELECT 'a\\' ; DELETE FROM t; --'", TWO),  # no backslash escapes in SQLite
        ("VALUES (1); DELETE FROM t", TWO),
        ("SELECT changes(); DELETE FROM t", TWO),
        ("CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM t; END", TWO),
        ("", NONE),
        ("  ;  ; ", NONE),
        (";", NONE),
    ],
    "comments": [
        ("-- only a comment", NONE),
        ("/* only a comment */", NONE),
        ("SELECT 1 -- \n; DROP TABLE t", TWO),
        ("SELECT 1 /* */; DROP TABLE t", TWO),
        ("SELECT 1 /* ; */ ; DROP TABLE t /* */", TWO),
        ("/* x */ SELECT 1; /* y */ UPDATE t SET value = 0", TWO),
        ("SELECT 1 /* /* nested? */ ; DELETE FROM t */", UNPARSABLE),  # SQLite does not nest comments
        ("SELECT 1 /* nested /* */ */; DELETE FROM t", UNPARSABLE),
        ("SELECT 1 /*! */; DELETE FROM t", TWO),  # MySQL's executable comment: a comment elsewhere
        ("/*!*/ DELETE FROM t", "found a DELETE statement"),
        ("SELECT 1 /*!50000 */ ; PRAGMA query_only = 0", TWO),
        ("SELECT 1 -- x\n;\nDELETE FROM t -- y", TWO),
        ("DELETE/**/FROM/**/t", "found a DELETE statement"),
        ("SELECT 1 # hash comment\n; DELETE FROM t", UNPARSABLE),
        ("SELECT 1 /* never closed", UNPARSABLE),
        ("SELECT 1; DELETE FROM t /*", UNPARSABLE),
        ("--", NONE),
        ("/*", UNPARSABLE),
    ],
    "transactions": [
        ("BEGIN", "found a BEGIN statement"),
        ("BEGIN IMMEDIATE TRANSACTION", "found a BEGIN statement"),
        ("BEGIN EXCLUSIVE", "found a BEGIN statement"),
        ("BEGIN DEFERRED; DELETE FROM t; COMMIT", "found 3 statements"),
        ("COMMIT", "found a COMMIT statement"),
        ("COMMIT TRANSACTION", "found a COMMIT statement"),
        ("COMMIT; SELECT 1", TWO),
        ("SELECT 1; COMMIT", TWO),
        ("COMMIT; DELETE FROM t", TWO),
        ("COMMIT; ATTACH 'x' AS y", TWO),
        ("END", NOT_SELECT),
        ("END TRANSACTION", NOT_SELECT),
        ("ROLLBACK", "found a ROLLBACK statement"),
        ("ROLLBACK TO sp", "found a ROLLBACK statement"),
        ("ROLLBACK TRANSACTION TO SAVEPOINT sp", "found a ROLLBACK statement"),
        ("SAVEPOINT sp", NOT_SELECT),
        ("SAVEPOINT a; DELETE FROM t; RELEASE a", "found 3 statements"),
        ("RELEASE sp", NOT_SELECT),
        ("RELEASE SAVEPOINT sp", UNPARSABLE),
    ],
    "pragma": [
        ("PRAGMA writable_schema=1", "found a PRAGMA statement"),
        ("PRAGMA table_info(t)", "found a PRAGMA statement"),
        ("pragma query_only = 0", "found a PRAGMA statement"),
        ("PRAGMA query_only", "found a PRAGMA statement"),
        ("PRAGMA main.journal_mode = WAL", "found a PRAGMA statement"),
        ("PRAGMA journal_mode=OFF", "found a PRAGMA statement"),
        ("PRAGMA user_version = 1", "found a PRAGMA statement"),
        ("PRAGMA optimize", "found a PRAGMA statement"),
        ("PRAGMA wal_checkpoint(TRUNCATE)", "found a PRAGMA statement"),
        ("PRAGMA trusted_schema = ON", "found a PRAGMA statement"),
        ("PRAGMA temp_store_directory = '/tmp'", "found a PRAGMA statement"),
        # SQLite runs `PRAGMA optimize` for these, which runs ANALYZE: a write.
        ("SELECT * FROM pragma_optimize(0x10002)", PRAGMA_FN),
        ("SELECT * FROM pragma_optimize", PRAGMA_FN),
        ('SELECT * FROM "pragma_optimize"', PRAGMA_FN),
        ("SELECT * FROM [PRAGMA_OPTIMIZE](-1)", PRAGMA_FN),
        ("SELECT * FROM main.pragma_optimize(-1)", PRAGMA_FN),
        ("SELECT * FROM t JOIN pragma_optimize", PRAGMA_FN),
        ("SELECT (SELECT count(*) FROM pragma_optimize) FROM t", PRAGMA_FN),
        ("SELECT pragma_optimize()", PRAGMA_FN),
        # Read-only pragmas, refused all the same: the schema tools answer these.
        ("SELECT * FROM pragma_table_info('t')", PRAGMA_FN),
        ("SELECT name FROM pragma_table_info WHERE arg = 't'", PRAGMA_FN),
        ("SELECT * FROM pragma_database_list", PRAGMA_FN),
    ],
    "attach": [
        ("ATTACH DATABASE 'x' AS y", "found an ATTACH statement"),
        ("attach 'file:x?mode=rwc' as y", "found an ATTACH statement"),
        ("ATTACH ':memory:' AS m", "found an ATTACH statement"),
        ("ATTACH DATABASE 'file:/tmp/x?mode=rwc' AS x", "found an ATTACH statement"),
        ("attach database (select 'x') as y", "found an ATTACH statement"),
        ("SELECT 1; ATTACH 'x' AS y", TWO),
        ("DETACH DATABASE y", "found a DETACH statement"),
        ("DETACH y", "found a DETACH statement"),
    ],
    "extensions and files": [
        ("SELECT load_extension('x')", _fn("load_extension")),
        ("SELECT LOAD_EXTENSION('x')", _fn("load_extension")),
        ("SELECT Load_Extension('x', 'entry')", _fn("load_extension")),
        ("SELECT \"load_extension\"('x')", _fn("load_extension")),
        ("SELECT [load_extension]('x')", _fn("load_extension")),
        ("SELECT `load_extension`('x')", _fn("load_extension")),
        ("SELECT main.load_extension('x')", _fn("load_extension")),
        ("SELECT load_extension ('x')", _fn("load_extension")),
        ("SELECT load_extension/**/('x')", _fn("load_extension")),
        ("SELECT\tload_extension\t(\t'x'\t)", _fn("load_extension")),
        ("SELECT * FROM t UNION SELECT load_extension('x'), 1, 2, 3, 4", _fn("load_extension")),
        ("SELECT CASE WHEN 1 THEN load_extension('x') END", _fn("load_extension")),
        ("SELECT * FROM t ORDER BY load_extension('x')", _fn("load_extension")),
        ("SELECT * FROM t LIMIT load_extension('x')", _fn("load_extension")),
        ("SELECT (WITH a AS (SELECT load_extension('x')) SELECT * FROM a)", _fn("load_extension")),
        ("SELECT writefile('x', 'y')", _fn("writefile")),
        ("SELECT readfile('/etc/passwd')", _fn("readfile")),
        ("SELECT * FROM t WHERE device = readfile('x')", _fn("readfile")),
        ("SELECT * FROM (SELECT readfile('/etc/passwd'))", _fn("readfile")),
        ("SELECT * FROM t JOIN (SELECT writefile('x', 'y')) ON 1", _fn("writefile")),
        ("SELECT (SELECT writefile('x', device) FROM t LIMIT 1)", _fn("writefile")),
        ("SELECT edit('x')", _fn("edit")),
        ("SELECT fts3_tokenizer('simple')", _fn("fts3_tokenizer")),
        ("SELECT sqlite_compileoption_get(0)", _fn("sqlite_compileoption_get")),
        ("SELECT eval('DELETE FROM t')", _fn("eval")),
        ("SELECT * FROM fsdir('.')", _fn("fsdir")),
        # A table-valued function named as a table, its argument in a hidden column.
        ("SELECT name FROM fsdir WHERE path = '/etc'", _fn("fsdir")),
        ("SELECT * FROM main.fsdir WHERE path = '/'", _fn("fsdir")),
        ("SELECT name FROM zipfile WHERE file = 'x.zip'", _fn("zipfile")),
        ("SELECT * FROM zipfile('x.zip')", _fn("zipfile")),
        ("SELECT * FROM read_csv('x.csv')", _fn("read_csv")),
        ("SELECT * FROM read_csv_auto('/etc/passwd')", _fn("read_csv_auto")),
    ],
    "writing CTEs": [
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "found a DELETE statement"),
        ("WITH a AS (SELECT 1) INSERT INTO t (row_id) SELECT * FROM a", "found an INSERT statement"),
        ("WITH a AS (SELECT 1) UPDATE t SET value = 0", "found an UPDATE statement"),
        ("WITH a AS (SELECT 1) DELETE FROM t", "found a DELETE statement"),
        ("WITH a AS MATERIALIZED (SELECT 1) DELETE FROM t", "found a DELETE statement"),
        ("WITH d AS MATERIALIZED (DELETE FROM t RETURNING *) SELECT * FROM d", "found a DELETE statement"),
        ("WITH d AS NOT MATERIALIZED (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM d", "an INSERT statement"),
        ("WITH a AS (SELECT 1) REPLACE INTO t VALUES (1)", UNPARSABLE),
        ("WITH RECURSIVE r AS (SELECT 1 UNION ALL DELETE FROM t) SELECT * FROM r", UNPARSABLE),
        ("SELECT * FROM t WHERE row_id IN (WITH d AS (DELETE FROM t RETURNING row_id) SELECT * FROM d)", "DELETE"),
        ("WITH a AS (DESCRIBE t) SELECT * FROM a", "the WITH clause 'a' is not a query"),
    ],
    "writes": [
        ("DELETE FROM t", "found a DELETE statement"),
        ("UPDATE t SET value = 0", "found an UPDATE statement"),
        ("INSERT INTO t SELECT * FROM t", "found an INSERT statement"),
        ("INSERT OR REPLACE INTO t (row_id) VALUES (1)", "found an INSERT statement"),
        ("REPLACE INTO t (row_id) VALUES (1)", "found a REPLACE statement"),
        ("REPLACE INTO t VALUES (1)", "found a REPLACE statement"),
        ("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING", "found an INSERT statement"),
        ("INSERT INTO t VALUES (1) ON CONFLICT (row_id) DO UPDATE SET value = 0", "found an INSERT statement"),
        ("DELETE FROM t RETURNING *", "found a DELETE statement"),
        ("UPDATE t SET value = 0 RETURNING *", "found an UPDATE statement"),
        ("UPDATE sqlite_master SET sql = 'x'", "found an UPDATE statement"),
        ("SELECT * FROM (DELETE FROM t RETURNING *)", UNPARSABLE),
        ("SELECT * FROM (INSERT INTO t VALUES (1) RETURNING *)", UNPARSABLE),
        ("SELECT 1 WHERE 1 = (DELETE FROM t RETURNING 1)", UNPARSABLE),
        ("SELECT 1 UNION ALL DELETE FROM t", UNPARSABLE),
        ("TRUNCATE TABLE t", "found a TRUNCATE statement"),
        ("MERGE INTO t USING u ON 1 WHEN MATCHED THEN DELETE", "found a MERGE statement"),
        ("COPY t FROM 'x.csv'", "found a COPY statement"),
        ("LOAD DATA INFILE 'x' INTO TABLE t", UNPARSABLE),
    ],
    "schema": [
        ("CREATE TABLE x AS SELECT * FROM t", "found a CREATE statement"),
        ("CREATE TEMP TABLE x AS SELECT 1", "found a CREATE statement"),
        ("CREATE TEMPORARY TABLE x (a)", "found a CREATE statement"),
        ("CREATE TEMP VIEW v AS SELECT 1", "found a CREATE statement"),
        ("CREATE VIEW v AS SELECT * FROM t", "found a CREATE statement"),
        ("CREATE INDEX i ON t (value)", "found a CREATE statement"),
        ("CREATE VIRTUAL TABLE x USING fts5(a)", "found a CREATE statement"),
        ("CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END", TWO),
        ("DROP TABLE t", "found a DROP statement"),
        ("DROP VIEW v", "found a DROP statement"),
        ("DROP TRIGGER tr", "found a DROP statement"),
        ("DROP INDEX i", "found a DROP statement"),
        ("ALTER TABLE t ADD COLUMN x", "found an ALTER statement"),
        ("ALTER TABLE t RENAME TO u", "found an ALTER statement"),
        ("VACUUM", "found a VACUUM statement"),
        ("vacuum", "found a VACUUM statement"),
        ("VACUUM INTO 'file.db'", "found a VACUUM statement"),
        ("VACUUM main INTO '/tmp/copy.db'", "found a VACUUM statement"),
        ("REINDEX", NOT_SELECT),
        ("REINDEX t", NOT_SELECT),
        ("ANALYZE", "found an ANALYZE statement"),
        ("ANALYZE t", "found an ANALYZE statement"),
    ],
    "select into": [
        ("SELECT * INTO x FROM t", "found an INTO clause"),
        ("select * into temp x from t", "found an INTO clause"),
        ("SELECT 1 INTO @x", "found an INTO clause"),
        ("SELECT * INTO OUTFILE '/tmp/x' FROM t", UNPARSABLE),
        ("SELECT * FROM t INTO OUTFILE '/tmp/x'", UNPARSABLE),
        ("SELECT * FROM t INTO DUMPFILE '/tmp/x'", UNPARSABLE),
        ("SELECT * FROM t FOR UPDATE", "FOR UPDATE"),
        ("SELECT * FROM t FOR SHARE", "FOR UPDATE"),
    ],
    "not a select": [
        ("(SELECT 1)", "wrapped in parentheses"),
        ("VALUES (1)", NOT_SELECT),
        ("TABLE t", NOT_SELECT),
        ("DESCRIBE t", NOT_SELECT),
        ("SHOW TABLES", "found a SHOW statement"),
        ("EXPLAIN SELECT 1", "found an EXPLAIN statement"),
        ("EXPLAIN QUERY PLAN SELECT 1", "found an EXPLAIN statement"),
        ("EXPLAIN DELETE FROM t", "found an EXPLAIN statement"),
        ("SET x = 1", "found a SET statement"),
        ("USE db", "found a USE statement"),
        ("CALL p()", "found a CALL statement"),
        ("LOAD 'x.so'", "found a LOAD statement"),
        ("INSTALL httpfs", NOT_SELECT),
    ],
    "odd unicode": [
        ("SELECT 1\uff1b DELETE FROM t", UNPARSABLE),  # full-width semicolon
        ("SELECT 1\u037e DELETE FROM t", UNPARSABLE),  # Greek question mark
        ("SELECT 1\ufe54 DELETE FROM t", UNPARSABLE),  # small semicolon
        ("SELECT 1\u00a0; DELETE FROM t", TWO),  # non-breaking space
        ("SELECT 1\u2028;\u3000DELETE FROM t", TWO),  # line separator, ideographic space
        ("SELECT 1;\u200bDELETE FROM t", UNPARSABLE),  # zero-width space
        ("DEL\u200bETE FROM t", UNPARSABLE),
        ("SELECT 1; DEL\u200dETE FROM t", UNPARSABLE),  # zero-width joiner
        ("SELECT 1; D\u0415LETE FROM t", UNPARSABLE),  # Cyrillic capital IE for E
        ("\u0405ELECT 1; DELETE FROM t", UNPARSABLE),  # Cyrillic DZE for S
        ("SELECT 1; \uff24\uff25\uff2c\uff25\uff34\uff25 FROM t", UNPARSABLE),  # full-width DELETE
        ("SELECT 1\x00; DELETE FROM t", TWO),
        ("\x00DELETE FROM t", UNPARSABLE),
        ("\ufeffDELETE FROM t", UNPARSABLE),  # byte order mark
        ("\ufeffSELECT 1; DELETE FROM t", UNPARSABLE),
        ("\u202eDELETE FROM t", UNPARSABLE),  # right-to-left override
        ("SELECT 1;\u200fDELETE FROM t", UNPARSABLE),  # right-to-left mark
        ("SELECT 1 \u202e; DELETE FROM t \u202c", TWO),
    ],
    "quoting": [
        ("SELECT `x`; DELETE FROM t", TWO),
        ("SELECT [x]; DELETE FROM t", TWO),
        ("SELECT [a;b]; DELETE FROM [t]", TWO),
        ('SELECT "a"""; DELETE FROM t', TWO),
        ("SELECT 'a'''; DELETE FROM t; --'", TWO),
        ("SELECT 'it''s'; DELETE FROM t", TWO),
        ('DELETE FROM "t"', "found a DELETE statement"),
        ("DELETE FROM [t]", "found a DELETE statement"),
        ("DELETE FROM `t`", "found a DELETE statement"),
        ("`DELETE` FROM t", UNPARSABLE),
        ("SELECT E'\\'; DELETE FROM t; --'", TWO),  # one PostgreSQL escape string, two statements here
        ("SELECT $$; DELETE FROM t; $$", "found 3 statements"),  # PostgreSQL dollar quotes
        ("SELECT $tag$ x $tag$; DELETE FROM t", UNPARSABLE),
        ("SELECT N'x'; DELETE FROM t", TWO),
        ("SELECT 'never closed", UNPARSABLE),
        ('SELECT "never closed', UNPARSABLE),
        ("SELECT [never closed", UNPARSABLE),
        ("SELECT `never closed", UNPARSABLE),
    ],
    "case and whitespace": [
        ("dElEtE fRoM t WHERE 1", "found a DELETE statement"),
        ("sElEcT 1; InSeRt InTo t VaLuEs (1)", TWO),
        ("\tDELETE\tFROM\tt", "found a DELETE statement"),
        ("\x0cPRAGMA\x0cwritable_schema=1", "found a PRAGMA statement"),
        ("\x0bATTACH\x0b'x'\x0bAS\x0by", "found an ATTACH statement"),
        ("SELECT 1\v;\fDELETE FROM t", TWO),
        ("SELECT 1 \x0b; DELETE FROM t", TWO),
        ("SELECT\x0c1;\x0cDELETE\x0cFROM\x0ct", TWO),
        ("SELECT\r1;\rDELETE FROM t", TWO),
        ("SELECT\r\n1\r\n;\r\nDROP TABLE t", TWO),
        ("SELECT\n\n1\n;\n\nDELETE\nFROM\nt", TWO),
        ("insert/**/into/**/t/**/values(1)", "found an INSERT statement"),
    ],
    "hex and blob literals": [
        ("SELECT X'00'; DELETE FROM t", TWO),
        ("SELECT x'4142'; ATTACH 'x' AS y", TWO),
        ("SELECT 0x41; DELETE FROM t", TWO),
        ("SELECT load_extension(X'2F746D702F78')", _fn("load_extension")),
        ("SELECT load_extension(CAST(X'2F746D702F78' AS TEXT))", _fn("load_extension")),
        ("SELECT eval(CAST(X'44454C4554452046524F4D2074' AS TEXT))", _fn("eval")),
        ("SELECT writefile('/tmp/x', X'00')", _fn("writefile")),
        ("SELECT fts3_tokenizer('simple', X'0000000000000000')", _fn("fts3_tokenizer")),
        ("SELECT X'3B'; DELETE FROM t", TWO),
    ],
    "size": [
        # The `sql` tool's input schema takes at most 20,000 characters: all but the last stay
        # under it, so that through the server too they reach the guard.
        ("SELECT " + "(" * 2000 + "1" + ")" * 2000, TOO_DEEP),
        ("SELECT " + "abs(" * 500 + "1" + ")" * 500, TOO_DEEP),
        ("SELECT " + "(SELECT " * 300 + "1" + ")" * 300, TOO_DEEP),
        ("SELECT 1" + " " * 19_000 + "; DELETE FROM t", TWO),
        ("SELECT '" + "x" * 19_000 + "'; DELETE FROM t", TWO),
        ("/*" + "x" * 19_000 + "*/ DELETE FROM t", "found a DELETE statement"),
        ("SELECT 1 " + "UNION ALL SELECT 1 " * 1_000 + "; DELETE FROM t", TWO),
        ("SELECT 1;" * 2_000 + " DELETE FROM t", "found 2001 statements"),
        ("SELECT " + ", ".join(["1"] * 6_000) + " FROM t WHERE load_extension('x')", _fn("load_extension")),
        ("SELECT 1" + " " * 200_000 + "; DELETE FROM t", TWO),
    ],
}

BYPASSES: list[Bypass] = [
    Bypass(category, sql, fragment) for category, entries in CORPUS.items() for sql, fragment in entries
]
