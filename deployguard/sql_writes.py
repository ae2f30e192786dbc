"""What a SQL statement writes: the (verb, table) pairs of one tokenizer, for every question of it.

The write guard asks it of every statement a connection runs, and the write-path audit of every
SQL string it finds in the source: one answer to "does this SQL write, and to what?". Comments
and literals are dropped before anything is judged, so a word inside them never counts; a write
whose table cannot be named is a write to UNKNOWN_TABLE. In source text, UNKNOWN_PART stands for
a part of the string only known when the code runs (an f-string's value): it reads as part of a
name, so a table named by one is unknown too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

UNKNOWN_TABLE = "?"
"""The target of a write whose table cannot be told from its SQL: protected."""

UNKNOWN_PART = "\x00"
"""A part of a SQL string that is not known statically: part of whatever name it is in."""


# A statement can only write if one of these words appears outside quotes; anything else
# is classified without tokenizing.
_MAYBE_WRITE = re.compile(
    r"\b(?:insert|update|delete|replace|merge|copy|truncate|create|alter|drop|comment|do|call|execute"
    r"|prepare|refresh|into)\b",
    re.IGNORECASE,
)
_TOKENS = re.compile(
    r"""
      (?P<skip>(?:%s|%\(\w+\)s|\d|[^\w"'`$;/\x00-]|/(?!\*)|-(?!-))+)  # spaces, punctuation, numbers, %s
    | --[^\n]*                                                # line comment
    | /\*.*?(?:\*/|\Z)                                        # block comment
    | [Ee]'(?:[^'\\]|\\.|'')*(?:'|\Z)                         # PostgreSQL E'' string: \' escapes
    | '(?:[^']|'')*(?:'|\Z)                                   # string literal
    | \$(?P<tag>[A-Za-z_]*)\$.*?(?:\$(?P=tag)\$|\Z)           # dollar-quoted string
    | (?P<quoted>"(?:[^"]|"")*"|`[^`]*`)                      # quoted identifier
    | (?P<word>[A-Za-z_\x00][\w$\x00]*)                       # keyword or identifier; \x00: UNKNOWN_PART
    | (?P<semi>;)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
DDL_VERBS = frozenset({"CREATE", "ALTER", "DROP", "COMMENT"})
_OPAQUE = frozenset({"DO", "CALL", "EXECUTE", "PREPARE"})  # bodies not visible here, or not parsed
_TABLE_OBJECTS = frozenset({"TABLE", "VIEW", "SEQUENCE", "INDEX", "TRIGGER", "RULE", "POLICY"})
_DDL_MODIFIERS = frozenset(
    {"OR", "REPLACE", "TEMP", "TEMPORARY", "UNLOGGED", "GLOBAL", "LOCAL", "UNIQUE", "MATERIALIZED",
     "RECURSIVE", "FOREIGN", "CONSTRAINT", "VIRTUAL"}
)  # fmt: skip
_NAME_NOISE = frozenset({"IF", "NOT", "EXISTS", "ONLY", "CONCURRENTLY", "TABLE"})
_NOT_A_WRITE_BEFORE_UPDATE = frozenset({"FOR", "DO", "ON", "KEY"})

Token = tuple[str, str]  # ("word", "INSERT") keyword/identifier upper-cased, ("name", "x"), ("sym", ";")


def tokenize(sql: str) -> list[list[Token]]:
    """Split into statements of significant tokens; comments and literals are dropped."""
    statements: list[list[Token]] = [[]]
    for match in _TOKENS.finditer(sql):
        kind = match.lastgroup
        if kind == "word":
            text = match.group("word")
            statements[-1].append(("word", text.upper()))
        elif kind == "quoted":
            statements[-1].append(("name", match.group("quoted")[1:-1].replace('""', '"')))
        elif kind == "semi":
            statements.append([])
        elif kind == "other":
            statements[-1].append(("sym", match.group("other")))
        elif kind == "skip":
            gap = match.group("skip")
            if "." in gap:  # schema.table
                statements[-1].append(("sym", "."))
            if "," in gap:  # DROP TABLE a, b
                statements[-1].append(("sym", ","))
    return [statement for statement in statements if statement]


def _name_at(tokens: list[Token], index: int) -> tuple[str, int]:
    """Read a possibly schema-qualified name starting at `index`: (last part, next index)."""
    name = UNKNOWN_TABLE
    while index < len(tokens) and tokens[index][0] in ("word", "name"):
        name = tokens[index][1]
        if index + 1 < len(tokens) and tokens[index + 1] == ("sym", "."):
            index += 2
            continue
        index += 1
        break
    return name.lower(), index


def _skip(tokens: list[Token], index: int, words: frozenset[str]) -> int:
    while index < len(tokens) and tokens[index][0] == "word" and tokens[index][1] in words:
        index += 1
    return index


def _word(tokens: list[Token], index: int) -> str:
    return tokens[index][1] if 0 <= index < len(tokens) and tokens[index][0] == "word" else ""


def _ddl_targets(tokens: list[Token], first: int) -> Iterator[tuple[str, str]]:
    verb = tokens[first][1]
    index = _skip(tokens, first + 1, _DDL_MODIFIERS)
    if verb == "COMMENT":  # COMMENT ON TABLE t (ON COLUMN and the rest: unknown, so protected)
        index = _skip(tokens, index, frozenset({"ON"}))
    object_type = _word(tokens, index)
    if object_type == "DATABASE":
        # CREATE/DROP DATABASE work on whole databases from a maintenance connection (test
        # databases, for one); they change no table's rows, and the state may not exist yet.
        return
    if object_type not in _TABLE_OBJECTS:
        yield verb, UNKNOWN_TABLE  # functions, extensions, schemas...: cannot tell, so protected
        return
    index = _skip(tokens, index + 1, _NAME_NOISE)
    if object_type in ("INDEX", "TRIGGER", "RULE", "POLICY") and verb == "CREATE":
        # CREATE INDEX [name] ON [ONLY] table: the table is what changes.
        while index < len(tokens) and _word(tokens, index) != "ON":
            index += 1
        table, _ = _name_at(tokens, _skip(tokens, index + 1, _NAME_NOISE))
        yield verb, table
        return
    while True:  # DROP TABLE a, b
        table, index = _name_at(tokens, index)
        yield verb, table
        if verb == "DROP" and index < len(tokens) and tokens[index] == ("sym", ","):
            index += 1
            continue
        break
    if verb == "ALTER":  # ALTER TABLE x RENAME TO y: y is written too
        for position in range(index, len(tokens) - 1):
            if _word(tokens, position) == "RENAME" and _word(tokens, position + 1) == "TO":
                yield verb, _name_at(tokens, position + 2)[0]


def _statement_writes(tokens: list[Token]) -> Iterator[tuple[str, str]]:
    first = _skip_parentheses(tokens)
    leading = _word(tokens, first)
    if leading in DDL_VERBS:
        yield from _ddl_targets(tokens, first)
        return
    if leading in _OPAQUE:
        yield leading, UNKNOWN_TABLE
        return
    if leading == "REFRESH":  # REFRESH MATERIALIZED VIEW [CONCURRENTLY] name
        index = _skip(tokens, first + 1, frozenset({"MATERIALIZED", "VIEW", "CONCURRENTLY"}))
        yield leading, _name_at(tokens, index)[0]
        return
    if leading == "SELECT":  # SELECT ... INTO [TEMP] [TABLE] new_table creates a table
        for index in range(first + 1, len(tokens)):
            if _word(tokens, index) == "INTO":
                target = _skip(tokens, index + 1, frozenset({"TEMP", "TEMPORARY", "UNLOGGED", "TABLE"}))
                yield "SELECT INTO", _name_at(tokens, target)[0]
                return
    for index, (kind, value) in enumerate(tokens):
        if kind != "word":
            continue
        if value == "INSERT":
            target = _skip(
                tokens, index + 1, frozenset({"OR", "ROLLBACK", "ABORT", "REPLACE", "FAIL", "IGNORE"})
            )
            if _word(tokens, target) == "INTO":
                yield value, _name_at(tokens, target + 1)[0]
        elif value in ("REPLACE", "MERGE") and _word(tokens, index + 1) == "INTO":
            if value == "MERGE" or _word(tokens, index - 1) not in ("OR",):
                yield value, _name_at(tokens, index + 2)[0]
        elif value == "UPDATE" and _word(tokens, index - 1) not in _NOT_A_WRITE_BEFORE_UPDATE:
            target = _skip(
                tokens, index + 1, frozenset({"OR", "ROLLBACK", "ABORT", "REPLACE", "FAIL", "IGNORE", "ONLY"})
            )
            if target < len(tokens) and tokens[target][0] in ("word", "name"):
                yield value, _name_at(tokens, target)[0]
        elif value == "DELETE" and _word(tokens, index + 1) == "FROM":
            yield value, _name_at(tokens, _skip(tokens, index + 2, frozenset({"ONLY"})))[0]
        elif value == "TRUNCATE" and index == first:
            position = _skip(tokens, index + 1, frozenset({"TABLE", "ONLY"}))
            while True:
                table, position = _name_at(tokens, position)
                yield value, table
                if position < len(tokens) and tokens[position] == ("sym", ","):
                    position = _skip(tokens, position + 1, frozenset({"ONLY"}))
                    continue
                break
        elif value == "COPY" and index == first:
            table, position = _name_at(tokens, index + 1)
            # COPY t [(columns)] FROM ... loads rows; COPY t TO / COPY (query) TO only reads.
            if (
                any(_word(tokens, p) == "FROM" for p in range(position, len(tokens)))
                and table != UNKNOWN_TABLE
            ):
                yield value, table


def _skip_parentheses(tokens: list[Token]) -> int:
    index = 0
    while index < len(tokens) and tokens[index] == ("sym", "("):
        index += 1
    return index


@lru_cache(maxsize=2048)
def _classify_cached(sql: str) -> tuple[tuple[str, str], ...]:
    return _classify(sql)


# A single SELECT: starts with the word SELECT (no comment before it: PostgreSQL block
# comments nest, so what follows one cannot be judged without parsing), has no ";" anywhere
# (so no second statement, even one hidden by quotes), and no "into" anywhere (SELECT ... INTO
# creates a table). Data-modifying WITH clauses are allowed at top level only, and this
# statement starts with SELECT, so it cannot hold one. Checked with string methods only.
_SELECT_PREFIX = re.compile(r"\s*select\b", re.IGNORECASE)


def _is_plain_select(sql: str) -> bool:
    return _SELECT_PREFIX.match(sql) is not None and ";" not in sql and "into" not in sql.lower()


def _classify(sql: str) -> tuple[tuple[str, str], ...]:
    if _is_plain_select(sql) or not _MAYBE_WRITE.search(sql):
        return ()
    writes: list[tuple[str, str]] = []
    for statement in tokenize(sql):
        writes.extend(_statement_writes(statement))
    return tuple(dict.fromkeys(writes))


def write_targets(sql: Any) -> tuple[tuple[str, str], ...]:
    """The (verb, table) pairs a statement writes to; empty for a read. Tables are lower case."""
    if not isinstance(sql, str):
        sql = _as_text(sql)
        if sql is None:
            return (("EXECUTE", UNKNOWN_TABLE),)
    if len(sql) > 4096:  # bulk statements: not worth keeping in the cache
        return _classify(sql)
    return _classify_cached(sql)


def _as_text(sql: Any) -> str | None:
    if isinstance(sql, bytes | bytearray):
        return bytes(sql).decode("utf-8", "replace")
    as_string = getattr(sql, "as_string", None)  # psycopg.sql.Composable
    if as_string is not None:
        try:
            return str(as_string(None))
        except Exception:  # an unrenderable statement is treated as an unknown write
            return None
    return None


SCHEMA_VERBS = DDL_VERBS | {"SELECT INTO"}
"""Verbs that change the schema (SELECT ... INTO creates a table) rather than rows."""


def is_schema_change(verb: str) -> bool:
    return verb in SCHEMA_VERBS
