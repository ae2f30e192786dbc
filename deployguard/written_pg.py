"""PostgreSQL: which protected tables were written after a snapshot, proved from a short log.

fingerprint.unwritten_since() proves a table unwritten by reading every row's xmin: exact, but
a scan of the whole table, which grows with the database. For the length of a deploy,
deploy_safe keeps a log instead: one statement-level trigger a protected table (AFTER INSERT,
UPDATE, DELETE or TRUNCATE; COPY and MERGE fire them too), enabled ALWAYS (so
session_replication_role does not skip it), adds the table's name and the writing transaction's
id to `deployguard_written_log`, in the writer's own transaction. A table is proved unwritten
after a snapshot when, read in a later snapshot in which every writer since has ended (the
freeze's drain, or migrate done), the log holds no row for it that the earlier snapshot could not
see, and its trigger is installed and enabled ALWAYS. A transaction in flight at the earlier
snapshot that commits afterwards is invisible to it, so its writes count as after it.

Installed by the tables' owner (deploy_safe's connection), through the driver's own cursor like
the freeze's DDL; CREATE TRIGGER waits for the transactions writing each table to end, so from
its commit on every write is logged. The function is SECURITY DEFINER and the log is the
owner's alone: the site's role writes the log through the trigger only, and can neither read
nor delete it. Switched off with ALTER TABLE … DISABLE TRIGGER (the lock the freeze's thaw
takes, which readers do not wait for) and the log emptied; left in place for the next deploy.
What it cannot see: the owner disabling the trigger, writing, and enabling it again, which only
SQL written to defeat it does; the freeze has the same limit (deployguard.freeze).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from deployguard import freeze

LOG = "deployguard_written_log"
FUNCTION = "deployguard_log_write"
TRIGGER = "deployguard_written"
DEADLOCK = "40P01"
ATTEMPTS = 3
# AFTER (no BEFORE bit 2), FOR EACH STATEMENT (no ROW bit 1): INSERT 4, DELETE 8, UPDATE 16, TRUNCATE 32.
TRIGGER_TYPE = 4 | 8 | 16 | 32
_OURS = (
    "t.tgfoid = coalesce(to_regprocedure(%s), 0) AND t.tgtype = %s "
    "AND t.tgqual IS NULL AND t.tgattr::text = ''"
)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _function_sql(schema: str) -> str:
    log = f"{_quote(schema)}.{_quote(LOG)}"
    return (
        f"CREATE OR REPLACE FUNCTION {_quote(schema)}.{FUNCTION}() RETURNS trigger LANGUAGE plpgsql "  # noqa: S608
        "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$ BEGIN "
        f"INSERT INTO {log} (name, xid) VALUES (TG_TABLE_NAME, pg_current_xact_id()); RETURN NULL; "
        "END $body$"
    )


def install(connection: BaseDatabaseWrapper, tables: Iterable[str], *, lock_timeout: float) -> int:
    """Start logging writes to `tables` (the log emptied), in one transaction; how many tables.
    Waits at most `lock_timeout` seconds a table for its writers (DatabaseError beyond)."""
    wanted = sorted(set(tables))
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with transaction.atomic(using=connection.alias), freeze.raw_cursor(connection) as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = {max(1, int(lock_timeout * 1000))}")
                cursor.execute("SELECT current_schema()")
                (schema,) = cursor.fetchone()
                log = f"{_quote(schema)}.{_quote(LOG)}"
                cursor.execute(f"CREATE TABLE IF NOT EXISTS {log} (name text NOT NULL, xid xid8 NOT NULL)")
                freeze.owner_only(cursor, schema, LOG)
                cursor.execute(f"TRUNCATE {log}")
                cursor.execute(_function_sql(schema))
                cursor.execute(
                    f"SELECT c.relname, {_OURS} FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "  # noqa: S608
                    "WHERE t.tgname = %s AND c.relnamespace = current_schema()::regnamespace",
                    [f"{FUNCTION}()", TRIGGER_TYPE, TRIGGER],
                )
                present = dict(cursor.fetchall())
                for table in wanted:
                    if table in present and not present[table]:  # our name, not our definition
                        cursor.execute(f"DROP TRIGGER {TRIGGER} ON {_quote(table)}")
                    if not present.get(table):
                        cursor.execute(
                            f"CREATE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                            f"ON {_quote(table)} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
                        )
                    cursor.execute(f"ALTER TABLE {_quote(table)} ENABLE ALWAYS TRIGGER {TRIGGER}")
            return len(wanted)
        except DatabaseError as error:  # a writer holding one table and writing another: start again
            if getattr(error.__cause__, "sqlstate", None) != DEADLOCK or attempt == ATTEMPTS:
                raise
    return len(wanted)


def remove(connection: BaseDatabaseWrapper, *, lock_timeout: float = 20.0) -> int:
    """Stop logging: every trigger disabled, the log emptied, in one transaction; how many tables."""
    with transaction.atomic(using=connection.alias), freeze.raw_cursor(connection) as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = {max(1, int(lock_timeout * 1000))}")
        cursor.execute(
            "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = %s AND t.tgenabled <> 'D' AND c.relnamespace = current_schema()::regnamespace",
            [TRIGGER],
        )
        enabled = [name for (name,) in cursor.fetchall()]
        for table in enabled:
            cursor.execute(f"ALTER TABLE {_quote(table)} DISABLE TRIGGER {TRIGGER}")
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [LOG])
        if cursor.fetchone()[0]:
            cursor.execute(f"DELETE FROM {_quote(LOG)}")  # noqa: S608
    return len(enabled)


def snapshot(cursor: Any) -> str:
    """The current transaction's snapshot, as unwritten_since() takes it (call it in the
    REPEATABLE READ transaction whose snapshot is meant)."""
    cursor.execute("SELECT pg_current_snapshot()::text")
    return str(cursor.fetchone()[0])


def unwritten_since(connection: BaseDatabaseWrapper, earlier: str, tables: Iterable[str]) -> set[str] | None:
    """The tables among `tables` proved unwritten after the snapshot `earlier`, read now: their
    trigger enabled ALWAYS, and no logged write the earlier snapshot could not see. Call it where
    every transaction that wrote since has ended (under the freeze, after its drain). None when
    there is no log (nothing installed it): then nothing is proved either way."""
    wanted = set(tables)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [LOG])
        if not cursor.fetchone()[0]:
            return None
        cursor.execute(
            f"SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE {_OURS} "  # noqa: S608
            "AND t.tgname = %s AND t.tgenabled = 'A' AND c.relnamespace = current_schema()::regnamespace",
            [f"{FUNCTION}()", TRIGGER_TYPE, TRIGGER],
        )
        logging = {name for (name,) in cursor.fetchall()}
        cursor.execute(
            f"SELECT DISTINCT name FROM {_quote(LOG)} WHERE NOT pg_visible_in_snapshot(xid, %s::pg_snapshot)",  # noqa: S608
            [earlier],
        )
        written = {name for (name,) in cursor.fetchall()}
    return (wanted & logging) - written
