"""SQLite's write counting (deployguard.written): which tables were written between two marks."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from deployguard import written


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "db.sqlite3"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, value TEXT UNIQUE)")
        db.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO a (value) VALUES ('one'), ('two')")
        db.execute("INSERT INTO b (value) VALUES ('x')")
        db.execute("ANALYZE")  # sqlite_stat1: SQLite's own, which takes no trigger
    written.install(path, ["a", "b", "sqlite_stat1"])
    return path


def _run(path: Path, *statements: str) -> None:
    """Statements through a plain client of its own, one transaction."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("BEGIN")
        for statement in statements:
            db.execute(statement)
        db.execute("COMMIT")


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO a (value) VALUES ('three')",
        "UPDATE a SET value = value WHERE id = 1",  # a write that changes nothing is still a write
        "DELETE FROM a",  # no WHERE: SQLite's truncate shortcut is off while a table has triggers
        "REPLACE INTO a (id, value) VALUES (1, 'one')",
        "INSERT INTO a (value) VALUES ('one') ON CONFLICT (value) DO UPDATE SET value = excluded.value",
    ],
)
def test_any_write_by_any_client_is_counted_against_its_table_only(database: Path, statement: str):
    before = written.mark_now(database)

    _run(database, statement)

    after = written.mark_now(database)
    assert after.unwritten_since(before) == {"b"}
    assert after.counts["a"] > before.counts["a"]


def test_a_write_rolled_back_is_not_counted(database: Path):
    before = written.mark_now(database)
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as db:
        db.execute("BEGIN")
        db.execute("INSERT INTO a (value) VALUES ('never')")
        db.execute("ROLLBACK")

    assert written.mark_now(database).unwritten_since(before) == {"a", "b"}


def test_a_table_without_its_triggers_or_with_another_definition_is_not_proved(database: Path):
    before = written.mark_now(database)

    _run(database, 'DROP TRIGGER "deployguard_written_update_a"', "ALTER TABLE b ADD COLUMN extra TEXT")

    after = written.mark_now(database)
    assert after.unwritten_since(before) == set()
    assert not after.tracked("a")
    assert after.tracked("b")  # its triggers are there; its definition changed


def test_removed_the_counting_leaves_nothing_behind_and_nothing_is_proved(database: Path):
    before = written.mark_now(database)

    assert written.remove(database) is True
    assert written.remove(database) is False

    with contextlib.closing(sqlite3.connect(database)) as db:
        names = [name for (name,) in db.execute("SELECT name FROM sqlite_master")]
    assert [name for name in names if name.startswith("deployguard_written")] == []
    assert written.mark_now(database).unwritten_since(before) == set()
    _run(database, "INSERT INTO a (value) VALUES ('after')")  # writes work as before


def test_sqlite_own_tables_are_not_counted_and_never_proved(database: Path):
    before = written.mark_now(database)

    assert "sqlite_stat1" not in before.counts
    assert "sqlite_stat1" not in written.mark_now(database).unwritten_since(before)


def test_installing_again_starts_from_zero(database: Path):
    _run(database, "INSERT INTO b (value) VALUES ('y')")
    assert written.mark_now(database).counts == {"a": 0, "b": 1}

    written.install(database, ["a", "b"])

    assert written.mark_now(database).counts == {"a": 0, "b": 0}
