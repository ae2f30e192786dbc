"""SQLite: the write guard's rules below Django, for SQL that never reaches the execute wrapper.

cursor.executescript() and the raw sqlite3 connection go straight to SQLite. Its authorizer
is asked about every action while a statement is prepared, so it sees those too. It runs
inside sqlite3_prepare: it must not use the connection (no state query), so it judges on
the state the wrapper just read, else on the state this process may still trust, else it
refuses (fail closed). SQLite reports a refusal as "not authorized".
The wrapper hands the state over in a one-item list kept on the Django connection (a
ContextVar set and reset per statement cost ~1.5% of an ORM insert): the authorizer runs
inside that execute, on that connection. Should another thread share the connection, what it
finds there is still a state this process read a moment ago, or nothing: then it falls back
to the cache as above, so never a laxer verdict.
Not covered: a statement sqlite3 had already prepared and cached while deploy mode was off,
re-run with the same text through the raw connection (Django's cursor is still guarded).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from functools import lru_cache

from django.db.backends.base.base import BaseDatabaseWrapper

from deployguard import state
from deployguard.allowances import schema_change_allowed, schema_changes_allowed, writes_allowed
from deployguard.sql_writes import DDL_VERBS, UNKNOWN_TABLE
from deployguard.status import DeployModeStatus
from deployguard.tables import SWITCH_TABLES, is_protected

logger = logging.getLogger("deployguard")

JUDGED_ATTRIBUTE = "deployguard_judged"
"""The attribute of a Django connection where the write guard hands over the state it read."""
Judged = list[DeployModeStatus | None]
Authorizer = Callable[[int, str | None, str | None, str | None, str | None], int]


@lru_cache(maxsize=1)
def write_actions() -> dict[int, tuple[str, int]]:
    """Action code -> (verb, which argument holds the table: 1 or 2). Built once per process."""
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
        # PRAGMA writable_schema lets a statement edit sqlite_master (and so drop the freeze's
        # triggers) as if it were a table: judged as a write to sqlite_master.
        "SQLITE_PRAGMA": ("PRAGMA", 1),
    }
    return {getattr(sqlite3, name): verb_and_arg for name, verb_and_arg in codes.items()}


_SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"})

# DROP TABLE t (and DROP VIEW) asks next for DELETE on t: that DELETE is part of the drop.
_DROPS_THAT_DELETE = frozenset(
    {sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_DROP_TEMP_TABLE, sqlite3.SQLITE_DROP_VIEW,
     sqlite3.SQLITE_DROP_TEMP_VIEW}
)  # fmt: skip


def needs_deploy_mode_off(table: str) -> bool:
    """Whether a write to `table` needs deploy mode off (allowances aside): a protected table,
    or the switch's own outside state.enable() and state.disable()."""
    if table in SWITCH_TABLES:
        return not state.switch_writes_allowed()
    return is_protected(table)


def authorizer(judged: Judged | None = None) -> Authorizer:
    """A new authorizer for one raw connection (it remembers the DROP it is in the middle of);
    `judged` is where the wrapper hands it the state it has just read."""
    actions = write_actions()
    ok, deny = sqlite3.SQLITE_OK, sqlite3.SQLITE_DENY
    dropping: list[str] = [""]
    in_schema_change: list[bool] = [False]  # the last write judged was DDL
    if judged is None:
        judged = [None]

    def authorize(
        action: int, arg1: str | None, arg2: str | None, database: str | None, source: str | None
    ) -> int:
        # SQLite asks about every action while it prepares a statement (each column read
        # included): every action that is not a write returns after one dict lookup.
        found = actions.get(action)
        if found is None or writes_allowed():
            return ok
        verb, position = found
        if verb == "PRAGMA":
            if (arg1 or "").lower() != "writable_schema":
                return ok
            table = "sqlite_master"
        else:
            table = ((arg1 if position == 1 else arg2) or UNKNOWN_TABLE).lower()
        if table.startswith("sqlite_"):
            # SQLite's own tables. Every schema change writes sqlite_master, which no statement
            # can write directly unless PRAGMA writable_schema is on: that pragma (which would
            # let a statement delete the freeze's triggers; Django never uses it) is refused in
            # deploy mode or when the state is unknown. The others (sqlite_sequence: a table's
            # next id) are written by schema changes too (ALTER TABLE ... RENAME, just judged):
            # a direct write is refused in deploy mode, and when the state is unknown unless
            # it follows a schema change.
            status = judged[0] or state.cached()
            if verb != "PRAGMA":
                if table in _SCHEMA_TABLES or schema_changes_allowed():
                    return ok
                if status is None and in_schema_change[0]:
                    return ok
            if status is None or status.enabled:
                logger.error("SQLite refused %s on %s: deploy mode is on or unknown", verb, table)
                return deny
            return ok
        if verb == "DELETE" and table == dropping[0]:
            verb = "DROP"
        dropping[0] = table if action in _DROPS_THAT_DELETE else ""
        in_schema_change[0] = verb in DDL_VERBS
        if not needs_deploy_mode_off(table):
            return ok
        if schema_changes_allowed() and schema_change_allowed(verb, table):
            return ok
        status = judged[0] or state.cached()
        if status is None or status.enabled:
            logger.error("SQLite refused %s on %s: deploy mode is on or unknown", verb, table)
            return deny
        return ok

    return authorize


def install(connection: BaseDatabaseWrapper) -> None:
    """Put an authorizer on the connection's raw connection; once per raw connection
    (connection_created), as setting it again only replaces it. Every raw connection of one
    Django connection shares that connection's hand-over list."""
    if connection.connection is None:
        return
    judged = getattr(connection, JUDGED_ATTRIBUTE, None)
    if judged is None:
        judged = [None]
        setattr(connection, JUDGED_ATTRIBUTE, judged)
    connection.connection.set_authorizer(authorizer(judged))
