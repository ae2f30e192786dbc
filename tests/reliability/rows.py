"""Rows lost and rows added, measured: the multiset of per-row hashes of every protected table.

A changed row counts once as lost (its old content) and once as added (its new content).
`row_hashes()` reads the database Django is connected to; `scratch_row_hashes()` reads a
scratch database of tests/deploy_apps through a `manage.py shell` subprocess, as deploys do.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from django.db import connections

from deployguard.fingerprint import prepare, row_hash_sql, table_columns
from deployguard.tables import protected_tables

RowHashes = dict[str, Counter[int]]

ROWS_SCRIPT = """
import json
from tests.reliability.rows import row_hashes
print("ROWS " + json.dumps({table: dict(hashes) for table, hashes in row_hashes().items()}))
"""


def row_hashes(using: str = "default") -> RowHashes:
    """For every protected table, how many times each row hash occurs."""
    connection = connections[using]
    prepare(connection)  # SQLite: registers the row-hash function
    quote = connection.ops.quote_name
    result: RowHashes = {}
    with connection.cursor() as cursor:
        for table in sorted(protected_tables(connection.introspection.table_names(cursor))):
            name, columns = table_columns(table, using=using)
            cursor.execute(f"SELECT {row_hash_sql(columns, connection)} FROM {quote(name)}")  # noqa: S608
            result[table] = Counter(int(value) for (value,) in cursor.fetchall())
    return result


def scratch_row_hashes(scratch) -> RowHashes:
    """row_hashes() of a tests.deploy_apps.support.Scratch database, read in a subprocess."""
    result = scratch.manage("shell", "-c", ROWS_SCRIPT)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("ROWS "))
    return {
        table: Counter({int(value): count for value, count in hashes.items()})
        for table, hashes in json.loads(line.removeprefix("ROWS ")).items()
    }


@dataclass(frozen=True)
class RowChanges:
    lost: int
    added: int
    by_table: dict[str, tuple[int, int]]

    def __str__(self) -> str:
        changed = {table: f"-{lost} +{added}" for table, (lost, added) in self.by_table.items()}
        return f"{self.lost} rows lost, {self.added} added {changed or ''}".rstrip()


def compare(before: RowHashes, after: RowHashes, *, ignore: frozenset[str] = frozenset()) -> RowChanges:
    """Rows in `before` and not in `after` (lost) and the reverse (added), per table and in total.

    `ignore` names tables whose changes are the scenario's purpose (a history table of the
    deploy-mode switch, say) and are left out of both counts.
    """
    by_table: dict[str, tuple[int, int]] = {}
    for table in sorted((set(before) | set(after)) - ignore):
        old, new = before.get(table, Counter()), after.get(table, Counter())
        lost, added = (old - new).total(), (new - old).total()
        if lost or added:
            by_table[table] = (lost, added)
    return RowChanges(
        lost=sum(lost for lost, _ in by_table.values()),
        added=sum(added for _, added in by_table.values()),
        by_table=by_table,
    )
