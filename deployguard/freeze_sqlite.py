"""The database freeze on SQLite: three row triggers a table, under a function named anew each freeze.

SQLite has no statement triggers, no way to disable one, no session settings and no access
control. The freeze is three row triggers a table, created under the write lock (BEGIN
IMMEDIATE waits for the one current writer) and dropped when deploy mode goes off; their
WHEN calls a function whose name is drawn at random for each freeze. A client that has not
defined it fails "no such function"; deployguard's connections define it (answering whether
deployguard allows the write) when they run what deployguard allows. So careless code with a
plain sqlite3 connection cannot write, nor define "the" function by a well-known name; a process
that reads the schema can (the name is in sqlite_master), and can drop the triggers: SQLite
cannot stop that, and verify() then says the freeze is broken.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from deployguard.allowances import own_records_allowed, switch_ddl, writes_allowed

TRIGGER = "deployguard_frozen"
FUNCTION_PREFIX = "deployguard_allowed_"
OPERATIONS = ("INSERT", "UPDATE", "DELETE")
_FUNCTION_IN_TRIGGER = re.compile(rf"WHEN NOT ({FUNCTION_PREFIX}[0-9a-f]{{32}})\(\)")


def trigger_name(table: str, operation: str) -> str:
    return f"{TRIGGER}_{operation.lower()}_{table}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def trigger_sql(table: str, operation: str, function: str) -> str:
    """The freeze's trigger, exactly as sqlite_master keeps it."""
    refusal = f'Deploy mode is on: {operation} on "{table}" refused by the database.'
    return (
        f"CREATE TRIGGER {_quote(trigger_name(table, operation))} BEFORE {operation} ON {_quote(table)} "
        f"WHEN NOT {function}() BEGIN SELECT RAISE(ABORT, {_literal(refusal)}); END"
    )


def install(
    connection: BaseDatabaseWrapper,
    tables: list[str],
    *,
    lock_timeout: float,
    still_wanted: Callable[[], bool],
) -> bool:
    """Create the triggers (replacing any of the same name) in one BEGIN IMMEDIATE transaction,
    under a new function name; False, with nothing changed, when `still_wanted()` says no."""
    function = FUNCTION_PREFIX + secrets.token_hex(16)
    connection.ensure_connection()
    raw = connection.connection
    _define(raw, function)
    cursor = raw.cursor()
    try:
        with connection.wrap_database_errors, switch_ddl():
            (previous,) = cursor.execute("PRAGMA busy_timeout").fetchone()
            cursor.execute(f"PRAGMA busy_timeout = {max(1, int(lock_timeout * 1000))}")
            try:
                cursor.execute("BEGIN IMMEDIATE")  # waits for the one current writer
                try:
                    if not still_wanted():
                        cursor.execute("ROLLBACK")
                        return False
                    for table in tables:
                        for operation in OPERATIONS:
                            cursor.execute(f"DROP TRIGGER IF EXISTS {_quote(trigger_name(table, operation))}")
                            cursor.execute(trigger_sql(table, operation, function))
                    cursor.execute("COMMIT")
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
            finally:
                cursor.execute(f"PRAGMA busy_timeout = {int(previous)}")
    finally:
        cursor.close()
    return True


def current_function(raw: Any) -> str | None:
    """The function this freeze's triggers call, read from the schema; None when not frozen."""
    row = raw.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE ? ESCAPE '\\' LIMIT 1",
        [TRIGGER.replace("_", "\\_") + "\\_%"],
    ).fetchone()
    found = _FUNCTION_IN_TRIGGER.search(row[0]) if row else None
    return found.group(1) if found else None


def define_function(raw: Any) -> None:
    """Define this freeze's function on a deployguard connection (before a write it allows)."""
    function = current_function(raw)
    if function is not None:
        _define(raw, function)


def _define(raw: Any, function: str) -> None:
    raw.create_function(function, 0, _writes_allowed)


def _writes_allowed() -> int:
    return 1 if writes_allowed() or own_records_allowed() else 0


def _triggers(connection: BaseDatabaseWrapper) -> list[tuple[str, str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, tbl_name, sql FROM sqlite_master "
            "WHERE type = 'trigger' AND name LIKE %s ESCAPE '\\'",
            [TRIGGER.replace("_", "\\_") + "\\_%"],
        )
        return cursor.fetchall()


def verify(connection: BaseDatabaseWrapper, tables: list[str]) -> list[str]:
    """What is wrong with the triggers on `tables`: empty when each carries the freeze's three,
    exactly as it creates them, all calling one function."""
    found = {name: sql for name, _table, sql in _triggers(connection)}
    functions = {match.group(1) for sql in found.values() if (match := _FUNCTION_IN_TRIGGER.search(sql))}
    function = next(iter(functions)) if len(functions) == 1 else ""
    problems = [] if len(functions) <= 1 else ["the triggers call different functions"]
    for table in tables:
        for operation in OPERATIONS:
            name = trigger_name(table, operation)
            if name not in found:
                problems.append(f"{table}: no freeze trigger for {operation}")
            elif found[name] != trigger_sql(table, operation, function):
                problems.append(f"{table}: its trigger {name} is not the freeze's own")
    return problems


def frozen_tables(connection: BaseDatabaseWrapper) -> dict[str, bool]:
    """Each table that carries a trigger of the freeze's name: whether all three are the freeze's."""
    tables = {table for _name, table, _sql in _triggers(connection)}
    problems = verify(connection, sorted(tables))
    return {table: not any(p.startswith(f"{table}: ") for p in problems) for table in tables}


def drop(connection: BaseDatabaseWrapper) -> int:
    """Drop every trigger of the freeze (inside the caller's transaction, if any); how many tables."""
    triggers = _triggers(connection)
    connection.ensure_connection()
    cursor = connection.connection.cursor()
    try:
        with connection.wrap_database_errors, switch_ddl():
            for name, _table, _sql in triggers:
                cursor.execute(f"DROP TRIGGER IF EXISTS {_quote(name)}")
    finally:
        cursor.close()
    return len({table for _name, table, _sql in triggers})


def frozen_copy(backup: Path, function: str, is_freezable: Callable[[str], bool]) -> Path:
    """A copy of the SQLite backup at `backup` (beside it) carrying this freeze's triggers, with
    `function`, on each of its tables `is_freezable` names: restored from it, the database is
    frozen from the restore's first instant, not from the moment the freeze is installed again
    (a writer waiting for the restore's lock would write in between). The caller removes it."""
    handle, name = tempfile.mkstemp(prefix=f".{backup.name}.frozen.", dir=backup.parent)
    os.close(handle)
    shutil.copyfile(backup, name)
    copy = sqlite3.connect(name, isolation_level=None)
    try:
        tables = [
            t
            for (t,) in copy.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if is_freezable(t)
        ]
        copy.execute("BEGIN IMMEDIATE")
        for table in tables:
            for operation in OPERATIONS:
                copy.execute(f"DROP TRIGGER IF EXISTS {_quote(trigger_name(table, operation))}")
                copy.execute(trigger_sql(table, operation, function))
        copy.execute("COMMIT")
    finally:
        copy.close()
    return Path(name)
