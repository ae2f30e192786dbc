"""SQLite's PRAGMA integrity_check on a backup file, split so that it uses more than one core."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# integrity_check(TABLE) appeared in SQLite 3.33.0 (2020).
_PER_TABLE_CHECK = sqlite3.sqlite_version_info >= (3, 33, 0)


def integrity_problems(path: Path, pool: ThreadPoolExecutor | None = None) -> list[str]:
    """What PRAGMA integrity_check finds wrong with the SQLite file at `path`: [] when it is sound.

    The check is split so that it can use more than one core: `quick_check` makes every
    check of integrity_check over the whole file except two, UNIQUE constraints and index
    entries against their table's rows; integrity_check(TABLE) makes exactly those two (with
    the table's own b-trees), one table at a time. Together they are the whole check. The
    largest tables are submitted first, so that the last to finish is a small one. Without
    `pool` the parts run one after another; older SQLite runs the plain whole-file check.
    """
    if not _PER_TABLE_CHECK:
        return _check(path, "PRAGMA integrity_check")
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = [
            name for (name,) in connection.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")
        ]
        sizes = {table: _rows_at_most(connection, table) for table in tables}
    except sqlite3.DatabaseError as error:  # damage that stops even reading the schema
        return [f"reading the schema: {error}"]
    finally:
        connection.close()
    quote = _quote_identifier
    statements = ["PRAGMA quick_check"] + [
        f"PRAGMA integrity_check({quote(table)})"
        for table in sorted(tables, key=sizes.__getitem__, reverse=True)
    ]
    if pool is None:
        return [problem for statement in statements for problem in _check(path, statement)]
    parts = [pool.submit(_check, path, statement) for statement in statements]
    return [problem for part in parts for problem in part.result()]


def _check(path: Path, statement: str) -> list[str]:
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        found = [row[0] for row in connection.execute(statement)]
    except sqlite3.DatabaseError as error:  # damage can stop the check itself
        found = [f"{statement}: {error}"]
    finally:
        connection.close()
    return [] if found == ["ok"] else found


def _rows_at_most(connection: sqlite3.Connection, table: str) -> int:
    """The table's largest rowid, a cheap stand-in for its size (0 without rowids)."""
    try:
        (largest,) = connection.execute(f"SELECT max(rowid) FROM {_quote_identifier(table)}").fetchone()  # noqa: S608
    except sqlite3.Error:
        return 0
    return int(largest or 0)


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
