"""SQLite: which protected tables were written between two moments, proved without hashing them.

PostgreSQL stamps every row version with the transaction that wrote it, from which
fingerprint.unwritten_since() proves a table unwritten; SQLite keeps no such stamp. So for the
length of a deploy, deploy_safe counts the writes itself: three AFTER row triggers on each
protected table add one to that table's row in `deployguard_written` for every row inserted,
updated or deleted, in the writer's own transaction (a write rolled back takes its count with
it). A `Mark` is the counts and each table's schema (its CREATE TABLE and its counting
triggers, as sqlite_master keeps them), read in one transaction. A table is proved unwritten
between two marks when both hold its count, equal, and the same schema with all three
triggers: whatever client wrote it (the ORM, raw SQL, the sqlite3 shell) fired them.

Installed and removed through a connection of its own (no Django guard: deployguard's own
schema), under SQLite's write lock, and removed whatever the deploy's end (`deploy_safe
--recover` removes what a killed deploy left). What it cannot see is a write that fires no
trigger: the incremental blob API (sqlite3_blob_write, Python's Connection.blobopen), a
connection with its triggers switched off (SQLITE_DBCONFIG_ENABLE_TRIGGER; the shell's
`.dbconfig enable_trigger off`), or a client that drops the triggers, writes and puts them back,
or edits the counts. SQLite's freeze has the same blind spot (deployguard.freeze_sqlite): SQLite
has no access control, and only code written to get round it does any of these. On PostgreSQL
(deployguard.written_pg) the site's role can do none of them.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.db import connections

from deployguard import written_pg

TABLE = "deployguard_written"
TRIGGER_PREFIX = "deployguard_written_"
OPERATIONS = ("INSERT", "UPDATE", "DELETE")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def trigger_name(table: str, operation: str) -> str:
    return f"{TRIGGER_PREFIX}{operation.lower()}_{table}"


def trigger_sql(table: str, operation: str) -> str:
    """A counting trigger, exactly as sqlite_master keeps it."""
    return (
        f"CREATE TRIGGER {_quote(trigger_name(table, operation))} AFTER {operation} ON {_quote(table)} "  # noqa: S608
        f"BEGIN UPDATE {TABLE} SET writes = writes + 1 WHERE name = {_literal(table)}; END"
    )


@dataclass(frozen=True)
class Mark:
    """The write counts of the tracked tables at one moment, and each one's schema then."""

    counts: dict[str, int]
    schema: dict[str, tuple[str, ...]]  # table -> (its CREATE TABLE, its counting triggers' SQL, sorted)

    def tracked(self, table: str) -> bool:
        """Whether `table` carried its three counting triggers, as installed, at this mark."""
        wanted = tuple(sorted(trigger_sql(table, operation) for operation in OPERATIONS))
        return table in self.counts and self.schema.get(table, ())[1:] == wanted

    def unwritten_since(self, earlier: Mark) -> set[str]:
        """The tables proved unwritten from `earlier` to this mark: tracked at both, with the
        same count and schema."""
        return {
            table
            for table, count in self.counts.items()
            if earlier.counts.get(table) == count
            and self.tracked(table)
            and earlier.tracked(table)
            and self.schema[table] == earlier.schema[table]
        }


def connect(path: str | Path, *, timeout: float = 20.0) -> sqlite3.Connection:
    """A plain connection to the database file, in autocommit mode (transactions spelled out)."""
    return sqlite3.connect(str(path), timeout=timeout, isolation_level=None)


def install(path: str | Path, tables: Iterable[str], *, timeout: float = 20.0) -> None:
    """Start counting writes to `tables` (from zero) under the write lock, in one transaction.
    SQLite's own tables (sqlite_stat1, which ANALYZE writes) take no triggers: never proved."""
    wanted = sorted(table for table in set(tables) if not table.lower().startswith("sqlite_"))
    with contextlib.closing(connect(path, timeout=timeout)) as raw:
        raw.execute("BEGIN IMMEDIATE")
        try:
            _drop(raw)
            raw.execute(f"CREATE TABLE {TABLE} (name TEXT PRIMARY KEY, writes INTEGER NOT NULL)")
            raw.executemany(f"INSERT INTO {TABLE} (name, writes) VALUES (?, 0)", [(t,) for t in wanted])  # noqa: S608
            for table in wanted:
                for operation in OPERATIONS:
                    raw.execute(trigger_sql(table, operation))
            raw.execute("COMMIT")
        except BaseException:
            raw.execute("ROLLBACK")
            raise


def remove(path: str | Path, *, timeout: float = 20.0) -> bool:
    """Stop counting: drop the triggers and the counts, in one transaction. True when there were any."""
    with contextlib.closing(connect(path, timeout=timeout)) as raw:
        if not _installed(raw):
            return False
        raw.execute("BEGIN IMMEDIATE")
        try:
            _drop(raw)
            raw.execute("COMMIT")
        except BaseException:
            raw.execute("ROLLBACK")
            raise
    return True


def remove_from(raw: sqlite3.Connection) -> None:
    """Drop the triggers and the counts on an open connection (a backup's copy of the database)."""
    _drop(raw)


def _installed(raw: sqlite3.Connection) -> bool:
    return bool(
        raw.execute(
            "SELECT 1 FROM sqlite_master "
            "WHERE name = ? OR (type = 'trigger' AND name LIKE ? ESCAPE '\\') LIMIT 1",
            [TABLE, TRIGGER_PREFIX.replace("_", "\\_") + "%"],
        ).fetchone()
    )


def _drop(raw: sqlite3.Connection) -> None:
    names = [
        name
        for (name,) in raw.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE ? ESCAPE '\\'",
            [TRIGGER_PREFIX.replace("_", "\\_") + "%"],
        ).fetchall()
    ]
    for name in names:
        raw.execute(f"DROP TRIGGER IF EXISTS {_quote(name)}")
    raw.execute(f"DROP TABLE IF EXISTS {TABLE}")


def mark(raw: sqlite3.Connection) -> Mark:
    """The counts and schemas now, read in the connection's current transaction when it is in one
    (a backup's read snapshot), else in one of its own."""
    own = raw.in_transaction is False
    if own:
        raw.execute("BEGIN")
    try:
        try:
            counts = dict(raw.execute(f"SELECT name, writes FROM {TABLE}").fetchall())  # noqa: S608
        except sqlite3.OperationalError:  # not installed (or dropped): nothing is proved
            counts = {}
        rows = raw.execute(
            "SELECT type, tbl_name, sql FROM sqlite_master WHERE type = 'table' "
            "OR (type = 'trigger' AND name LIKE ? ESCAPE '\\')",
            [TRIGGER_PREFIX.replace("_", "\\_") + "%"],
        ).fetchall()
    finally:
        if own:
            raw.execute("COMMIT")
    tables = {table: sql for kind, table, sql in rows if kind == "table"}
    triggers: dict[str, list[str]] = {}
    for kind, table, sql in rows:
        if kind == "trigger":
            triggers.setdefault(table, []).append(sql)
    schema = {table: (tables[table], *sorted(triggers.get(table, ()))) for table in counts if table in tables}
    return Mark(counts, schema)


def stop(using: str = "default") -> None:
    """Stop keeping track of writes on the database `using`, whatever its engine: this module's
    counts on a SQLite file, deployguard.written_pg's log on PostgreSQL. Nothing when none is on."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        written_pg.remove(connection)
    elif connection.vendor == "sqlite" and not connection.is_in_memory_db():
        remove(str(connection.settings_dict["NAME"]))


def mark_now(path: str | Path) -> Mark:
    """The mark now, read through a connection of its own."""
    with contextlib.closing(connect(path)) as raw:
        return mark(raw)
