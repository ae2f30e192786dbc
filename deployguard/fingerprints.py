"""Every protected table's fingerprint at once, and how two of them differ.

One table's fingerprint is deployguard.fingerprint's; this is the whole database's, as a
backup's manifest records it and deploy_safe compares it. On PostgreSQL a table proved
unwritten since an earlier set of fingerprints (fingerprint.unwritten_since: same column
types, same row count, no newer row version) keeps its earlier fingerprint instead of being
hashed again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import connections

from deployguard import written, written_pg
from deployguard.fingerprint import (
    column_names,
    column_types,
    fingerprint_table,
    primary_key_column,
    provable,
    unwritten_since,
)
from deployguard.tables import migrate_writable_tables, protected_tables

Types = tuple[tuple[Any, ...], ...]
"""PostgreSQL: a table's fingerprint.column_types(), one tuple a column."""
Digests = dict[str, dict[str, Any]]
"""{table: {"count": rows, "digest": hash}}: fingerprints as a backup's manifest keeps them."""


@dataclass(frozen=True)
class TableFingerprint:
    """One table's columns (in order), row count and digest; on PostgreSQL also its
    column_types(), against which a later state is proved unwritten."""

    columns: tuple[str, ...]
    count: int
    digest: str
    types: Types | None = None
    declared: tuple[str, ...] = ()  # each column's declared type, lower case, in order
    # Migrate's bookkeeping tables (tables.migrate_writable_tables): the largest primary key,
    # above which the rows migrate adds are found (deployguard.bookkeeping).
    max_pk: int | None = None

    def declared_types(self) -> dict[str, str]:
        return dict(zip(self.columns, self.declared, strict=False))

    def as_digest(self) -> dict[str, Any]:
        return {"count": self.count, "digest": self.digest}


@dataclass(frozen=True)
class FingerprintsAt:
    """Every protected table's fingerprint, taken in one snapshot; on PostgreSQL with that
    snapshot's horizon (fingerprint.snapshot_horizon), from which later states are proved unwritten."""

    tables: Mapping[str, TableFingerprint]
    horizon: int | None = None
    # SQLite: the write counts (deployguard.written) at the same moment, from which later
    # states are proved unwritten the same way.
    mark: written.Mark | None = None
    # PostgreSQL, while deploy_safe logs writes (deployguard.written_pg): the snapshot itself,
    # after which the log proves tables unwritten without reading their rows.
    snapshot: str | None = None

    def reused_in(self, later: Mapping[str, TableFingerprint]) -> list[str]:
        """The tables of `later` that kept this set's fingerprint, proved unwritten since."""
        return [table for table, fp in later.items() if fp is self.tables.get(table)]


def protected_tables_now(*, using: str = "default") -> list[str]:
    """The protected tables that exist, sorted."""
    connection = connections[using]
    with connection.cursor() as cursor:
        return sorted(protected_tables(connection.introspection.table_names(cursor)))


def take(
    *,
    using: str = "default",
    earlier: FingerprintsAt | None = None,
    on_table: Callable[[int, int, int], None] | None = None,
    only: Iterable[str] | None = None,
) -> dict[str, TableFingerprint]:
    """Every protected table's fingerprint, bookkeeping tables included. `on_table(done, total,
    rows)` is called as each table is done (progress on a terminal).

    With `earlier` (PostgreSQL, with a horizon), a table with the same columns
    (fingerprint.column_types: names, types, numbers, the table's oid), all provable, that is
    proved unwritten since that snapshot keeps its earlier fingerprint, the very same object,
    instead of being hashed again. `only`: those of the protected tables, not all.
    """
    tables = protected_tables_now(using=using)
    if only is not None:
        tables = [table for table in tables if table in set(only)]
    bookkeeping = migrate_writable_tables()
    described = _describe(tables, using=using)
    proved: set[str] = set()
    if earlier is not None and earlier.horizon is not None:
        same_types = {
            table: then.count
            for table in tables
            if (then := earlier.tables.get(table)) is not None
            and then.types is not None
            and then.types == described[table][1]
            and provable(then.types)
        }
        proved = unwritten_since(earlier.horizon, same_types, using=using)
    taken: dict[str, TableFingerprint] = {}
    for table in tables:
        if earlier is not None and table in proved:
            taken[table] = earlier.tables[table]
            continue
        columns, types = described[table]
        fp = fingerprint_table(table, using=using, columns=columns)
        declared = declared_now([table], using=using, types=types and {table: types})[table]
        taken[table] = TableFingerprint(
            columns=columns, count=fp.count, digest=fp.digest, types=types, declared=tuple(declared.values()),
            max_pk=largest_pk(table, using=using) if table in bookkeeping else None,
        )  # fmt: skip
        if on_table is not None:
            on_table(len(taken), len(tables), fp.count)
    return taken


def largest_pk(table: str, *, using: str = "default") -> int | None:
    """The table's largest primary key (a single integer column), or None when it is empty."""
    connection = connections[using]
    pk = primary_key_column(table, using=using)
    if pk is None:
        return None
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT max({quote(pk)}) FROM {quote(table)}")  # noqa: S608
        (largest,) = cursor.fetchone()
    return None if largest is None else int(largest)


def _describe(tables: Iterable[str], *, using: str) -> dict[str, tuple[tuple[str, ...], Types | None]]:
    """Each table's columns, and on PostgreSQL their types, in one catalogue query."""
    if connections[using].vendor != "postgresql":
        return {table: (tuple(columns), None) for table, columns in column_names(tables, using=using).items()}
    return {
        table: (tuple(column[0] for column in types), types)
        for table, types in types_now(tables, using=using).items()
    }


def declared_now(
    tables: Iterable[str], *, using: str = "default", types: Mapping[str, Types] | None = None
) -> dict[str, dict[str, str]]:
    """Each table's columns and their declared types (lower case), in order: PostgreSQL's
    format_type() (from `types` when the caller has them), SQLite's declared type."""
    wanted = sorted(set(tables))
    if connections[using].vendor == "postgresql":
        described = types if types is not None else types_now(wanted, using=using)
        return {table: {column[0]: str(column[1]).lower() for column in described[table]} for table in wanted}
    found: dict[str, dict[str, str]] = {table: {} for table in wanted}
    with connections[using].cursor() as cursor:
        for table in wanted:
            cursor.execute("SELECT name, type FROM pragma_table_info(%s) ORDER BY cid", [table])
            found[table] = {name: kind.lower() for name, kind in cursor.fetchall()}
    return found


def types_now(tables: Iterable[str], *, using: str = "default") -> dict[str, Types]:
    """PostgreSQL: each table's fingerprint.column_types() now, as TableFingerprint.types holds them."""
    return {
        table: tuple(tuple(column) for column in types)
        for table, types in column_types(tables, using=using).items()
    }


def digests(tables: Mapping[str, TableFingerprint]) -> Digests:
    """The fingerprints as a backup's manifest records them: count and digest by table."""
    return {table: fp.as_digest() for table, fp in tables.items()}


def current_digests(
    *, using: str = "default", on_table: Callable[[int, int, int], None] | None = None
) -> Digests:
    """Every protected table's count and digest now (`on_table`: as take())."""
    return digests(take(using=using, on_table=on_table))


def difference(table: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """How one table's fingerprint changed, in one line; "" when it did not."""
    if before["count"] != after["count"]:
        return f"{table}: {before['count']} rows before, {after['count']} after"
    if before["digest"] != after["digest"]:
        return f"{table}: {before['count']} rows both times, contents differ"
    return ""


def differences(
    expected: Mapping[str, Mapping[str, Any]], actual: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """One line per table whose fingerprint differs (or that appeared or disappeared); empty
    when the data is the same."""
    lines = []
    for table in sorted(set(expected) | set(actual)):
        before, after = expected.get(table), actual.get(table)
        if before is None or after is None:
            lines.append(f"{table} {'appeared' if before is None else 'disappeared'}")
        elif line := difference(table, before, after):
            lines.append(line)
    return lines


@dataclass(frozen=True)
class ByValue:
    """A table whose columns changed, to be compared by value over `columns` (those common to
    before and after, in their earlier order) against the backup (deployguard.reshaped)."""

    table: str
    columns: tuple[str, ...]
    retyped: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()  # (name before, name now): compared as one column


def _renamed(
    fp: TableFingerprint, now: list[str], types: Types | None, dropped: list[str], added: list[str]
) -> tuple[tuple[str, str], ...]:
    """The dropped columns that were renamed, each with its name now: on PostgreSQL the column
    with the same number in the same table (ALTER TABLE … RENAME COLUMN keeps both); on SQLite
    the column at the same place when the table has as many columns as before."""
    if types is not None and fp.types is not None:
        then = {
            column[3]: column[0] for column in fp.types if column[0] in dropped and column[4] == types[0][4]
        }
        return tuple(
            (then[column[3]], column[0]) for column in types if column[0] in added and column[3] in then
        )
    if len(now) != len(fp.columns):
        return ()
    return tuple(
        (old, new) for old, new in zip(fp.columns, now, strict=True) if old in dropped and new in added
    )


@dataclass
class Comparison:
    """The data now against fingerprints taken earlier (compare_with_now)."""

    differences: list[str] = field(default_factory=list)
    schema_changes: list[str] = field(default_factory=list)
    unchanged: set[str] = field(default_factory=set)  # the same rows over the same columns
    proved_unwritten: list[str] = field(default_factory=list)  # of those, proved without hashing
    by_value: list[ByValue] = field(default_factory=list)  # for the caller, against the backup


def compare_with_now(
    before: FingerprintsAt, *, using: str = "default", skip: Iterable[str] = ()
) -> Comparison:
    """The data now against `before`, over the columns each table had then: a column added
    is a schema change, not a data change; a table with a column dropped, or retyped with its
    values' hashes changed, is listed in `by_value` for the caller to compare by value over
    the surviving columns against the backup (never by counts alone); tables created since
    must be empty. Tables in `skip` are not compared.

    On PostgreSQL a table with the same columns (names, types, numbers, the table's oid), all
    provable, that is proved unwritten since `before`'s snapshot is not hashed again: it holds
    the very rows whose fingerprint was taken. On SQLite the same holds for a table whose write
    count and schema (deployguard.written) are what `before.mark` recorded.
    """
    skipped = set(skip)
    now = set(protected_tables_now(using=using))
    ordered_now = column_names(now, using=using)
    columns_now = {table: set(columns) for table, columns in ordered_now.items()}
    postgresql = connections[using].vendor == "postgresql"
    pg_types = types_now(now & set(before.tables), using=using) if postgresql else None
    proved: set[str] = set()
    if before.horizon is not None and pg_types is not None:
        same_types = {
            table: fp.count
            for table, fp in before.tables.items()
            if table not in skipped
            and fp.types is not None
            and pg_types.get(table) == fp.types
            and provable(fp.types)
        }
        logged = (
            written_pg.unwritten_since(connections[using], before.snapshot, same_types)
            if before.snapshot is not None
            else None
        )
        proved = logged if logged is not None else unwritten_since(before.horizon, same_types, using=using)
    elif before.mark is not None and not postgresql:
        now_mark = written.mark_now(str(connections[using].settings_dict["NAME"]))
        proved = {
            table
            for table in now_mark.unwritten_since(before.mark)
            if table in before.tables and table not in skipped
        }
    found = Comparison(proved_unwritten=sorted(proved))
    compared = sorted(t for t in before.tables if t not in skipped and t in now and t not in proved)
    declared = declared_now(compared, using=using, types=pg_types)
    for table, fp in sorted(before.tables.items()):
        if table in skipped:
            continue
        if table not in now:
            found.schema_changes.append(f"{table}: dropped")
            continue
        if table in proved:
            found.unchanged.add(table)
            continue
        kept = tuple(c for c in fp.columns if c in columns_now[table])
        dropped = [c for c in fp.columns if c not in columns_now[table]]
        added = sorted(columns_now[table] - set(fp.columns))
        renamed = _renamed(fp, ordered_now[table], pg_types.get(table) if pg_types else None, dropped, added)
        dropped = [c for c in dropped if c not in dict(renamed)]
        added = [c for c in added if c not in dict(renamed).values()]
        then_types = fp.declared_types()
        retyped = tuple(c for c in kept if c in then_types and then_types[c] != declared[table].get(c))
        if added:
            found.schema_changes.append(f"{table}: columns added {', '.join(added)}")
        if retyped:
            found.schema_changes.append(f"{table}: columns retyped {', '.join(retyped)}")
        if renamed:
            moved = ", ".join(f"{old} to {new}" for old, new in renamed)
            found.schema_changes.append(f"{table}: columns renamed {moved}; compared by value")
        if dropped:
            found.schema_changes.append(
                f"{table}: columns dropped {', '.join(dropped)}; the surviving columns compared by value"
            )
        if dropped or renamed:
            found.by_value.append(ByValue(table, kept, retyped, renamed))
            continue
        after = fingerprint_table(table, using=using, columns=fp.columns)
        line = difference(table, fp.as_digest(), {"count": after.count, "digest": after.digest})
        if line and retyped:  # the values' types changed: equal if each kept its text
            found.by_value.append(ByValue(table, kept, retyped))
        elif line:
            found.differences.append(line)
        elif not added and not retyped:
            found.unchanged.add(table)
    for table in sorted(now - set(before.tables) - skipped):
        found.schema_changes.append(f"{table}: created")
        count = fingerprint_table(table, using=using).count
        if count:
            found.differences.append(f"{table}: new table holds {count} rows; it must start empty")
    return found
