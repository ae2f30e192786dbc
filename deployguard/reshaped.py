"""Tables whose columns a deploy changed, compared by value against the backup taken at the freeze.

When a migration drops, adds or retypes columns, the fingerprint taken at the freeze (over the
columns the table had then) cannot be taken again now. The backup holds the table as it was:
both sides are hashed over the columns common to before and after, each value as text (a
retyped column compares equal exactly when its conversion kept every value's text), with the
primary key among them, so every surviving row is matched to itself. Nothing here degrades to
row counts: a table whose rows cannot be matched (its primary key did not survive) is a
difference, which only `deploy_safe --allow-data-migration` naming the migration excuses.

SQLite: the same aggregate over `CAST(column AS TEXT)` on the backup file and on the database.
PostgreSQL: the backup is a dump; `pg_restore --data-only --table` streams the table's rows in
COPY text form, and the database's rows are read the same way (`COPY (SELECT …) TO STDOUT`),
with the dump's output settings, so both sides are the very same text hashed by the same function.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from django.db import connections, transaction

from deployguard import backup, pg_tools
from deployguard.delta_pg import Delta
from deployguard.fingerprint import (
    MODULUS,
    primary_key_column,
    sqlite_fingerprint_aggregate,
    sqlite_row_hash_function,
)

NO_BACKUP = "{table}: its columns changed and there is no backup to compare their values with"
NO_IDENTITY = (
    "{table}: its primary key {pk} did not survive the migration, so its rows cannot be matched to "
    "what they were; name the migration with --allow-data-migration if it rewrites the table on purpose"
)
VALUES_DIFFER = "{table}: values differ in the columns that survived ({columns}): {how}"
RETYPED_HINT = (
    "; retyped {columns} did not keep every value's text: if a migration converts them on purpose, "
    "name it with --allow-data-migration APP.NAME"
)
# pg_dump's output settings (pg_backup_archiver's _doSetFixedOutputState and pg_dump's setup):
# the database's side is read with the same, so equal values give equal text.
_DUMP_SETTINGS = (
    ("DateStyle", "ISO"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
)


@dataclass(frozen=True)
class Counted:
    """Rows and the sum of their hashes over the compared columns, both sides alike."""

    count: int
    digest: int

    def how_differs(self, after: Counted) -> str:
        if self.count != after.count:
            return f"{self.count} rows before, {after.count} after"
        return f"{self.count} rows both times, contents differ"


def compare(
    table: str,
    columns: Sequence[str],
    *,
    backup_path: Path | None,
    retyped: Iterable[str] = (),
    renamed: Iterable[tuple[str, str]] = (),
    using: str,
) -> str:
    """How `table`'s rows now differ from the backup's over `columns` (each as text), and each
    `renamed` column (name before, name now) as one; "" when they are the same rows with the
    same values."""
    if backup_path is None:
        return NO_BACKUP.format(table=table)
    pk = primary_key_column(table, using=using)
    if pk is None or pk not in columns:
        return NO_IDENTITY.format(table=table, pk=pk or "(none)")
    renamed = list(renamed)
    then = [*columns, *(old for old, _ in renamed)]
    now = [*columns, *(new for _, new in renamed)]
    if connections[using].vendor == "sqlite":
        before, after = _sqlite_backup(backup_path, table, then), _sqlite_now(table, now, using)
    else:
        before, after = (
            _postgresql_backup(backup_path, table, then, using),
            _postgresql_now(table, now, using),
        )
    if before == after:
        return ""
    named = [*columns, *(f"{old} (now {new})" for old, new in renamed)]
    line = VALUES_DIFFER.format(table=table, columns=", ".join(named), how=before.how_differs(after))
    if retyped := sorted(retyped):
        line += RETYPED_HINT.format(columns=", ".join(retyped))
    return line


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_sql(table: str, columns: Sequence[str]) -> str:
    cast = ", ".join(f"CAST({_quote(c)} AS TEXT)" for c in columns)
    return f"SELECT count(*), deployguard_fingerprint({cast}) FROM {_quote(table)}"  # noqa: S608


def _open_sqlite(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    db.create_aggregate("deployguard_fingerprint", -1, sqlite_fingerprint_aggregate)
    return db


def _sqlite_backup(path: Path, table: str, columns: Sequence[str]) -> Counted:
    with contextlib.closing(_open_sqlite(path)) as db:
        count, total = db.execute(_sqlite_sql(table, columns)).fetchone()
    return Counted(int(count), int(total or 0) % MODULUS)


def _sqlite_now(table: str, columns: Sequence[str], using: str) -> Counted:
    connection = connections[using]
    connection.ensure_connection()
    connection.connection.create_aggregate("deployguard_fingerprint", -1, sqlite_fingerprint_aggregate)
    with connection.cursor() as cursor:
        cursor.execute(_sqlite_sql(table, columns))
        count, total = cursor.fetchone()
    return Counted(int(count), int(total or 0) % MODULUS)


def _hash_lines(lines: Iterable[bytes], positions: Sequence[int]) -> Counted:
    """Sum the hashes of COPY text lines over the fields at `positions` (escaped as COPY wrote
    them: the same value is the same text on both sides; \\N is NULL)."""
    count, total = 0, 0
    for line in lines:
        fields = line.split(b"\t")
        values = tuple(None if fields[i] == b"\\N" else fields[i] for i in positions)
        total += sqlite_row_hash_function(*values)
        count += 1
    return Counted(count, total % MODULUS)


def _copy_header_columns(header: bytes) -> list[str]:
    """The columns of pg_restore's `COPY schema.table (a, "b c") FROM stdin;` line."""
    inside = header[header.index(b"(") + 1 : header.rindex(b")")].decode()
    names = []
    for raw in inside.split(", "):
        name = raw.strip()
        if name.startswith('"') and name.endswith('"'):
            name = name[1:-1].replace('""', '"')
        names.append(name)
    return names


def _postgresql_backup(path: Path, table: str, columns: Sequence[str], using: str) -> Counted:
    """The table's rows in the dump, streamed out of pg_restore (no database is touched): from
    the dump's delta when the table was written between the dump and the freeze."""
    delta = Delta.of(backup.Manifest.read(path).extra)
    if delta is not None and table in delta.tables:
        path = delta.path(path)
    env = pg_tools.postgres_environment(using)
    command = [pg_tools.executable("pg_restore"), "--data-only", "--table", table, "--file", "-", str(path)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: S603
    assert process.stdout is not None
    try:
        counted = _read_dumped_table(process.stdout, columns)
    finally:
        process.stdout.close()
        _, error = process.communicate()
    if process.returncode != 0:
        raise backup.BackupError(f"pg_restore could not read {table} from {path}: {error.decode()[-300:]}")
    if counted is None:
        raise backup.BackupError(f"The backup {path} holds no data for {table}.")
    return counted


def _read_dumped_table(stream: Iterable[bytes], columns: Sequence[str]) -> Counted | None:
    lines = iter(stream)
    for line in lines:
        if line.startswith(b"COPY "):
            dumped = _copy_header_columns(line)
            positions = [dumped.index(c) for c in columns]
            return _hash_lines(_copy_body(lines), positions)
    return None


def _copy_body(lines: Iterator[bytes]) -> Iterator[bytes]:
    for line in lines:
        line = line.rstrip(b"\n")
        if line == b"\\.":
            return
        yield line


def _postgresql_now(table: str, columns: Sequence[str], using: str) -> Counted:
    connection = connections[using]
    quote = connection.ops.quote_name
    select = f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(table)}"  # noqa: S608
    with transaction.atomic(using=using), connection.cursor() as cursor:
        for name, value in _DUMP_SETTINGS:
            cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
        # pg_dump's session keeps the server's time zone: so does this transaction.
        cursor.execute(
            "SELECT set_config('TimeZone', reset_val, true) FROM pg_settings WHERE name = 'TimeZone'"
        )
        with cursor.cursor.copy(f"COPY ({select}) TO STDOUT") as copy:
            return _hash_lines(_copied_lines(copy), range(len(columns)))


def _copied_lines(copy: Iterable[bytes | memoryview]) -> Iterator[bytes]:
    rest = b""
    for block in copy:
        rest += bytes(block)
        *complete, rest = rest.split(b"\n")
        yield from complete
    if rest:
        yield rest
