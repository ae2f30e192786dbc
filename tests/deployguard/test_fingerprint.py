from __future__ import annotations

import pytest
from django.db import connection

from deployguard.fingerprint import MODULUS, column_names, fingerprint_table, row_hashes
from documents.models import Submission
from tests.documents.fakes import raw_update_submission
from tests.factories import SubmissionFactory


@pytest.fixture
def scratch_table(db):
    """A table without a primary key, so that duplicate rows are possible."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE fp_scratch (name varchar(20), n integer)")
    return "fp_scratch"


def insert(*rows: tuple[str | None, int | None]) -> None:
    with connection.cursor() as cursor:
        cursor.executemany("INSERT INTO fp_scratch (name, n) VALUES (%s, %s)", rows)


def delete_all() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM fp_scratch")


def test_fingerprint_of_an_empty_table_is_zero_rows(scratch_table):
    fingerprint = fingerprint_table(scratch_table)
    assert (fingerprint.count, fingerprint.digest) == (0, "0" * 16)


def test_fingerprint_does_not_depend_on_row_order(scratch_table):
    insert(("a", 1), ("b", 2), ("c", None))
    first = fingerprint_table(scratch_table)
    delete_all()
    insert(("c", None), ("a", 1), ("b", 2))
    assert fingerprint_table(scratch_table) == first


def test_fingerprint_changes_when_a_value_changes(scratch_table):
    insert(("a", 1), ("b", 2))
    before = fingerprint_table(scratch_table)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE fp_scratch SET n = 3 WHERE name = 'b'")
    after = fingerprint_table(scratch_table)
    assert after.count == before.count
    assert after.digest != before.digest


def test_fingerprint_counts_duplicate_rows_as_a_multiset(scratch_table):
    insert(("a", 1), ("b", 2))
    pair = fingerprint_table(scratch_table)
    insert(("a", 1))
    assert fingerprint_table(scratch_table) != pair
    delete_all()
    insert(("a", 1), ("a", 1), ("b", 2))
    with_duplicate = fingerprint_table(scratch_table)
    delete_all()
    insert(("a", 1), ("b", 2), ("b", 2))
    assert fingerprint_table(scratch_table) != with_duplicate


def test_fingerprint_tells_null_from_empty_and_moved_separators(scratch_table):
    insert(("", 1))
    empty = fingerprint_table(scratch_table)
    delete_all()
    insert((None, 1))
    assert fingerprint_table(scratch_table) != empty


def test_model_fingerprint_is_the_sum_of_its_row_hashes(db):
    SubmissionFactory.create_batch(3)
    fingerprint = fingerprint_table(Submission)
    hashes = list(row_hashes(Submission))
    assert fingerprint.count == 3
    assert [pk for pk, _ in hashes] == sorted(Submission.objects.values_list("pk", flat=True))
    assert fingerprint.digest == f"{sum(h for _, h in hashes) % MODULUS:016x}"


def test_row_hashes_show_which_row_changed(db):
    first, second = SubmissionFactory.create_batch(2)
    before = dict(row_hashes(Submission))
    raw_update_submission(second.pk, title="Changed behind the audit trail")
    after = dict(row_hashes(Submission))
    assert after[first.pk] == before[first.pk]
    assert after[second.pk] != before[second.pk]


def test_column_names_lists_every_table_s_columns_in_the_order_django_describes_them(db):
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        described = {
            table: [c.name for c in connection.introspection.get_table_description(cursor, table)]
            for table in tables
        }

    assert column_names(tables) == described
    assert column_names([]) == {}


def test_a_fingerprint_by_table_name_hashes_every_column_of_the_table(db):
    SubmissionFactory.create_batch(2)
    table = Submission._meta.db_table
    with connection.cursor() as cursor:
        every = [c.name for c in connection.introspection.get_table_description(cursor, table)]

    assert fingerprint_table(table) == fingerprint_table(table, columns=every)
    assert fingerprint_table(table) != fingerprint_table(table, columns=every[:1])
