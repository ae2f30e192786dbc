"""Fingerprints of tables: a row count and an order-independent hash of every row, computed in SQL.

A fingerprint is the number of rows and the sum, modulo 2**64, of a 64-bit hash of
each row's columns. The sum does not depend on row order and counts duplicate rows
as often as they occur, so two fingerprints are equal exactly when the tables hold
the same multiset of rows (up to a 64-bit hash collision). PostgreSQL hashes with
its built-in `hashtextextended(ROW(...)::text, 0)`; SQLite has no hash function, so
deterministic Python ones are registered on the connection on first use: a scalar
`deployguard_rowhash(...)` for per-row hashes and an aggregate
`deployguard_fingerprint(...)` that hashes and sums in one call per row. Both come from
the C module `deployguard._rowhash` when it is built (`make rowhash`), and from the
Python reference implementations below otherwise; the two give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from marshal import dumps
from typing import Any

from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper

MODULUS = 2**64


@dataclass(frozen=True)
class Fingerprint:
    table: str
    count: int
    digest: str

    def as_dict(self) -> dict[str, int | str]:
        return {"table": self.table, "count": self.count, "digest": self.digest}


def sqlite_row_hash(*values: object) -> int:
    """A signed 64-bit hash of one row's values (SQLite integers are signed 64-bit).

    The row's bytes are marshal format 2 of its tuple of values: SQLite hands Python only
    None, int, float, str and bytes, which that format encodes deterministically (no
    back-references, which arrived in format 3) and with their types, so NULL differs from
    '' and 1 from '1'. It is the cheapest canonical encoding available without C code.
    """
    return int.from_bytes(blake2b(dumps(values, 2), digest_size=8).digest(), "big", signed=True)


class _SQLiteFingerprint:
    """Aggregate: the sum of the rows' hashes modulo 2**64, as text (SQLite's sum() overflows)."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, *values: object) -> None:
        # sqlite_row_hash inlined: this runs once per row.
        self.total += int.from_bytes(blake2b(dumps(values, 2), digest_size=8).digest(), "big", signed=True)

    def finalize(self) -> str:
        return str(self.total % MODULUS)


try:
    from deployguard._rowhash import FingerprintAggregate as _CFingerprintAggregate
    from deployguard._rowhash import row_hash as _c_row_hash
except ImportError:  # not compiled (no C compiler where `make` ran): the Python versions serve
    sqlite_row_hash_function: Callable[..., int] = sqlite_row_hash
    sqlite_fingerprint_aggregate: type[Any] = _SQLiteFingerprint
else:
    # The Python call per row is most of a fingerprint's time on SQLite; the C versions skip it.
    sqlite_row_hash_function = _c_row_hash
    sqlite_fingerprint_aggregate = _CFingerprintAggregate


def prepare(connection: BaseDatabaseWrapper) -> None:
    """Make `connection` able to hash rows: on SQLite, register the row-hash functions."""
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        raw = connection.connection
        raw.create_function("deployguard_rowhash", -1, sqlite_row_hash_function, deterministic=True)
        raw.create_aggregate("deployguard_fingerprint", -1, sqlite_fingerprint_aggregate)
    elif connection.vendor != "postgresql":
        raise NotImplementedError(f"Fingerprints support SQLite and PostgreSQL, not {connection.vendor}.")


def column_names(tables: Iterable[str], *, using: str = "default") -> dict[str, list[str]]:
    """Each table's column names in their order, in one query.

    Django's get_table_description() also works out collations and, on SQLite, parses
    each table's CREATE statement with sqlparse: about 20 ms a table, for names alone.
    """
    connection = connections[using]
    wanted = sorted(set(tables))
    if not wanted:
        return {}
    if connection.vendor == "postgresql":
        sql = f"SELECT c.relname, a.attname {_PG_COLUMNS}"
        params: list[Any] = [wanted]
    elif connection.vendor == "sqlite":
        marks = ", ".join("%s" for _ in wanted)
        sql = (
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p "  # noqa: S608
            f"WHERE m.type = 'table' AND m.name IN ({marks}) ORDER BY m.name, p.cid"
        )
        params = wanted
    else:
        with connection.cursor() as cursor:
            return {
                t: [c.name for c in connection.introspection.get_table_description(cursor, t)] for t in wanted
            }
    found: dict[str, list[str]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for table, column in cursor.fetchall():
            found.setdefault(table, []).append(column)
    return found


# Every live column of the named tables visible on the search path, in table and column order.
_PG_COLUMNS = (
    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
    "JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type e ON e.oid = t.typelem "
    "LEFT JOIN pg_collation co ON co.oid = a.attcollation "
    "WHERE c.relname = ANY(%s) AND pg_table_is_visible(c.oid) AND a.attnum > 0 "
    "AND NOT a.attisdropped ORDER BY c.relname, a.attnum"
)


def column_types(tables: Iterable[str], *, using: str = "default") -> dict[str, list[list[Any]]]:
    """PostgreSQL: each table's columns, in order, as [name, type, collation, number, table oid,
    provable, table file node], in one query.

    What a query's answer can depend on besides the rows: the same SQL over the same rows and
    column types gives the same answer (deploy_safe's reuse of its integrity counts). The
    column's number and the table's oid change when a column is dropped and added again, or a
    table replaced by another of the same name, which change what the rows hold without
    writing a row version; the file node changes when the table is rewritten (ALTER COLUMN
    ... TYPE ... USING, to the same type even; TRUNCATE; VACUUM FULL, CLUSTER), which changes
    what every row holds without any statement trigger firing. `provable` is whether
    unwritten_since() can vouch for the column: an ordinary table's (not partitioned, inherited
    from or foreign, whose rows live in other tables or elsewhere), not a virtual generated
    column, and of a base type or an array of one (an enum's, composite's or domain's meaning
    can change by DDL on the type alone).
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise NotImplementedError("column_types() reads PostgreSQL's catalogue")
    wanted = sorted(set(tables))
    found: dict[str, list[list[Any]]] = {}
    if not wanted:
        return found
    sql = (
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), coalesce(co.collname, ''), "
        "a.attnum, c.oid::bigint, c.relkind = 'r' AND NOT c.relhassubclass AND a.attgenerated <> 'v' "
        "AND t.typtype = 'b' AND (e.oid IS NULL OR e.typtype = 'b'), c.relfilenode::bigint "
        f"{_PG_COLUMNS}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [wanted])
        for table, *column in cursor.fetchall():
            found.setdefault(table, []).append(column)
    return found


def provable(types: list[list[Any]]) -> bool:
    """Whether unwritten_since() can vouch for a table, by column_types()'s description of it:
    no row of it can change what it holds without a new row version."""
    return all(column[5] for column in types)


def table_columns(
    table: str | type[models.Model], *, using: str = "default", columns: Sequence[str] | None = None
) -> tuple[str, list[str]]:
    """The table name and the columns a fingerprint hashes: the model's concrete columns by default."""
    if isinstance(table, str):
        name = table
        if columns is None:
            columns = column_names([name], using=using).get(name, [])
    else:
        name = table._meta.db_table
        if columns is None:
            columns = [field.column for field in table._meta.concrete_fields]
    if not columns:
        raise ValueError(f"Table {name!r} has no columns to fingerprint.")
    return name, list(columns)


def row_hash_sql(columns: Sequence[str], connection: BaseDatabaseWrapper, alias: str = "") -> str:
    """SQL for one row's signed 64-bit hash over `columns`."""
    quote = connection.ops.quote_name
    prefix = f"{quote(alias)}." if alias else ""
    cols = ", ".join(f"{prefix}{quote(c)}" for c in columns)
    if connection.vendor == "postgresql":
        # ROW(...)::text is the row's canonical text form; hashtextextended is built in (PG 11+).
        return f"hashtextextended(ROW({cols})::text, 0)"
    return f"deployguard_rowhash({cols})"


def fingerprint_table(
    table: str | type[models.Model],
    *,
    using: str = "default",
    columns: Sequence[str] | None = None,
    pk_at_most: tuple[str, int | None] | None = None,
) -> Fingerprint:
    """Count and hash every row of `table` (a model or a table name) in one pass, in the database;
    with `pk_at_most` (column, largest), only the rows whose primary key is at most that (none
    when it is None)."""
    connection = connections[using]
    prepare(connection)
    name, columns = table_columns(table, using=using, columns=columns)
    # Only identifiers go into the SQL, each quoted by the backend: no values, no injection.
    quote = connection.ops.quote_name
    if connection.vendor == "postgresql":
        # sum(bigint) is numeric in PostgreSQL: no overflow at any row count.
        sql = f"SELECT count(*), sum({row_hash_sql(columns, connection)}) FROM {quote(name)}"  # noqa: S608
    else:
        cols = ", ".join(quote(c) for c in columns)
        sql = f"SELECT count(*), deployguard_fingerprint({cols}) FROM {quote(name)}"  # noqa: S608
    params: list[Any] = []
    if pk_at_most is not None:
        sql += f" WHERE {quote(pk_at_most[0])} <= %s"
        params.append(pk_at_most[1] if pk_at_most[1] is not None else -(2**63))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        count, total = cursor.fetchone()
    digest = int(total or 0) % MODULUS
    return Fingerprint(table=name, count=int(count), digest=f"{digest:016x}")


def primary_key_column(table: str, *, using: str = "default") -> str | None:
    """The table's primary-key column, or None when it has no single-column primary key."""
    connection = connections[using]
    with connection.cursor() as cursor:
        return connection.introspection.get_primary_key_column(cursor, table)


def row_hashes(
    table: str | type[models.Model], *, using: str = "default", chunk_size: int = 10_000
) -> Iterator[tuple[Any, int]]:
    """Yield (pk, row hash) for every row of `table` (a model, or the name of a table with a
    single-column primary key), in primary-key order, streamed."""
    connection = connections[using]
    prepare(connection)
    name, columns = table_columns(table, using=using)
    pk_column = primary_key_column(name, using=using) if isinstance(table, str) else table._meta.pk.column
    if pk_column is None:
        raise ValueError(f"Table {name!r} has no single-column primary key to list its rows by.")
    quote = connection.ops.quote_name
    pk = quote(pk_column)
    sql = f"SELECT {pk}, {row_hash_sql(columns, connection)} FROM {quote(name)} ORDER BY {pk}"  # noqa: S608
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql)
        while rows := cursor.fetchmany(chunk_size):
            yield from rows


ADDED, REMOVED, CHANGED = "added", "removed", "changed"


def diff_row_hashes(
    then: Iterable[tuple[Any, int]], now: Iterable[tuple[Any, int]]
) -> Iterator[tuple[str, Any]]:
    """(ADDED, REMOVED or CHANGED, pk) for each row that differs between two lists of
    (pk, row hash), both in the same primary-key order (as row_hashes() gives them): one merge,
    streamed, so memory stays flat at any table size."""
    sentinel: Any = object()
    earlier, later = iter(then), iter(now)
    old, new = next(earlier, sentinel), next(later, sentinel)
    while old is not sentinel or new is not sentinel:
        if new is sentinel or (old is not sentinel and old[0] < new[0]):
            yield REMOVED, old[0]
            old = next(earlier, sentinel)
        elif old is sentinel or new[0] < old[0]:
            yield ADDED, new[0]
            new = next(later, sentinel)
        else:
            if old[1] != new[1]:
                yield CHANGED, new[0]
            old, new = next(earlier, sentinel), next(later, sentinel)


# --- PostgreSQL: proving a table unwritten since a snapshot, without hashing it -----------

XID_SPACE = 2**32


def snapshot_horizon(*, using: str = "default") -> int:
    """PostgreSQL: the horizon of the current transaction's snapshot, a 32-bit transaction id
    below which every transaction that could have written this database had ended by then.

    It is the oldest of the snapshot's xmax and the transactions it saw running, leaving out
    those still running in another database (a cluster's transaction ids are shared, so a
    long transaction elsewhere would otherwise hold it back). Every row version the snapshot
    does not see, and every version written since, carries an xmin at or above it: a
    subtransaction's id is above its parent's. Call it inside the snapshot's REPEATABLE READ
    transaction, whose first statement should read PIN_RUNNING: PostgreSQL keeps the list of
    running backends it reads until the transaction ends, so "still running elsewhere" is
    judged at the snapshot's moment. Read later, a transaction elsewhere that has ended since
    holds the horizon back: a lost shortcut, never a wrong proof.
    """
    with connections[using].cursor() as cursor:
        cursor.execute(_PG_HORIZON)
        (horizon,) = cursor.fetchone()
    return int(horizon) % XID_SPACE


# Read in the statement that takes a snapshot (see snapshot_horizon).
PIN_RUNNING = "(SELECT count(*) FROM pg_stat_activity)"

_PG_HORIZON = (
    "SELECT min(x)::text::bigint FROM ("
    " SELECT pg_snapshot_xmax(pg_current_snapshot()) AS x"
    " UNION ALL SELECT x FROM pg_snapshot_xip(pg_current_snapshot()) AS x"
    " WHERE x::text::bigint % 4294967296 NOT IN ("  # XID_SPACE
    "  SELECT backend_xid::text::bigint FROM pg_stat_activity WHERE backend_xid IS NOT NULL"
    "  AND datid <> (SELECT oid FROM pg_database WHERE datname = current_database()))"
    ") AS running"
)


def unwritten_since(horizon: int, counts: Mapping[str, int], *, using: str = "default") -> set[str]:
    """PostgreSQL: the tables among `counts` proved to hold exactly the rows they held in the
    snapshot whose horizon is `horizon` (snapshot_horizon()), where each had counts[table] rows.

    INSERT, UPDATE and COPY write new row versions, each stamped with its transaction's id
    (xmin); so does ALTER TABLE when it rewrites the table (VACUUM FULL and CLUSTER move the
    versions as they are, data and xmin). A table whose visible rows all carry an xmin below the
    horizon holds only rows the snapshot saw: deleting is the one change that leaves no new
    version, and it shows in the count. One scan, no hashing. A table is not proved when it
    has a newer version, even an update that changed nothing: the caller hashes it instead.
    xmin is compared through age(), modulo 2**32 as the server does, both ages in the same
    statement: a version written at or after the horizon is 0 to age(horizon) transactions old.
    A row frozen more than 2**31 transactions ago keeps its xmin and reads a negative age: old.

    The caller must also check that nothing changed what the rows hold without writing them:
    the same column_types() as at the snapshot, all of them provable().
    """
    connection = connections[using]
    wanted = sorted(counts)
    if not wanted:
        return set()
    quote = connection.ops.quote_name
    # Only quoted identifiers go into the SQL; the table names come back as parameters.
    sql = " UNION ALL ".join(
        f"SELECT %s, count(*), count(*) FILTER (WHERE age(xmin) BETWEEN 0 AND age(%s::text::xid)) "  # noqa: S608
        f"FROM {quote(t)}"
        for t in wanted
    )
    params: list[Any] = [value for table in wanted for value in (table, str(horizon))]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    return {table for table, count, newer in found if count == counts[table] and newer == 0}
