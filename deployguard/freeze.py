"""Deploy mode enforced by the database itself, for writers deployguard never sees.

The write guard stops what runs through Django in a process that has deployguard loaded. psql
or the sqlite3 shell, `COPY`, a cron job with its own driver, another host running older code:
only the database sees those. While deploy mode is on, every protected table carries triggers
that refuse its writes; while it is off they are off, which costs a write nothing.

PostgreSQL: one statement-level trigger a table (INSERT, UPDATE, DELETE, TRUNCATE; COPY too),
SQLSTATE DG001, enabled and disabled with ALTER TABLE. Enabling takes SHARE ROW EXCLUSIVE:
it waits for every transaction that has written to the table and not yet ended (the drain,
exact, with lock_timeout as its bound), and every write statement after the commit is
refused, whatever state the writer's process has cached and whatever its transaction's
snapshot. Readers are never blocked. What deployguard itself lets through
(`deployguard.allow_writes()`, a data migration named with `--allow-data-migration`) sets the
session setting `deployguard.writes` to `allowed` around the statement (run_allowed).

SQLite: three row triggers a table, created under the write lock (BEGIN IMMEDIATE waits for
the one current writer) and dropped when deploy mode goes off; their WHEN asks a function
only deployguard's connections define (install_sqlite_bypass), which allows what
`allow_writes()` allows. A client
without it fails "no such function"; any statement prepared before is prepared again, since
the schema changed.

Either way, once `freeze()` has committed nobody can write: deploy_safe need not wait for
other processes' caches to expire. Tables created after the freeze have no trigger; the
write guard and deploy_safe's "new tables start empty" check cover them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from django.db import DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from deployguard.allowances import switch_ddl, writes_allowed
from deployguard.tables import migrate_writable_tables, protected_tables

T = TypeVar("T")

FUNCTION = "deployguard_refuse_frozen_write"
TRIGGER = "deployguard_frozen"
SQLSTATE = "DG001"
SETTING = "deployguard.writes"
DEADLOCK = "40P01"  # PostgreSQL's deadlock_detected
DEADLOCK_ATTEMPTS = 3

FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF coalesce(current_setting('{SETTING}', true), '') = 'allowed' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'Deploy mode is on: % on "%" refused by the database.', TG_OP, TG_TABLE_NAME
        USING ERRCODE = '{SQLSTATE}',
              HINT = 'Writes resume when it is turned off: manage.py deploy_mode off.';
END
$body$
"""


def supported(connection: BaseDatabaseWrapper) -> bool:
    return connection.vendor in ("postgresql", "sqlite")


# SQLite has no statement triggers, no way to disable one and no session settings: the freeze
# is three row triggers a table, created when deploy mode goes on and dropped when it goes off,
# whose WHEN asks a function only deployguard's connections define. A client without it (the
# sqlite3 shell, code without deployguard) fails "no such function": refused too.
SQLITE_FUNCTION = "deployguard_writes_allowed"
SQLITE_OPERATIONS = ("INSERT", "UPDATE", "DELETE")


def _sqlite_trigger(table: str, operation: str) -> str:
    return f"{TRIGGER}_{operation.lower()}_{table}"


def _sqlite_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def freezable_tables(connection: BaseDatabaseWrapper) -> list[str]:
    """The tables the trigger goes on: protected ones, less the bookkeeping migrate writes."""
    with connection.cursor() as cursor:
        tables = protected_tables(connection.introspection.table_names(cursor))
    # SQLite's own tables (sqlite_stat1 after ANALYZE) take no triggers.
    return sorted(t for t in tables - migrate_writable_tables() if not t.startswith("sqlite_"))


def freeze(connection: BaseDatabaseWrapper, tables: Iterable[str], *, lock_timeout: float) -> int:
    """Turn the trigger on for every table (creating it where missing), in one transaction;
    returns how many tables.

    Waits (at most `lock_timeout` seconds a table) for transactions that wrote to a table to
    end, even where the trigger was on already. Raises DatabaseError (lock_not_available, or
    SQLite's "database is locked") when one outlasts it: then nothing changes. PostgreSQL
    starts again when it ends a deadlock with a writer by failing the freeze (3 attempts).
    """
    tables = list(tables)
    quote = connection.ops.quote_name
    if connection.vendor == "sqlite":
        with _switch_cursor(connection) as cursor, switch_ddl():
            cursor.execute("PRAGMA busy_timeout")
            (previous,) = cursor.fetchone()
            cursor.execute(f"PRAGMA busy_timeout = {max(1, int(lock_timeout * 1000))}")
            try:
                cursor.execute("BEGIN IMMEDIATE")  # waits for the one current writer
                try:
                    for table in tables:
                        for operation in SQLITE_OPERATIONS:
                            refusal = f'Deploy mode is on: {operation} on "{table}" refused by the database.'
                            cursor.execute(
                                f"CREATE TRIGGER IF NOT EXISTS {quote(_sqlite_trigger(table, operation))} "
                                f"BEFORE {operation} ON {quote(table)} WHEN NOT {SQLITE_FUNCTION}() "
                                f"BEGIN SELECT RAISE(ABORT, {_sqlite_literal(refusal)}); END"
                            )
                    cursor.execute("COMMIT")
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
            finally:
                cursor.execute(f"PRAGMA busy_timeout = {int(previous)}")
        return len(tables)
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            enable_triggers(connection, tables, lock_timeout=lock_timeout)
            break
        except DatabaseError as error:
            # A writer that holds one table and then writes to another the freeze has locked
            # already makes a deadlock; when PostgreSQL picks the freeze to fail, the writer
            # goes on and ends, and the freeze (rolled back whole) can simply start again.
            if getattr(error.__cause__, "sqlstate", None) != DEADLOCK or attempt == DEADLOCK_ATTEMPTS:
                raise
    return len(tables)


def enable_triggers(connection: BaseDatabaseWrapper, tables: list[str], *, lock_timeout: float) -> None:
    """PostgreSQL: create the trigger where missing and enable it on every table, in one transaction."""
    quote = connection.ops.quote_name
    with transaction.atomic(using=connection.alias):
        existing = frozen_tables(connection)
        with _switch_cursor(connection) as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = {max(1, int(lock_timeout * 1000))}")
            cursor.execute(FUNCTION_SQL)
            for table in tables:
                if table not in existing:
                    cursor.execute(
                        f"CREATE TRIGGER {TRIGGER} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE "
                        f"ON {quote(table)} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
                    )
                cursor.execute(f"ALTER TABLE {quote(table)} ENABLE TRIGGER {TRIGGER}")


@contextlib.contextmanager
def _switch_cursor(connection: BaseDatabaseWrapper) -> Iterator[Any]:
    """The driver's own cursor, in the connection's current transaction: the switch's DDL is
    part of the switch, which the write guard (forced on in deploy_safe) would refuse as
    "CREATE on a table it could not name", as it lets state.enable() write the state row."""
    connection.ensure_connection()
    with connection.wrap_database_errors, contextlib.closing(connection.connection.cursor()) as cursor:
        yield cursor


def frozen_tables(connection: BaseDatabaseWrapper) -> dict[str, bool]:
    """Each table that carries the trigger: whether it is on."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT DISTINCT tbl_name FROM sqlite_master WHERE type = 'trigger' AND name LIKE %s",
                [f"{TRIGGER}_%"],
            )
            return {table: True for (table,) in cursor.fetchall()}
        cursor.execute(
            "SELECT c.relname, t.tgenabled <> 'D' FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = %s AND pg_table_is_visible(c.oid)",
            [TRIGGER],
        )
        return dict(cursor.fetchall())


def thaw(connection: BaseDatabaseWrapper) -> int:
    """Turn every trigger off (inside the caller's transaction, if any); returns how many tables.

    PostgreSQL: ALTER TABLE ... DISABLE TRIGGER takes the same lock as enabling: readers go on;
    only a writer deployguard let through could make it wait. SQLite: the triggers are dropped.
    """
    quote = connection.ops.quote_name
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' AND name LIKE %s",
                [f"{TRIGGER}_%"],
            )
            triggers = cursor.fetchall()
        with _switch_cursor(connection) as cursor, switch_ddl():
            for name, _table in triggers:
                cursor.execute(f"DROP TRIGGER IF EXISTS {quote(name)}")
        return len({table for _name, table in triggers})
    enabled = sorted(table for table, on in frozen_tables(connection).items() if on)
    with _switch_cursor(connection) as cursor:
        for table in enabled:
            cursor.execute(f"ALTER TABLE {quote(table)} DISABLE TRIGGER {TRIGGER}")
    return len(enabled)


def is_refusal(error: BaseException) -> bool:
    """Whether `error` (a Django DatabaseError or the driver's) is the trigger's refusal."""
    for candidate in (error, error.__cause__):
        if getattr(candidate, "sqlstate", None) == SQLSTATE:
            return True
    text = str(error)  # SQLite's RAISE(ABORT, ...) carries only its message
    return text.startswith("Deploy mode is on: ") and text.endswith(" refused by the database.")


# --- the way through the freeze: for what deployguard.allowances allows, and nothing else ---


def install_sqlite_bypass(raw: Any) -> None:
    """SQLite: define on a raw connection the function the triggers ask, which says whether
    this write is allowed (deployguard.allow_writes(), or the switch's own DDL)."""
    raw.create_function(SQLITE_FUNCTION, 0, _sqlite_writes_allowed)


def _sqlite_writes_allowed() -> int:
    return 1 if writes_allowed() else 0


def run_allowed(cursor: Any, run: Callable[[], T]) -> T:
    """PostgreSQL: run `run()` (one statement deployguard allows) with the trigger letting it through.

    `cursor` is the driver's cursor (no wrappers, no query log). The setting is the session's,
    set just before and cleared just after; when the transaction rolls back PostgreSQL restores
    its value from before the transaction, so it never outlives the statement either way.
    """
    import psycopg

    cursor.execute("SELECT set_config(%s, 'allowed', false)", [SETTING])
    try:
        return run()
    finally:
        with contextlib.suppress(psycopg.Error):  # an aborted transaction: its rollback clears it
            cursor.execute("SELECT set_config(%s, '', false)", [SETTING])
