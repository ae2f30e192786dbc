"""Every protected table's fingerprint at once: taken (reusing what is proved unwritten), and
compared, with a backup's manifest or with the data now."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from django.db import connection

from deployguard import fingerprints
from deployguard.fingerprints import FingerprintsAt
from deployguard.tables import migrate_writable_tables
from tests.deployguard.support import fingerprints_as_frozen


def _compare(frozen: FingerprintsAt) -> fingerprints.Comparison:
    return fingerprints.compare_with_now(frozen, skip=migrate_writable_tables())


def test_every_protected_table_is_fingerprinted_and_nothing_else(db):
    from tests.factories import SubmissionFactory

    SubmissionFactory(ml_number="ML-001")

    taken = fingerprints.take()

    assert "documents_submission" in taken
    assert taken["documents_submission"].count == 1
    assert "id" in taken["documents_submission"].columns
    assert not any(table.startswith("deployguard_") for table in taken)
    assert "django_session" not in taken  # the allowlist
    assert fingerprints.current_digests()["documents_submission"] == taken["documents_submission"].as_digest()


def test_differences_name_each_table_that_appeared_disappeared_or_changed():
    before = {
        "a": {"count": 1, "digest": "x"},
        "b": {"count": 2, "digest": "y"},
        "c": {"count": 3, "digest": "z"},
    }
    after = {
        "a": {"count": 1, "digest": "x"},
        "b": {"count": 2, "digest": "w"},
        "d": {"count": 0, "digest": "0"},
    }

    assert fingerprints.differences(before, after) == [
        "b: 2 rows both times, contents differ",
        "c disappeared",
        "d appeared",
    ]
    assert fingerprints.differences(before, before) == []
    assert fingerprints.difference("c", {"count": 3, "digest": "z"}, {"count": 4, "digest": "z"}) == (
        "c: 3 rows before, 4 after"
    )


def test_the_data_now_is_compared_over_the_columns_each_table_had_and_new_tables_must_be_empty(
    transactional_db,
):
    from tests.documents.fakes import raw_update_submission
    from tests.factories import SubmissionFactory

    submission = SubmissionFactory(ml_number="ML-001", title="First")
    frozen = fingerprints_as_frozen()
    try:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE auth_group ADD COLUMN added_by_migrate integer")
            cursor.execute("CREATE TABLE fp_new (id integer PRIMARY KEY)")

        compared = _compare(frozen)

        assert compared.differences == []
        assert compared.schema_changes == ["auth_group: columns added added_by_migrate", "fp_new: created"]
        assert "auth_group" not in compared.unchanged  # a column more: not the same table
        assert "documents_submission" in compared.unchanged

        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO fp_new VALUES (1)")
        raw_update_submission(submission.pk, title="Changed behind the deploy's back")

        assert _compare(frozen).differences == [
            "documents_submission: 1 rows both times, contents differ",
            "fp_new: new table holds 1 rows; it must start empty",
        ]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS fp_new")
            cursor.execute("ALTER TABLE auth_group DROP COLUMN added_by_migrate")


@pytest.mark.postgresql
def test_the_post_check_proves_unwritten_tables_and_hashes_the_others(transactional_db):
    from tests.documents.fakes import raw_update_submission
    from tests.factories import SubmissionFactory

    first = SubmissionFactory(ml_number="ML-001", title="First")
    second = SubmissionFactory(ml_number="ML-002", title="Second")
    frozen = fingerprints_as_frozen(fingerprints_as_frozen())
    compared = _compare(frozen)
    assert compared.differences == []
    assert {"documents_submission", "documents_historicalsubmission"} <= set(compared.proved_unwritten)

    # Column types that differ from the backup's: no proof, so hashed (and found equal).
    history = frozen.tables["documents_historicalsubmission"]
    (first_column, *_), *other_columns = history.types or ()
    retyped = dataclasses.replace(history, types=((first_column, "text", ""), *other_columns))
    frozen = FingerprintsAt({**frozen.tables, "documents_historicalsubmission": retyped}, frozen.horizon)
    compared = _compare(frozen)
    assert compared.differences == []
    assert "documents_historicalsubmission" not in compared.proved_unwritten

    # An update that changes nothing is a new row version: hashed, equal, so still unchanged.
    raw_update_submission(first.pk, title="First")
    compared = _compare(frozen)
    assert compared.differences == []
    assert "documents_submission" not in compared.proved_unwritten
    assert "documents_submission" in compared.unchanged

    raw_update_submission(second.pk, title="Changed behind the deploy's back")
    assert _compare(frozen).differences == ["documents_submission: 2 rows both times, contents differ"]


@pytest.fixture
def ddl_tables(transactional_db) -> Iterator[None]:
    """Protected tables of the test's own: two of plain columns and the same shape and size
    (different values), one with an enum column."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TYPE fp_mood AS ENUM ('calm', 'busy')")
        cursor.execute("CREATE TABLE fp_plain (id integer PRIMARY KEY, n integer)")
        cursor.execute("CREATE TABLE fp_twin (id integer PRIMARY KEY, n integer)")
        cursor.execute("CREATE TABLE fp_enum (id integer PRIMARY KEY, mood fp_mood)")
        cursor.execute("INSERT INTO fp_plain VALUES (1, 0), (2, 0), (3, 0)")
        cursor.execute("INSERT INTO fp_twin VALUES (1, 5), (2, 5), (3, 5)")
        cursor.execute("INSERT INTO fp_enum VALUES (1, 'calm'), (2, 'busy')")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS fp_plain, fp_twin, fp_swap, fp_enum")
        cursor.execute("DROP TYPE fp_mood")


@pytest.mark.postgresql
def test_ddl_that_changes_what_rows_hold_without_writing_them_is_hashed_not_proved(ddl_tables):
    """Dropping a column and adding it again with a default (Django's RemoveField then AddField)
    leaves every row version as it was; renaming an enum's value changes what rows read too."""
    earlier = fingerprints_as_frozen()
    frozen = fingerprints_as_frozen(earlier)
    assert frozen.tables["fp_plain"] is earlier.tables["fp_plain"]  # proved at the freeze too
    assert frozen.tables["fp_enum"] is not earlier.tables["fp_enum"]  # an enum column: always hashed
    compared = _compare(frozen)
    assert compared.differences == []
    assert "fp_plain" in compared.proved_unwritten
    assert "fp_enum" not in compared.proved_unwritten

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE fp_plain DROP COLUMN n")
        cursor.execute("ALTER TABLE fp_plain ADD COLUMN n integer DEFAULT 7")
        cursor.execute("ALTER TYPE fp_mood RENAME VALUE 'busy' TO 'hectic'")

    compared = _compare(frozen)
    assert compared.differences == [
        "fp_enum: 2 rows both times, contents differ",
        "fp_plain: 3 rows both times, contents differ",
    ]
    assert not {"fp_plain", "fp_enum"} & set(compared.proved_unwritten)


@pytest.mark.postgresql
def test_tables_swapped_by_renaming_are_hashed_not_proved(ddl_tables):
    """Same names, columns and row counts, rows all older than the snapshot: only the table's
    oid tells that fp_plain now holds the other table's rows."""
    frozen = fingerprints_as_frozen(fingerprints_as_frozen())
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE fp_plain RENAME TO fp_swap")
        cursor.execute("ALTER TABLE fp_twin RENAME TO fp_plain")
        cursor.execute("ALTER TABLE fp_swap RENAME TO fp_twin")

    assert _compare(frozen).differences == [
        "fp_plain: 3 rows both times, contents differ",
        "fp_twin: 3 rows both times, contents differ",
    ]


def test_a_table_with_a_column_dropped_is_left_to_be_compared_by_value_never_by_counts(transactional_db):
    from tests.factories import SubmissionFactory

    SubmissionFactory(ml_number="ML-001")
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE auth_group ADD COLUMN doomed integer")
    frozen = fingerprints_as_frozen()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE auth_group DROP COLUMN doomed")

    compared = _compare(frozen)

    assert compared.differences == []
    dropped = "auth_group: columns dropped doomed; the surviving columns compared by value"
    assert compared.schema_changes == [dropped]
    assert compared.by_value == [fingerprints.ByValue("auth_group", ("id", "name"))]
    assert "auth_group" not in compared.unchanged
