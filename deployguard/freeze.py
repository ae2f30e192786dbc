"""Deploy mode enforced by the database itself, for writers deployguard never sees.

The write guard stops what runs through Django in a process that has deployguard loaded. psql
or the sqlite3 shell, `COPY`, a cron job with its own driver, another host running older code:
only the database sees those. While deploy mode is on, every protected table (history tables
included) and deployguard's own records (tables.SWITCH_TABLES) carry triggers that refuse
their writes; while it is off they are off, which costs a write nothing.

PostgreSQL: one statement-level trigger a table (INSERT, UPDATE, DELETE, TRUNCATE; COPY and
MERGE too), SQLSTATE DG001, `ENABLE ALWAYS` (session_replication_role does not skip it),
enabled and disabled with ALTER TABLE, which only the tables' owner may do (deployguard.roles:
the site connects as a role that may not). Enabling takes SHARE ROW EXCLUSIVE: it waits for
every transaction that has written to the table and not yet ended (the drain, exact, with
lock_timeout as its bound), and every write statement after the commit is refused, whatever
state the writer's process has cached and whatever its transaction's snapshot. Readers are
never blocked. The way through, for what deployguard itself lets pass (`allow_writes()`, its
own records), is a random key drawn for each freeze and kept in a table only the owner can
read; the trigger's function (SECURITY DEFINER) compares the session's KEY_SETTING with it
(run_allowed). The freeze checks what it installs (verify()): its function's definition, the
key, and on every table its own trigger, enabled ALWAYS; a trigger of the same name that is not
its own is replaced, never trusted.

SQLite: deployguard.freeze_sqlite (row triggers whose condition calls a function named anew
for each freeze).

Either way, once `freeze()` has committed nobody can write: deploy_safe need not wait for
other processes' caches to expire. Tables created after the freeze have no trigger; the
write guard and deploy_safe's "new tables start empty" check cover them.
"""

from __future__ import annotations

import contextlib
import secrets
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from django.db import DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from deployguard import freeze_sqlite
from deployguard.tables import SWITCH_TABLES, migrate_writable_tables, protected_tables

T = TypeVar("T")

FUNCTION = "deployguard_refuse_frozen_write"
TRIGGER = "deployguard_frozen"
SQLSTATE = "DG001"
DEADLOCK = "40P01"  # PostgreSQL's deadlock_detected
DEADLOCK_ATTEMPTS = 3

# The way through, per freeze: a random key in a table only its owner can read. The trigger's
# function (SECURITY DEFINER, so it may read that table) lets a statement through when the
# session's KEY_SETTING holds that key. Any client may SET the setting; none but the owner can
# read the key, and the next freeze draws another.
KEY_TABLE = "deployguard_freeze_key"
KEY_SETTING = "deployguard.freeze_key"
SETTING = KEY_SETTING  # the name tests and callers knew it by
# BEFORE (2) INSERT (4) DELETE (8) UPDATE (16) TRUNCATE (32), FOR EACH STATEMENT (no 1).
TRIGGER_TYPE = 2 | 4 | 8 | 16 | 32
_EVENTS = "BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE"
_EACH = "FOR EACH STATEMENT EXECUTE FUNCTION"


def _function_body(schema: str) -> str:
    key_table = f"{_quote(schema)}.{_quote(KEY_TABLE)}"
    return f"""
BEGIN
    IF EXISTS (SELECT 1 FROM {key_table} WHERE key = current_setting('{KEY_SETTING}', true)) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'Deploy mode is on: % on "%" refused by the database.', TG_OP, TG_TABLE_NAME
        USING ERRCODE = '{SQLSTATE}',
              HINT = 'Writes resume when it is turned off: manage.py deploy_mode off.';
END
"""  # noqa: S608 (the names are constants)


def _function_sql(schema: str) -> str:
    return (
        f"CREATE OR REPLACE FUNCTION {_quote(schema)}.{FUNCTION}() RETURNS trigger LANGUAGE plpgsql "
        f"SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {dollar_quoted(_function_body(schema))}"
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def supported(connection: BaseDatabaseWrapper) -> bool:
    return connection.vendor in ("postgresql", "sqlite")


def freezable_tables(connection: BaseDatabaseWrapper) -> list[str]:
    """The tables the trigger goes on: protected ones, less the bookkeeping migrate writes, plus
    deployguard's own records that only its code writes in deploy mode (the switch, deploys,
    scrub runs)."""
    with connection.cursor() as cursor:
        names = connection.introspection.table_names(cursor)
    return sorted(name for name in names if is_freezable(name))


def is_freezable(table: str) -> bool:
    """Whether the freeze's trigger goes on `table` (as the database spells it)."""
    # SQLite's own tables (sqlite_stat1 after ANALYZE) take no triggers.
    if table.startswith("sqlite_") or table.lower() in migrate_writable_tables():
        return False
    return bool(protected_tables([table])) or table.lower() in SWITCH_TABLES


def freeze(
    connection: BaseDatabaseWrapper,
    tables: Iterable[str],
    *,
    lock_timeout: float,
    still_wanted: Callable[[], bool] = lambda: True,
) -> int:
    """Turn the freeze on for every table, in one transaction; returns how many tables, or -1
    when `still_wanted()` (asked inside that transaction, once it holds the switch's lock)
    says deploy mode has been turned off meanwhile: then nothing changes.

    Waits (at most `lock_timeout` seconds a table) for transactions that wrote to a table to
    end, even where the trigger was on already. Raises DatabaseError (lock_not_available, or
    SQLite's "database is locked") when one outlasts it: then nothing changes. PostgreSQL
    starts again when it ends a deadlock with a writer by failing the freeze (3 attempts).
    Raises FreezeBroken when what it installed does not verify.
    """
    tables = list(tables)
    if connection.vendor == "sqlite":
        installed = freeze_sqlite.install(
            connection, tables, lock_timeout=lock_timeout, still_wanted=still_wanted
        )
        return len(tables) if installed else -1
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            if not enable_triggers(connection, tables, lock_timeout=lock_timeout, still_wanted=still_wanted):
                return -1
            break
        except DatabaseError as error:
            # A writer that holds one table and then writes to another the freeze has locked
            # already makes a deadlock; when PostgreSQL picks the freeze to fail, the writer
            # goes on and ends, and the freeze (rolled back whole) can simply start again.
            if getattr(error.__cause__, "sqlstate", None) != DEADLOCK or attempt == DEADLOCK_ATTEMPTS:
                raise
    return len(tables)


class FreezeBroken(DatabaseError):
    """The freeze just installed does not verify (deployguard.freeze.verify names what)."""


def enable_triggers(
    connection: BaseDatabaseWrapper,
    tables: list[str],
    *,
    lock_timeout: float,
    still_wanted: Callable[[], bool] = lambda: True,
) -> bool:
    """PostgreSQL: a new key, this freeze's function, and its trigger enabled ALWAYS on every
    table (a trigger of that name that is not exactly ours is replaced), in one transaction;
    then verified. False, with nothing changed, when `still_wanted()` says no."""
    quote = connection.ops.quote_name
    with transaction.atomic(using=connection.alias):
        with raw_cursor(connection) as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = {max(1, int(lock_timeout * 1000))}")
            lock_switch(cursor)
        if not still_wanted():
            return False
        with raw_cursor(connection) as cursor:
            schema = _install_key(cursor)
            cursor.execute(_function_sql(schema))
            ours = _our_triggers(cursor)
            for table in tables:
                if table in ours and not ours[table]:  # a trigger of our name, not our definition
                    cursor.execute(f"DROP TRIGGER {TRIGGER} ON {quote(table)}")
                if not ours.get(table):
                    cursor.execute(
                        f"CREATE TRIGGER {TRIGGER} {_EVENTS} ON {quote(table)} {_EACH} {FUNCTION}()"
                    )
                cursor.execute(f"ALTER TABLE {quote(table)} ENABLE ALWAYS TRIGGER {TRIGGER}")
        problems = verify(connection, tables)
        if problems:
            raise FreezeBroken("The freeze did not verify: " + "; ".join(problems))
    return True


def dollar_quoted(body: str) -> str:
    """`body` as a PostgreSQL dollar-quoted string, under a tag drawn at random: what the body
    quotes (a table's name, an operator's reason) cannot end it early, whatever it holds."""
    while True:
        tag = f"$q{secrets.token_hex(8)}$"
        if tag not in body:
            return f"{tag}{body}{tag}"


def refreeze_sql(connection: BaseDatabaseWrapper, tables: Iterable[str]) -> str:
    """PostgreSQL: statements that install this freeze (its key, its function, its trigger
    enabled ALWAYS) on each of `tables` that exists when they run, with every name qualified by
    the current schema. A restore while deploy mode is on ends its transaction with them
    (backup.restore_database): `pg_restore --clean` recreates the tables with their triggers as
    the dump holds them, so without them a writer queued behind the restore's locks would write
    between its commit and the freeze being installed again. The key is the one in force now,
    so what holds it (allow_writes()) goes on; a new one when there is none."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        (schema,) = cursor.fetchone()
        key = ""
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [KEY_TABLE])
        if cursor.fetchone()[0]:
            cursor.execute(f"SELECT key FROM {_quote(KEY_TABLE)} LIMIT 1")  # noqa: S608 (a constant)
            row = cursor.fetchone()
            key = row[0] if row else ""
    key = key or secrets.token_hex(32)
    key_table = f"{_quote(schema)}.{_quote(KEY_TABLE)}"
    names = sorted(set(tables))

    def literal(value: Any) -> str:
        return connection.ops.compose_sql("%s", [value])

    revoke = f"""
DECLARE grantee text;
BEGIN
    FOR grantee IN SELECT DISTINCT a.grantee::regrole::text FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = {literal(key_table)}::regclass AND a.grantee <> c.relowner AND a.grantee <> 0 LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', {literal(key_table)}, grantee);
    END LOOP;
END
"""  # noqa: S608 (quoted by the driver)
    triggers = f"""
DECLARE name text;
BEGIN
    FOREACH name IN ARRAY {literal(names)}::text[] LOOP
        IF to_regclass(format('%I.%I', {literal(schema)}, name)) IS NOT NULL THEN
            EXECUTE format('CREATE OR REPLACE TRIGGER {TRIGGER} {_EVENTS} ON %I.%I {_EACH} %I.{FUNCTION}()',
                           {literal(schema)}, name, {literal(schema)});
            EXECUTE format('ALTER TABLE %I.%I ENABLE ALWAYS TRIGGER {TRIGGER}', {literal(schema)}, name);
        END IF;
    END LOOP;
END
"""
    # The names are constants or quoted; the values are quoted by the driver's own quoting.
    return f"""
CREATE TABLE IF NOT EXISTS {key_table} (key text NOT NULL);
DO {dollar_quoted(revoke)};
REVOKE ALL ON {key_table} FROM PUBLIC;
DELETE FROM {key_table};
INSERT INTO {key_table} (key) VALUES ({literal(key)});
{_function_sql(schema)};
DO {dollar_quoted(triggers)};
SELECT pg_catalog.set_config({literal(KEY_SETTING)}, {literal(key)}, true);
"""  # noqa: S608


SWITCH_LOCK = "deployguard.switch"


def lock_switch(cursor: Any) -> None:
    """PostgreSQL: take the switch's transaction-level advisory lock (the state row and the
    freeze change under it only, so they always agree)."""
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [SWITCH_LOCK])


def _install_key(cursor: Any) -> str:
    """A new random key in the key table, which only its owner may read; returns the schema."""
    cursor.execute("SELECT current_schema()")
    (schema,) = cursor.fetchone()
    table = f"{_quote(schema)}.{_quote(KEY_TABLE)}"
    cursor.execute(f"CREATE TABLE IF NOT EXISTS {table} (key text NOT NULL)")
    owner_only(cursor, schema, KEY_TABLE)
    cursor.execute(f"DELETE FROM {table}")  # noqa: S608
    cursor.execute(f"INSERT INTO {table} (key) VALUES (%s)", [secrets.token_hex(32)])  # noqa: S608
    return schema


def owner_only(cursor: Any, schema: str, name: str) -> None:
    """Take back every privilege on the table `schema.name` from all but its owner: default
    privileges (db_roles') or a careless GRANT may have given it to others."""
    cursor.execute(
        "SELECT DISTINCT grantee::regrole::text FROM pg_class c, aclexplode(c.relacl) a "
        "WHERE c.oid = %s::regclass AND a.grantee <> c.relowner AND a.grantee <> 0",
        [f"{_quote(schema)}.{_quote(name)}"],
    )
    table = f"{_quote(schema)}.{_quote(name)}"
    for (grantee,) in cursor.fetchall():
        cursor.execute(f"REVOKE ALL ON {table} FROM {grantee}")
    cursor.execute(f"REVOKE ALL ON {table} FROM PUBLIC")


def _our_triggers(cursor: Any) -> dict[str, bool]:
    """Each table of the current schema with a trigger named ours: whether it is exactly ours
    (our function, before each statement of every kind, no WHEN, no column list)."""
    cursor.execute(
        "SELECT c.relname, t.tgfoid = coalesce(to_regprocedure(%s), 0) AND t.tgtype = %s "
        "AND t.tgqual IS NULL AND t.tgattr::text = '' "
        "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE t.tgname = %s AND c.relnamespace = current_schema()::regnamespace",
        [f"{FUNCTION}()", TRIGGER_TYPE, TRIGGER],
    )
    return dict(cursor.fetchall())


def verify(connection: BaseDatabaseWrapper, tables: Iterable[str] | None = None) -> list[str]:
    """What is wrong with the freeze as installed on `tables` (default: every freezable table):
    empty when each carries the freeze's own trigger, enabled, and (PostgreSQL) the function
    is the freeze's own definition and its key exists and only its owner can read it."""
    tables = sorted(freezable_tables(connection) if tables is None else tables)
    if connection.vendor == "sqlite":
        return freeze_sqlite.verify(connection, tables)
    problems: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        (schema,) = cursor.fetchone()
        cursor.execute(
            "SELECT p.prosrc, p.prosecdef, p.proconfig, p.proowner = "
            "(SELECT relowner FROM pg_class WHERE oid = to_regclass(%s)) "
            "FROM pg_proc p WHERE p.oid = to_regprocedure(%s)",
            [f"{schema}.{KEY_TABLE}", f"{FUNCTION}()"],
        )
        function = cursor.fetchone()
        if function is None:
            problems.append(f"the function {FUNCTION}() is missing")
        elif (function[0], function[1], list(function[2] or []), function[3]) != (
            _function_body(schema),
            True,
            ["search_path=pg_catalog, pg_temp"],
            True,
        ):
            problems.append(f"the function {FUNCTION}() is not the freeze's own definition")
        cursor.execute(
            "SELECT count(*), bool_and(a.grantee = c.relowner) FROM pg_class c "
            "LEFT JOIN LATERAL aclexplode(c.relacl) a ON true WHERE c.oid = to_regclass(%s) GROUP BY c.oid",
            [f"{schema}.{KEY_TABLE}"],
        )
        key_table = cursor.fetchone()
        if key_table is None:
            problems.append(f"the key table {KEY_TABLE} is missing")
        else:
            if key_table[1] is False:
                problems.append(f"roles other than its owner may use the key table {KEY_TABLE}")
            cursor.execute("SELECT has_table_privilege(%s, 'SELECT')", [f"{schema}.{KEY_TABLE}"])
            if cursor.fetchone()[0]:  # the owner; the application role may not look
                cursor.execute(f"SELECT count(*) FROM {_quote(schema)}.{_quote(KEY_TABLE)}")  # noqa: S608
                if cursor.fetchone() != (1,):
                    problems.append("the freeze has no key")
        ours = _our_triggers(cursor)
        cursor.execute(
            "SELECT c.relname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = %s AND c.relnamespace = current_schema()::regnamespace",
            [TRIGGER],
        )
        enabled = dict(cursor.fetchall())
    for table in tables:
        if table not in ours:
            problems.append(f"{table}: no freeze trigger")
        elif not ours[table]:
            problems.append(f"{table}: its trigger {TRIGGER} is not the freeze's own")
        elif enabled[table] != "A":
            problems.append(f"{table}: the freeze trigger is {_ENABLED.get(enabled[table], 'off')}")
    return problems


_ENABLED = {"D": "disabled", "O": "enabled for origin sessions only", "R": "enabled for replicas only"}


@contextlib.contextmanager
def raw_cursor(connection: BaseDatabaseWrapper) -> Iterator[Any]:
    """The driver's own cursor, in the connection's current transaction: the switch's DDL (and
    the write tracking's, deployguard.written_pg) is deployguard's own, which the write guard
    (forced on in deploy_safe) would refuse as "CREATE on a table it could not name", as it lets
    state.enable() write the state row."""
    connection.ensure_connection()
    with connection.wrap_database_errors, contextlib.closing(connection.connection.cursor()) as cursor:
        yield cursor


def frozen_tables(connection: BaseDatabaseWrapper) -> dict[str, bool]:
    """Each table that carries a trigger of the freeze's name: whether the freeze is on there
    (on PostgreSQL: the trigger is exactly the freeze's own and enabled ALWAYS)."""
    if connection.vendor == "sqlite":
        return freeze_sqlite.frozen_tables(connection)
    with connection.cursor() as cursor:
        ours = _our_triggers(cursor)
        cursor.execute(
            "SELECT c.relname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = %s AND c.relnamespace = current_schema()::regnamespace",
            [TRIGGER],
        )
        return {table: bool(ours.get(table)) and on == "A" for table, on in cursor.fetchall()}


def thaw(connection: BaseDatabaseWrapper) -> int:
    """Turn every trigger off (inside the caller's transaction, if any); returns how many tables.

    PostgreSQL: ALTER TABLE ... DISABLE TRIGGER takes the same lock as enabling: readers go on;
    only a writer deployguard let through could make it wait; the key is deleted. SQLite: the
    triggers are dropped.
    """
    quote = connection.ops.quote_name
    if connection.vendor == "sqlite":
        return freeze_sqlite.drop(connection)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE t.tgname = %s "
            "AND t.tgenabled <> 'D' AND c.relnamespace = current_schema()::regnamespace ORDER BY 1",
            [TRIGGER],
        )
        enabled = [table for (table,) in cursor.fetchall()]
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [KEY_TABLE])
        (has_key_table,) = cursor.fetchone()
    with raw_cursor(connection) as cursor:
        for table in enabled:
            cursor.execute(f"ALTER TABLE {quote(table)} DISABLE TRIGGER {TRIGGER}")
        if has_key_table:
            cursor.execute(f"DELETE FROM {_quote(KEY_TABLE)}")  # noqa: S608
    return len(enabled)


def is_refusal(error: BaseException) -> bool:
    """Whether `error` (a Django DatabaseError or the driver's) is the freeze's refusal."""
    for candidate in (error, error.__cause__):
        if getattr(candidate, "sqlstate", None) == SQLSTATE:
            return True
    text = str(error)  # SQLite's RAISE(ABORT, ...) carries only its message
    if text.startswith("Deploy mode is on: ") and text.endswith(" refused by the database."):
        return True
    # A deployguard connection that has not met this freeze's function yet.
    return text.startswith(f"no such function: {freeze_sqlite.FUNCTION_PREFIX}")


# --- the way through the freeze: for what deployguard.allowances allows, and nothing else ---


def run_allowed(connection: BaseDatabaseWrapper, cursor: Any, run: Callable[[], T]) -> T:
    """Run `run()` (one statement deployguard allows) with the freeze letting it through.

    `cursor` is the driver's cursor (no wrappers, no query log). PostgreSQL: the session's
    key setting holds the freeze's key (read by the owner, who alone may) just for the
    statement; when the transaction rolls back PostgreSQL restores the setting's value from
    before the transaction, so it never outlives the statement either way. A role that
    cannot read the key runs the statement as it is: the trigger, if on, refuses it.
    SQLite: this freeze's function is defined on the connection, answering "allowed".
    """
    if connection.vendor == "sqlite":
        freeze_sqlite.define_function(connection.connection)
        return run()
    import psycopg

    # The setting is changed through a cursor of its own: `cursor` holds the statement's
    # results (an INSERT ... RETURNING's ids) until its caller has read them.
    raw = cursor.connection
    if not _may_read_key(raw):
        return run()
    raw.execute(
        f"SELECT set_config(%s, coalesce((SELECT key FROM {_quote(KEY_TABLE)} LIMIT 1), ''), false)",  # noqa: S608
        [KEY_SETTING],
    )
    try:
        return run()
    finally:
        with contextlib.suppress(psycopg.Error):  # an aborted transaction: its rollback clears it
            raw.execute("SELECT set_config(%s, '', false)", [KEY_SETTING])


_reads_key: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _may_read_key(raw: Any) -> bool:
    """Whether this connection's role may read the key (remembered once it may)."""
    if _reads_key.get(raw):
        return True
    found = raw.execute(
        "SELECT CASE WHEN to_regclass(%s) IS NULL THEN false ELSE has_table_privilege(%s, 'SELECT') END",
        [KEY_TABLE, KEY_TABLE],
    )
    may = bool(found.fetchone()[0])
    if may:
        _reads_key[raw] = True
    return may
