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


# --- PostgreSQL: a table proved unwritten since a snapshot (deploy_safe's shortcut) --------


@pytest.fixture
def proof_table(transactional_db):
    """Three committed rows, and a way to write to them from another session."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE fp_proof (id integer PRIMARY KEY, name varchar(20))")
        cursor.execute("INSERT INTO fp_proof VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    yield "fp_proof"
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE fp_proof")


def _other_session(autocommit: bool = True):
    import psycopg

    params = connection.get_connection_params()
    return psycopg.connect(**params, autocommit=autocommit)


def _horizon_and_count() -> tuple[int, int]:
    """The horizon and row count of a REPEATABLE READ snapshot, as deploy_safe takes them."""
    from django.db import transaction

    from deployguard.fingerprint import PIN_RUNNING, snapshot_horizon

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute(f"SELECT count(*), {PIN_RUNNING} FROM fp_proof")  # noqa: S608 (constants)
        (count, _running) = cursor.fetchone()
        return snapshot_horizon(), count


@pytest.mark.postgresql
def test_a_table_nobody_wrote_to_is_proved_unchanged_after_a_rolled_back_write_a_row_lock_or_vacuum_full(
    proof_table,
):
    from deployguard.fingerprint import unwritten_since

    horizon, count = _horizon_and_count()
    assert count == 3
    assert unwritten_since(horizon, {proof_table: count}) == {proof_table}

    with _other_session(autocommit=False) as other:
        other.execute("UPDATE fp_proof SET name = 'x' WHERE id = 1")
        other.rollback()
        other.execute("SELECT * FROM fp_proof WHERE id = 2 FOR UPDATE")
        other.commit()
    with _other_session() as other:
        other.execute("VACUUM FULL fp_proof")  # moves the row versions as they are, xmin included

    assert unwritten_since(horizon, {proof_table: count}) == {proof_table}
    assert unwritten_since(horizon, {proof_table: 2}) == set()  # a different count is no proof


@pytest.mark.postgresql
@pytest.mark.parametrize(
    "write",
    [
        "UPDATE fp_proof SET name = name WHERE id = 1",  # changes nothing, still a new row version
        "DELETE FROM fp_proof WHERE id = 3",
        "INSERT INTO fp_proof VALUES (4, 'd')",
        "DELETE FROM fp_proof WHERE id = 3; INSERT INTO fp_proof VALUES (3, 'c')",  # same rows again
        "TRUNCATE fp_proof; INSERT INTO fp_proof VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        "ALTER TABLE fp_proof ALTER COLUMN name TYPE varchar(20) USING name || ''",  # same values
    ],
    ids=["no-op-update", "delete", "insert", "delete-and-insert-the-same", "truncate-and-refill", "rewrite"],
)
def test_any_write_since_the_snapshot_leaves_the_table_unproved(proof_table, write):
    from deployguard.fingerprint import unwritten_since

    horizon, count = _horizon_and_count()
    with _other_session() as other:
        for statement in write.split("; "):
            other.execute(statement)

    assert unwritten_since(horizon, {proof_table: count}) == set()


@pytest.mark.postgresql
def test_a_write_in_a_savepoint_of_a_transaction_open_at_the_snapshot_leaves_the_table_unproved(
    proof_table,
):
    """The row version carries the subtransaction's id, which no snapshot lists; it is still
    at or above the horizon, which the open transaction holds back. A later transaction that
    ends before the snapshot puts the snapshot's xmax above that id: xmax would not do."""
    from deployguard.fingerprint import unwritten_since

    with _other_session(autocommit=False) as other, _other_session() as later:
        other.execute("SELECT 1")
        with other.transaction():  # a savepoint inside the open transaction
            other.execute("UPDATE fp_proof SET name = 'x' WHERE id = 1")
        later.execute("SELECT pg_current_xact_id()")  # takes a transaction id and ends
        horizon, count = _horizon_and_count()  # does not see the update
        other.commit()

    assert count == 3
    assert unwritten_since(horizon, {proof_table: count}) == set()


@pytest.mark.postgresql
def test_a_transaction_open_in_another_database_does_not_hold_the_horizon_back(proof_table):
    """Transaction ids are the cluster's: left in, a long writer elsewhere would make every
    newer row here look unproved."""
    import psycopg

    from deployguard.fingerprint import unwritten_since

    params = {**connection.get_connection_params(), "dbname": "postgres"}
    with psycopg.connect(**params) as elsewhere, _other_session() as here:
        elsewhere.execute("SELECT pg_current_xact_id()")  # holds a transaction id, stays open
        here.execute("INSERT INTO fp_proof VALUES (4, 'd')")
        horizon, count = _horizon_and_count()
        elsewhere.rollback()

    assert count == 4
    assert unwritten_since(horizon, {proof_table: count}) == {proof_table}


@pytest.mark.postgresql
def test_only_ordinary_tables_of_base_types_can_be_proved_unwritten(transactional_db):
    """Rows of a partitioned or inherited-from table live in other tables, and an enum's or a
    domain's meaning can change by DDL on the type: those are hashed, never proved."""
    from deployguard.fingerprint import column_types, provable

    statements = [
        "CREATE TYPE fp_kind_mood AS ENUM ('calm', 'busy')",
        "CREATE DOMAIN fp_kind_positive AS integer CHECK (VALUE > 0)",
        "CREATE TABLE fp_kind_plain (id integer, tags integer[], name text, at timestamptz)",
        "CREATE TABLE fp_kind_enum (mood fp_kind_mood)",
        "CREATE TABLE fp_kind_enum_array (moods fp_kind_mood[])",
        "CREATE TABLE fp_kind_domain (n fp_kind_positive)",
        "CREATE TABLE fp_kind_parent (id integer)",
        "CREATE TABLE fp_kind_child () INHERITS (fp_kind_parent)",
        "CREATE TABLE fp_kind_partitioned (id integer) PARTITION BY RANGE (id)",
        "CREATE TABLE fp_kind_partition PARTITION OF fp_kind_partitioned FOR VALUES FROM (0) TO (10)",
    ]
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    try:
        described = column_types(
            ["fp_kind_plain", "fp_kind_enum", "fp_kind_enum_array", "fp_kind_domain", "fp_kind_parent",
             "fp_kind_child", "fp_kind_partitioned", "fp_kind_partition"]
        )  # fmt: skip
        assert {table: provable(types) for table, types in described.items()} == {
            "fp_kind_plain": True, "fp_kind_enum": False, "fp_kind_enum_array": False,
            "fp_kind_domain": False, "fp_kind_parent": False, "fp_kind_child": True,
            "fp_kind_partitioned": False, "fp_kind_partition": True,
        }  # fmt: skip
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TABLE fp_kind_plain, fp_kind_enum, fp_kind_enum_array, fp_kind_domain, "
                "fp_kind_parent, fp_kind_child, fp_kind_partitioned"
            )
            cursor.execute("DROP DOMAIN fp_kind_positive")
            cursor.execute("DROP TYPE fp_kind_mood")
