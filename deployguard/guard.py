"""The write guard: an execute wrapper on every Django connection that refuses writes in deploy mode.

Each statement is classified once (the result is cached by its SQL text); only a
statement that writes to a protected table asks whether deploy mode is on, so reads
never pay a query for the guard.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from django.apps import apps
from django.core.signals import setting_changed
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

from deployguard import conf, freeze, state
from deployguard.exceptions import DeployModeActive

logger = logging.getLogger("deployguard")

UNKNOWN_TABLE = "?"
"""The target of a write whose table cannot be told from its SQL: protected."""

REASON_REQUIRED = "allow_writes() needs a reason: it is logged with every block it opens."

# A statement can only write if one of these words appears outside quotes; anything else
# is classified without tokenizing.
_MAYBE_WRITE = re.compile(
    r"\b(?:insert|update|delete|replace|merge|copy|truncate|create|alter|drop|comment|do|call|execute"
    r"|prepare|refresh|into)\b",
    re.IGNORECASE,
)
_TOKENS = re.compile(
    r"""
      (?P<skip>(?:%s|%\(\w+\)s|\d|[^\w"'`$;/-]|/(?!\*)|-(?!-))+)  # spaces, punctuation, numbers, placeholders
    | --[^\n]*                                                # line comment
    | /\*.*?(?:\*/|\Z)                                        # block comment
    | [Ee]'(?:[^'\\]|\\.|'')*(?:'|\Z)                         # PostgreSQL E'' string: \' escapes
    | '(?:[^']|'')*(?:'|\Z)                                   # string literal
    | \$(?P<tag>[A-Za-z_]*)\$.*?(?:\$(?P=tag)\$|\Z)           # dollar-quoted string
    | (?P<quoted>"(?:[^"]|"")*"|`[^`]*`)                      # quoted identifier
    | (?P<word>[A-Za-z_][\w$]*)                               # keyword or identifier
    | (?P<semi>;)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_DDL = frozenset({"CREATE", "ALTER", "DROP", "COMMENT"})
_OPAQUE = frozenset({"DO", "CALL", "EXECUTE", "PREPARE"})  # bodies not visible here, or not parsed
_TABLE_OBJECTS = frozenset({"TABLE", "VIEW", "SEQUENCE", "INDEX", "TRIGGER", "RULE", "POLICY"})
_DDL_MODIFIERS = frozenset(
    {"OR", "REPLACE", "TEMP", "TEMPORARY", "UNLOGGED", "GLOBAL", "LOCAL", "UNIQUE", "MATERIALIZED",
     "RECURSIVE", "FOREIGN", "CONSTRAINT", "VIRTUAL"}
)  # fmt: skip
_NAME_NOISE = frozenset({"IF", "NOT", "EXISTS", "ONLY", "CONCURRENTLY", "TABLE"})
_NOT_A_WRITE_BEFORE_UPDATE = frozenset({"FOR", "DO", "ON", "KEY"})

Token = tuple[str, str]  # ("word", "INSERT") keyword/identifier upper-cased, ("name", "x"), ("sym", ";")


def _tokenize(sql: str) -> list[list[Token]]:
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
    if leading in _DDL:
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
    for statement in _tokenize(sql):
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


# --- which tables are protected -------------------------------------------------------


@lru_cache(maxsize=1)
def _exempt() -> tuple[frozenset[str], tuple[str, ...]]:
    own = apps.get_app_config("deployguard")
    tables = {model._meta.db_table.lower() for model in own.get_models(include_auto_created=True)}
    tables |= {name.lower() for name in conf.get("DEPLOYGUARD_WRITABLE_TABLES")}
    # Index, sequence and constraint names (and tables not yet created) of deployguard's own.
    prefixes = (f"{own.label.lower()}_",)
    return frozenset(tables), prefixes


_protected: dict[str, bool] = {}


def is_protected(table: str) -> bool:
    known = _protected.get(table)
    if known is None:
        known = _protected[table] = _is_protected(table)
    return known


def _is_protected(table: str) -> bool:
    if table == UNKNOWN_TABLE:
        return True
    tables, prefixes = _exempt()
    name = table.removeprefix("new__")  # SQLite rebuilds a table as new__<name> when altering it
    return name not in tables and not name.startswith(prefixes)


SWITCH_TABLES = frozenset({"deployguard_deploymodestate", "deployguard_historicaldeploymodestate"})
"""The deploy-mode switch and its history: deployguard's, but written in deploy mode only by
state.enable() and state.disable(). Not in protected_tables(): backups leave them alone."""


def _refused(table: str) -> bool:
    """Whether a write to `table` needs deploy mode off (allowances aside)."""
    if table in SWITCH_TABLES:
        return not state.switch_writes_allowed()
    return is_protected(table)


def protected_tables(tables: Iterable[str]) -> set[str]:
    return {table for table in tables if is_protected(table.lower())}


def _reset_caches(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("DEPLOYGUARD_"):
        _exempt.cache_clear()
        _protected.clear()
        _checks.clear()
        state.clear_cache()


# --- the way through --------------------------------------------------------------------

_allowed: ContextVar[str | None] = ContextVar("deployguard_allow_writes", default=None)


@contextmanager
def allow_writes(reason: str) -> Iterator[None]:
    """Let this block write while deploy mode is on (this thread or task only). Logged.

    For the deploy pipeline's own bookkeeping and schema changes; not inherited by threads
    the block starts.
    """
    if not reason or not reason.strip():
        raise ValueError(REASON_REQUIRED)
    logger.warning("Writes allowed through deploy mode: %s", reason)
    token = _allowed.set(reason)
    try:
        yield
    finally:
        _allowed.reset(token)
        logger.info("Writes allowed through deploy mode: done: %s", reason)


def writes_allowed() -> bool:
    """True inside an `allow_writes()` block."""
    return _allowed.get() is not None


# --- the narrower way through, for `migrate` during a deploy -------------------------------

DDL_VERBS = frozenset(_DDL)
DEFAULT_MIGRATE_WRITABLE_TABLES = ("django_migrations", "django_content_type", "auth_permission")
SCHEMA_CHANGES_VARIABLE = "DEPLOYGUARD_SCHEMA_CHANGES"
"""Set by deploy_safe in its migrate subprocess; deployguard's ready() reads it."""
REFUSALS_REPORT_VARIABLE = "DEPLOYGUARD_REFUSALS_REPORT"
"""The file where deploy_safe's migrate subprocess reports every write the guard refuses."""

_schema_allowed: ContextVar[str | None] = ContextVar("deployguard_allow_schema_changes", default=None)
_process_schema_reason: str | None = None


def migrate_writable_tables() -> frozenset[str]:
    """Bookkeeping tables `migrate` writes rows into: DEPLOYGUARD_MIGRATE_WRITABLE_TABLES."""
    from django.conf import settings

    names = getattr(settings, "DEPLOYGUARD_MIGRATE_WRITABLE_TABLES", DEFAULT_MIGRATE_WRITABLE_TABLES)
    return frozenset(name.lower() for name in names)


def _schema_change_allowed(verb: str, table: str) -> bool:
    """What `allow_schema_changes` lets through: DDL on any table, rows of the bookkeeping
    tables, and the copy into SQLite's `new__<table>` when it rebuilds a table."""
    if verb in DDL_VERBS and table != UNKNOWN_TABLE:
        return True
    if verb == "INSERT" and table.startswith("new__"):
        return True
    return table in migrate_writable_tables()


@contextmanager
def allow_schema_changes(reason: str) -> Iterator[None]:
    """Let this block change the schema (not the data) while deploy mode is on. Logged.

    DDL passes on any table, and DML on the bookkeeping tables only; every other write to a
    protected table is still refused. For `migrate` during a deploy.
    """
    if not reason or not reason.strip():
        raise ValueError(REASON_REQUIRED)
    logger.warning("Schema changes allowed through deploy mode: %s", reason)
    token = _schema_allowed.set(reason)
    try:
        yield
    finally:
        _schema_allowed.reset(token)


def allow_schema_changes_for_process(reason: str) -> None:
    """`allow_schema_changes` for the whole process: deploy_safe's migrate subprocess."""
    global _process_schema_reason
    if not reason or not reason.strip():
        raise ValueError(REASON_REQUIRED)
    logger.warning("Schema changes allowed through deploy mode for this process: %s", reason)
    _process_schema_reason = reason


def schema_changes_allowed() -> bool:
    return _schema_allowed.get() is not None or _process_schema_reason is not None


# --- the wrapper --------------------------------------------------------------------------

refusal_listeners: list[Callable[[DeployModeActive], None]] = []
"""Called with each refusal before it is raised, so a refusal the writing code catches and
swallows is still seen: deploy_safe's migrate subprocess reports every one."""


# What the wrapper must judge in each statement, by its SQL text: (verb, table, whether the table
# is the switch) for each write whose table is protected or is the switch, in order. Empty for a
# read and for a write to unprotected tables only, which then pass after one dict lookup. Which
# tables are protected depends on settings, so _reset_caches() empties it with _protected; it is
# emptied too when it fills up.
_checks: dict[str, tuple[tuple[str, str, bool], ...]] = {}
_CHECKS_LIMIT = 4096


def _checks_for(sql: Any) -> tuple[tuple[str, str, bool], ...]:
    checks = tuple(
        (verb, table, table in SWITCH_TABLES)
        for verb, table in write_targets(sql)
        if table in SWITCH_TABLES or is_protected(table)
    )
    if isinstance(sql, str) and len(sql) <= 4096:  # bulk statements: not worth keeping
        if len(_checks) >= _CHECKS_LIMIT:
            _checks.clear()
        _checks[sql] = checks
    return checks


class WriteGuard:
    """Django execute wrapper: refuses writes to protected tables while deploy mode is on."""

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: Any,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        # Runs for every statement: the common paths (a read; a write with deploy mode off)
        # take as few steps as they can.
        try:
            checks = _checks[sql]
        except (KeyError, TypeError):  # not seen yet; or not a str (bytes, psycopg.sql)
            checks = _checks_for(sql)
        if not checks:
            return execute(sql, params, many, context)
        if _allowed.get() is not None:
            if context["connection"].vendor == "postgresql":
                # Let it through the database's trigger too (deployguard.freeze), for this statement.
                raw = context["cursor"].cursor
                return freeze.run_allowed(raw, lambda: execute(sql, params, many, context))
            return execute(sql, params, many, context)
        if _schema_allowed.get() is None and _process_schema_reason is None and not checks[0][2]:
            verb, table, _ = checks[0]  # a protected table, no allowance: refused if deploy mode is on
        else:
            refused = _first_refused(checks)
            if refused is None:
                return execute(sql, params, many, context)
            verb, table = refused
        status = state.current()
        if status.enabled:
            raise _refusal(verb, table, status)
        # Hand the state just read to SQLite's authorizer, which may not read it itself.
        judged = getattr(context["connection"], JUDGED_ATTRIBUTE, None)
        if judged is not None:
            previous = judged[0]
            judged[0] = status
        try:
            return execute(sql, params, many, context)
        except DatabaseError as error:
            # The state this process trusted said off; the database's freeze says on.
            if freeze.is_refusal(error):
                raise _refused_by_database(verb, table, context["connection"]) from error
            raise
        finally:
            if judged is not None:
                judged[0] = previous


def _first_refused(checks: tuple[tuple[str, str, bool], ...]) -> tuple[str, str] | None:
    """The first write that needs deploy mode off, the allowances in force considered."""
    schema_only = schema_changes_allowed()
    for verb, table, switch in checks:
        if switch and state.switch_writes_allowed():
            continue
        if schema_only and _schema_change_allowed(verb, table):
            continue
        return verb, table
    return None


def _refused_by_database(verb: str, table: str, connection: BaseDatabaseWrapper) -> DeployModeActive:
    """PostgreSQL's trigger refused a write this process let through on a cached "off": the
    same refusal the guard raises, so callers (the middleware's 503) see no difference."""
    state.clear_cache()
    status = state.DeployModeStatus(enabled=True, source="database", reason="refused by the database")
    if not connection.in_atomic_block:  # else the transaction is aborted: no query now
        with contextlib.suppress(DatabaseError):
            status = state.current()
    return _refusal(verb, table, status)


def _refusal(verb: str, table: str, status: state.DeployModeStatus) -> DeployModeActive:
    """The refusal of `verb` on `table`, told to the listeners before it is raised."""
    where = "a table it could not name" if table == UNKNOWN_TABLE else f'"{table}"'
    refusal = DeployModeActive(f"{verb} on {where}", status)
    for listener in refusal_listeners:
        listener(refusal)
    return refusal


# --- SQLite: the same rules below Django, for SQL that never reaches the wrapper ------------
#
# cursor.executescript() and the raw sqlite3 connection go straight to SQLite. Its authorizer
# is asked about every action while a statement is prepared, so it sees those too. It runs
# inside sqlite3_prepare: it must not use the connection (no state query), so it judges on
# the state the wrapper just read, else on the state this process may still trust, else it
# refuses (fail closed). SQLite reports a refusal as "not authorized".
# The wrapper hands the state over in a one-item list kept on the Django connection (a
# ContextVar set and reset per statement cost ~1.5% of an ORM insert): the authorizer runs
# inside that execute, on that connection. Should another thread share the connection, what it
# finds there is still a state this process read a moment ago, or nothing: then it falls back
# to the cache as above, so never a laxer verdict.
# Not covered: a statement sqlite3 had already prepared and cached while deploy mode was off,
# re-run with the same text through the raw connection (Django's cursor is still guarded).

JUDGED_ATTRIBUTE = "deployguard_judged"
Judged = list[state.DeployModeStatus | None]


@lru_cache(maxsize=1)
def _sqlite_write_actions() -> dict[int, tuple[str, int]]:
    """Action code -> (verb, which argument holds the table: 1 or 2). Built once per process."""
    import sqlite3

    codes = {
        "SQLITE_INSERT": ("INSERT", 1),
        "SQLITE_UPDATE": ("UPDATE", 1),
        "SQLITE_DELETE": ("DELETE", 1),
        "SQLITE_CREATE_TABLE": ("CREATE", 1),
        "SQLITE_CREATE_TEMP_TABLE": ("CREATE", 1),
        "SQLITE_CREATE_VIEW": ("CREATE", 1),
        "SQLITE_CREATE_TEMP_VIEW": ("CREATE", 1),
        "SQLITE_CREATE_VTABLE": ("CREATE", 1),
        "SQLITE_CREATE_INDEX": ("CREATE", 2),
        "SQLITE_CREATE_TEMP_INDEX": ("CREATE", 2),
        "SQLITE_CREATE_TRIGGER": ("CREATE", 2),
        "SQLITE_CREATE_TEMP_TRIGGER": ("CREATE", 2),
        "SQLITE_DROP_TABLE": ("DROP", 1),
        "SQLITE_DROP_TEMP_TABLE": ("DROP", 1),
        "SQLITE_DROP_VIEW": ("DROP", 1),
        "SQLITE_DROP_TEMP_VIEW": ("DROP", 1),
        "SQLITE_DROP_VTABLE": ("DROP", 1),
        "SQLITE_DROP_INDEX": ("DROP", 2),
        "SQLITE_DROP_TEMP_INDEX": ("DROP", 2),
        "SQLITE_DROP_TRIGGER": ("DROP", 2),
        "SQLITE_DROP_TEMP_TRIGGER": ("DROP", 2),
        "SQLITE_ALTER_TABLE": ("ALTER", 2),
    }
    return {getattr(sqlite3, name): verb_and_arg for name, verb_and_arg in codes.items()}


@lru_cache(maxsize=1)
def _sqlite_drops_that_delete() -> frozenset[int]:
    """DROP TABLE t (and DROP VIEW) asks next for DELETE on t: that DELETE is part of the drop."""
    import sqlite3

    return frozenset(
        {sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_DROP_TEMP_TABLE, sqlite3.SQLITE_DROP_VIEW,
         sqlite3.SQLITE_DROP_TEMP_VIEW}
    )  # fmt: skip


def _sqlite_authorizer(
    judged: Judged | None = None,
) -> Callable[[int, str | None, str | None, str | None, str | None], int]:
    """A new authorizer for one raw connection (it remembers the DROP it is in the middle of);
    `judged` is where the wrapper hands it the state it has just read."""
    import sqlite3

    write_actions = _sqlite_write_actions()
    drops_that_delete = _sqlite_drops_that_delete()
    ok, deny = sqlite3.SQLITE_OK, sqlite3.SQLITE_DENY
    dropping: list[str] = [""]
    if judged is None:
        judged = [None]

    def authorize(
        action: int, arg1: str | None, arg2: str | None, database: str | None, source: str | None
    ) -> int:
        # SQLite asks about every action while it prepares a statement (each column read
        # included): every action that is not a write returns after one dict lookup.
        found = write_actions.get(action)
        if found is None or _allowed.get() is not None:
            return ok
        verb, position = found
        table = ((arg1 if position == 1 else arg2) or UNKNOWN_TABLE).lower()
        if table.startswith("sqlite_"):  # SQLite's own schema and sequence rows
            return ok
        if verb == "DELETE" and table == dropping[0]:
            verb = "DROP"
        dropping[0] = table if action in drops_that_delete else ""
        if not _refused(table) or (schema_changes_allowed() and _schema_change_allowed(verb, table)):
            return ok
        status = judged[0] or state.cached()
        if status is None or status.enabled:
            logger.error("SQLite refused %s on %s: deploy mode is on or unknown", verb, table)
            return deny
        return ok

    return authorize


def _install_sqlite_authorizer(connection: BaseDatabaseWrapper) -> None:
    # Once per raw connection (connection_created); setting it again only replaces it. Every
    # raw connection of one Django connection shares that connection's hand-over list.
    if connection.connection is not None:
        judged = getattr(connection, JUDGED_ATTRIBUTE, None)
        if judged is None:
            judged = [None]
            setattr(connection, JUDGED_ATTRIBUTE, judged)
        connection.connection.set_authorizer(_sqlite_authorizer(judged))
        # What the database's freeze triggers ask (deployguard.freeze): is this write allowed?
        connection.connection.create_function(freeze.SQLITE_FUNCTION, 0, _writes_allowed)


def _writes_allowed() -> int:
    return 1 if _allowed.get() is not None else 0


@contextmanager
def switch_ddl() -> Iterator[None]:
    """The database freeze's own DDL (its triggers) passes SQLite's authorizer: part of the
    switch, like the state row, so not logged as an allowance."""
    token = _allowed.set("the deploy-mode switch's triggers")
    try:
        yield
    finally:
        _allowed.reset(token)


write_guard = WriteGuard()


def install(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """Put the guard on a connection (idempotent): the connection_created receiver."""
    if write_guard not in connection.execute_wrappers:
        connection.execute_wrappers.append(write_guard)
    if connection.vendor == "sqlite":
        _install_sqlite_authorizer(connection)


def is_installed(connection: BaseDatabaseWrapper) -> bool:
    return write_guard in connection.execute_wrappers


def connect_receivers() -> None:
    connection_created.connect(install, dispatch_uid="deployguard.guard.install")
    setting_changed.connect(_reset_caches, dispatch_uid="deployguard.guard.reset")
    for alias in connections:
        connection = connections[alias]
        if connection.connection is not None:  # opened before the app was ready
            install(connection)
